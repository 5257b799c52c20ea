/**
 * MemoryStorage: a RaftStorage held in memory, for tests and the simulator. It also models what a
 * durable backend does on the write side: append (overwriting a conflicting suffix), hard state,
 * snapshot install, snapshot creation and compaction.
 *
 * Invariants: entries are contiguous and start right after `compacted` (the id of the last
 * compacted entry); compacted.index <= snapshot index, so every compacted entry is covered by the
 * snapshot.
 */
import { assert } from '../util/assert';
import { CompactedError, SnapshotOutOfDateError, UnavailableError } from './errors';
import { type InitialState, type RaftStorage, limitBytes } from './storage';
import { type ConfState, type Entry, type EntryId, type HardState, type Snapshot, emptyConfState, emptyHardState } from './types';

export class MemoryStorage implements RaftStorage {
  private hard: HardState = emptyHardState;
  private snap: Snapshot;
  private compacted: EntryId;
  private log: Entry[] = [];

  /** Starts empty, or from a snapshot (e.g. a bootstrap snapshot carrying the initial ConfState). */
  constructor(snapshot?: Snapshot) {
    this.snap = snapshot ?? { metadata: { index: 0, term: 0, confState: emptyConfState }, data: new Uint8Array(0) };
    this.compacted = { index: this.snap.metadata.index, term: this.snap.metadata.term };
    if (snapshot !== undefined) {
      this.hard = { term: snapshot.metadata.term, vote: 0, commit: snapshot.metadata.index };
    }
  }

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.snap.metadata.confState };
  }

  hardState(): HardState {
    return this.hard;
  }

  setHardState(hardState: HardState): void {
    this.hard = hardState;
  }

  firstIndex(): number {
    return this.compacted.index + 1;
  }

  lastIndex(): number {
    return this.compacted.index + this.log.length;
  }

  term(index: number): number {
    if (index < this.compacted.index) throw new CompactedError(index, this.firstIndex());
    if (index > this.lastIndex()) throw new UnavailableError(index, this.lastIndex());
    if (index === this.compacted.index) return this.compacted.term;
    const entry = this.log[index - this.compacted.index - 1];
    assert(entry !== undefined && entry.index === index, `memory storage: entry ${index} missing or misplaced`);
    return entry.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.compacted.index) throw new CompactedError(lo, this.firstIndex());
    assert(lo <= hi, `memory storage: entries lo ${lo} > hi ${hi}`);
    assert(hi <= this.lastIndex() + 1, `memory storage: entries hi ${hi} beyond last index ${this.lastIndex()}`);
    const offset = this.compacted.index + 1;
    return limitBytes(this.log.slice(lo - offset, hi - offset), maxBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /**
   * Appends entries; entries[0] may start at or before lastIndex + 1, in which case the stored
   * suffix from entries[0].index on is replaced. Entries already compacted are skipped.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0] as Entry;
    for (let i = 1; i < entries.length; i++) {
      assert((entries[i] as Entry).index === first.index + i, `memory storage: append of non-contiguous entries at ${first.index + i}`);
    }
    assert(first.index <= this.lastIndex() + 1, `memory storage: append at ${first.index} leaves a gap after ${this.lastIndex()}`);
    const skip = Math.max(0, this.compacted.index + 1 - first.index);
    if (skip >= entries.length) return;
    const fresh = entries.slice(skip);
    const start = (fresh[0] as Entry).index;
    this.log = this.log.slice(0, start - this.compacted.index - 1).concat(fresh);
  }

  /** Installs a snapshot received from the leader; the whole log is replaced by it. */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index <= this.snap.metadata.index) {
      throw new SnapshotOutOfDateError(snapshot.metadata.index, this.snap.metadata.index);
    }
    this.snap = snapshot;
    this.compacted = { index: snapshot.metadata.index, term: snapshot.metadata.term };
    this.log = [];
  }

  /** Records a state machine snapshot at `index` (<= last index); does not compact. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) throw new SnapshotOutOfDateError(index, this.snap.metadata.index);
    assert(index <= this.lastIndex(), `memory storage: snapshot index ${index} beyond last index ${this.lastIndex()}`);
    this.snap = { metadata: { index, term: this.term(index), confState }, data };
    return this.snap;
  }

  /** Discards entries up to and including `index`, which must be covered by the snapshot. */
  compact(index: number): void {
    if (index <= this.compacted.index) throw new CompactedError(index, this.firstIndex());
    assert(index <= this.snap.metadata.index, `memory storage: compact to ${index} beyond snapshot ${this.snap.metadata.index}`);
    const term = this.term(index);
    this.log = this.log.slice(index - this.compacted.index);
    this.compacted = { index, term };
  }
}
