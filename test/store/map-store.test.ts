// Goal: MapStore persists exactly the applied map: reopening gives the same map (byte-identical
// snapshot) and applied index; every stored record is verified on load (bad bytes, a record under
// the wrong key, unknown keys, broken relations are CAIRN_CORRUPT naming the key); install replaces
// the whole map; a failed write poisons the store; writes must not overlap. Crash atomicity is
// tested with a killed child process in map-store-crash.test.ts.
// Method: a real LevelDB in a temporary directory; the shared workload drives the map; a KvStore
// wrapper injects a failing batch.
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterMap } from '../../src/meta/cluster-map';
import { keyOf, keyText, type KvOperation, type KvStore } from '../../src/store/kv-store';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { MapStore, type MapEntry } from '../../src/store/map-store';
import { encodeMapKey, extentsPerChunk } from '../../src/store/map-keys';
import { AssertionError } from '../../src/util/assert';
import { pb } from '../../src/wire/messages';
import { rejectsCode } from '../meta/helpers/errors';
import { workloadCommand } from '../meta/helpers/workload';
import type { Command } from '../../src/meta/types';
import { GiB, MiB } from '../../src/util/units';
import { InstrumentedKvStore } from './helpers/instrumented-kv-store';

async function databasePath(t: Test): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-map-store-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return join(directory, 'db');
}

/** Opens a LevelKvStore closed at teardown (closing twice is harmless). */
async function openKv(t: Test, path: string): Promise<LevelKvStore> {
  const kv = await LevelKvStore.open(path);
  t.teardown(() => kv.close());
  return kv;
}

