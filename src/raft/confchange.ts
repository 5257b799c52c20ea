/**
 * Membership changes as pure functions from (configuration, progress) to a new (configuration,
 * progress). Nothing is mutated: the caller switches to the result only when it is valid.
 *
 * Cairn uses joint consensus (Raft thesis §4.3, etcd ConfChangeV2): a change of more than one
 * voter first enters C_old,new (decisions need majorities of both), then leaves it for C_new,
 * automatically (the leader proposes the empty change) or explicitly. A change of at most one voter
 * may skip the joint step. Configurations take effect when their entry is APPLIED, on every node.
 *
 * Errors are ConfChangeError: entering joint twice, leaving when not joint, removing every voter,
 * or changing more than one voter without a joint step.
 */
import { assert } from '../util/assert';
import { ConfChangeError } from './errors';
import { Inflights } from './inflights';
import { Progress } from './progress';
import { type TrackerConfig, isJoint } from './tracker';
import type { ConfChangeSingle, ConfState } from './types';

export interface ConfigAndProgress {
  readonly config: TrackerConfig;
  readonly progress: Map<number, Progress>;
}

interface Limits {
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
}

/** Mutable working copy of a configuration. */
class Draft {
  incoming: Set<number>;
  outgoing: Set<number>;
  learners: Set<number>;
  learnersNext: Set<number>;
  autoLeave: boolean;
  progress: Map<number, Progress>;

  constructor(base: ConfigAndProgress, private readonly limits: Limits, private readonly lastIndex: number) {
    this.incoming = new Set(base.config.voters[0]);
    this.outgoing = new Set(base.config.voters[1]);
    this.learners = new Set(base.config.learners);
    this.learnersNext = new Set(base.config.learnersNext);
    this.autoLeave = base.config.autoLeave;
    this.progress = new Map([...base.progress].map(([id, pr]) => [id, pr.clone()]));
  }

  private initProgress(id: number, isLearner: boolean): void {
    // The first append probes at the leader's last index: new nodes are usually empty, and the
    // rejection hint moves `next` back in one round trip.
    const next = Math.max(this.lastIndex, 1);
    this.progress.set(id, new Progress({
      match: 0, next, isLearner, recentActive: true,
      inflights: new Inflights(this.limits.inflightMessagesMax, this.limits.inflightBytesMax),
    }));
  }

  makeVoter(id: number): void {
    const pr = this.progress.get(id);
    if (pr === undefined) this.initProgress(id, false);
    else pr.isLearner = false;
    this.learners.delete(id);
    this.learnersNext.delete(id);
    this.incoming.add(id);
  }

  makeLearner(id: number): void {
    const pr = this.progress.get(id);
    if (pr === undefined) {
      this.initProgress(id, true);
      this.learners.add(id);
      return;
    }
    if (pr.isLearner) return;
    this.remove(id);
    this.progress.set(id, pr);
    // An outgoing voter cannot also be a learner: it becomes one when the joint config is left.
    if (this.outgoing.has(id)) {
      this.learnersNext.add(id);
    } else {
      pr.isLearner = true;
      this.learners.add(id);
    }
  }

  remove(id: number): void {
    if (!this.progress.has(id)) return;
    this.incoming.delete(id);
    this.learners.delete(id);
    this.learnersNext.delete(id);
    if (!this.outgoing.has(id)) this.progress.delete(id); // outgoing voters keep their progress
  }

  apply(changes: readonly ConfChangeSingle[]): void {
    for (const change of changes) {
      if (!Number.isSafeInteger(change.nodeId) || change.nodeId <= 0) {
        throw new ConfChangeError(`node id must be a positive safe integer, got ${change.nodeId}`);
      }
      switch (change.type) {
        case 'addNode': this.makeVoter(change.nodeId); break;
        case 'addLearner': this.makeLearner(change.nodeId); break;
        case 'removeNode': this.remove(change.nodeId); break;
      }
    }
    if (this.incoming.size === 0) throw new ConfChangeError('the change removes all voters');
  }

  result(): ConfigAndProgress {
    const config: TrackerConfig = {
      voters: [this.incoming, this.outgoing], learners: this.learners, learnersNext: this.learnersNext, autoLeave: this.autoLeave,
    };
    checkInvariants(config, this.progress);
    return { config, progress: this.progress };
  }
}

