// Goal: a replicated KV store of real processes — Raft over TCP, LevelDB with fsync — stays
// linearizable while its leader is killed with SIGKILL and restarted, again and again, and while a
// follower, then the leader, is cut off and healed; and it keeps making progress through all of it.
// Method: 3-node and 5-node clusters of kv-node-main processes on 127.0.0.1 (helpers/kv-cluster.ts),
// every Raft link behind a fault-injecting proxy. Eight concurrent clients (one KV session each)
// run reads, writes and compare-and-sets on 20 keys with per-operation deadlines (short — 700 ms —
// so operations that span a failover end `unknown` and the checker has to place them); an operation
// whose outcome is not known (timeout, lost connection, leadership lost after append) is recorded
// as `unknown`, one that certainly did not apply as `fail`. Meanwhile a nemesis kills the current
// leader (kill -9) and restarts it three times, then isolates a follower and heals it, then
// isolates the leader and heals it (reads go to every node, so a stale read would show). Snapshots
// are taken every few hundred entries, so the isolated follower catches up through an
// InstallSnapshot over TCP. The history is checked with the project's linearizability checker
// (src/check) and written to $CAIRN_HISTORY_DIR/kv-cluster-<n>-nodes.jsonl when that is set.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkHistory, formatHistoryVerdict } from '../../src/check/check-history';
import { writeHistoryFile } from '../../src/check/history-file';
import { HistoryRecorder } from '../../src/check/history-recorder';
import { KvClient, KvClientError, type KvSession } from '../../src/control/kv-client';
import { SeededRandom } from '../../src/util/random';
import { type CompiledEntry, compileEntry } from './helpers/compile-entry';
import { KvCluster } from './helpers/kv-cluster';

const clientCount = 8;
const keyCount = 20;
const seed = Number(process.env['CAIRN_CLUSTER_SEED'] ?? 1);

let compiled: CompiledEntry | undefined;
t.before(async () => {
  compiled = await compileEntry('src/control/kv-node-main.ts');
});
t.teardown(async () => {
  await compiled?.remove();
});

interface Workload {
  stop(): Promise<void>;
  readonly counts: { ok: number; fail: number; unknown: number; unexpected: string[] };
}

