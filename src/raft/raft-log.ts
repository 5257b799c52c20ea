/**
 * RaftLog: the node's view of the log, stitched from durable storage and the unstable tail, plus
 * the commit and apply cursors.
 *
 * Invariants: applied <= applying <= committed <= lastIndex; firstIndex - 1 <= committed (the
 * snapshot is always committed); entries at or below `committed` are never truncated.
 */
import { assert } from '../util/assert';
import { UnstableLog } from './log-unstable';
import { type RaftStorage, limitBytes } from './storage';
import type { Entry, EntryId, Snapshot } from './types';

export class RaftLog {
  readonly unstable: UnstableLog;
  /** Highest index known to be committed. */
  committed: number;
  /** Highest index handed out in Ready.committedEntries. */
  applying: number;
  /** Highest index the application reported applied (through advance). */
  applied: number;

  constructor(readonly storage: RaftStorage, private readonly committedBytesPerReadyMax: number) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    assert(first >= 1, `storage first index ${first} must be >= 1`);
    assert(last >= first - 1, `storage last index ${last} before first index ${first}`);
    this.unstable = new UnstableLog(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Term of entry `index`, or undefined when it is compacted away or beyond the last entry. */
  term(index: number): number | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    return this.unstable.maybeTerm(index) ?? this.storage.term(index);
  }

  lastTerm(): number {
    const term = this.term(this.lastIndex());
    assert(term !== undefined, `no term for last index ${this.lastIndex()}`);
    return term;
  }

  lastEntryId(): EntryId {
    return { term: this.lastTerm(), index: this.lastIndex() };
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: is a log ending at (lastTerm, lastIndex) at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries. Returns the index of the last entry the message proved to
   * match, or undefined when (index, logTerm) does not match. Truncates only at a real conflict,
   * so a stale or duplicated message never shortens the log, and commits no further than the
   * last entry the message covered.
   */
  maybeAppend(index: number, logTerm: number, leaderCommit: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with committed entry (committed ${this.committed})`);
      this.append(entries.slice(conflict - index - 1));
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return lastNew;
  }

  /** Appends entries (possibly replacing an uncommitted suffix); returns the new last index. */
  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const first = (entries[0] as Entry).index;
    assert(first - 1 >= this.committed, `append at ${first} would overwrite committed entries (committed ${this.committed})`);
    assert(first <= this.lastIndex() + 1, `append at ${first} leaves a gap after ${this.lastIndex()}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /** Index of the first entry that is new or conflicts (same index, other term); 0 if none. */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * Rejection hint (follower side): for a mismatch at `index`, the term we hold there (0 when our
   * log is shorter) and the first index of that term, not going below committed + 1.
   */
  conflictHint(index: number): { term: number; index: number } {
    const last = this.lastIndex();
    if (index > last) return { term: 0, index: last + 1 };
    const term = this.term(index);
    assert(term !== undefined, `conflict hint: no term at ${index} (first ${this.firstIndex()}, committed ${this.committed})`);
    let first = index;
    while (first - 1 > this.committed && this.term(first - 1) === term) first--;
    return { term, index: first };
  }

  /**
   * Leader side of the hint: the last index at or below `index` whose term is `term`, or
   * undefined when this log has no entry of that term there.
   */
  lastIndexOfTerm(term: number, index: number): number | undefined {
    let probe = Math.min(index, this.lastIndex());
    for (;;) {
      const probeTerm = this.term(probe);
      if (probeTerm === undefined || probeTerm < term) return undefined;
      if (probeTerm === term) return probe;
      probe--;
    }
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries.slice();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** Committed entries not yet handed out, bounded by committedBytesPerReadyMax. */
  nextCommittedEntries(): Entry[] {
    if (this.hasPendingSnapshot()) return []; // the snapshot is applied first
    const lo = Math.max(this.applying + 1, this.firstIndex());
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, this.committedBytesPerReadyMax);
  }

  hasNextCommittedEntries(): boolean {
    if (this.hasPendingSnapshot()) return false;
    return Math.max(this.applying + 1, this.firstIndex()) <= this.committed;
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(index: number): void {
    if (index <= this.committed) return; // never decrease
    assert(
      index <= this.lastIndex(),
      `commit ${index} is out of range [last index ${this.lastIndex()}]: was the log corrupted, truncated or lost?`,
    );
    this.committed = index;
  }

  /** Commits `index` if it is from `term` (only current-term entries commit by counting, §5.4.2). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  acceptApplying(index: number): void {
    assert(index <= this.committed, `applying ${index} beyond committed ${this.committed}`);
    this.applying = Math.max(this.applying, index);
  }

  appliedTo(index: number): void {
    assert(index <= this.committed, `applied ${index} beyond committed ${this.committed}`);
    assert(index >= this.applied, `applied index goes backwards: ${index} < ${this.applied}`);
    this.applied = index;
    this.applying = Math.max(this.applying, index);
  }

  stableTo(id: EntryId): void {
    this.unstable.stableTo(id.index, id.term);
  }

  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index);
  }

  /** Replaces the whole log with a snapshot (the caller checked it does not match our log). */
  restore(snapshot: Snapshot): void {
    assert(snapshot.metadata.index > this.committed, `restore to ${snapshot.metadata.index} at or below committed ${this.committed}`);
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }

  /** Entries from `index` to the end, limited to maxBytes (at least one). */
  entries(index: number, maxBytes: number): Entry[] {
    if (index > this.lastIndex()) return [];
    return this.slice(index, this.lastIndex() + 1, maxBytes);
  }

  /** Entries in [lo, hi) limited to maxBytes (at least one when lo < hi). */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo >= this.firstIndex(), `slice lo ${lo} below first index ${this.firstIndex()}`);
    assert(lo <= hi, `slice lo ${lo} > hi ${hi}`);
    assert(hi <= this.lastIndex() + 1, `slice hi ${hi} beyond last index ${this.lastIndex()}`);
    if (lo === hi) return [];
    const offset = this.unstable.offset;
    let result: Entry[] = [];
    if (lo < offset) {
      const stableHi = Math.min(hi, offset);
      result = this.storage.entries(lo, stableHi, maxBytes);
      if (result.length < stableHi - lo) return result; // limited by size
    }
    if (hi > offset) {
      result = result.concat(this.unstable.slice(Math.max(lo, offset), hi));
    }
    return limitBytes(result, maxBytes);
  }
}
