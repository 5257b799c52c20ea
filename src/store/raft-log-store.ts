/**
 * RaftLogStore: the Raft log, hard state (term, vote, commit) and latest snapshot of one node in
 * the shared KvStore (LevelDB), behind the Raft core's synchronous RaftStorage interface.
 *
 * The core reads storage synchronously, so the retained log (the entries after the last
 * compaction), the hard state and the latest snapshot are held in memory and written through:
 * `write(update)` turns everything one Ready (plus the driver's own snapshot and compaction, plus
 * the state machine's operations) needs into ONE KvStore batch, awaits it — fsynced when the
 * caller says `sync` — and only then updates memory. So whatever the core reads back is durable,
 * and a crash leaves the store at the state after some prefix of completed writes.
 *
 * Keys (all under `raft/`; the cluster map uses `map/`, the KV node `kv/`):
 *
 *   raft/identity           RaftStoreIdentity     cluster id and node id this directory belongs to
 *   raft/hard-state         RaftHardState         term, vote, commit
 *   raft/snapshot           RaftStoredSnapshot    the latest snapshot: metadata + state bytes
 *   raft/log-anchor         RaftLogAnchor         (index, term) of the entry the log starts after
 *   raft/log/<u64 BE>       RaftEntry             one entry; big-endian so key order = index order
 *
 * Every value is sealed with a CRC-32 of its bytes (4 bytes, big-endian, in front) and checked on
 * load; an entry's stored index must equal its key. Anything that fails is CAIRN_CORRUPT naming
 * the key. Deletions are explicit keys inside the same batch (LevelDB's range `clear()` is not
 * atomic with a batch); memory knows every stored index, so none is missed.
 *
 * Invariants (asserted on every write, checked on load):
 * - the log is contiguous: [anchor.index + 1, lastIndex]; anchor.index <= snapshot index <= lastIndex
 *   (an empty store has all three at 0);
 * - term never decreases; within a term the vote, once cast, never changes; commit never decreases
 *   and never exceeds lastIndex;
 * - entries at or below commit are never overwritten or truncated;
 * - compaction never passes the snapshot.
 *
 * One writer: writes must not overlap (AssertionError). A failed write leaves memory as it was but
 * disk uncertain, so the store refuses every later write with CAIRN_IO: the process must restart
 * and reload what is durable. The store does not own the KvStore.
 */
import { crc32 } from 'node:zlib';
import { CairnError } from '../errors/cairn-error';
import {
  type Entry, type EntryId, type HardState, type InitialState, type RaftStorage, type Snapshot, CompactedError, SnapshotOutOfDateError,
  UnavailableError, emptyConfState, emptyHardState, entryBytes,
} from '../raft';
import { assert } from '../util/assert';
import {
  WireDecodeError, decodeEntry, decodeHardState, decodeLogAnchor, decodeStoreIdentity, decodeStoredSnapshot, encodeEntry,
  encodeHardState, encodeLogAnchor, encodeStoreIdentity, encodeStoredSnapshot,
} from '../wire/raft-codec';
import { keyOf, type KvOperation, type KvStore, type KvWriteOptions } from './kv-store';

export const raftKeyPrefix = 'raft/';
const identityKey = keyOf('raft/identity');
const hardStateKey = keyOf('raft/hard-state');
const snapshotKey = keyOf('raft/snapshot');
const anchorKey = keyOf('raft/log-anchor');
const logKeyPrefix = keyOf('raft/log/');
/** Version of the layout above; a directory written with another version is refused. */
export const raftStoreFormatVersion = 1;

/** The key of log entry `index`: `raft/log/` + 8 bytes big-endian. */
export function raftLogKey(index: number): Uint8Array {
  assert(Number.isSafeInteger(index) && index > 0, `log index ${index} must be a positive safe integer`);
  const key = new Uint8Array(logKeyPrefix.length + 8);
  key.set(logKeyPrefix, 0);
  const view = new DataView(key.buffer);
  view.setUint32(logKeyPrefix.length, Math.floor(index / 2 ** 32));
  view.setUint32(logKeyPrefix.length + 4, index % 2 ** 32);
  return key;
}