/** Asserts the tracker invariants; a violation is a bug in this module. */
export function checkInvariants(config: TrackerConfig, progress: ReadonlyMap<number, Progress>): void {
  const members = [...config.voters[0], ...config.voters[1], ...config.learners, ...config.learnersNext];
  for (const id of members) assert(progress.has(id), `conf change: member ${id} has no progress`);
  for (const id of progress.keys()) assert(members.includes(id), `conf change: progress for non-member ${id}`);
  for (const id of config.learnersNext) {
    assert(config.voters[1].has(id), `conf change: ${id} is in learnersNext but not an outgoing voter`);
    assert(progress.get(id)?.isLearner === false, `conf change: ${id} in learnersNext is marked learner`);
  }
  for (const id of config.learners) {
    assert(!config.voters[0].has(id) && !config.voters[1].has(id), `conf change: ${id} is both learner and voter`);
    assert(progress.get(id)?.isLearner === true, `conf change: learner ${id} not marked learner`);
  }
  if (!isJoint(config)) {
    assert(config.learnersNext.size === 0, 'conf change: learnersNext outside a joint config');
    assert(!config.autoLeave, 'conf change: autoLeave outside a joint config');
  }
}

export class Changer {
  constructor(private readonly base: ConfigAndProgress, private readonly limits: Limits, private readonly lastIndex: number) {}

  private draft(): Draft {
    return new Draft(this.base, this.limits, this.lastIndex);
  }

  /** Enters C_old,new: outgoing := current voters, then the changes apply to the incoming half. */
  enterJoint(autoLeave: boolean, changes: readonly ConfChangeSingle[]): ConfigAndProgress {
    const draft = this.draft();
    if (isJoint(this.base.config)) throw new ConfChangeError('already in a joint configuration');
    if (draft.incoming.size === 0) throw new ConfChangeError('cannot make a zero-voter configuration joint');
    draft.outgoing = new Set(draft.incoming);
    draft.apply(changes);
    draft.autoLeave = autoLeave;
    return draft.result();
  }

  /** Leaves the joint configuration: C_new alone decides; learnersNext become learners. */
  leaveJoint(): ConfigAndProgress {
    const draft = this.draft();
    if (!isJoint(this.base.config)) throw new ConfChangeError('cannot leave a non-joint configuration');
    for (const id of draft.learnersNext) {
      draft.learners.add(id);
      const pr = draft.progress.get(id);
      assert(pr !== undefined, `leave joint: learnersNext ${id} has no progress`);
      pr.isLearner = true;
    }
    draft.learnersNext = new Set();
    for (const id of draft.outgoing) {
      if (!draft.incoming.has(id) && !draft.learners.has(id)) draft.progress.delete(id);
    }
    draft.outgoing = new Set();
    draft.autoLeave = false;
    return draft.result();
  }

  /** Applies changes directly; at most one voter may be added or removed. */
  simple(changes: readonly ConfChangeSingle[]): ConfigAndProgress {
    if (isJoint(this.base.config)) throw new ConfChangeError('cannot apply a simple change in a joint configuration');
    const draft = this.draft();
    draft.apply(changes);
    let changed = 0;
    for (const id of draft.incoming) if (!this.base.config.voters[0].has(id)) changed++;
    for (const id of this.base.config.voters[0]) if (!draft.incoming.has(id)) changed++;
    if (changed > 1) throw new ConfChangeError('more than one voter changed without entering a joint configuration');
    return draft.result();
  }
}

/**
 * Rebuilds (configuration, progress) from a ConfState by replaying it as changes on an empty
 * configuration: outgoing voters one at a time, then the incoming side (as a joint step if the
 * state is joint).
 */
export function restoreConfig(confState: ConfState, limits: Limits, lastIndex: number): ConfigAndProgress {
  let current: ConfigAndProgress = { config: { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false }, progress: new Map() };
  const step = (changes: ConfChangeSingle[], joint: boolean): void => {
    const changer = new Changer(current, limits, lastIndex);
    current = joint ? changer.enterJoint(confState.autoLeave, changes) : changer.simple(changes);
  };
  const incoming: ConfChangeSingle[] = [
    ...confState.votersOutgoing.map((nodeId): ConfChangeSingle => ({ type: 'removeNode', nodeId })),
    ...confState.voters.map((nodeId): ConfChangeSingle => ({ type: 'addNode', nodeId })),
    ...confState.learners.map((nodeId): ConfChangeSingle => ({ type: 'addLearner', nodeId })),
    ...confState.learnersNext.map((nodeId): ConfChangeSingle => ({ type: 'addLearner', nodeId })),
  ];
  if (confState.votersOutgoing.length === 0) {
    for (const change of incoming) step([change], false);
  } else {
    for (const nodeId of confState.votersOutgoing) step([{ type: 'addNode', nodeId }], false);
    step(incoming, true);
  }
  return current;
}