/** Clients run until stopped; each operation is recorded around the call. */
function runWorkload(sessions: readonly KvSession[], recorder: HistoryRecorder, random: SeededRandom): Workload {
  let running = true;
  const counts = { ok: 0, fail: 0, unknown: 0, unexpected: [] as string[] };
  const loops = sessions.map(async (session, client) => {
    const clientRandom = random.fork();
    let n = 0;
    const seen = new Map<string, string | null>();
    while (running) {
      const key = `k${clientRandom.int(keyCount)}`;
      const choice = clientRandom.int(100);
      const value = `c${client}-${n++}`;
      const settle = (handle: number, error: unknown): void => {
        if (error instanceof KvClientError && error.outcome === 'not-applied') {
          recorder.fail(handle);
          counts.fail++;
          return;
        }
        if (!(error instanceof KvClientError) && counts.unexpected.length < 5) counts.unexpected.push(String(error));
        recorder.unknown(handle);
        counts.unknown++;
      };
      if (choice < 40) {
        const handle = recorder.invoke(client, { op: 'read', key });
        try {
          const got = await session.get(key);
          recorder.completeRead(handle, got);
          seen.set(key, got);
          counts.ok++;
        } catch (error) {
          settle(handle, error);
        }
      } else if (choice < 75) {
        const handle = recorder.invoke(client, { op: 'write', key, value });
        try {
          await session.put(key, value);
          recorder.completeWrite(handle);
          seen.set(key, value);
          counts.ok++;
        } catch (error) {
          settle(handle, error);
        }
      } else {
        // Compare with what this client last saw (often current, sometimes stale) or absent.
        const from = clientRandom.int(4) === 0 ? null : (seen.get(key) ?? null);
        const handle = recorder.invoke(client, { op: 'cas', key, from, to: value });
        try {
          const swapped = await session.cas(key, from, value);
          recorder.completeCas(handle, swapped);
          if (swapped) seen.set(key, value);
          counts.ok++;
        } catch (error) {
          settle(handle, error);
        }
      }
    }
  });
  return {
    counts,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function clusterScenario(t: Test, size: number): Promise<void> {
  if (compiled === undefined) throw new Error('the node was not compiled');
  const random = new SeededRandom(seed * 100 + size);
  const cluster = await KvCluster.start(t, { size, script: compiled.script, tickMs: 50, snapshotEntries: 200, compactionLagEntries: 20 });
  const client = new KvClient({ endpoints: cluster.endpoints(), attemptTimeoutMs: 300, operationTimeoutMs: 700, readFrom: 'any' });
  t.teardown(() => client.close());
  const firstLeader = await cluster.leader(client);
  t.ok(firstLeader > 0, `node ${firstLeader} leads the new cluster`);
  const sessions: KvSession[] = [];
  for (let i = 0; i < clientCount; i++) sessions.push(await client.openSession());
  const recorder = new HistoryRecorder({ clockNs: () => process.hrtime.bigint() });
  const workload = runWorkload(sessions, recorder, random.fork());
  const terms: number[] = [];
  let isolated = 0;
  try {
    await sleep(1500);
    for (let round = 1; round <= 3; round++) {
      const leader = await cluster.leader(client);
      const status = (await cluster.statuses(client)).find((s) => s.nodeId === leader);
      terms.push(status?.term ?? 0);
      await cluster.kill(leader);
      t.comment(`round ${round}: killed leader ${leader} (term ${status?.term ?? '?'}) with SIGKILL`);
      const next = await cluster.leader(client, 15_000, leader);
      t.comment(`round ${round}: node ${next} took over`);
      await sleep(800 + random.int(700));
      await cluster.startNode(leader);
      await sleep(1200);
    }
    const leader = await cluster.leader(client);
    const follower = cluster.ids.find((id) => id !== leader) as number;
    isolated = follower;
    cluster.isolate(follower);
    t.comment(`isolated follower ${follower} from leader ${leader}`);
    await sleep(3000);
    cluster.heal();
    t.comment(`healed follower ${follower}`);
    await sleep(2000);
    // A deposed leader must not serve reads or acknowledge writes while it is cut off.
    const cutOff = await cluster.leader(client);
    cluster.isolate(cutOff);
    t.comment(`isolated leader ${cutOff}`);
    await sleep(3000);
    cluster.heal();
    t.comment(`healed node ${cutOff}`);
    await sleep(1500);
    const finalLeader = await cluster.leader(client);
    const final = (await cluster.statuses(client)).find((s) => s.nodeId === finalLeader);
    terms.push(final?.term ?? 0);
  } finally {
    await workload.stop();
  }
  // Every key read once more after the faults, so a lost acknowledged write cannot hide.
  const finalReader = await client.openSession();
  for (let k = 0; k < keyCount; k++) {
    const key = `k${k}`;
    const handle = recorder.invoke(clientCount, { op: 'read', key });
    try {
      recorder.completeRead(handle, await finalReader.get(key));
    } catch {
      recorder.unknown(handle);
    }
  }
  const history = recorder.operations();
  const directory = process.env['CAIRN_HISTORY_DIR'];
  if (directory !== undefined && directory !== '') await writeHistoryFile(join(directory, `kv-cluster-${size}-nodes.jsonl`), history);
  const { counts } = workload;
  t.comment(`${history.length} operations: ${counts.ok} ok, ${counts.fail} failed, ${counts.unknown} unknown; terms ${terms.join(' → ')}`);
  t.same(counts.unexpected, [], 'clients saw only coded errors');
  t.ok(counts.ok > 300, `the cluster made progress through the faults (${counts.ok} operations completed)`);
  t.ok((terms[terms.length - 1] ?? 0) > (terms[0] ?? 0), 'leadership changed hands');
  t.ok(cluster.logged(isolated, /installing a snapshot from the leader/), `the isolated follower ${isolated} caught up through a snapshot sent over TCP`);
  const verdict = checkHistory(history);
  if (verdict.verdict !== 'linearizable') t.comment(formatHistoryVerdict(verdict));
  t.equal(verdict.verdict, 'linearizable', `the history of ${history.length} operations is linearizable`);
  // After healing, every node converges on the same state.
  await cluster.leader(client);
  let statuses = await cluster.statuses(client);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && (statuses.length < size || new Set(statuses.map((s) => s.applied)).size > 1)) {
    await sleep(100);
    statuses = await cluster.statuses(client);
  }
  t.equal(statuses.length, size, 'every node answers');
  t.equal(new Set(statuses.map((s) => s.applied)).size, 1, `every node applied the same index (${statuses.map((s) => `${s.nodeId}:${s.applied}`).join(' ')})`);
}

void t.test('a 3-node cluster stays linearizable while its leader is killed and restarted and nodes are isolated', async (t) => {
  await clusterScenario(t, 3);
});

void t.test('a 5-node cluster stays linearizable while its leader is killed and restarted and nodes are isolated', async (t) => {
  await clusterScenario(t, 5);
});