function parseLogKey(key: Uint8Array): number | undefined {
  if (key.length !== logKeyPrefix.length + 8) return undefined;
  for (let i = 0; i < logKeyPrefix.length; i++) if (key[i] !== logKeyPrefix[i]) return undefined;
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  const high = view.getUint32(logKeyPrefix.length);
  const low = view.getUint32(logKeyPrefix.length + 4);
  const index = high * 2 ** 32 + low;
  return Number.isSafeInteger(index) && index > 0 ? index : undefined;
}

/** `[crc32 BE][payload]`: the check sits with the bytes it covers. */
export function sealRecord(payload: Uint8Array): Uint8Array {
  const sealed = new Uint8Array(4 + payload.length);
  new DataView(sealed.buffer).setUint32(0, crc32(payload));
  sealed.set(payload, 4);
  return sealed;
}

/** The payload of a sealed record; CAIRN_CORRUPT naming `what` when it is short or its CRC differs. */
export function openRecord(sealed: Uint8Array, what: string): Uint8Array {
  if (sealed.length < 4) throw new CairnError('CAIRN_CORRUPT', `${what}: record of ${sealed.length} bytes is shorter than its checksum`);
  const expected = new DataView(sealed.buffer, sealed.byteOffset, sealed.byteLength).getUint32(0);
  const payload = sealed.subarray(4);
  const actual = crc32(payload);
  if (actual !== expected) throw new CairnError('CAIRN_CORRUPT', `${what}: checksum ${actual.toString(16)} does not match the stored ${expected.toString(16)}`);
  return payload;
}

function decodeRecord<T>(sealed: Uint8Array, what: string, decode: (payload: Uint8Array) => T): T {
  const payload = openRecord(sealed, what);
  try {
    return decode(payload);
  } catch (error) {
    if (error instanceof WireDecodeError) throw new CairnError('CAIRN_CORRUPT', `${what}: ${error.message}`, { cause: error });
    throw error;
  }
}

export interface RaftStoreIdentity {
  /** Names the cluster; a data directory never moves between clusters. */
  readonly clusterId: string;
  readonly nodeId: number;
}

/** What one `write` persists, applied in this order. */
export interface RaftLogUpdate {
  /** A snapshot received from the leader (Ready.snapshot): replaces the whole log. */
  readonly snapshot?: Snapshot | undefined;
  /** Entries to append (Ready.entries); the first may overwrite the stored suffix from its index on. */
  readonly entries?: readonly Entry[] | undefined;
  readonly hardState?: HardState | undefined;
  /** A snapshot the application took of its own state machine; the log stays as it is. */
  readonly createdSnapshot?: Snapshot | undefined;
  /** Discard stored entries up to and including this index (never past the snapshot). */
  readonly compactTo?: number | undefined;
}

const emptySnapshot: Snapshot = { metadata: { index: 0, term: 0, confState: emptyConfState }, data: new Uint8Array(0) };

export class RaftLogStore implements RaftStorage {
  private writing = false;
  private failure: CairnError | undefined;

  private constructor(
    private readonly kv: KvStore,
    readonly identity: RaftStoreIdentity,
    private hard: HardState,
    private snap: Snapshot,
    /** Invariant: anchor.index <= snap.metadata.index; log[i].index === anchor.index + 1 + i. */
    private anchor: EntryId,
    private log: Entry[],
  ) {}

