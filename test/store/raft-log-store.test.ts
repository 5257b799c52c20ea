// Goal: RaftLogStore answers the Raft core exactly like MemoryStorage would after the same
// writes, keeps that answer across a reopen, writes each update as one batch (synced on request),
// refuses updates that break its invariants before writing anything, and reports damaged or
// foreign data as CAIRN_CORRUPT / CAIRN_CONFIG instead of loading it.
// Method: scripted cases for each kind of update, then a seeded model-based run that applies the
// same random legal updates (appends that overwrite suffixes, term and vote changes, commits,
// created and received snapshots, compaction) to a MemoryStorage and to the store, comparing every
// read after each update and after periodic reopens; corruption is injected straight into LevelDB.
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConfState, type Entry, type HardState, type Snapshot, CompactedError, MemoryStorage, UnavailableError } from '../../src/raft';
import { keyOf } from '../../src/store/kv-store';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { RaftLogStore, raftLogKey } from '../../src/store/raft-log-store';
import { SeededRandom } from '../../src/util/random';
import { InstrumentedKvStore } from './helpers/instrumented-kv-store';

const identity = { clusterId: 'test-cluster', nodeId: 1 };
const conf: ConfState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

function entry(index: number, term: number, text = `e${index}t${term}`): Entry {
  return { index, term, type: 'normal', data: new TextEncoder().encode(text) };
}

async function tempDatabase(t: Test): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-raft-store-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return join(directory, 'db');
}

/** Every read the core can make, as plain data. */
function view(storage: MemoryStorage | RaftLogStore): unknown {
  const first = storage.firstIndex();
  const last = storage.lastIndex();
  const entries = last >= first ? storage.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
  const snapshot = storage.snapshot();
  return {
    first, last, anchorTerm: storage.term(first - 1),
    entries: entries.map((e) => `${e.index}/${e.term}/${e.type}/${Buffer.from(e.data).toString('hex')}`),
    initial: storage.initialState(),
    snapshot: { ...snapshot.metadata, data: Buffer.from(snapshot.data).toString('hex') },
  };
}

void t.test('a new store claims its directory and refuses to open as another node or cluster', async (t) => {
  const path = await tempDatabase(t);
  let kv = await LevelKvStore.open(path);
  const store = await RaftLogStore.open(kv, identity);
  t.ok(store.isEmpty, 'a new store is empty');
  t.same(store.initialState().hardState, { term: 0, vote: 0, commit: 0 });
  t.equal(store.firstIndex(), 1);
  t.equal(store.lastIndex(), 0);
  await kv.close();
  kv = await LevelKvStore.open(path);
  await t.rejects(RaftLogStore.open(kv, { ...identity, nodeId: 2 }), { code: 'CAIRN_CONFIG', message: /belongs to node 1 of cluster 'test-cluster'/ });
  await t.rejects(RaftLogStore.open(kv, { ...identity, clusterId: 'other' }), { code: 'CAIRN_CONFIG' });
  t.ok((await RaftLogStore.open(kv, identity)).isEmpty, 'the right identity still opens');
  await kv.close();
});

void t.test('entries, an overwritten suffix and the hard state are stored in one synced batch and reload exactly', async (t) => {
  const path = await tempDatabase(t);
  const inner = await LevelKvStore.open(path);
  const kv = new InstrumentedKvStore(inner);
  const store = await RaftLogStore.open(kv, identity);
  await store.write({ entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)], hardState: { term: 1, vote: 1, commit: 2 } }, { sync: true });
  t.same(kv.batches.at(-1), { operations: 5, sync: true }, 'four entries and the hard state in one synced batch');
  // A new leader overwrites the uncommitted suffix from index 3 with a shorter one.
  await store.write({ entries: [entry(3, 2)], hardState: { term: 2, vote: 2, commit: 2 } }, { sync: true });
  t.equal(store.lastIndex(), 3, 'the suffix after the overwrite is gone');
  t.equal(store.term(3), 2);
  t.throws(() => store.term(4), UnavailableError);
  const before = view(store);
  await inner.close();
  const reopenedKv = await LevelKvStore.open(path);
  t.teardown(() => reopenedKv.close());
  const reopened = await RaftLogStore.open(reopenedKv, identity);
  t.same(view(reopened), before, 'the reopened store answers the same');
  t.same(reopened.hardState(), { term: 2, vote: 2, commit: 2 });
});

