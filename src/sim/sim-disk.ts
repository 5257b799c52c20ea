/**
 * SimDisk: one node's simulated disk, holding its Raft log, hard state and snapshot as a
 * write-ahead log of framed records (sim-wal.ts), with MemoryStorage as the node's in-memory view.
 *
 * Persistence is modelled the way the driver does it: each Ready is ONE write (hard state +
 * entries + snapshot in one batch); a write is visible to the running node at once ("written",
 * in the page cache) but durable only once a sync that was requested after it completes; the
 * node sends the Ready's messages only after that sync. Local compaction (snapshot + discarding a
 * log prefix) is another write.
 *
 * Fault model it promises:
 * - a sync takes a latency drawn uniformly from [syncNsMin, syncNsMax], longer while stalled;
 * - a crash keeps every synced write; of the unsynced writes, in order, each survives whole with
 *   probability `unsyncedSurvivalRate` until the first that does not; that one is torn with
 *   probability `tornWriteRate` (a random prefix of its bytes reaches the disk, the rest reads as
 *   nothing or as zeros) and recovery must detect it by length and checksum and drop it; every
 *   later write is lost. So the recovered state is always one the node had written at some point,
 *   never less than what it synced;
 * - reads never fail and bits never flip (the WAL checksum would catch that the same way).
 * Deliberate bugs, only to prove the checkers can fail (`DiskBug`): 'forget-vote' makes the
 * durable hard state lose its vote; 'sync-lies' completes syncs without making anything durable.
 *
 * Invariants: the live view always equals the durable state plus every unsynced write applied in
 * order; after a crash both equal the durable state plus the surviving writes.
 */
import { MemoryStorage } from '../raft/memory-storage';
import type { ConfState, Entry, HardState, Snapshot } from '../raft/types';
import { assert } from '../util/assert';
import type { SeededRandom } from '../util/random';
import type { SimClock } from './sim-clock';
import { type WalRecord, encodeWalRecord, readWal } from './sim-wal';

export interface DiskFaults {
  readonly syncNsMin: number;
  readonly syncNsMax: number;
  readonly unsyncedSurvivalRate: number;
  readonly tornWriteRate: number;
}

export const quietDisk: DiskFaults = { syncNsMin: 100_000, syncNsMax: 1_000_000, unsyncedSurvivalRate: 0, tornWriteRate: 0 };

export type DiskBug = 'none' | 'forget-vote' | 'sync-lies';

export interface DiskStats {
  writes: number;
  syncs: number;
  bytesWritten: number;
  crashes: number;
  writesLost: number;
  writesSurvivedUnsynced: number;
  tornTails: number;
}

export interface CrashReport {
  /** Unsynced writes that survived whole. */
  readonly survived: number;
  /** Unsynced writes lost (including a torn one). */
  readonly lost: number;
  /** Why recovery stopped reading, when it found a damaged tail. */
  readonly tornTail: string | undefined;
}

interface PendingWrite {
  readonly sequence: number;
  readonly bytes: Uint8Array;
}

const entriesAll = Number.MAX_SAFE_INTEGER;

export class SimDisk {
  /** What the running node reads: durable state plus every write since. */
  private live: MemoryStorage;
  /** What survives any crash. */
  private durable: MemoryStorage;
  private unsynced: PendingWrite[] = [];
  private writtenCount = 0;
  /** Bumped by every crash: syncs requested before it never complete. */
  private epoch = 0;
  private stalledUntilNs = 0;
  readonly stats: DiskStats = { writes: 0, syncs: 0, bytesWritten: 0, crashes: 0, writesLost: 0, writesSurvivedUnsynced: 0, tornTails: 0 };

  constructor(
    private readonly clock: SimClock,
    private readonly random: SeededRandom,
    private readonly faults: DiskFaults,
    private readonly bug: DiskBug = 'none',
    initial?: Snapshot,
  ) {
    assert(faults.syncNsMin >= 0 && faults.syncNsMax >= faults.syncNsMin, 'sync latency range is invalid');
    assert(faults.unsyncedSurvivalRate >= 0 && faults.unsyncedSurvivalRate < 1, 'unsyncedSurvivalRate not in [0, 1)');
    assert(faults.tornWriteRate >= 0 && faults.tornWriteRate <= 1, 'tornWriteRate not in [0, 1]');
    // A formatted disk: the initial snapshot (if any) is durable from the start.
    this.durable = new MemoryStorage(initial);
    this.live = copyStorage(this.durable);
  }

