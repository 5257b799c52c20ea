// Goal: the Raft driver turns the pure core into a working replicated state machine: proposals
// resolve with their applied result everywhere, followers refuse with the leader's id, proposals
// caught by a leadership loss fail as retryable with an unknown outcome, reads are linearizable or
// fail, snapshots and compaction let a lagging or restarted node catch up, a state machine that
// persists itself is never re-applied, and the lifecycle (stop, failed writes, bounded inbox) is
// what the module comment promises.
// Method: in-process clusters of real drivers on LevelDB (fsync on) with a partitionable
// in-memory network (helpers/driver-cluster.ts), 10 ms ticks; scenarios wait on conditions with
// deadlines, so a regression shows up as a timeout naming what never happened.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KvApplyOutcome, KvStateMachine } from '../../src/control/kv-state-machine';
import { KvRaftStateMachine } from '../../src/control/kv-node';
import { RaftDriver, RaftRequestError, type RaftStateMachine } from '../../src/control/raft-driver';
import { raftInboxMessagesMax } from '../../src/limits';
import { type Entry, type Snapshot, makeMessage } from '../../src/raft';
import { keyOf, type KvOperation } from '../../src/store/kv-store';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { RaftLogStore } from '../../src/store/raft-log-store';
import { SeededRandom } from '../../src/util/random';
import { InstrumentedKvStore } from '../store/helpers/instrumented-kv-store';
import { DriverCluster, command, waitFor } from './helpers/driver-cluster';

async function openSession(driver: RaftDriver<KvApplyOutcome>, clientId: number): Promise<void> {
  const outcome = await driver.propose(command({ kind: 'open', clientId, seq: 1 }));
  if (outcome.result.kind !== 'opened') throw new Error(`open returned ${outcome.result.kind}`);
}

void t.test('a three-node cluster elects a leader and applies proposals everywhere, answering each with its result', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3]);
  const leader = await cluster.leader();
  await openSession(leader.driver, 7);
  t.same((await leader.driver.propose(command({ kind: 'put', clientId: 7, seq: 2, key: 'a', value: 'x' }))).result, { kind: 'put' });
  t.same((await leader.driver.propose(command({ kind: 'cas', clientId: 7, seq: 3, key: 'a', from: 'x', to: 'y' }))).result, { kind: 'cas', ok: true, value: 'x' });
  t.same((await leader.driver.propose(command({ kind: 'cas', clientId: 7, seq: 4, key: 'a', from: 'x', to: 'z' }))).result, { kind: 'cas', ok: false, value: 'y' });
  const retried = await leader.driver.propose(command({ kind: 'cas', clientId: 7, seq: 4, key: 'a', from: 'x', to: 'z' }));
  t.same(retried, { ...retried, duplicate: true, result: { kind: 'cas', ok: false, value: 'y' } }, 'a retried request answers with the first result');
  // Many concurrent proposals: one Ready, one fsync for many (group commit).
  const puts = [];
  for (let client = 100; client < 140; client++) puts.push(openSession(leader.driver, client).then(() => leader.driver.propose(command({ kind: 'put', clientId: client, seq: 2, key: `k${client}`, value: `v${client}` }))));
  await Promise.all(puts);
  t.ok(leader.driver.counters.syncedWrites < 40, `80 concurrent proposals took ${leader.driver.counters.syncedWrites} synced writes`);
  await cluster.converge(leader.driver.applied);
  for (const node of cluster.running()) {
    t.equal(node.machine.read('a'), 'y', `node ${node.id} applied the writes`);
    t.equal(node.machine.read('k139'), 'v139', `node ${node.id} applied the concurrent writes`);
  }
});

void t.test('a follower refuses proposals with a retryable CAIRN_NOT_LEADER naming the leader', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3]);
  const leader = await cluster.leader();
  const follower = cluster.running().find((node) => node.id !== leader.id);
  if (follower === undefined) throw new Error('no follower');
  await waitFor('the follower to learn the leader', () => follower.driver.leader.leaderId === leader.id);
  const error = await follower.driver.propose(command({ kind: 'open', clientId: 1, seq: 1 })).catch((caught: unknown) => caught);
  t.ok(error instanceof RaftRequestError, 'a RaftRequestError');
  t.match(error, { code: 'CAIRN_NOT_LEADER', retryable: true, leaderId: leader.id, outcomeUnknown: false });
});