  /**
   * Loads the store, verifying every record. A directory without an identity is claimed for
   * `identity` (synced); one that belongs to another cluster or node is refused with CAIRN_CONFIG.
   */
  static async open(kv: KvStore, identity: RaftStoreIdentity): Promise<RaftLogStore> {
    assert(Number.isSafeInteger(identity.nodeId) && identity.nodeId > 0, 'node id must be a positive safe integer');
    assert(identity.clusterId.length > 0, 'cluster id must not be empty');
    const storedIdentityBytes = await kv.get(identityKey);
    const hardBytes = await kv.get(hardStateKey);
    const snapshotBytes = await kv.get(snapshotKey);
    const anchorBytes = await kv.get(anchorKey);
    const log: Entry[] = [];
    for await (const [key, value] of kv.iterate({ prefix: logKeyPrefix })) {
      const index = parseLogKey(key);
      const what = `raft log key ${Buffer.from(key).toString('hex')}`;
      if (index === undefined) throw new CairnError('CAIRN_CORRUPT', `${what}: not a log key`);
      const entry = decodeRecord(value, `raft log entry ${index}`, decodeEntry);
      if (entry.index !== index) throw new CairnError('CAIRN_CORRUPT', `raft log entry ${index}: holds index ${entry.index}`);
      const previous = log[log.length - 1];
      if (previous !== undefined && previous.index + 1 !== index) {
        throw new CairnError('CAIRN_CORRUPT', `raft log: entry ${index} follows ${previous.index} (a gap)`);
      }
      if (previous !== undefined && entry.term < previous.term) {
        throw new CairnError('CAIRN_CORRUPT', `raft log: entry ${index} has term ${entry.term}, below its predecessor's ${previous.term}`);
      }
      log.push(entry);
    }
    const anyState = hardBytes !== undefined || snapshotBytes !== undefined || anchorBytes !== undefined || log.length > 0;
    if (storedIdentityBytes === undefined) {
      if (anyState) throw new CairnError('CAIRN_CORRUPT', 'the raft store holds state but no raft/identity record');
      await kv.put(identityKey, sealRecord(encodeStoreIdentity({ ...identity, formatVersion: raftStoreFormatVersion })), { sync: true });
    } else {
      const stored = decodeRecord(storedIdentityBytes, 'raft/identity', decodeStoreIdentity);
      if (stored.formatVersion !== raftStoreFormatVersion) {
        throw new CairnError('CAIRN_CORRUPT', `raft store format version ${stored.formatVersion} is not the supported ${raftStoreFormatVersion}`);
      }
      if (stored.clusterId !== identity.clusterId || stored.nodeId !== identity.nodeId) {
        throw new CairnError(
          'CAIRN_CONFIG',
          `this data directory belongs to node ${stored.nodeId} of cluster '${stored.clusterId}'; refusing to start it as node ${identity.nodeId} of cluster '${identity.clusterId}'`,
        );
      }
    }
    const hard = hardBytes === undefined ? emptyHardState : decodeRecord(hardBytes, 'raft/hard-state', decodeHardState);
    const snap = snapshotBytes === undefined ? emptySnapshot : decodeRecord(snapshotBytes, 'raft/snapshot', decodeStoredSnapshot);
    const anchor = anchorBytes === undefined ? { index: 0, term: 0 } : decodeRecord(anchorBytes, 'raft/log-anchor', decodeLogAnchor);
    const corrupt = (detail: string): never => {
      throw new CairnError('CAIRN_CORRUPT', `raft store: ${detail}`);
    };
    const first = log[0];
    if (first !== undefined && first.index !== anchor.index + 1) corrupt(`the log starts at ${first.index}, not after its anchor ${anchor.index}`);
    const lastIndex = anchor.index + log.length;
    if (anchor.index > snap.metadata.index) corrupt(`the log anchor ${anchor.index} is past the snapshot ${snap.metadata.index}`);
    if (snap.metadata.index > lastIndex) corrupt(`the snapshot ${snap.metadata.index} is past the last entry ${lastIndex}`);
    if (hard.commit > lastIndex) corrupt(`commit ${hard.commit} is past the last entry ${lastIndex}`);
    if (hard.commit < snap.metadata.index) corrupt(`commit ${hard.commit} is below the snapshot ${snap.metadata.index}`);
    const store = new RaftLogStore(kv, identity, hard, snap, anchor, log);
    if (snap.metadata.index > anchor.index && store.term(snap.metadata.index) !== snap.metadata.term) {
      corrupt(`the snapshot ${snap.metadata.index} has term ${snap.metadata.term} but the log says ${store.term(snap.metadata.index)}`);
    }
    return store;
  }