function entries(seed: number, first: number, last: number): MapEntry[] {
  const list: MapEntry[] = [];
  for (let index = first; index <= last; index++) list.push({ index, command: workloadCommand(seed, index) });
  return list;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

/** A store with the workload's first `count` commands applied in batches of varying size. */
async function filledStore(t: Test, path: string, count: number): Promise<{ kv: LevelKvStore; store: MapStore }> {
  const kv = await openKv(t, path);
  const store = await MapStore.open(kv);
  let next = 1;
  for (let size = 1; next <= count; size = (size % 17) + 1) {
    const last = Math.min(count, next + size - 1);
    await store.apply(entries(3, next, last), { sync: false });
    next = last + 1;
  }
  return { kv, store };
}

void t.test('an empty database opens as an empty map at index 0', async (t) => {
  const store = await MapStore.open(await openKv(t, await databasePath(t)));
  t.equal(store.appliedIndex, 0);
  t.same(store.map.listVolumes(), []);
});

void t.test('reopening gives the same map, byte for byte, at the same applied index', async (t) => {
  const path = await databasePath(t);
  const { kv, store } = await filledStore(t, path, 400);
  const expected = ClusterMap.empty();
  for (const entry of entries(3, 1, 400)) expected.apply(entry.index, entry.command);
  t.ok(same(store.map.snapshot(), expected.snapshot()), 'the store applied what a plain map applies');
  await kv.close();
  const reopened = await MapStore.open(await openKv(t, path));
  t.equal(reopened.appliedIndex, 400);
  t.ok(same(reopened.map.snapshot(), expected.snapshot()), 'the reopened map is identical');
  t.ok(reopened.map.listVolumes().length > 0 && reopened.map.state().requests.length > 0, 'volumes and remembered requests were stored');
});

void t.test('apply returns one result per entry and stores the last index, gaps included', async (t) => {
  const path = await databasePath(t);
  const kv = await openKv(t, path);
  const store = await MapStore.open(kv);
  const results = await store.apply([
    { index: 10, command: { timestampMs: 1, requestId: 'a', body: { kind: 'noOp' } } },
    { index: 20n, command: { timestampMs: 2, requestId: 'b', body: { kind: 'deleteVolume', volume: 'x' } } },
  ], { sync: true });
  t.same(results.map((result) => [result.index, result.outcome.kind]), [[10, 'none'], [20, 'error']]);
  await kv.close();
  t.equal((await MapStore.open(await openKv(t, path))).appliedIndex, 20);
});

void void t.test(`extents are stored in chunks of ${extentsPerChunk}: growing rewrites the last chunk, deleting removes them all`, async (t) => {
  const path = await databasePath(t);
  const kv = await openKv(t, path);
  const store = await MapStore.open(kv);
  await store.apply(entries(3, 1, 11), { sync: false });
  const chunkKeys = async (): Promise<string[]> => {
    const keys: string[] = [];
    for await (const [key] of kv.iterate({ prefix: keyOf('map/extent/') })) keys.push(keyText(key));
    return keys;
  };
  const body = (requestId: string, command: Command['body']): MapEntry => ({ index: store.appliedIndex + 1, command: { timestampMs: 1, requestId, body: command } });
  const hex = (index: number): string => index.toString(16).padStart(8, '0');
  // 'triple' has 16 MiB extents: one chunk and a bit, then two chunks and a bit.
  await store.apply([body('c', { kind: 'createVolume', name: 'big', sizeBytes: (extentsPerChunk + 100) * 16 * MiB, profile: 'triple', readOnly: false, placementSeed: 4 })], { sync: false });
  const id = store.map.getVolume('big')!.id;
  t.same(await chunkKeys(), [`map/extent/${id}/${hex(0)}`, `map/extent/${id}/${hex(extentsPerChunk)}`]);
  await store.apply([body('g', { kind: 'resizeVolume', volume: 'big', sizeBytes: (2 * extentsPerChunk + 50) * 16 * MiB, placementSeed: 5 })], { sync: false });
  t.same(await chunkKeys(), [`map/extent/${id}/${hex(0)}`, `map/extent/${id}/${hex(extentsPerChunk)}`, `map/extent/${id}/${hex(2 * extentsPerChunk)}`]);
  const snapshot = store.map.snapshot();
  await kv.close();
  const kvAgain = await openKv(t, path);
  const reopened = await MapStore.open(kvAgain);
  t.ok(same(reopened.map.snapshot(), snapshot), 'the chunks hold every extent, old and new');
  t.equal(reopened.map.listExtents('big').length, 2 * extentsPerChunk + 50);
  await reopened.apply([{ index: reopened.appliedIndex + 1, command: { timestampMs: 1, requestId: 'd', body: { kind: 'deleteVolume', volume: 'big' } } }], { sync: false });
  let left = 0;
  for await (const _entry of kvAgain.iterate({ prefix: keyOf('map/extent/') })) left++;
  t.equal(left, 0);
});

void t.test('a volume created and deleted in one batch leaves no extents behind', async (t) => {
  const kv = await openKv(t, await databasePath(t));
  const store = await MapStore.open(kv);
  await store.apply(entries(3, 1, 11), { sync: false });
  await store.apply([
    { index: 12, command: { timestampMs: 1, requestId: 'c', body: { kind: 'createVolume', name: 'brief', sizeBytes: GiB, profile: '', readOnly: false, placementSeed: 4 } } },
    { index: 13, command: { timestampMs: 1, requestId: 'd', body: { kind: 'deleteVolume', volume: 'brief' } } },
  ], { sync: false });
  let left = 0;
  for await (const _entry of kv.iterate({ prefix: keyOf('map/extent/') })) left++;
  t.equal(left, 0);
});

void t.test('keys outside map/ belong to others and are ignored', async (t) => {
  const kv = await openKv(t, await databasePath(t));
  await kv.put(keyOf('raft/log/0000000000000001'), Uint8Array.of(1, 2, 3), { sync: false });
  t.equal((await MapStore.open(kv)).appliedIndex, 0);
});

void t.test('stored records are verified on load: CAIRN_CORRUPT names the key', async (t) => {
  const corruptions: Array<[string, (kv: KvStore) => Promise<void>, RegExp | string]> = [
    ['an undecodable value', (kv) => kv.put(keyOf('map/node/n1'), Uint8Array.of(0xff, 0xff), { sync: false }),
      /^map key 'map\/node\/n1': not a valid NodeRecord message/],
    ['a record under another id', async (kv) => kv.put(keyOf('map/node/n9'), (await kv.get(keyOf('map/node/n2')))!, { sync: false }),
      "map key 'map/node/n9': holds node 'n2'"],
    ['extents under another volume', async (kv) => kv.put(encodeMapKey({ kind: 'extent', volumeId: 'vol:1', firstIndex: 0 }), pb.ExtentPlacements.encode({ volumeId: 'vol:2', sets: [{}], extentSets: [0] }).finish(), { sync: false }),
      "map key 'map/extent/vol:1/00000000': holds extents from 0 of 'vol:2'"],
    ['an extent naming a missing replica set', async (kv) => kv.put(encodeMapKey({ kind: 'extent', volumeId: 'vol:1', firstIndex: 0 }),
      pb.ExtentPlacements.encode({ volumeId: 'vol:1', firstIndex: 0, sets: [], extentSets: [0] }).finish(), { sync: false }),
      "map key 'map/extent/vol:1/00000000': extent 0 of the run names set 0, but there are 0"],
    ['a request under another index', async (kv) => kv.put(encodeMapKey({ kind: 'request', index: 3 }), (await kv.get(encodeMapKey({ kind: 'request', index: 2 })))!, { sync: false }),
      "map key 'map/request/0000000000000003': holds a request applied at 2"],
    ['an unknown key', (kv) => kv.put(keyOf('map/snapshot/1'), Uint8Array.of(1), { sync: false }), "unexpected key 'map/snapshot/1' in the cluster map"],
    ['a missing applied index', (kv) => kv.batch([{ type: 'del', key: keyOf('map/applied') }], { sync: false }), /^the cluster map has \d+ records but no 'map\/applied' key$/],
    ['a drive its extents still use', async (kv) => {
      const drives: KvOperation[] = [];
      for await (const [key] of kv.iterate({ prefix: keyOf('map/drive/') })) drives.push({ type: 'del', key });
      await kv.batch(drives, { sync: false });
    }, /^stored cluster map: replica set 0 of volume '.*' \(extents from 0\) is on unknown drive 'd\d'$/],
  ];
  for (const [name, corrupt, message] of corruptions) {
    const path = await databasePath(t);
    const { kv } = await filledStore(t, path, 200);
    await corrupt(kv);
    await kv.close();
    const reopened = await openKv(t, path);
    await rejectsCode(t, () => MapStore.open(reopened), 'CAIRN_CORRUPT', message);
    t.comment(name);
  }
});

void t.test('install replaces the whole stored map with a snapshot in one batch', async (t) => {
  const path = await databasePath(t);
  const { kv, store } = await filledStore(t, path, 300);
  const other = ClusterMap.empty();
  for (let index = 1; index <= 120; index++) other.apply(index, workloadCommand(8, index));
  await store.install(other.snapshot(), { sync: true });
  t.ok(same(store.map.snapshot(), other.snapshot()));
  await kv.close();
  const kvAgain = await openKv(t, path);
  const reopened = await MapStore.open(kvAgain);
  t.equal(reopened.appliedIndex, 120);
  t.ok(same(reopened.map.snapshot(), other.snapshot()), 'nothing of the old map is left');
  let keys = 0;
  for await (const [key] of kvAgain.iterate({ prefix: keyOf('map/') })) keys += keyText(key).startsWith('map/') ? 1 : 0;
  const state = other.state();
  const chunks = state.placements.reduce((sum, run) => sum + Math.ceil(run.extentSets.length / extentsPerChunk), 0);
  t.equal(keys, 1 + state.nodes.length + state.drives.length + state.profiles.length + state.volumes.length + chunks + state.requests.length, 'one key per record, one per extent chunk');
  await rejectsCode(t, () => reopened.install(Uint8Array.of(1, 2, 3), { sync: true }), 'CAIRN_CORRUPT', /^map snapshot: not a valid MapSnapshot/);
  t.equal(reopened.appliedIndex, 120, 'a bad snapshot changes nothing');
});

void t.test('a failed write rejects with CAIRN_IO and the store refuses all later writes; disk keeps the last good state', async (t) => {
  const path = await databasePath(t);
  const level = await openKv(t, path);
  const kv = new InstrumentedKvStore(level);
  const store = await MapStore.open(kv);
  await store.apply(entries(3, 1, 50), { sync: true });
  kv.failNextBatch = true;
  await rejectsCode(t, () => store.apply(entries(3, 51, 60), { sync: true }), 'CAIRN_IO', 'disk on fire');
  await rejectsCode(t, () => store.apply(entries(3, 61, 61), { sync: true }), 'CAIRN_IO', 'the map store failed earlier and refuses writes until the daemon restarts: disk on fire');
  await rejectsCode(t, () => store.install(ClusterMap.empty().snapshot(), { sync: true }), 'CAIRN_IO', /failed earlier/);
  await level.close();
  t.equal((await MapStore.open(await openKv(t, path))).appliedIndex, 50);
});

void t.test('overlapping writes are a programmer error', async (t) => {
  const store = await MapStore.open(await openKv(t, await databasePath(t)));
  const first = store.apply(entries(3, 1, 5), { sync: false });
  await t.rejects(store.apply(entries(3, 6, 6), { sync: false }), AssertionError);
  await first;
  t.equal(store.appliedIndex, 5);
  await t.rejects(store.apply([], { sync: false }), AssertionError);
});
