// Goal: a seed replays exactly — the same events in the same order, the same history, the same
// verdict — including a failing seed replayed from the command it printed; and overriding the
// cluster size or run length changes nothing else the seed draws.
// Method: run seeds twice and compare trace fingerprints (a hash of every event), event counts and
// histories; replay a failure through the CLI entry point with the printed arguments.
import t from 'tap';
import { runSimCli } from '../../src/sim/cli';
import { runSeed } from '../../src/sim/run-seed';
import { drawSimOptions } from '../../src/sim/sim-options';

void t.test('running a seed twice gives the same trace, history and summary', async (t) => {
  for (const seed of [3, 17, 4242]) {
    const first = runSeed(seed, { ticksMax: 200 });
    const second = runSeed(seed, { ticksMax: 200 });
    t.ok(first.ok, `seed ${seed} passes`);
    t.equal(second.traceHash, first.traceHash, `seed ${seed}: same fingerprint`);
    t.equal(second.events, first.events);
    t.equal(second.summary, first.summary);
    t.equal(JSON.stringify(second.history), JSON.stringify(first.history));
    t.ok(first.events > 1000, `seed ${seed} did something (${first.events} events)`);
  }
});

void t.test('different seeds and different run lengths give different traces', async (t) => {
  const hashes = new Set([1, 2, 3, 4, 5].map((seed) => runSeed(seed, { ticksMax: 100 }).traceHash));
  t.equal(hashes.size, 5);
  t.not(runSeed(1, { ticksMax: 101 }).traceHash, runSeed(1, { ticksMax: 100 }).traceHash);
});

void t.test('overriding the cluster size keeps everything else the seed draws', async (t) => {
  const drawn = drawSimOptions(99);
  const resized = drawSimOptions(99, { nodeCount: drawn.nodeCount === 7 ? 3 : 7 });
  t.same({ ...resized, nodeCount: 0, tickPeriodsNs: [], initialVoters: 0 }, { ...drawn, nodeCount: 0, tickPeriodsNs: [], initialVoters: 0 });
  t.same(resized.tickPeriodsNs.slice(0, 3), drawn.tickPeriodsNs.slice(0, 3), 'the first nodes keep their drift');
});

void t.test('a failing seed prints a replay command that reproduces the failure exactly', async (t) => {
  // Stale reads (a deliberate bug) fail most seeds; find the first failing one.
  let failing: ReturnType<typeof runSeed> | undefined;
  for (let seed = 1; seed <= 20 && failing === undefined; seed++) {
    const outcome = runSeed(seed, { ticksMax: 150, bugs: { node: 'local-reads' } });
    if (!outcome.ok) failing = outcome;
  }
  if (failing === undefined) {
    t.fail('no seed in 1..20 failed with stale reads');
    return;
  }
  t.match(failing.replay, new RegExp(`^npm run sim -- --seed ${failing.seed} --ticks-max 150 --bug local-reads$`));
  const args = failing.replay.replace(/^npm run sim -- /, '').split(' ');
  let output = '';
  const code = runSimCli(args, (text) => (output += text));
  t.equal(code, 1, 'the replay exits non-zero');
  t.match(output, `FAILED seed ${failing.seed} — replay with: ${failing.replay}`);
  t.match(output, `trace ${failing.traceHash} (${failing.events} events)`, 'the same events, in the same order');
  for (const violation of failing.violations) t.ok(output.includes((violation.split('\n')[0] as string)), 'the same violation');
});
