/**
 * MapStore: the applied cluster map, persisted in a KvStore (keys in map-keys.ts, values the
 * protobuf records of src/wire/cairn.proto; extents in chunks of extentsPerChunk).
 *
 * Contract (the Raft driver relies on it: "a restart replays nothing already applied"):
 * - `apply(entries)` applies the entries to the in-memory ClusterMap, then writes every record
 *   they changed AND the new applied index in ONE batch; after a crash the stored map is exactly
 *   the map after some prefix of the applied entries, with that prefix's last index stored;
 * - `open` loads every record and verifies it on the way in: an undecodable value, a record whose
 *   id differs from its key, an unknown key, or records that contradict each other is
 *   CAIRN_CORRUPT naming the key;
 * - one writer: `apply` and `install` must not overlap (AssertionError if they do);
 * - a failed write leaves memory ahead of disk, so the store refuses every later write with
 *   CAIRN_IO and the daemon must restart (it then reloads what is durable);
 * - the map seen through `map` includes an entry's effects as soon as apply starts writing it,
 *   up to one batch before that batch is durable; proposers are acknowledged only after it is.
 *
 * The store does not own the KvStore: whoever opened it closes it.
 */
import { CairnError } from '../errors/cairn-error';
import { ClusterMap, type ClusterMapView, type MapChange } from '../meta/cluster-map';
import { recordCodecs } from '../meta/codec';
import type {
  Command,
  CommandResult,
  DriveRecord,
  ExtentPlacements,
  NodeRecord,
  ProfileRecord,
  RememberedRequest,
  VolumeRecord,
} from '../meta/types';
import { assert } from '../util/assert';
import { keyOf, keyText, type KvOperation, type KvStore, type KvWriteOptions } from './kv-store';
import { encodeMapKey, extentsPerChunk, mapKeyPrefix, parseMapKey, type MapKey } from './map-keys';

export interface MapEntry {
  readonly index: bigint | number;
  readonly command: Command;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function put(key: MapKey, value: Uint8Array): KvOperation {
  return { type: 'put', key: encodeMapKey(key), value };
}

function del(key: MapKey): KvOperation {
  return { type: 'del', key: encodeMapKey(key) };
}

/** The write for one changed record; extents are written per chunk by `chunkOperations` instead. */
function changeOperation(change: Exclude<MapChange, { kind: 'extent' }>): KvOperation {
  switch (change.kind) {
    case 'node':
      return change.record ? put({ kind: 'node', id: change.id }, recordCodecs.node.encode(change.record)) : del({ kind: 'node', id: change.id });
    case 'drive':
      return change.record ? put({ kind: 'drive', id: change.id }, recordCodecs.drive.encode(change.record)) : del({ kind: 'drive', id: change.id });
    case 'profile':
      return change.record
        ? put({ kind: 'profile', name: change.name }, recordCodecs.profile.encode(change.record))
        : del({ kind: 'profile', name: change.name });
    case 'volume':
      return change.record ? put({ kind: 'volume', id: change.id }, recordCodecs.volume.encode(change.record)) : del({ kind: 'volume', id: change.id });
    case 'request': {
      const key: MapKey = { kind: 'request', index: change.index };
      return change.record ? put(key, recordCodecs.request.encode(change.record)) : del(key);
    }
  }
}

/**
 * Rewrites each touched extent chunk from the map as it is after the whole batch (or deletes it
 * when no extent of it is left), so several changes to one chunk cost one write.
 */
function chunkOperations(map: ClusterMapView, dirtyChunks: ReadonlyMap<string, ReadonlySet<number>>): KvOperation[] {
  const operations: KvOperation[] = [];
  for (const [volumeId, firstIndexes] of dirtyChunks) {
    for (const firstIndex of [...firstIndexes].sort((a, b) => a - b)) {
      const key: MapKey = { kind: 'extent', volumeId, firstIndex };
      const run = map.extentPlacements(volumeId, firstIndex, extentsPerChunk);
      operations.push(run === undefined ? del(key) : put(key, recordCodecs.placements.encode(run)));
    }
  }
  return operations;
}

/** Every record of a map as put operations, extents in chunks (for install). */
function mapOperations(map: ClusterMap): KvOperation[] {
  const state = map.state();
  const operations: KvOperation[] = [put({ kind: 'applied' }, recordCodecs.applied.encode(state.appliedIndex))];
  for (const record of state.nodes) operations.push(put({ kind: 'node', id: record.id }, recordCodecs.node.encode(record)));
  for (const record of state.drives) operations.push(put({ kind: 'drive', id: record.id }, recordCodecs.drive.encode(record)));
  for (const record of state.profiles) operations.push(put({ kind: 'profile', name: record.name }, recordCodecs.profile.encode(record)));
  for (const record of state.volumes) {
    operations.push(put({ kind: 'volume', id: record.id }, recordCodecs.volume.encode(record)));
    for (let firstIndex = 0; ; firstIndex += extentsPerChunk) {
      const run = map.extentPlacements(record.id, firstIndex, extentsPerChunk);
      if (run === undefined) break;
      operations.push(put({ kind: 'extent', volumeId: record.id, firstIndex }, recordCodecs.placements.encode(run)));
    }
  }
  for (const record of state.requests) operations.push(put({ kind: 'request', index: record.result.index }, recordCodecs.request.encode(record)));
  return operations;
}

export class MapStore {
  private writing = false;
  private failure: CairnError | undefined;