void t.test('a received snapshot replaces the log, compaction keeps what follows it, and both reload', async (t) => {
  const path = await tempDatabase(t);
  let kv = await LevelKvStore.open(path);
  let store = await RaftLogStore.open(kv, identity);
  await store.write({ entries: [entry(1, 1), entry(2, 1)], hardState: { term: 1, vote: 0, commit: 2 } }, { sync: true });
  const snapshot: Snapshot = { metadata: { index: 10, term: 3, confState: conf }, data: Uint8Array.of(7, 7) };
  await store.write({ snapshot, entries: [entry(11, 3), entry(12, 3)], hardState: { term: 3, vote: 0, commit: 10 } }, { sync: true });
  t.equal(store.firstIndex(), 11, 'the log starts after the snapshot');
  t.equal(store.term(10), 3, 'the snapshot term answers for its index');
  t.throws(() => store.term(9), CompactedError);
  t.throws(() => store.entries(10, 12, 1000), CompactedError);
  await store.write({ entries: [entry(13, 3), entry(14, 3)], hardState: { term: 3, vote: 0, commit: 14 } }, { sync: true });
  const created: Snapshot = { metadata: { index: 13, term: 3, confState: conf }, data: Uint8Array.of(1, 3) };
  await store.write({ createdSnapshot: created, compactTo: 12 }, { sync: false });
  t.equal(store.firstIndex(), 13, 'compacted up to 12, entries after it kept');
  t.equal(store.snapshot().metadata.index, 13);
  t.same(store.initialState().confState, conf, 'the configuration comes from the snapshot');
  const before = view(store);
  await kv.close();
  kv = await LevelKvStore.open(path);
  t.teardown(() => kv.close());
  store = await RaftLogStore.open(kv, identity);
  t.same(view(store), before, 'the reopened store answers the same');
});

void t.test('updates that break an invariant are refused before anything is written', async (t) => {
  const path = await tempDatabase(t);
  const kv = new InstrumentedKvStore(await LevelKvStore.open(path));
  t.teardown(() => kv.close());
  const store = await RaftLogStore.open(kv, identity);
  await store.write({ entries: [entry(1, 2), entry(2, 2), entry(3, 2)], hardState: { term: 2, vote: 3, commit: 2 } }, { sync: true });
  await store.write({ createdSnapshot: { metadata: { index: 2, term: 2, confState: conf }, data: new Uint8Array(0) } }, { sync: false });
  const batches = kv.batches.length;
  const before = view(store);
  const refused: Array<[string, () => Promise<void>]> = [
    ['the term going back', () => store.write({ hardState: { term: 1, vote: 0, commit: 2 } }, { sync: true })],
    ['a second vote in one term', () => store.write({ hardState: { term: 2, vote: 1, commit: 2 } }, { sync: true })],
    ['commit going back', () => store.write({ hardState: { term: 2, vote: 3, commit: 1 } }, { sync: true })],
    ['commit past the last entry', () => store.write({ hardState: { term: 2, vote: 3, commit: 4 } }, { sync: true })],
    ['an append that leaves a gap', () => store.write({ entries: [entry(5, 2)] }, { sync: true })],
    ['non-contiguous entries', () => store.write({ entries: [entry(4, 2), entry(6, 2)] }, { sync: true })],
    ['overwriting a committed entry', () => store.write({ entries: [entry(2, 3)] }, { sync: true })],
    ['an entry with a lower term than its predecessor', () => store.write({ entries: [entry(4, 1)] }, { sync: true })],
    ['compaction past the snapshot', () => store.write({ compactTo: 3 }, { sync: false })],
    ['a snapshot past commit', () => store.write({ createdSnapshot: { metadata: { index: 3, term: 2, confState: conf }, data: new Uint8Array(0) } }, { sync: false })],
  ];
  for (const [name, update] of refused) await t.rejects(update(), { name: 'AssertionError' }, name);
  await t.rejects(store.write({ createdSnapshot: { metadata: { index: 1, term: 2, confState: conf }, data: new Uint8Array(0) } }, { sync: false }), { code: 'RAFT_SNAPSHOT_OUT_OF_DATE' });
  t.equal(kv.batches.length, batches, 'nothing was written');
  t.same(view(store), before, 'nothing changed');
});

