/**
 * ProgressTracker: the active membership configuration, the leader's Progress for every member,
 * and the votes of the current election.
 *
 * Invariants (checked by confchange.ts on every change): every member of the configuration has a
 * Progress and nothing else does; learners are never voters; learnersNext ⊆ outgoing voters;
 * outgoing voters, learnersNext and autoLeave are empty/false outside a joint configuration.
 */
import { Progress } from './progress';
import { type JointVoters, type VoteResult, jointCommittedIndex, jointVoteResult, jointVoterIds } from './quorum';
import type { ConfState } from './types';

export interface TrackerConfig {
  readonly voters: JointVoters;
  readonly learners: ReadonlySet<number>;
  readonly learnersNext: ReadonlySet<number>;
  readonly autoLeave: boolean;
}

export const emptyTrackerConfig: TrackerConfig = {
  voters: [new Set(), new Set()],
  learners: new Set(),
  learnersNext: new Set(),
  autoLeave: false,
};

export function isJoint(config: TrackerConfig): boolean {
  return config.voters[1].size > 0;
}

const sorted = (ids: Iterable<number>): number[] => [...ids].sort((a, b) => a - b);

export function confStateOf(config: TrackerConfig): ConfState {
  return {
    voters: sorted(config.voters[0]),
    votersOutgoing: sorted(config.voters[1]),
    learners: sorted(config.learners),
    learnersNext: sorted(config.learnersNext),
    autoLeave: config.autoLeave,
  };
}

export function describeConfig(config: TrackerConfig): string {
  let text = `voters=(${sorted(config.voters[0]).join(' ')})`;
  if (isJoint(config)) text += `&&(${sorted(config.voters[1]).join(' ')})`;
  if (config.learners.size > 0) text += ` learners=(${sorted(config.learners).join(' ')})`;
  if (config.learnersNext.size > 0) text += ` learners_next=(${sorted(config.learnersNext).join(' ')})`;
  if (config.autoLeave) text += ' autoleave';
  return text;
}

export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig;
  progress: Map<number, Progress> = new Map();
  /** Votes of the current (pre-)election: true = granted. */
  votes: Map<number, boolean> = new Map();

  constructor(readonly inflightMessagesMax: number, readonly inflightBytesMax: number) {}

  confState(): ConfState {
    return confStateOf(this.config);
  }

  /** A single voter and not joint: that voter decides alone. */
  isSingleton(): boolean {
    return this.config.voters[0].size === 1 && this.config.voters[1].size === 0;
  }

  isVoter(id: number): boolean {
    return this.config.voters[0].has(id) || this.config.voters[1].has(id);
  }

  voterIds(): number[] {
    return jointVoterIds(this.config.voters);
  }

  /** Every tracked node (voters and learners), ascending. */
  ids(): number[] {
    return sorted(this.progress.keys());
  }

  /** Largest index replicated on a quorum (of both halves when joint). */
  committed(): number {
    return jointCommittedIndex(this.config.voters, (id) => this.progress.get(id)?.match);
  }

  /** Whether a quorum was heard from recently (the leader counts itself as active). */
  quorumActive(): boolean {
    const active = new Map<number, boolean>();
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) active.set(id, pr.recentActive);
    }
    return jointVoteResult(this.config.voters, active) === 'won';
  }

  voteResult(votes: ReadonlyMap<number, boolean>): VoteResult {
    return jointVoteResult(this.config.voters, votes);
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  /** Records a vote (the first one from each node counts) and returns the tally. */
  recordVote(id: number, granted: boolean): { granted: number; rejected: number; result: VoteResult } {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    let grantedCount = 0;
    let rejectedCount = 0;
    for (const id of this.voterIds()) {
      const vote = this.votes.get(id);
      if (vote === true) grantedCount++;
      else if (vote === false) rejectedCount++;
    }
    return { granted: grantedCount, rejected: rejectedCount, result: this.voteResult(this.votes) };
  }
}