  /** The storage the node's RawNode reads (valid until the next crash). */
  get storage(): MemoryStorage {
    return this.live;
  }

  /** The state that survives a crash right now (for checkers; the node never reads it). */
  get durableStorage(): MemoryStorage {
    return this.durable;
  }

  get unsyncedCount(): number {
    return this.unsynced.length;
  }

  /** Writes one Ready's persistent part as one batch (visible now, durable after a later sync). */
  writeReady(hardState: HardState | undefined, snapshot: Snapshot | undefined, entries: readonly Entry[]): void {
    if (hardState === undefined && snapshot === undefined && entries.length === 0) return;
    this.write({ kind: 'ready', entries, ...(hardState === undefined ? {} : { hardState }), ...(snapshot === undefined ? {} : { snapshot }) });
  }

  /**
   * Takes a state machine snapshot at `index` (<= applied) and discards the log up to
   * `compactIndex` (<= index). Returns the snapshot.
   */
  compact(index: number, confState: ConfState, data: Uint8Array, compactIndex: number): Snapshot {
    assert(compactIndex <= index, `compact index ${compactIndex} beyond snapshot index ${index}`);
    const term = this.live.term(index);
    const snapshot: Snapshot = { metadata: { index, term, confState }, data };
    this.write({ kind: 'compact', snapshot, compactIndex });
    return this.live.snapshot();
  }

  private write(record: WalRecord): void {
    const bytes = encodeWalRecord(record);
    applyRecord(this.live, record);
    this.unsynced.push({ sequence: this.writtenCount++, bytes });
    this.stats.writes++;
    this.stats.bytesWritten += bytes.length;
  }

  /** Draws the latency of the next sync (stalls included), in ns from now. */
  private syncLatencyNs(): number {
    const latency = this.faults.syncNsMin + this.random.int(this.faults.syncNsMax - this.faults.syncNsMin + 1);
    return Math.max(latency, this.stalledUntilNs - this.clock.nowNs);
  }

  /**
   * Syncs every write made so far; `done` runs when they are durable — unless the node crashes
   * first, in which case it never runs.
   */
  sync(done: () => void): void {
    const covered = this.writtenCount;
    const epoch = this.epoch;
    this.clock.after(this.syncLatencyNs(), 'sync', () => {
      if (epoch !== this.epoch) return;
      this.stats.syncs++;
      if (this.bug !== 'sync-lies') this.makeDurable(covered);
      done();
    });
  }

  /** Syncs now, with no latency (formatting a disk before the simulation starts). */
  syncNow(): void {
    this.makeDurable(this.writtenCount);
  }

  /** Syncs requested from now until `untilNs` complete no earlier than `untilNs`. */
  stallUntil(untilNs: number): void {
    this.stalledUntilNs = Math.max(this.stalledUntilNs, untilNs);
  }

  private makeDurable(covered: number): void {
    const bytes: Uint8Array[] = [];
    while (this.unsynced.length > 0 && (this.unsynced[0] as PendingWrite).sequence < covered) {
      bytes.push((this.unsynced.shift() as PendingWrite).bytes);
    }
    if (bytes.length === 0) return;
    const read = readWal(concat(bytes));
    assert(read.tail === undefined, `sim disk: a synced write does not read back (${read.tail})`);
    for (const record of read.records) applyRecord(this.durable, this.bug === 'forget-vote' ? forgetVote(record) : record);
  }