  /** Nothing was ever persisted (a brand-new node: bootstrap or wait to be added). */
  get isEmpty(): boolean {
    return this.hard.term === 0 && this.lastIndex() === 0 && this.snap.metadata.index === 0;
  }

  hardState(): HardState {
    return this.hard;
  }

  // ---- RaftStorage ----------------------------------------------------------------------------

  /**
   * The hard state and the configuration of the latest snapshot: the driver restarts the core at
   * the snapshot's index and replays the committed entries after it (see raft-driver.ts).
   */
  initialState(): InitialState {
    return { hardState: this.hard, confState: this.snap.metadata.confState };
  }

  firstIndex(): number {
    return this.anchor.index + 1;
  }

  lastIndex(): number {
    return this.anchor.index + this.log.length;
  }

  term(index: number): number {
    if (index < this.anchor.index) throw new CompactedError(index, this.firstIndex());
    if (index > this.lastIndex()) throw new UnavailableError(index, this.lastIndex());
    if (index === this.anchor.index) return this.anchor.term;
    const entry = this.log[index - this.anchor.index - 1];
    assert(entry !== undefined && entry.index === index, `raft store: entry ${index} missing or misplaced`);
    return entry.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.anchor.index) throw new CompactedError(lo, this.firstIndex());
    assert(lo <= hi, `raft store: entries lo ${lo} > hi ${hi}`);
    assert(hi <= this.lastIndex() + 1, `raft store: entries hi ${hi} beyond last index ${this.lastIndex()}`);
    const offset = this.anchor.index + 1;
    // The longest run within maxBytes, but at least one entry (the core's contract).
    let end = lo;
    let total = 0;
    while (end < hi) {
      total += entryBytes(this.log[end - offset] as Entry);
      if (end > lo && total > maxBytes) break;
      end++;
    }
    return this.log.slice(lo - offset, end - offset);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  // ---- writes ---------------------------------------------------------------------------------

