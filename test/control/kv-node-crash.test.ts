// Goal: a write the KV service acknowledged survives kill -9 — of every node at the same moment,
// right after the acknowledgement, and of the leader alone — although the leader answers as soon
// as the entry is committed (before it writes anything more), the commit index is recorded on
// disk only with a later write, and followers learn commits lazily (from the next append or
// heartbeat). A restart must find every acknowledged entry in the durable log and apply it again.
// Method: 3 kv-node-main processes (test/cluster/helpers/kv-cluster.ts: real TCP, LevelDB with
// fsync, 10 ms ticks, snapshots every 50 entries so some rounds restart from a snapshot plus log).
// One session writes keys one after another; the moment the last put resolves, SIGKILL goes to
// every process at once; all restart and a fresh client reads every acknowledged key back
// (linearizable reads: they wait for the new leader's commit). Then the same with the leader
// alone killed right after an acknowledgement, read back through the new leader.
import t from 'tap';
import { KvClient } from '../../src/control/kv-client';
import { type CompiledEntry, compileEntry } from '../cluster/helpers/compile-entry';
import { KvCluster } from '../cluster/helpers/kv-cluster';

let compiled: CompiledEntry | undefined;
t.before(async () => {
  compiled = await compileEntry('src/control/kv-node-main.ts');
});
t.teardown(async () => {
  await compiled?.remove();
});

const rounds = 3;
const writesPerRound = 40;

void t.test('every acknowledged write survives kill -9 of all nodes right after its acknowledgement', async (t) => {
  if (compiled === undefined) throw new Error('the entry was not compiled');
  const cluster = await KvCluster.start(t, { size: 3, script: compiled.script, tickMs: 10, snapshotEntries: 50, compactionLagEntries: 10 });
  const acknowledged = new Map<string, string>();
  for (let round = 0; round < rounds; round++) {
    const client = new KvClient({ endpoints: cluster.endpoints(), operationTimeoutMs: 15_000 });
    await cluster.leader(client);
    const session = await client.openSession();
    for (let i = 0; i < writesPerRound; i++) {
      const key = `k${i % 25}`;
      const value = `r${round}-w${i}`;
      await session.put(key, value);
      acknowledged.set(key, value);
    }
    // No pause: the last answer may have left before any write that followed its commit.
    await Promise.all(cluster.ids.map((id) => cluster.kill(id)));
    client.close();
    await Promise.all(cluster.ids.map((id) => cluster.startNode(id)));
    const reader = new KvClient({ endpoints: cluster.endpoints(), operationTimeoutMs: 15_000 });
    const readSession = await reader.openSession();
    const lost: string[] = [];
    for (const [key, value] of acknowledged) {
      const got = await readSession.get(key);
      if (got !== value) lost.push(`${key}: acknowledged ${value}, read ${String(got)}`);
    }
    reader.close();
    t.same(lost, [], `round ${round + 1}: all ${acknowledged.size} acknowledged keys read back after every node was killed\n${lost.length > 0 ? cluster.logs() : ''}`);
  }
});

void t.test('an acknowledged write survives kill -9 of the leader right after its acknowledgement', async (t) => {
  if (compiled === undefined) throw new Error('the entry was not compiled');
  const cluster = await KvCluster.start(t, { size: 3, script: compiled.script, tickMs: 10, snapshotEntries: 50, compactionLagEntries: 10 });
  const client = new KvClient({ endpoints: cluster.endpoints(), operationTimeoutMs: 15_000 });
  t.teardown(() => client.close());
  for (let round = 0; round < rounds; round++) {
    const leader = await cluster.leader(client);
    const session = await client.openSession();
    const value = `after-kill-${round}`;
    await session.put('survivor', value);
    await cluster.kill(leader);
    const next = await cluster.leader(client, 15_000, leader);
    t.not(next, leader, `round ${round + 1}: another node leads`);
    t.equal(await session.get('survivor'), value, `round ${round + 1}: the write acknowledged just before the leader died is read back`);
    await cluster.startNode(leader);
  }
});
