/**
 * RawNode: the public, synchronous handle on one Raft node. The application drives it — tick on
 * a timer, step every message from the network, propose and read — and collects all output in
 * Ready batches (see the Ready type for the persist → send → apply → advance contract).
 *
 * No I/O, timers, clocks or Math.random: time is tick(), randomness comes through `Random`.
 * Only one Ready may be outstanding at a time; step/tick/propose may be called in between.
 */
import { assert } from '../util/assert';
import type { Random } from '../util/random';
import { encodeConfChange } from './conf-change-codec';
import type { RaftConfigInput } from './config';
import { ProposalDroppedError, StepError } from './errors';
import { Raft } from './raft';
import type { RaftStorage } from './storage';
import { describeConfig } from './tracker';
import {
  type ConfChange, type ConfState, type Entry, type EntryId, type HardState, type Message, type Ready, type SoftState,
  isLocalMessage, isResponseMessage, makeMessage, noNode,
} from './types';

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly isLearner: boolean;
  readonly recentActive: boolean;
  readonly paused: boolean;
  readonly inflightMessages: number;
}

export interface RaftStatus {
  readonly id: number;
  readonly hardState: HardState;
  readonly softState: SoftState;
  readonly applied: number;
  readonly leadTransferee: number;
  readonly config: string;
  /** Leader only: the view of every member. */
  readonly progress: ReadonlyMap<number, ProgressStatus>;
}

const emptyBytes = new Uint8Array(0);

export class RawNode {
  /** @internal exposed for tests and tooling; not part of the stable API. */
  readonly raft: Raft;
  private previousSoftState: SoftState;
  private previousHardState: HardState;
  private outstanding: Ready | undefined = undefined;

  /**
   * Restarts from storage (hard state, log, snapshot, ConfState) or starts empty. A brand-new
   * cluster is bootstrapped either with bootstrap() or with storage holding a snapshot whose
   * ConfState names the initial members.
   */
  constructor(config: RaftConfigInput, storage: RaftStorage, random: Random) {
    this.raft = new Raft(config, storage, random);
    this.previousSoftState = this.raft.softState();
    this.previousHardState = this.raft.hardState();
  }

  /**
   * Bootstraps a new cluster on empty storage: appends one committed `addNode` entry per initial
   * voter at term 1, so every node — and any node that later replays the log — learns the initial
   * membership from the log itself. Every initial member must bootstrap with the same list.
   */
  bootstrap(voters: readonly number[]): void {
    const raft = this.raft;
    assert(voters.length > 0, 'bootstrap needs at least one voter');
    assert(raft.log.lastIndex() === 0 && raft.term === 0, `bootstrap on non-empty storage (last index ${raft.log.lastIndex()})`);
    raft.becomeFollower(1, noNode);
    const entries: Entry[] = voters.map((nodeId, i) => ({
      term: 1, index: i + 1, type: 'confChange',
      data: encodeConfChange({ transition: 'auto', changes: [{ type: 'addNode', nodeId }], context: emptyBytes }),
    }));
    raft.log.append(entries);
    raft.log.committed = entries.length;
    // Applied here so campaign() works at once; the application sees the entries again in
    // committedEntries and applies them (adding an existing voter is a no-op).
    for (const nodeId of voters) raft.applyConfChange({ transition: 'auto', changes: [{ type: 'addNode', nodeId }], context: emptyBytes });
    this.previousHardState = { term: 0, vote: 0, commit: 0 };
  }

  /** Advances logical time by one tick (elections, heartbeats, check-quorum). */
  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void {
    this.raft.step(makeMessage({ type: 'MsgHup', from: this.raft.id }));
  }

  /**
   * Proposes `data` for the log. Returns the entry's (term, index) when this node is the leader,
   * undefined when the proposal was forwarded to the leader (outcome unknown: watch committed
   * entries). Throws NotLeaderError (no leader known, or forwarding disabled) or
   * ProposalDroppedError (leadership transfer, uncommitted-size limit).
   * A returned id commits iff the entry applied at that index has that term.
   */
  propose(data: Uint8Array): EntryId | undefined {
    return this.proposeEntry({ term: 0, index: 0, type: 'normal', data });
  }

  /**
   * Proposes a membership change (joint consensus; see ConfChange). Refused with
   * ProposalDroppedError while an earlier change is unapplied ('conf-change-pending') or when it
   * does not apply to the current configuration ('conf-change-invalid').
   */
  proposeConfChange(change: ConfChange): EntryId | undefined {
    return this.proposeEntry({ term: 0, index: 0, type: 'confChange', data: encodeConfChange(change) });
  }

  private proposeEntry(entry: Entry): EntryId | undefined {
    this.raft.step(makeMessage({ type: 'MsgProp', from: this.raft.id, entries: [entry] }));
    return this.raft.role === 'leader' ? this.raft.log.lastEntryId() : undefined;
  }

  /**
   * Requests a linearizable read point. `context` (non-empty, unique among pending reads)
   * comes back in a later Ready.readStates with the index to wait for. Followers forward to the
   * leader. Throws NotLeaderError when no leader is known; a read lost with leadership produces
   * nothing, so callers time out and retry.
   */
  readIndex(context: Uint8Array): void {
    if (context.length === 0) throw new TypeError('readIndex context must not be empty');
    this.raft.step(makeMessage({ type: 'MsgReadIndex', from: this.raft.id, context }));
  }

  /** Asks the leader to hand leadership to `target` (a voter); followers forward the request. */
  transferLeadership(target: number): void {
    this.raft.step(makeMessage({ type: 'MsgTransferLeader', from: this.raft.id, target }));
  }

