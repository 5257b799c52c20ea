/**
 * UnstableLog: the tail of the log (and possibly an incoming snapshot) that the application has
 * not yet persisted. It is handed out in Ready.entries / Ready.snapshot and dropped from here once
 * the application reports it durable through advance().
 *
 * Invariants: entries are contiguous and entries[0].index === offset; when a snapshot is pending,
 * offset === snapshot index + 1.
 */
import { assert } from '../util/assert';
import type { Entry, Snapshot } from './types';

export class UnstableLog {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  /** Index of entries[0], or of the next entry to come when there are none. */
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  /** The first index if a pending snapshot defines it. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index;
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      return this.snapshot !== undefined && this.snapshot.metadata.index === index ? this.snapshot.metadata.term : undefined;
    }
    const entry = this.entries[index - this.offset];
    return entry === undefined ? undefined : entry.term;
  }

  /** Entries up to (index, term) are durable; forget them unless they were replaced meanwhile. */
  stableTo(index: number, term: number): void {
    if (index < this.offset) return;
    if (this.maybeTerm(index) !== term) return; // truncated and rewritten since that Ready
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  stableSnapTo(index: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === index) this.snapshot = undefined;
  }

  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  /** Appends, replacing any unstable suffix from entries[0].index on. */
  truncateAndAppend(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const from = (entries[0] as Entry).index;
    if (from === this.offset + this.entries.length) {
      this.entries = this.entries.concat(entries);
    } else if (from <= this.offset) {
      // Replaces everything unstable; the persisted suffix from `from` is overwritten when this
      // Ready's entries are written.
      this.offset = from;
      this.entries = entries.slice();
    } else {
      this.entries = this.entries.slice(0, from - this.offset).concat(entries);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    assert(lo >= this.offset, `unstable slice lo ${lo} below offset ${this.offset}`);
    assert(lo <= hi, `unstable slice lo ${lo} > hi ${hi}`);
    assert(hi <= this.offset + this.entries.length, `unstable slice hi ${hi} beyond ${this.offset + this.entries.length}`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