void t.test('linearizable reads see every write that completed before them, on the leader and on followers', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3]);
  const leader = await cluster.leader();
  await openSession(leader.driver, 9);
  for (let seq = 2; seq < 12; seq++) {
    await leader.driver.propose(command({ kind: 'put', clientId: 9, seq, key: 'r', value: `v${seq}` }));
    for (const node of cluster.running()) {
      t.equal(await node.driver.read(() => node.machine.read('r')), `v${seq}`, `node ${node.id} reads write ${seq}`);
    }
  }
});

void t.test('a read on a node cut off from the leader fails instead of answering stale', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3]);
  const leader = await cluster.leader();
  const follower = cluster.running().find((node) => node.id !== leader.id);
  if (follower === undefined) throw new Error('no follower');
  await waitFor('the follower to learn the leader', () => follower.driver.leader.leaderId === leader.id);
  cluster.isolate(follower.id);
  const error = await follower.driver.read(() => follower.machine.read('x')).catch((caught: unknown) => caught);
  t.match(error, { retryable: true }, 'the read fails, retryable');
  t.ok(error instanceof RaftRequestError && ['CAIRN_UNAVAILABLE', 'CAIRN_NOT_LEADER'].includes(error.code), `with ${String(error)}`);
});

void t.test('proposals caught by a leadership loss fail as retryable with an unknown outcome, and the cluster moves on', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3]);
  const old = await cluster.leader();
  await openSession(old.driver, 5);
  cluster.isolate(old.id);
  const stranded = [3, 4, 5].map((seq) => old.driver.propose(command({ kind: 'put', clientId: 5, seq, key: 'p', value: `lost${seq}` })).catch((caught: unknown) => caught));
  const errors = await Promise.all(stranded);
  for (const error of errors) t.match(error, { code: 'CAIRN_NOT_LEADER', retryable: true, outcomeUnknown: true });
  const next = await cluster.leader(5000, old.id);
  t.not(next.id, old.id, 'another node leads');
  await next.driver.propose(command({ kind: 'put', clientId: 5, seq: 10, key: 'p', value: 'kept' }));
  cluster.heal();
  await cluster.converge(next.driver.applied);
  for (const node of cluster.running()) t.equal(node.machine.read('p'), 'kept', `node ${node.id} agrees after the heal`);
  t.equal(Buffer.from(old.machine.snapshot()).toString('hex'), Buffer.from(next.machine.snapshot()).toString('hex'), 'the old leader dropped its uncommitted entries');
});

void t.test('snapshots compact the log, and a follower that fell behind catches up through one', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3], { snapshotEntries: 20, compactionLagEntries: 5 });
  const leader = await cluster.leader();
  const laggard = cluster.running().find((node) => node.id !== leader.id);
  if (laggard === undefined) throw new Error('no follower');
  cluster.isolate(laggard.id);
  await openSession(leader.driver, 11);
  for (let seq = 2; seq < 120; seq++) await leader.driver.propose(command({ kind: 'put', clientId: 11, seq, key: `s${seq % 7}`, value: `${seq}` }));
  t.ok(leader.driver.counters.snapshotsTaken >= 4, `the leader took ${leader.driver.counters.snapshotsTaken} snapshots`);
  cluster.heal();
  await cluster.converge(leader.driver.applied);
  t.ok(laggard.driver.counters.snapshotsInstalled >= 1, 'the laggard installed a snapshot from the leader');
  t.equal(Buffer.from(laggard.machine.snapshot()).toString('hex'), Buffer.from(leader.machine.snapshot()).toString('hex'), 'the laggard has the same state');
});