  /** The transport could not deliver to `id`: the leader stops pipelining to it. */
  reportUnreachable(id: number): void {
    this.raft.step(makeMessage({ type: 'MsgUnreachable', from: id }));
  }

  /**
   * Feeds a message from the network. Throws StepError for local-only message types and for
   * responses from nodes outside the configuration. Messages without a term are dropped, except
   * forwarded proposals and reads, which carry none.
   */
  step(message: Message): void {
    if (message.term === 0 && message.type !== 'MsgProp' && message.type !== 'MsgReadIndex') return;
    if (isLocalMessage(message.type)) {
      throw new StepError('RAFT_STEP_LOCAL_MESSAGE', `${message.type} is local and cannot be stepped from the network`);
    }
    if (isResponseMessage(message.type) && !this.raft.tracker.progress.has(message.from)) {
      throw new StepError('RAFT_STEP_PEER_NOT_FOUND', `${message.type} from ${message.from}, which is not a member`);
    }
    this.raft.step(message);
  }

  /**
   * Applies a committed configuration entry (decoded with decodeConfChange) and returns the new
   * ConfState to persist with the applied index. Throws ConfChangeError when the change does not
   * apply; every node reaches the same verdict, so the application treats the entry as a no-op.
   */
  applyConfChange(change: ConfChange): ConfState {
    return this.raft.applyConfChange(change);
  }

  hasReady(): boolean {
    const raft = this.raft;
    if (this.outstanding !== undefined) return false;
    raft.flushAppends(); // due appends become messages (or nothing, when flow control says so)
    if (raft.messages.length > 0 || raft.readStates.length > 0) return true;
    if (raft.log.unstable.entries.length > 0 || raft.log.hasPendingSnapshot()) return true;
    if (raft.log.hasNextCommittedEntries()) return true;
    if (!sameSoftState(raft.softState(), this.previousSoftState)) return true;
    return !sameHardState(raft.hardState(), this.previousHardState);
  }

  /** Collects the current output. Handle it as documented on Ready, then call advance(ready). */
  ready(): Ready {
    assert(this.outstanding === undefined, 'ready() called again before advance() of the previous Ready');
    const raft = this.raft;
    const messages = raft.takeMessages();
    const entries = raft.log.unstableEntries();
    const committedEntries = raft.log.nextCommittedEntries();
    const snapshot = raft.log.unstable.snapshot;
    const softState = raft.softState();
    const hardState = raft.hardState();
    const hardChanged = !sameHardState(hardState, this.previousHardState);
    const ready: Ready = {
      entries,
      committedEntries,
      messages,
      readStates: raft.readStates,
      mustSync: entries.length > 0 || snapshot !== undefined
        || hardState.term !== this.previousHardState.term || hardState.vote !== this.previousHardState.vote,
      ...(sameSoftState(softState, this.previousSoftState) ? {} : { softState }),
      ...(hardChanged ? { hardState } : {}),
      ...(snapshot === undefined ? {} : { snapshot }),
    };
    raft.readStates = [];
    this.previousSoftState = softState;
    const lastCommitted = committedEntries[committedEntries.length - 1];
    if (lastCommitted !== undefined) raft.log.acceptApplying(lastCommitted.index);
    this.outstanding = ready;
    return ready;
  }

  /** The application finished handling `ready` (persisted, sent, applied). */
  advance(ready: Ready): void {
    assert(this.outstanding === ready, 'advance() with a Ready that is not the outstanding one');
    this.outstanding = undefined;
    const raft = this.raft;
    if (ready.hardState !== undefined) this.previousHardState = ready.hardState;
    const lastEntry = ready.entries[ready.entries.length - 1];
    if (lastEntry !== undefined) raft.log.stableTo(lastEntry);
    if (ready.snapshot !== undefined) {
      raft.log.stableSnapTo(ready.snapshot.metadata.index);
      if (ready.snapshot.metadata.index > raft.log.applied) raft.log.appliedTo(ready.snapshot.metadata.index);
    }
    const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastCommitted !== undefined) {
      raft.log.appliedTo(lastCommitted.index);
      raft.reduceUncommittedBytes(ready.committedEntries);
    }
    this.maybeAutoLeave();
  }

  /** Leader: a joint configuration with autoLeave is applied; propose leaving it. */
  private maybeAutoLeave(): void {
    const raft = this.raft;
    if (raft.role !== 'leader' || !raft.tracker.config.autoLeave || raft.log.applied < raft.pendingConfIndex) return;
    try {
      this.proposeConfChange({ transition: 'auto', changes: [], context: emptyBytes });
    } catch (error) {
      // Refused (e.g. during a leadership transfer): retried on the next advance.
      if (!(error instanceof ProposalDroppedError)) throw error;
    }
  }

  status(): RaftStatus {
    const raft = this.raft;
    const progress = new Map<number, ProgressStatus>();
    if (raft.role === 'leader') {
      for (const id of raft.tracker.ids()) {
        const pr = raft.tracker.progress.get(id);
        if (pr === undefined) continue;
        progress.set(id, {
          match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner, recentActive: pr.recentActive,
          paused: pr.isPaused(), inflightMessages: pr.inflights.count,
        });
      }
    }
    return {
      id: raft.id, hardState: raft.hardState(), softState: raft.softState(), applied: raft.log.applied,
      leadTransferee: raft.leadTransferee, config: describeConfig(raft.tracker.config), progress,
    };
  }
}

function sameSoftState(a: SoftState, b: SoftState): boolean {
  return a.lead === b.lead && a.role === b.role;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
