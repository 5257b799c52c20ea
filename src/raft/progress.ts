/**
 * Progress: the leader's view of one follower and the flow-control state machine for it.
 *
 * - probe: the match point is unknown; one append per heartbeat until a response finds it;
 * - replicate: the follower is caught up to `match`; appends are pipelined within the inflights
 *   window and `next` advances optimistically;
 * - snapshot: the follower needs a snapshot; no appends until its transfer completes.
 *
 * Invariants: 0 <= match < next; sentCommit <= the last index sent; in snapshot state
 * pendingSnapshot > 0.
 */
import { assert } from '../util/assert';
import { Inflights } from './inflights';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** Highest index known to match the leader's log. */
  match: number;
  /** Next index to send; entries in (match, next) are in flight. */
  next: number;
  state: ProgressState = 'probe';
  /** Snapshot index being sent (snapshot state). */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round (always true for the leader itself). */
  recentActive: boolean;
  /**
   * An append (or an empty probe) was sent since the last heartbeat response. In probe state this
   * pauses sending; in replicate state it suppresses empty probes while the window is full.
   */
  probeSent = false;
  /** Highest commit index the follower may have learned from us (bounded by the last index sent). */
  sentCommit = 0;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(options: { match: number; next: number; isLearner: boolean; recentActive: boolean; inflights: Inflights }) {
    assert(options.match < options.next, `progress: match ${options.match} must be < next ${options.next}`);
    this.match = options.match;
    this.next = options.next;
    this.isLearner = options.isLearner;
    this.recentActive = options.recentActive;
    this.inflights = options.inflights;
  }

  private resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      // The snapshot was delivered: continue after it.
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
    this.sentCommit = Math.min(this.sentCommit, this.next - 1);
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
    this.sentCommit = Math.min(this.sentCommit, this.match);
  }

  becomeSnapshot(snapshotIndex: number): void {
    assert(snapshotIndex > 0, 'progress: snapshot index must be positive');
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** A response acknowledged `index`; returns false when it is stale (nothing new). */
  maybeUpdate(index: number): boolean {
    if (index <= this.match) return false;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    this.probeSent = false;
    return true;
  }

  /**
   * The follower rejected an append whose previous index was `rejected`; `nextHint` is where the
   * leader thinks the logs may match from. Returns false for stale rejections.
   */
  maybeDecrTo(rejected: number, nextHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false; // stale: that position is already acknowledged
      this.next = this.match + 1;
    } else {
      if (this.next - 1 !== rejected) return false; // stale: probes go one at a time
      this.next = Math.max(Math.min(rejected, nextHint), this.match + 1);
      this.probeSent = false;
    }
    this.sentCommit = Math.min(this.sentCommit, this.next - 1);
    return true;
  }

  /** True when the flow-control state lets at least one entry go out. */
  canSendEntries(lastIndex: number): boolean {
    if (this.next > lastIndex) return false;
    if (this.state === 'probe') return !this.probeSent;
    return this.state === 'replicate' && !this.inflights.full();
  }

  /** Sending commit `commit` could move the follower's commit index forward. */
  canBumpCommit(commit: number): boolean {
    return this.sentCommit < Math.min(commit, this.next - 1);
  }

  /** Whether the leader should send an append (possibly empty) now. */
  shouldSendAppend(lastIndex: number, commit: number): boolean {
    switch (this.state) {
      case 'probe':
        return !this.probeSent;
      case 'replicate':
        return this.canSendEntries(lastIndex) || this.canBumpCommit(commit) || (this.match < lastIndex && !this.probeSent);
      case 'snapshot':
        return false;
    }
  }

  /** Records an append of `entries` entries (`bytes` in total) starting at `next`, carrying `commit`. */
  sentAppend(entries: number, bytes: number, commit: number): void {
    if (this.state === 'replicate' && entries > 0) {
      this.next += entries;
      this.inflights.add(this.next - 1, bytes);
    }
    this.probeSent = true;
    // The follower may commit up to min(commit, last index of this message) once it accepts it.
    const lastSent = this.state === 'probe' ? this.next - 1 + entries : this.next - 1;
    this.sentCommit = Math.min(Math.max(this.sentCommit, commit), lastSent);
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  clone(): Progress {
    const copy = new Progress({
      match: this.match, next: this.next, isLearner: this.isLearner, recentActive: this.recentActive, inflights: this.inflights.clone(),
    });
    copy.state = this.state;
    copy.pendingSnapshot = this.pendingSnapshot;
    copy.probeSent = this.probeSent;
    copy.sentCommit = this.sentCommit;
    return copy;
  }

  describe(): string {
    let text = `${this.state} match=${this.match} next=${this.next}`;
    if (this.isLearner) text += ' learner';
    if (this.isPaused()) text += ' paused';
    if (this.pendingSnapshot > 0) text += ` pendingSnapshot=${this.pendingSnapshot}`;
    if (!this.recentActive) text += ' inactive';
    if (this.inflights.count > 0) text += ` inflight=${this.inflights.count}${this.inflights.full() ? '[full]' : ''}`;
    return text;
  }
}