void t.test('a failed batch leaves memory unchanged and the store refuses every later write', async (t) => {
  const path = await tempDatabase(t);
  const kv = new InstrumentedKvStore(await LevelKvStore.open(path));
  t.teardown(() => kv.close());
  const store = await RaftLogStore.open(kv, identity);
  await store.write({ entries: [entry(1, 1)], hardState: { term: 1, vote: 1, commit: 0 } }, { sync: true });
  kv.failNextBatch = true;
  await t.rejects(store.write({ entries: [entry(2, 1)] }, { sync: true }), { code: 'CAIRN_IO' });
  t.equal(store.lastIndex(), 1, 'the failed append is not visible');
  await t.rejects(store.write({ entries: [entry(2, 1)] }, { sync: true }), { code: 'CAIRN_IO', message: /refuses writes until restart/ });
});

void t.test('damaged records are CAIRN_CORRUPT naming what is wrong', async (t) => {
  const path = await tempDatabase(t);
  const setup = async (damage: (kv: LevelKvStore) => Promise<void>): Promise<RaftLogStore> => {
    await rm(path, { recursive: true, force: true });
    const kv = await LevelKvStore.open(path);
    const store = await RaftLogStore.open(kv, identity);
    await store.write({ entries: [entry(1, 1), entry(2, 1), entry(3, 1)], hardState: { term: 1, vote: 1, commit: 3 } }, { sync: true });
    await damage(kv);
    await kv.close();
    const reopened = await LevelKvStore.open(path);
    try {
      return await RaftLogStore.open(reopened, identity);
    } finally {
      await reopened.close();
    }
  };
  const flip = async (kv: LevelKvStore, key: Uint8Array): Promise<void> => {
    const value = Buffer.from((await kv.get(key)) as Uint8Array);
    value[value.length - 1] = (value[value.length - 1] as number) ^ 0x40;
    await kv.put(key, value, { sync: true });
  };
  await t.rejects(setup((kv) => flip(kv, raftLogKey(2))), { code: 'CAIRN_CORRUPT', message: /raft log entry 2: checksum/ });
  await t.rejects(setup((kv) => flip(kv, keyOf('raft/hard-state'))), { code: 'CAIRN_CORRUPT', message: /raft\/hard-state/ });
  await t.rejects(setup((kv) => kv.batch([{ type: 'del', key: raftLogKey(2) }], { sync: true })), { code: 'CAIRN_CORRUPT', message: /gap/ });
  await t.rejects(setup((kv) => kv.batch([{ type: 'del', key: raftLogKey(3) }], { sync: true })), { code: 'CAIRN_CORRUPT', message: /commit 3 is past the last entry 2/ });
  await t.rejects(setup(async (kv) => {
    const moved = await kv.get(raftLogKey(3));
    await kv.batch([{ type: 'put', key: raftLogKey(4), value: moved as Uint8Array }], { sync: true });
  }), { code: 'CAIRN_CORRUPT', message: /entry 4: holds index 3/ });
  await t.rejects(setup((kv) => kv.put(keyOf('raft/log/x'), Uint8Array.of(1), { sync: true })), { code: 'CAIRN_CORRUPT', message: /not a log key/ });
  await t.rejects(setup((kv) => kv.batch([{ type: 'del', key: keyOf('raft/identity') }], { sync: true })), { code: 'CAIRN_CORRUPT', message: /no raft\/identity/ });
});