void t.test('restarted nodes — one, then all — recover their state from the snapshot and the log', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3], { snapshotEntries: 15, compactionLagEntries: 3 });
  let leader = await cluster.leader();
  await openSession(leader.driver, 21);
  let seq = 2;
  const put = async (value: string): Promise<void> => {
    await leader.driver.propose(command({ kind: 'put', clientId: 21, seq: seq++, key: 'state', value }));
  };
  for (let i = 0; i < 40; i++) await put(`a${i}`);
  const follower = cluster.running().find((node) => node.id !== leader.id);
  if (follower === undefined) throw new Error('no follower');
  await cluster.stop(follower.id);
  for (let i = 0; i < 10; i++) await put(`b${i}`);
  const restarted = await cluster.restart(follower.id);
  await cluster.converge(leader.driver.applied);
  t.equal(restarted.machine.read('state'), 'b9', 'the restarted follower caught up');
  const appliedBefore = leader.driver.applied;
  for (const id of [1, 2, 3]) await cluster.stop(id);
  for (const id of [1, 2, 3]) await cluster.restart(id);
  leader = await cluster.leader();
  await cluster.converge(appliedBefore);
  for (const node of cluster.running()) t.equal(node.machine.read('state'), 'b9', `node ${node.id} kept everything across a full restart`);
  await put('c');
  await cluster.converge(leader.driver.applied);
  t.equal(leader.machine.read('state'), 'c', 'the restarted cluster takes new writes');
});

/** Counts to persist: its state and applied index go into the driver's batch. */
class PersistentCounter implements RaftStateMachine<number> {
  applyCalls = 0;
  constructor(public appliedIndex: number, public count: number) {}

  apply(entries: readonly Entry[]): { results: number[]; operations: KvOperation[] } {
    this.applyCalls += entries.length;
    const results = entries.map((entry) => {
      this.appliedIndex = entry.index;
      this.count += entry.data.length;
      return this.count;
    });
    return { results, operations: this.operations() };
  }

  snapshot(): Uint8Array {
    return new TextEncoder().encode(`${this.appliedIndex}:${this.count}`);
  }

  restore(snapshot: Snapshot): KvOperation[] {
    const [applied, count] = new TextDecoder().decode(snapshot.data).split(':').map(Number);
    this.appliedIndex = applied ?? 0;
    this.count = count ?? 0;
    return this.operations();
  }

  private operations(): KvOperation[] {
    return [{ type: 'put', key: keyOf('counter/state'), value: new TextEncoder().encode(`${this.appliedIndex}:${this.count}`) }];
  }

  static async load(kv: LevelKvStore): Promise<PersistentCounter> {
    const stored = await kv.get(keyOf('counter/state'));
    const [applied, count] = stored === undefined ? [0, 0] : new TextDecoder().decode(stored).split(':').map(Number);
    return new PersistentCounter(applied ?? 0, count ?? 0);
  }
}

void t.test('a state machine that persists itself is written in the same batch and never re-applied after a restart', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-driver-counter-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const run = async (proposals: number, snapshotEntries: number): Promise<{ counter: PersistentCounter; applied: number; snapshots: number }> => {
    const kv = await LevelKvStore.open(join(directory, 'db'));
    const counter = await PersistentCounter.load(kv);
    const store = await RaftLogStore.open(kv, { clusterId: 'counter', nodeId: 1 });
    const driver = new RaftDriver<number>({
      nodeId: 1, store, stateMachine: counter, random: new SeededRandom(3), transport: { send: () => {} }, bootstrapVoters: [1],
      tickMs: 5, snapshotEntries, compactionLagEntries: 2,
      // A few entries per Ready, so a restart replays in several steps.
      raft: { committedBytesPerReadyMax: 64 },
    });
    await driver.start();
    await waitFor('leadership', () => driver.leader.isLeader);
    const replayed = counter.applyCalls;
    for (let i = 0; i < proposals; i++) {
      const count = await driver.propose(Uint8Array.of(1, 2));
      // Resolved means durable: the counter's own record already holds this result.
      const bytes = await kv.get(keyOf('counter/state'));
      const stored = bytes === undefined ? 'nothing' : new TextDecoder().decode(bytes);
      if (!(Number(stored.split(':')[1]) >= count)) t.fail(`proposal ${i} resolved before its state was stored (${stored}, result ${count})`);
    }
    t.equal(replayed, 0, 'nothing already applied was applied again on start');
    const applied = driver.applied;
    const snapshots = driver.counters.snapshotsTaken;
    await driver.stop();
    await kv.close();
    return { counter, applied, snapshots };
  };
  const first = await run(30, 1000);
  t.equal(first.counter.count, 60);
  t.equal(first.snapshots, 0, 'no snapshot yet: the restart replays the whole log');
  // Snapshots are now due every 5 entries, also while replaying entries the counter already
  // holds: none may be taken before the replay caught up with it.
  const second = await run(30, 5);
  t.equal(second.counter.count, 120, 'the count continues exactly where it stopped');
  t.ok(second.applied > first.applied, 'new entries were applied on top');
  t.ok(second.snapshots > 0, 'snapshots were taken once the replay caught up');
});

