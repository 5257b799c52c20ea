// Goal: over 1,000 seeds of short swarm runs, Raft with the KV state machine keeps every safety
// invariant after every step, recovers once faults stop (liveness), and the client history is
// linearizable; and the sweep really exercises what it claims to (crashes with lost and torn
// writes, symmetric and asymmetric partitions, membership changes including removing the leader,
// leader transfers, compaction with snapshot installs, ambiguous client outcomes, follower reads).
// Method: runSeed for seeds 1..1000 with a short faulty phase; each failure is reported with its
// seed and replay command; coverage counters are summed and checked against floors.
// SIM_SEEDS=n / SIM_FIRST_SEED=s / SIM_TICKS=t sweep other seeds or longer runs
// (or use `npm run sim -- --seeds n`).
import t from 'tap';
import { performance } from 'node:perf_hooks';
import { formatFailure, runSeed } from '../../src/sim/run-seed';
import type { SimStats } from '../../src/sim/simulation';

const count = Number(process.env.SIM_SEEDS ?? 1000);
const first = Number(process.env.SIM_FIRST_SEED ?? 1);
const ticksMax = Number(process.env.SIM_TICKS ?? 200);

void t.test(`${count} seeds of ${ticksMax}-tick swarm runs keep every invariant and stay linearizable`, async (t) => {
  const totals = new Map<keyof SimStats, { seeds: number; total: number }>();
  const failures: string[] = [];
  let events = 0;
  let simulatedNs = 0;
  const startMs = performance.now();
  for (let seed = first; seed < first + count; seed++) {
    const outcome = runSeed(seed, { ticksMax }, { traceLines: 30 });
    if (!outcome.ok) failures.push(formatFailure(outcome));
    events += outcome.events;
    simulatedNs += outcome.simulatedNs;
    for (const [key, value] of Object.entries(outcome.stats) as Array<[keyof SimStats, number]>) {
      const sum = totals.get(key) ?? { seeds: 0, total: 0 };
      sum.total += value;
      if (value > 0) sum.seeds++;
      totals.set(key, sum);
    }
  }
  const seconds = (performance.now() - startMs) / 1000;
  for (const failure of failures.slice(0, 5)) t.fail(failure);
  t.equal(failures.length, 0, `${failures.length} of ${count} seeds failed`);
  t.comment(`${count} seeds in ${seconds.toFixed(1)} s: ${(count / seconds).toFixed(1)} seeds/s, ${(events / seconds / 1000).toFixed(0)} k events/s, ` +
    `${(simulatedNs / 1e9).toFixed(0)} s simulated`);
  t.comment([...totals].map(([key, sum]) => `${key} ${sum.total} in ${sum.seeds} seeds`).join(', '));

  if (count < 1000) return; // the floors below are for the full default sweep
  // Coverage floors: if a refactoring silently stops exercising a fault, this fails.
  const floors: Array<[keyof SimStats, number]> = [
    ['crashes', 600], ['writesLost', 300], ['tornTails', 150], ['writesSurvivedUnsynced', 50], ['partitions', 400],
    ['asymmetricPartitions', 150], ['stalls', 100], ['confChangesProposed', 300], ['confChangesCommitted', 250], ['jointChanges', 50], ['leaderRemovals', 50],
    ['leadersRemovedWhileLeading', 30],
    ['transfers', 200], ['compactions', 500], ['snapshotsInstalled', 200], ['operationsUnknown', 300], ['readsServed', 900],
    ['messagesDropped', 600], ['messagesDuplicated', 300], ['unreachableReports', 400], ['leadersElected', 1000],
  ];
  for (const [key, seedsMin] of floors) {
    const seeds = totals.get(key)?.seeds ?? 0;
    t.ok(seeds >= seedsMin, `${key} happened in ${seeds} seeds (floor ${seedsMin})`);
  }
});
