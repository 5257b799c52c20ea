// Goal: a crash never leaves a partial batch behind and never loses an acknowledged proposal:
// after SIGKILL at an arbitrary moment, the stored map is exactly the map after entries
// 1..appliedIndex, appliedIndex covers every acknowledged entry, and a restarted log continues at
// appliedIndex + 1 without replaying anything (the next round would diverge if it did).
// Method: a child process (fixtures/crash-child.ts) proposes the deterministic shared workload
// through SingleNodeLog with fsync; the parent kills it with SIGKILL right after a chosen
// acknowledgement (usually while the next batch is being written), reopens the database, and
// compares its snapshot byte for byte with the workload replayed on a fresh ClusterMap. Three
// rounds, each restarting from what the previous crash left.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterMap } from '../../src/meta/cluster-map';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { MapStore } from '../../src/store/map-store';
import { SeededRandom } from '../../src/util/random';
import { workloadCommand } from '../meta/helpers/workload';

const seed = 31;
const childPath = join(__dirname, 'fixtures', 'crash-child.ts');

/** Runs the child until it acknowledged `target` (or more), then kills it; returns the last ack seen. */
async function runAndKill(path: string, target: number, extraDelayMs: number): Promise<{ acked: number; start: number }> {
  const child = spawn(process.execPath, [...process.execArgv, childPath, path, String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let acked = -1;
  let start = -1;
  let buffered = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child did not reach index ${target} (last ack ${acked})`)), 60_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`child exited early (code ${String(code)}, signal ${String(signal)})`));
      });
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          const [word, number] = line.split(' ');
          if (word === 'ready') start = Number(number);
          if (word === 'acked') acked = Number(number);
        }
        if (acked >= target) {
          clearTimeout(timer);
          setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, extraDelayMs);
        }
      });
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
  return { acked, start };
}

void t.test('SIGKILL during proposals leaves exactly the applied prefix, and a restart continues from it', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-crash-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const path = join(directory, 'db');
  const random = new SeededRandom(seed);
  const expected = ClusterMap.empty();
  let previousApplied = 0;
  for (let round = 1; round <= 3; round++) {
    const target = previousApplied + 40 + random.int(120);
    const { acked, start } = await runAndKill(path, target, random.int(4));
    t.equal(start, previousApplied, `round ${round}: the restarted log starts after the stored index`);
    const kv = await LevelKvStore.open(path);
    try {
      const store = await MapStore.open(kv);
      const applied = store.appliedIndex;
      t.ok(applied >= acked, `round ${round}: every acknowledged entry is stored (acked ${acked}, stored ${applied})`);
      for (let index = expected.appliedIndex + 1; index <= applied; index++) expected.apply(index, workloadCommand(seed, index));
      t.ok(Buffer.from(store.map.snapshot()).equals(Buffer.from(expected.snapshot())), `round ${round}: the stored map is the map after entries 1..${applied}`);
      previousApplied = applied;
    } finally {
      await kv.close();
    }
  }
  t.ok(expected.listVolumes().length > 0, 'the workload created volumes along the way');
});