  /**
   * The machine loses power: unsynced writes survive or not (see the fault model), recovery reads
   * the surviving bytes back, and the live view restarts from the result.
   */
  crash(): CrashReport {
    this.epoch++;
    this.stats.crashes++;
    const surviving: Uint8Array[] = [];
    let survived = 0;
    let tornAttempt = false;
    for (const write of this.unsynced) {
      if (this.random.float() < this.faults.unsyncedSurvivalRate) {
        surviving.push(write.bytes);
        survived++;
        continue;
      }
      if (this.random.float() < this.faults.tornWriteRate) {
        surviving.push(tear(write.bytes, this.random));
        tornAttempt = true;
      }
      break;
    }
    const lost = this.unsynced.length - survived;
    const read = readWal(concat(surviving));
    assert(read.records.length === survived, `sim disk: recovery read ${read.records.length} records, ${survived} survived`);
    assert(tornAttempt === (read.tail !== undefined), `sim disk: torn tail ${tornAttempt ? 'missed' : 'invented'} (${read.tail})`);
    for (const record of read.records) applyRecord(this.durable, this.bug === 'forget-vote' ? forgetVote(record) : record);
    this.stats.writesLost += lost;
    this.stats.writesSurvivedUnsynced += survived;
    if (read.tail !== undefined) this.stats.tornTails++;
    this.unsynced = [];
    this.stalledUntilNs = 0;
    this.live = copyStorage(this.durable);
    return { survived, lost, tornTail: read.tail };
  }
}

/** Applies one record to a storage exactly as the driver applies a batch. */
function applyRecord(storage: MemoryStorage, record: WalRecord): void {
  if (record.kind === 'ready') {
    if (record.snapshot !== undefined) storage.applySnapshot(record.snapshot);
    storage.append(record.entries);
    if (record.hardState !== undefined) storage.setHardState(record.hardState);
    return;
  }
  const { index, term, confState } = record.snapshot.metadata;
  const created = storage.createSnapshot(index, confState, record.snapshot.data);
  assert(created.metadata.term === term, `sim disk: snapshot at ${index} has term ${created.metadata.term}, the record says ${term}`);
  if (record.compactIndex >= storage.firstIndex()) storage.compact(record.compactIndex);
}

function forgetVote(record: WalRecord): WalRecord {
  if (record.kind !== 'ready' || record.hardState === undefined) return record;
  return { ...record, hardState: { ...record.hardState, vote: 0 } };
}

/** A torn write: a strict prefix of the bytes, and sometimes zeros where the rest should be. */
function tear(bytes: Uint8Array, random: SeededRandom): Uint8Array {
  const kept = 1 + random.int(bytes.length - 1); // at least one byte reached the disk, never all
  if (random.int(2) === 0) return bytes.slice(0, kept);
  const torn = new Uint8Array(bytes.length);
  torn.set(bytes.subarray(0, kept));
  // A torn write that happens to leave exactly the original bytes is not torn: flip one zero byte.
  if (torn.every((value, i) => value === bytes[i])) torn[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
  return torn;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * An independent copy of a MemoryStorage with the same compaction point, snapshot, entries and
 * hard state (rebuilt through its public API).
 */
export function copyStorage(source: MemoryStorage): MemoryStorage {
  const snapshot = source.snapshot();
  const compactedIndex = source.firstIndex() - 1;
  const snapshotIndex = snapshot.metadata.index;
  let copy: MemoryStorage;
  if (compactedIndex === 0) copy = new MemoryStorage();
  else if (compactedIndex === snapshotIndex) copy = new MemoryStorage(snapshot);
  else {
    // Entries between the compaction point and the snapshot are kept: start from the compaction
    // point, append, then record the snapshot over them.
    copy = new MemoryStorage({ metadata: { ...snapshot.metadata, index: compactedIndex, term: source.term(compactedIndex) }, data: snapshot.data });
  }
  if (source.lastIndex() > compactedIndex) copy.append(source.entries(compactedIndex + 1, source.lastIndex() + 1, entriesAll));
  if (snapshotIndex > compactedIndex) copy.createSnapshot(snapshotIndex, snapshot.metadata.confState, snapshot.data);
  copy.setHardState(source.hardState());
  assert(copy.firstIndex() === source.firstIndex() && copy.lastIndex() === source.lastIndex(), 'storage copy: bounds differ');
  assert(copy.snapshot().metadata.term === snapshot.metadata.term, 'storage copy: snapshot term differs');
  return copy;
}
