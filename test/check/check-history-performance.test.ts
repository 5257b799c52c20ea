// Goal: a per-key history of 10,000 operations from 8 concurrent clients is decided by a bounded
// search — linearizable ones, ones with unknown outcomes, and ones with a violation in the middle,
// whether a shortcut or only the search can prove it.
// Method: seeded histories from a real sequential execution (every write stores a new value,
// operations up to 100 ns long issued back to back, so about 8 are in flight at any time; unknown
// operations may take effect up to 400 ns after their call, after the client gave up). Each check
// gets a budget of search steps: the search is deterministic, so its step count is the measure of
// its cost that does not depend on the machine (wall time is reported, never asserted). These
// histories take at most about 2.6 million steps; a search that lost its memoization or its
// candidate order would run out of the budget and answer "unknown".
import t from 'tap';
import type { Test } from 'tap';
import { checkHistory } from '../../src/check/check-history';
import type { HistoryVerdict } from '../../src/check/check-history';
import type { HistoryOperation } from '../../src/check/history';
import { SeededRandom } from '../../src/util/random';
import { generateHistory, isLinearization } from './helpers/histories';

const operations = 10_000;
const clients = 8;
const stepsBudget = 4_000_000;

function history(seed: number, unknownRate: number): HistoryOperation[] {
  return generateHistory(new SeededRandom(seed), { clients, operations, keys: ['k'], values: [], unknownRate, failRate: 0.01, durationNsMax: 100 });
}

function timed(t: Test, label: string, operationsToCheck: readonly HistoryOperation[]): HistoryVerdict {
  const startMs = performance.now();
  const verdict = checkHistory(operationsToCheck, { stepsMaxPerKey: stepsBudget });
  const elapsedSeconds = (performance.now() - startMs) / 1000;
  const steps = verdict.keys.reduce((sum, key) => sum + key.steps, 0);
  t.comment(`${label}: ${verdict.verdict} in ${elapsedSeconds.toFixed(3)} s, ${steps} search steps`);
  t.not(verdict.verdict, 'unknown', `${label} decided within ${stepsBudget} search steps (took ${steps})`);
  return verdict;
}

t.test('10,000 operations from 8 clients: linearizable, with a valid witness', async (t) => {
  for (const [seed, unknownRate] of [[1, 0], [2, 0.01]] as const) {
    const operationsChecked = history(seed, unknownRate);
    const verdict = timed(t, `${operations} operations, ${unknownRate * 100}% unknown outcomes`, operationsChecked);
    t.equal(verdict.verdict, 'linearizable');
    const key = verdict.keys[0]!;
    t.ok(key.verdict === 'linearizable' && isLinearization(operationsChecked, key.linearization), 'the witness is a linearization');
  }
});

t.test('10,000 operations with a stale read in the middle: refused at once', async (t) => {
  const operationsChecked = history(3, 0.01);
  const index = operationsChecked.findIndex((operation, i) => i > operations / 2 && operation.op === 'read' && operation.status === 'ok' && operation.value !== null);
  const stale = operationsChecked[index]!;
  const overwritten = operationsChecked.filter((operation) => operation.op === 'write' && operation.status === 'ok' && operation.return < stale.call - 1000).pop();
  if (stale.op !== 'read' || overwritten?.op !== 'write') throw new Error('the seeded history has a read and an older write');
  const corrupted = [...operationsChecked];
  corrupted[index] = { ...stale, value: overwritten.value };
  const verdict = timed(t, 'stale read', corrupted);
  t.equal(verdict.verdict, 'illegal');
});

t.test('10,000 operations with a violation only the search can prove', async (t) => {
  const operationsChecked = history(42, 0);
  // Give reads in the second half the value of a write that returned close to their call, until
  // one gives a violation that no shortcut finds.
  for (let index = operations / 2; index < operations; index++) {
    const read = operationsChecked[index]!;
    if (read.op !== 'read' || read.status !== 'ok') continue;
    const nearby = operationsChecked.find((operation) => operation.op === 'write' && operation.status === 'ok' && operation.value !== read.value && Math.abs(operation.return - read.call) < 60);
    if (nearby === undefined || nearby.op !== 'write') continue;
    const corrupted = [...operationsChecked];
    corrupted[index] = { ...read, value: nearby.value };
    const quick = checkHistory(corrupted, { stepsMaxPerKey: 1 });
    if (quick.keys[0]!.verdict !== 'unknown') continue; // linearizable at once, or caught by a shortcut
    const verdict = timed(t, `read ${index} corrupted`, corrupted);
    const key = verdict.keys[0]!;
    if (key.verdict === 'linearizable') continue;
    t.equal(key.verdict, 'illegal');
    t.ok(key.verdict === 'illegal' && key.violation.kind === 'no-linearization', 'proven by the search');
    return;
  }
  t.fail('no corruption needed the search');
});