  /**
   * Persists `update` and the caller's `extra` operations (the state machine's changes and applied
   * index) in ONE batch, durable when `options.sync`, then makes it visible to the reads above.
   * Throws AssertionError when the update breaks an invariant of the module comment.
   */
  async write(update: RaftLogUpdate, options: KvWriteOptions, extra: readonly KvOperation[] = []): Promise<void> {
    if (this.failure !== undefined) {
      throw new CairnError('CAIRN_IO', `the raft store failed earlier and refuses writes until restart: ${this.failure.message}`, { cause: this.failure });
    }
    assert(!this.writing, 'raft store writes must not overlap');
    const operations: KvOperation[] = [];
    let anchor = this.anchor;
    let log = this.log;
    let snap = this.snap;
    let hard = this.hard;
    const lastOf = (): number => anchor.index + log.length;
    const termOf = (index: number): number => {
      if (index === anchor.index) return anchor.term;
      const entry = log[index - anchor.index - 1];
      assert(entry !== undefined, `raft store: no entry ${index} in [${anchor.index + 1}, ${lastOf()}]`);
      return entry.term;
    };

    if (update.snapshot !== undefined) {
      const { index, term } = update.snapshot.metadata;
      if (index <= snap.metadata.index) throw new SnapshotOutOfDateError(index, snap.metadata.index);
      assert(index >= hard.commit, `raft store: installing snapshot ${index} below commit ${hard.commit}`);
      for (const entry of log) operations.push({ type: 'del', key: raftLogKey(entry.index) });
      snap = update.snapshot;
      anchor = { index, term };
      log = [];
      operations.push({ type: 'put', key: snapshotKey, value: sealRecord(encodeStoredSnapshot(snap)) });
      operations.push({ type: 'put', key: anchorKey, value: sealRecord(encodeLogAnchor(anchor)) });
    }

    const entries = update.entries ?? [];
    if (entries.length > 0) {
      const first = (entries[0] as Entry).index;
      entries.forEach((entry, i) => {
        assert(entry.index === first + i, `raft store: append of non-contiguous entries at ${first + i}`);
        assert(i === 0 || entry.term >= (entries[i - 1] as Entry).term, `raft store: entry ${entry.index} has a lower term than its predecessor`);
      });
      assert(first <= lastOf() + 1, `raft store: append at ${first} leaves a gap after ${lastOf()}`);
      const fresh = entries.filter((entry) => entry.index > anchor.index);
      if (fresh.length > 0) {
        const start = (fresh[0] as Entry).index;
        const end = (fresh[fresh.length - 1] as Entry).index;
        const keepCount = start - anchor.index - 1;
        assert(start > hard.commit || this.sameEntries(log, anchor, fresh, hard.commit), `raft store: append at ${start} overwrites committed entries (commit ${hard.commit})`);
        assert(start === anchor.index + 1 || termOf(start - 1) <= (fresh[0] as Entry).term, `raft store: entry ${start} has a lower term than its stored predecessor`);
        for (let index = end + 1; index <= lastOf(); index++) operations.push({ type: 'del', key: raftLogKey(index) });
        for (const entry of fresh) operations.push({ type: 'put', key: raftLogKey(entry.index), value: sealRecord(encodeEntry(entry)) });
        log = log.slice(0, keepCount).concat(fresh);
      }
    }

    if (update.hardState !== undefined) {
      const next = update.hardState;
      assert(next.term >= hard.term, `raft store: term goes back from ${hard.term} to ${next.term}`);
      assert(next.term > hard.term || hard.vote === 0 || next.vote === hard.vote, `raft store: vote changes from ${hard.vote} to ${next.vote} in term ${hard.term}`);
      assert(next.commit >= hard.commit, `raft store: commit goes back from ${hard.commit} to ${next.commit}`);
      assert(next.commit <= lastOf(), `raft store: commit ${next.commit} is past the last entry ${lastOf()}`);
      hard = next;
      operations.push({ type: 'put', key: hardStateKey, value: sealRecord(encodeHardState(hard)) });
    }

    if (update.createdSnapshot !== undefined) {
      const { index, term } = update.createdSnapshot.metadata;
      if (index <= snap.metadata.index) throw new SnapshotOutOfDateError(index, snap.metadata.index);
      assert(index <= hard.commit, `raft store: snapshot ${index} is past commit ${hard.commit}`);
      assert(index >= anchor.index && termOf(index) === term, `raft store: snapshot ${index} has term ${term}, not the log's`);
      snap = update.createdSnapshot;
      operations.push({ type: 'put', key: snapshotKey, value: sealRecord(encodeStoredSnapshot(snap)) });
    }

    if (update.compactTo !== undefined && update.compactTo > anchor.index) {
      const compactTo = update.compactTo;
      assert(compactTo <= snap.metadata.index, `raft store: compaction to ${compactTo} passes the snapshot ${snap.metadata.index}`);
      const term = termOf(compactTo);
      for (let index = anchor.index + 1; index <= compactTo; index++) operations.push({ type: 'del', key: raftLogKey(index) });
      log = log.slice(compactTo - anchor.index);
      anchor = { index: compactTo, term };
      operations.push({ type: 'put', key: anchorKey, value: sealRecord(encodeLogAnchor(anchor)) });
    }

    operations.push(...extra);
    this.writing = true;
    try {
      await this.kv.batch(operations, options);
    } catch (error) {
      this.failure = error instanceof CairnError ? error : new CairnError('CAIRN_IO', String(error), { cause: error });
      throw this.failure;
    } finally {
      this.writing = false;
    }
    this.anchor = anchor;
    this.log = log;
    this.snap = snap;
    this.hard = hard;
    assert(this.anchor.index <= this.snap.metadata.index);
    assert(this.snap.metadata.index <= this.lastIndex());
  }

  /** Whether `fresh` repeats the stored entries up to `commit` (a duplicate append is harmless). */
  private sameEntries(log: readonly Entry[], anchor: EntryId, fresh: readonly Entry[], commit: number): boolean {
    for (const entry of fresh) {
      if (entry.index > commit) break;
      const stored = log[entry.index - anchor.index - 1];
      if (stored === undefined || stored.term !== entry.term) return false;
    }
    return true;
  }
}

