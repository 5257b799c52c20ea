// Goal: LevelKvStore keeps the KvStore contract: reads see writes, batches apply in order and are
// durable across reopen, iteration respects prefixes, ranges, order and limits, a second opener of
// the same directory gets CAIRN_DATA_DIR_LOCKED, and a closed store refuses calls with CAIRN_CLOSED.
// Method: a real LevelDB in a temporary directory per test.
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { keyOf, keyText, type KvStore } from '../../src/store/kv-store';
import { rejectsCode } from '../meta/helpers/errors';

async function temporaryDirectory(t: Test): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-kv-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function openStore(t: Test, directory?: string): Promise<LevelKvStore> {
  const store = await LevelKvStore.open(directory ?? join(await temporaryDirectory(t), 'db'));
  t.teardown(() => store.close());
  return store;
}

async function entries(store: KvStore, range: Parameters<KvStore['iterate']>[0], options?: Parameters<KvStore['iterate']>[1]): Promise<string[]> {
  const found: string[] = [];
  for await (const [key, value] of store.iterate(range, options)) found.push(`${keyText(key)}=${keyText(value)}`);
  return found;
}

const text = (value: string): Uint8Array => keyOf(value);

void t.test('get sees put; missing keys are undefined; values are bytes', async (t) => {
  const store = await openStore(t);
  t.equal(await store.get(text('a')), undefined);
  await store.put(text('a'), Uint8Array.of(0, 1, 255), { sync: false });
  const value = await store.get(text('a'));
  t.ok(value instanceof Uint8Array);
  t.same([...value!], [0, 1, 255]);
});

void t.test('a batch applies in order (the last write to a key wins) and survives reopen', async (t) => {
  const directory = join(await temporaryDirectory(t), 'db');
  const first = await LevelKvStore.open(directory);
  await first.batch(
    [
      { type: 'put', key: text('k1'), value: text('old') },
      { type: 'put', key: text('k2'), value: text('two') },
      { type: 'put', key: text('k1'), value: text('new') },
      { type: 'put', key: text('k3'), value: text('three') },
      { type: 'del', key: text('k3') },
    ],
    { sync: true },
  );
  await first.batch([], { sync: true });
  await first.close();
  const second = await openStore(t, directory);
  t.same(await entries(second, { prefix: text('k') }), ['k1=new', 'k2=two']);
});

void t.test('iteration: prefixes, ranges, reverse order and limits', async (t) => {
  const store = await openStore(t);
  await store.batch(['a/1', 'a/2', 'a/3', 'b/1', 'a0'].map((key) => ({ type: 'put' as const, key: text(key), value: text('v') })), { sync: false });
  t.same(await entries(store, { prefix: text('a/') }), ['a/1=v', 'a/2=v', 'a/3=v'], 'a prefix excludes its neighbours');
  t.same(await entries(store, { prefix: text('a/') }, { reverse: true, limit: 2 }), ['a/3=v', 'a/2=v']);
  t.same(await entries(store, { gte: text('a/2'), lt: text('b') }), ['a/2=v', 'a/3=v', 'a0=v']);
  t.same(await entries(store, { gt: text('a/2') }), ['a/3=v', 'a0=v', 'b/1=v']);
  t.same(await entries(store, { prefix: Uint8Array.of(0xff) }), []);
  t.same(await entries(store, { prefix: text('a/') }, { limit: 0 }), []);
});

void t.test('iteration sees a snapshot taken when it starts', async (t) => {
  const store = await openStore(t);
  await store.put(text('s/1'), text('v'), { sync: false });
  const seen: string[] = [];
  for await (const [key] of store.iterate({ prefix: text('s/') })) {
    seen.push(keyText(key));
    await store.put(text('s/2'), text('v'), { sync: false });
  }
  t.same(seen, ['s/1']);
});

void t.test('a second opener of the same directory is refused with CAIRN_DATA_DIR_LOCKED', async (t) => {
  const directory = join(await temporaryDirectory(t), 'db');
  await openStore(t, directory);
  await rejectsCode(t, () => LevelKvStore.open(directory), 'CAIRN_DATA_DIR_LOCKED', /is another cairnd running on this data directory\?/);
});

void t.test('opening a missing database without createIfMissing fails with CAIRN_IO', async (t) => {
  const directory = join(await temporaryDirectory(t), 'absent');
  await rejectsCode(t, () => LevelKvStore.open(directory, { createIfMissing: false }), 'CAIRN_IO', /^cannot open the database at /);
});

void t.test('a closed store refuses every call with CAIRN_CLOSED; closing twice is fine', async (t) => {
  const directory = join(await temporaryDirectory(t), 'db');
  const store = await LevelKvStore.open(directory);
  await store.close();
  await store.close();
  await rejectsCode(t, () => store.get(text('a')), 'CAIRN_CLOSED', `the database at ${directory} is closed`);
  await rejectsCode(t, () => store.put(text('a'), text('b'), { sync: true }), 'CAIRN_CLOSED');
  await rejectsCode(t, () => store.batch([{ type: 'del', key: text('a') }], { sync: true }), 'CAIRN_CLOSED');
  await rejectsCode(t, () => entries(store, { prefix: text('a') }), 'CAIRN_CLOSED');
});
