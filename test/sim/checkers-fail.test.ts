// Goal: the simulator's checkers can fail. With a deliberate bug injected, the same swarm runs
// that pass on correct code report a violation of the property the bug breaks, name the seed and
// print a replay command that reproduces it.
// Method: sweep a few dozen short seeds per bug (a disk whose syncs lie, stale local reads, a
// replica that skips commands) and inspect the failure reports; the vote-forgetting disk, whose
// window is too narrow for random runs, is scripted in scenarios.test.ts.
import t from 'tap';
import type { SimOverrides } from '../../src/sim/sim-options';
import { formatFailure, runSeed } from '../../src/sim/run-seed';

const seeds = 30;
const ticksMax = 150;

function sweep(bugs: NonNullable<SimOverrides['bugs']>): { failed: ReturnType<typeof runSeed>[]; passed: number } {
  const failed: ReturnType<typeof runSeed>[] = [];
  let passed = 0;
  for (let seed = 1; seed <= seeds; seed++) {
    const outcome = runSeed(seed, { ticksMax, bugs });
    if (outcome.ok) passed++;
    else failed.push(outcome);
  }
  return { failed, passed };
}

interface BugCase {
  readonly name: string;
  readonly bugs: NonNullable<SimOverrides['bugs']>;
  readonly flag: string;
  /** What the first violation of a failing seed must say. */
  readonly property: RegExp;
  readonly failingMin: number;
}

const cases: BugCase[] = [
  {
    name: 'a disk that acknowledges syncs it never made loses applied entries', bugs: { disk: 'sync-lies' }, flag: 'sync-lies',
    property: /applied entries lost|leader completeness|state machine safety|linearizability/, failingMin: 10,
  },
  {
    name: 'reads answered from local state without ReadIndex are not linearizable', bugs: { node: 'local-reads' }, flag: 'local-reads',
    property: /linearizability: the client history is NOT linearizable/, failingMin: 10,
  },
  {
    name: 'a replica whose apply skips commands diverges from the others', bugs: { node: 'lossy-apply' }, flag: 'lossy-apply',
    property: /replica agreement|linearizability/, failingMin: 10,
  },
];

for (const { name, bugs, flag, property, failingMin } of cases) {
  void t.test(`bug: ${name}`, async (t) => {
    const { failed } = sweep(bugs);
    t.ok(failed.length >= failingMin, `${failed.length} of ${seeds} seeds caught it`);
    for (const outcome of failed) {
      const report = formatFailure(outcome);
      if (!report.startsWith(`FAILED seed ${outcome.seed} — replay with: npm run sim -- --seed ${outcome.seed} --ticks-max ${ticksMax} --bug ${flag}`)) {
        t.fail(`report does not lead with the seed and replay command:\n${report}`);
      }
      if (!property.test(outcome.violations[0] ?? '')) t.fail(`seed ${outcome.seed}: unexpected violation ${outcome.violations[0] ?? ''}`);
    }
    const first = failed[0];
    if (first !== undefined) {
      const again = runSeed(first.seed, { ticksMax, bugs });
      t.same(again.violations, first.violations, `seed ${first.seed} fails the same way when replayed`);
      t.equal(again.traceHash, first.traceHash);
      t.comment(formatFailure(first).split('\n').slice(0, 3).join('\n'));
    }
  });
}
