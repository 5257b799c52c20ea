/**
 * The storage contract the Raft core reads from. The core never writes storage: the application
 * persists what each Ready hands it (entries, hard state, snapshot) and the core reads it back here.
 *
 * Contract (all methods synchronous; an asynchronous backend keeps the retained log and the latest
 * snapshot metadata in memory, which compaction keeps small):
 * - The stored log is a contiguous range [firstIndex, lastIndex]; term(firstIndex - 1) is still
 *   answerable (it is the term of the last compacted entry / the snapshot).
 * - Everything the core reads must already be durable: the core only asks for what the
 *   application persisted from earlier Readys.
 * - Storage is never compacted past the latest snapshot, and never past the applied index.
 */
import type { ConfState, Entry, HardState, Snapshot } from './types';

export interface InitialState {
  readonly hardState: HardState;
  /** The configuration in effect at `RaftConfig.applied` (the snapshot's, when applied = snapshot index). */
  readonly confState: ConfState;
}

export interface RaftStorage {
  initialState(): InitialState;
  /**
   * Entries in [lo, hi), limited to about maxBytes (entryBytes) but at least one entry when lo < hi.
   * Throws CompactedError when lo < firstIndex; hi must be <= lastIndex + 1.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i, for firstIndex - 1 <= i <= lastIndex. Throws CompactedError / UnavailableError. */
  term(index: number): number;
  /** Index of the first retained entry (snapshot index + 1 right after compaction). */
  firstIndex(): number;
  lastIndex(): number;
  /** The latest snapshot. May throw SnapshotTemporarilyUnavailableError; the leader retries later. */
  snapshot(): Snapshot;
}

/** Fixed per-entry overhead counted against byte limits, so empty entries are not free. */
export const entryOverheadBytes = 16;

export function entryBytes(entry: Entry): number {
  return entry.data.length + entryOverheadBytes;
}

/** Payload bytes only: what counts against the uncommitted-log bound. */
export function payloadBytes(entries: readonly Entry[]): number {
  let total = 0;
  for (const entry of entries) total += entry.data.length;
  return total;
}

/** The longest prefix of `entries` within maxBytes, but never fewer than one entry. */
export function limitBytes<T extends Entry>(entries: T[], maxBytes: number): T[] {
  if (entries.length === 0) return entries;
  let total = entryBytes(entries[0] as T);
  let count = 1;
  while (count < entries.length) {
    total += entryBytes(entries[count] as T);
    if (total > maxBytes) break;
    count++;
  }
  return count === entries.length ? entries : entries.slice(0, count);
}