  private constructor(
    private readonly kv: KvStore,
    private current: ClusterMap,
  ) {}

  /** Loads the stored map (an empty map when nothing is stored). */
  static async open(kv: KvStore): Promise<MapStore> {
    return new MapStore(kv, await loadMap(kv));
  }

  /** The applied map, read-only. Replaced (not mutated) by `install`, so do not cache it across installs. */
  get map(): ClusterMapView {
    return this.current;
  }

  get appliedIndex(): number {
    return this.current.appliedIndex;
  }

  /**
   * Applies committed entries in order (indexes strictly increasing, all above appliedIndex) and
   * persists their changes and the last index in one batch. Resolves with one result per entry
   * once the batch is written (durable when `sync`).
   */
  async apply(entries: readonly MapEntry[], options: KvWriteOptions): Promise<CommandResult[]> {
    this.beginWrite();
    const appliedBefore = this.current.appliedIndex;
    try {
      assert(entries.length > 0, 'apply needs at least one entry');
      const operations: KvOperation[] = [];
      const results: CommandResult[] = [];
      const dirtyChunks = new Map<string, Set<number>>();
      for (const entry of entries) {
        const { result, changes } = this.current.applyWithChanges(entry.index, entry.command);
        for (const change of changes) {
          if (change.kind !== 'extent') {
            operations.push(changeOperation(change));
            continue;
          }
          let firstIndexes = dirtyChunks.get(change.volumeId);
          if (firstIndexes === undefined) dirtyChunks.set(change.volumeId, (firstIndexes = new Set()));
          firstIndexes.add(change.index - (change.index % extentsPerChunk));
        }
        results.push(result);
      }
      operations.push(...chunkOperations(this.current, dirtyChunks));
      operations.push(put({ kind: 'applied' }, recordCodecs.applied.encode(this.current.appliedIndex)));
      await this.write(operations, options);
      return results;
    } catch (error) {
      // Memory moved past what is stored: nothing may be written on top of that any more.
      if (this.current.appliedIndex !== appliedBefore && this.failure === undefined) {
        this.failure = new CairnError('CAIRN_IO', `applying entries after ${appliedBefore} failed midway: ${String(error)}`, { cause: error });
      }
      throw error;
    } finally {
      this.writing = false;
    }
  }

  /** Replaces the whole map with a snapshot (`ClusterMap.snapshot()` bytes) in one batch. */
  async install(snapshot: Uint8Array, options: KvWriteOptions): Promise<void> {
    this.beginWrite();
    try {
      const map = ClusterMap.restore(snapshot);
      const operations: KvOperation[] = [];
      for await (const [key] of this.kv.iterate({ prefix: keyOf(mapKeyPrefix) })) operations.push({ type: 'del', key });
      operations.push(...mapOperations(map));
      await this.write(operations, options);
      this.current = map;
    } finally {
      this.writing = false;
    }
  }