void t.test('stop rejects pending and later requests with CAIRN_SHUTTING_DOWN', async (t) => {
  const cluster = await DriverCluster.start(t, [1, 2, 3]);
  const leader = await cluster.leader();
  await openSession(leader.driver, 31);
  cluster.isolate(leader.id); // nothing can commit now
  const pending = leader.driver.propose(command({ kind: 'put', clientId: 31, seq: 2, key: 'x', value: 'y' })).catch((caught: unknown) => caught);
  await cluster.stop(leader.id);
  t.match(await pending, { code: 'CAIRN_SHUTTING_DOWN', outcomeUnknown: true });
  await t.rejects(leader.driver.propose(command({ kind: 'put', clientId: 31, seq: 3, key: 'x', value: 'y' })), { code: 'CAIRN_SHUTTING_DOWN' });
  await t.rejects(leader.driver.read(() => 1), { code: 'CAIRN_SHUTTING_DOWN' });
});

void t.test('the inbox drops peer messages beyond its bound instead of growing', async (t) => {
  const cluster = await DriverCluster.start(t, [1]);
  const node = await cluster.leader();
  const extra = 25;
  for (let i = 0; i < raftInboxMessagesMax + extra; i++) node.driver.receive(makeMessage({ type: 'MsgHeartbeatResp', from: 2, to: 1, term: 1 }));
  t.equal(node.driver.counters.inboxDropped, extra, `${extra} messages past ${raftInboxMessagesMax} were dropped`);
  await waitFor('the inbox to drain', () => node.driver.counters.stepErrors >= raftInboxMessagesMax);
  t.pass('the loop stepped (and refused) the ones it kept');
});

void t.test('a failed write fails the driver: pending requests reject with CAIRN_IO and onFatal is told', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-driver-fail-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const kv = new InstrumentedKvStore(await LevelKvStore.open(join(directory, 'db')));
  t.teardown(() => kv.close());
  const store = await RaftLogStore.open(kv, { clusterId: 'fail', nodeId: 1 });
  const machine = new KvStateMachine();
  const fatal: unknown[] = [];
  const driver = new RaftDriver<KvApplyOutcome>({
    nodeId: 1, store, stateMachine: new KvRaftStateMachine(machine), random: new SeededRandom(1), transport: { send: () => {} },
    bootstrapVoters: [1], tickMs: 5, onFatal: (error) => fatal.push(error),
  });
  await driver.start();
  t.teardown(() => driver.stop());
  await waitFor('leadership', () => driver.leader.isLeader);
  await openSession(driver, 41);
  kv.failNextBatch = true;
  const error = await driver.propose(command({ kind: 'put', clientId: 41, seq: 2, key: 'x', value: 'y' })).catch((caught: unknown) => caught);
  t.match(error, { code: 'CAIRN_IO', outcomeUnknown: true });
  t.equal(fatal.length, 1, 'onFatal was called once');
  await t.rejects(driver.propose(command({ kind: 'put', clientId: 41, seq: 3, key: 'x', value: 'y' })), { code: 'CAIRN_IO', message: /must restart/ });
});