/** Random legal updates, applied to both storages; reads compared after each and after reopens. */
void t.test('random updates leave the store answering exactly like MemoryStorage, across reopens', async (t) => {
  const path = await tempDatabase(t);
  const random = new SeededRandom(7103);
  let kv = await LevelKvStore.open(path);
  let store = await RaftLogStore.open(kv, identity);
  const model = new MemoryStorage();
  let hard: HardState = { term: 1, vote: 0, commit: 0 };
  let mismatches = 0;
  let reopens = 0;
  let snapshotsReceived = 0;
  for (let step = 0; step < 400; step++) {
    const last = model.lastIndex();
    const choice = random.int(10);
    if (choice < 5) {
      // Append, sometimes overwriting an uncommitted suffix with a new term.
      const overwrite = random.int(3) === 0 && last > hard.commit;
      if (overwrite) hard = { term: hard.term + 1, vote: 1 + random.int(3), commit: hard.commit };
      const from = overwrite ? hard.commit + 1 + random.int(last - hard.commit) : last + 1;
      const entries = Array.from({ length: 1 + random.int(5) }, (_, i) => entry(from + i, hard.term, `s${step}`));
      const newLast = from + entries.length - 1;
      hard = { ...hard, commit: Math.min(newLast, hard.commit + random.int(4)) };
      model.append(entries);
      model.setHardState(hard);
      await store.write({ entries, hardState: hard }, { sync: random.int(2) === 0 });
    } else if (choice < 7 && hard.commit > model.snapshot().metadata.index) {
      // Snapshot of the applied state, and compaction behind it.
      const index = model.snapshot().metadata.index + 1 + random.int(hard.commit - model.snapshot().metadata.index);
      const snapshot = model.createSnapshot(index, conf, Uint8Array.of(step % 256));
      const compactTo = random.int(2) === 0 ? index - random.int(3) : undefined;
      const compact = compactTo !== undefined && compactTo > model.firstIndex() - 1 ? compactTo : undefined;
      if (compact !== undefined) model.compact(compact);
      await store.write({ createdSnapshot: snapshot, ...(compact === undefined ? {} : { compactTo: compact }) }, { sync: false });
    } else if (choice === 7 && random.int(3) === 0) {
      // A snapshot from a leader, ahead of everything here.
      const index = last + 1 + random.int(10);
      hard = { term: hard.term + 1, vote: 0, commit: index };
      const snapshot: Snapshot = { metadata: { index, term: hard.term, confState: conf }, data: Uint8Array.of(0xee, step % 256) };
      model.applySnapshot(snapshot);
      model.setHardState(hard);
      await store.write({ snapshot, hardState: hard }, { sync: true });
      snapshotsReceived++;
    } else if (choice === 8) {
      hard = { term: hard.term + 1, vote: random.int(2) === 0 ? 0 : 1 + random.int(3), commit: hard.commit };
      model.setHardState(hard);
      await store.write({ hardState: hard }, { sync: true });
    } else {
      await kv.close();
      kv = await LevelKvStore.open(path);
      store = await RaftLogStore.open(kv, identity);
      reopens++;
    }
    if (JSON.stringify(view(store)) !== JSON.stringify(view(model)) || JSON.stringify(store.hardState()) !== JSON.stringify(model.hardState())) {
      mismatches++;
      if (mismatches === 1) t.same(view(store), view(model), `step ${step}: the store differs from the model`);
    }
  }
  await kv.close();
  t.equal(mismatches, 0, 'the store always answered like the model');
  t.ok(reopens > 10 && snapshotsReceived > 0, `the run reopened ${reopens} times and received ${snapshotsReceived} snapshots`);
});