  private beginWrite(): void {
    if (this.failure) {
      throw new CairnError('CAIRN_IO', `the map store failed earlier and refuses writes until the daemon restarts: ${this.failure.message}`, { cause: this.failure });
    }
    assert(!this.writing, 'MapStore writes must not overlap');
    this.writing = true;
  }

  private async write(operations: readonly KvOperation[], options: KvWriteOptions): Promise<void> {
    try {
      await this.kv.batch(operations, options);
    } catch (error) {
      this.failure = error instanceof CairnError ? error : new CairnError('CAIRN_IO', String(error), { cause: error });
      throw this.failure;
    }
  }
}

async function loadMap(kv: KvStore): Promise<ClusterMap> {
  let appliedIndex: number | undefined;
  const nodes: NodeRecord[] = [];
  const drives: DriveRecord[] = [];
  const profiles: ProfileRecord[] = [];
  const volumes: VolumeRecord[] = [];
  const placements: ExtentPlacements[] = [];
  const requests: RememberedRequest[] = [];
  let records = 0;
  for await (const [keyBytes, value] of kv.iterate({ prefix: keyOf(mapKeyPrefix) })) {
    const key = parseMapKey(keyBytes);
    const context = `map key '${keyText(keyBytes)}'`;
    const mismatch = (detail: string): never => {
      throw new CairnError('CAIRN_CORRUPT', `${context}: holds ${detail}`);
    };
    records++;
    switch (key.kind) {
      case 'applied':
        appliedIndex = recordCodecs.applied.decode(value, context);
        break;
      case 'node': {
        const record = recordCodecs.node.decode(value, context);
        if (record.id !== key.id) mismatch(`node '${record.id}'`);
        nodes.push(record);
        break;
      }
      case 'drive': {
        const record = recordCodecs.drive.decode(value, context);
        if (record.id !== key.id) mismatch(`drive '${record.id}'`);
        drives.push(record);
        break;
      }
      case 'profile': {
        const record = recordCodecs.profile.decode(value, context);
        if (record.name !== key.name) mismatch(`profile '${record.name}'`);
        profiles.push(record);
        break;
      }
      case 'volume': {
        const record = recordCodecs.volume.decode(value, context);
        if (record.id !== key.id) mismatch(`volume '${record.id}'`);
        volumes.push(record);
        break;
      }
      case 'extent': {
        const run = recordCodecs.placements.decode(value, context);
        if (run.volumeId !== key.volumeId || run.firstIndex !== key.firstIndex) mismatch(`extents from ${run.firstIndex} of '${run.volumeId}'`);
        if (run.extentSets.length > extentsPerChunk) mismatch(`${run.extentSets.length} extents, more than ${extentsPerChunk}`);
        placements.push(run);
        break;
      }
      case 'request': {
        const record = recordCodecs.request.decode(value, context);
        if (record.result.index !== key.index) mismatch(`a request applied at ${record.result.index}`);
        requests.push(record);
        break;
      }
    }
  }
  if (appliedIndex === undefined && records > 0) {
    throw new CairnError('CAIRN_CORRUPT', `the cluster map has ${records} records but no '${mapKeyPrefix}applied' key`);
  }
  const byId = (a: { id: string }, b: { id: string }): number => compareStrings(a.id, b.id);
  return ClusterMap.fromState(
    {
      appliedIndex: appliedIndex ?? 0,
      nodes: nodes.sort(byId),
      drives: drives.sort(byId),
      profiles: profiles.sort((a, b) => compareStrings(a.name, b.name)),
      volumes: volumes.sort(byId),
      placements: placements.sort((a, b) => compareStrings(a.volumeId, b.volumeId) || a.firstIndex - b.firstIndex),
      requests: requests.sort((a, b) => a.result.index - b.result.index),
    },
    'stored cluster map',
  );
}
