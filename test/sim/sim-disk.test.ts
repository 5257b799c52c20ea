// Goal: the simulated disk keeps its fault model — written data is visible at once but survives a
// crash only once synced; unsynced writes survive as a prefix (never a later one without an
// earlier one), a torn last write is detected and dropped, a crash cancels pending syncs, stalls
// delay syncs, compaction points survive a recovery, and the deliberate bugs do what they say.
// Method: write Ready-shaped batches to a SimDisk on a SimClock, crash it, inspect the recovered
// MemoryStorage.
import t from 'tap';
import { MemoryStorage } from '../../src/raft/memory-storage';
import type { Entry, HardState } from '../../src/raft/types';
import { SimClock } from '../../src/sim/sim-clock';
import { type DiskBug, type DiskFaults, SimDisk, copyStorage, quietDisk } from '../../src/sim/sim-disk';
import { SeededRandom } from '../../src/util/random';

const confState = { voters: [1, 2, 3], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
const entry = (index: number, term = 1): Entry => ({ index, term, type: 'normal', data: Uint8Array.of(index) });
const hard = (term: number, vote: number, commit: number): HardState => ({ term, vote, commit });

function setup(faults: Partial<DiskFaults> = {}, bug: DiskBug = 'none', seed = 1): { clock: SimClock; disk: SimDisk; run: () => void } {
  const clock = new SimClock();
  const disk = new SimDisk(clock, new SeededRandom(seed), { ...quietDisk, ...faults }, bug);
  const run = (): void => {
    for (let event = clock.takeNext(); event !== undefined; event = clock.takeNext()) event.action();
  };
  return { clock, disk, run };
}

function lastIndexAfterCrash(disk: SimDisk): number {
  disk.crash();
  return disk.storage.lastIndex();
}

void t.test('synced writes survive a crash, unsynced ones are lost', async (t) => {
  const { disk, run } = setup();
  disk.writeReady(hard(1, 1, 0), undefined, [entry(1), entry(2)]);
  let synced = false;
  disk.sync(() => (synced = true));
  run();
  t.ok(synced);
  disk.writeReady(hard(2, 3, 2), undefined, [entry(3, 2)]);
  t.equal(disk.storage.lastIndex(), 3, 'visible before the sync');
  t.equal(disk.durableStorage.lastIndex(), 2, 'not durable yet');
  const report = disk.crash();
  t.same(report, { survived: 0, lost: 1, tornTail: undefined });
  t.equal(disk.storage.lastIndex(), 2);
  t.same(disk.storage.hardState(), hard(1, 1, 0));
});

void t.test('a crash cancels the syncs that were pending', async (t) => {
  const { disk, run } = setup();
  disk.writeReady(hard(1, 1, 0), undefined, [entry(1)]);
  let done = false;
  disk.sync(() => (done = true));
  disk.crash();
  run();
  t.equal(done, false, 'the callback of a sync cut short by a crash never runs');
  t.equal(disk.storage.lastIndex(), 0);
});

void t.test('unsynced writes survive only as a prefix, whatever the crash keeps', async (t) => {
  const outcomes = new Set<number>();
  for (let seed = 1; seed <= 200; seed++) {
    const { disk, run } = setup({ unsyncedSurvivalRate: 0.5, tornWriteRate: 0.5 }, 'none', seed);
    disk.writeReady(hard(1, 1, 0), undefined, [entry(1)]);
    disk.sync(() => undefined);
    run();
    for (let index = 2; index <= 5; index++) disk.writeReady(undefined, undefined, [entry(index)]);
    const last = lastIndexAfterCrash(disk);
    outcomes.add(last);
    // A prefix: entries 1..last, all intact.
    const stored = disk.storage.entries(1, last + 1, Number.MAX_SAFE_INTEGER).map((e) => e.index);
    t.same(stored, Array.from({ length: last }, (_, i) => i + 1), `seed ${seed}`);
  }
  t.same([...outcomes].sort(), [1, 2, 3, 4, 5], 'every prefix length happens');
});

void t.test('a torn last write is detected and dropped', async (t) => {
  const { disk } = setup({ unsyncedSurvivalRate: 0, tornWriteRate: 1 });
  disk.writeReady(hard(1, 1, 0), undefined, [entry(1), entry(2)]);
  const report = disk.crash();
  t.equal(report.survived, 0);
  t.type(report.tornTail, 'string');
  t.equal(disk.stats.tornTails, 1);
  t.equal(disk.storage.lastIndex(), 0);
});

void t.test('a stalled disk completes syncs no earlier than the stall ends', async (t) => {
  const { disk, clock, run } = setup();
  disk.stallUntil(50_000_000);
  disk.writeReady(hard(1, 1, 0), undefined, [entry(1)]);
  let doneAtNs = -1;
  disk.sync(() => (doneAtNs = clock.nowNs));
  run();
  t.ok(doneAtNs >= 50_000_000, `synced at ${doneAtNs}`);
});

void t.test('compaction survives a crash once synced, with its compaction point', async (t) => {
  const { disk, run } = setup();
  disk.writeReady(hard(1, 1, 10), undefined, Array.from({ length: 10 }, (_, i) => entry(i + 1)));
  disk.compact(8, confState, Uint8Array.of(42), 5);
  disk.sync(() => undefined);
  run();
  disk.crash();
  t.equal(disk.storage.firstIndex(), 6, 'entries 6..8 stay below the snapshot');
  t.equal(disk.storage.snapshot().metadata.index, 8);
  t.same([...disk.storage.snapshot().data], [42]);
  t.equal(disk.storage.lastIndex(), 10);
});

void t.test('copyStorage keeps the compaction point, snapshot, entries and hard state', async (t) => {
  const source = new MemoryStorage();
  source.append(Array.from({ length: 9 }, (_, i) => entry(i + 1, i < 4 ? 1 : 2)));
  source.createSnapshot(7, confState, Uint8Array.of(7));
  source.compact(4);
  source.setHardState(hard(2, 1, 9));
  const copy = copyStorage(source);
  t.equal(copy.firstIndex(), 5);
  t.equal(copy.lastIndex(), 9);
  t.equal(copy.term(4), 1);
  t.same(copy.snapshot(), source.snapshot());
  t.same(copy.hardState(), source.hardState());
  copy.append([entry(10, 3)]);
  t.equal(source.lastIndex(), 9, 'independent of the source');
});

void t.test('deliberate bug forget-vote: the durable hard state loses its vote', async (t) => {
  const { disk, run } = setup({}, 'forget-vote');
  disk.writeReady(hard(5, 2, 0), undefined, []);
  disk.sync(() => undefined);
  run();
  t.same(disk.storage.hardState(), hard(5, 2, 0), 'the running node still sees its vote');
  disk.crash();
  t.same(disk.storage.hardState(), hard(5, 0, 0), 'the vote is gone after a crash');
});

void t.test('deliberate bug sync-lies: a completed sync made nothing durable', async (t) => {
  const { disk, run } = setup({}, 'sync-lies');
  disk.writeReady(hard(1, 1, 0), undefined, [entry(1)]);
  let synced = false;
  disk.sync(() => (synced = true));
  run();
  t.ok(synced, 'the sync reports success');
  t.equal(lastIndexAfterCrash(disk), 0);
});
