// Goal: on random histories the checker's verdict is exactly the definition's: every history
// produced by a real sequential execution is accepted, and after one result is corrupted the
// checker says illegal exactly when an exhaustive search over all orders does.
// Method: seeded histories from helpers/histories.ts (concurrent windows, unknown and failed
// operations, one to three keys). Tiny ones (≤ 7 operations) are cross-checked both ways against
// the brute-force checker; larger ones have no oracle, so every "linearizable" verdict's witness
// order is validated literally, and the detection rate of corrupted results is reported.
import t from 'tap';
import { checkHistory } from '../../src/check/check-history';
import type { HistoryVerdict } from '../../src/check/check-history';
import type { HistoryOperation } from '../../src/check/history';
import { registerModel, toRegisterOperation, ValueTable } from '../../src/check/kv-model';
import type { RegisterOperation } from '../../src/check/kv-model';
import { searchLinearization } from '../../src/check/linearizability';
import type { TimedOperation } from '../../src/check/linearizability';
import { SeededRandom } from '../../src/util/random';
import { bruteForceLinearizable, generateHistory, isLinearization, mutateResult } from './helpers/histories';

const values = ['a', 'b', 'c'];

/** Whether every key's witness is a linearization of that key's operations. */
function witnessesHold(history: readonly HistoryOperation[], verdict: HistoryVerdict): boolean {
  return verdict.keys.every((key) => key.verdict !== 'linearizable' || isLinearization(history.filter((operation) => operation.key === key.key), key.linearization));
}

/** The search alone on one key, without check-history's pre-check for values nobody wrote. */
function searchOnly(history: readonly HistoryOperation[]): string {
  const table = new ValueTable();
  const timed: Array<TimedOperation<RegisterOperation>> = [];
  for (const operation of history) {
    const input = toRegisterOperation(operation, table);
    if (input !== undefined) timed.push({ operation: input, callNs: operation.call, returnNs: operation.status === 'unknown' ? Infinity : operation.return });
  }
  return searchLinearization(registerModel, timed, { stepsMax: 1_000_000 }).verdict;
}

t.test('tiny histories: the checker agrees with brute force, before and after corruption', async (t) => {
  let disagreements = 0;
  let witnessFailures = 0;
  let corruptedIllegal = 0;
  let corruptedTotal = 0;
  let foundBySearch = 0;
  const histories = 6000;
  for (let seed = 1; seed <= histories; seed++) {
    const random = new SeededRandom(seed);
    const history = generateHistory(random, {
      clients: 2 + random.int(3),
      operations: 3 + random.int(5),
      keys: random.int(3) === 0 ? ['x', 'y'] : ['x'],
      values: values.slice(0, 1 + random.int(3)),
      unknownRate: 0.15,
      failRate: 0.1,
      durationNsMax: 5 + random.int(40),
    });
    const original = checkHistory(history);
    if (original.verdict !== 'linearizable' || !bruteForceLinearizable(history)) {
      t.fail(`seed ${seed}: a history from a real execution is linearizable`, { history });
      continue;
    }
    if (!witnessesHold(history, original)) witnessFailures += 1;

    const corrupted = mutateResult(random, history, values);
    if (corrupted === undefined) continue;
    corruptedTotal += 1;
    const verdict = checkHistory(corrupted);
    const expected = bruteForceLinearizable(corrupted) ? 'linearizable' : 'illegal';
    if (expected === 'illegal') corruptedIllegal += 1;
    if (verdict.verdict !== expected) {
      disagreements += 1;
      t.fail(`seed ${seed}: checker says ${verdict.verdict}, brute force ${expected}`, { corrupted });
    }
    if (verdict.keys.length === 1 && searchOnly(corrupted) !== expected) {
      disagreements += 1;
      t.fail(`seed ${seed}: the search alone disagrees with brute force (${expected})`, { corrupted });
    }
    if (verdict.keys.some((key) => key.verdict === 'illegal' && key.violation.kind === 'no-linearization')) foundBySearch += 1;
    if (!witnessesHold(corrupted, verdict)) witnessFailures += 1;
  }
  t.equal(disagreements, 0, 'no disagreement with brute force');
  t.equal(witnessFailures, 0, 'every witness is a linearization');
  t.ok(corruptedTotal > histories / 2, `most histories had a result to corrupt (${corruptedTotal})`);
  t.ok(corruptedIllegal > corruptedTotal / 4, `corruption made ${corruptedIllegal} of ${corruptedTotal} illegal: both verdicts are exercised`);
  t.ok(foundBySearch > corruptedIllegal / 10, `the search, not only the pre-check, found ${foundBySearch} violations`);
  t.comment(`${corruptedTotal} corrupted tiny histories, ${corruptedIllegal} illegal by brute force (${foundBySearch} found by search), all agreed`);
});

t.test('larger histories from real executions are linearizable, with valid witnesses', async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const random = new SeededRandom(1000 + seed);
    const history = generateHistory(random, {
      clients: 2 + random.int(7),
      operations: 200 + random.int(200),
      keys: ['x', 'y', 'z'].slice(0, 1 + random.int(3)),
      values,
      unknownRate: 0.05,
      failRate: 0.05,
      durationNsMax: 50,
    });
    const verdict = checkHistory(history);
    t.equal(verdict.verdict, 'linearizable', `seed ${1000 + seed}`);
    t.ok(witnessesHold(history, verdict), `seed ${1000 + seed}: witnesses hold`);
  }
});

t.test('larger histories with one corrupted read are usually caught, and never wrongly accepted', async (t) => {
  let caught = 0;
  let corruptedTotal = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const random = new SeededRandom(2000 + seed);
    const history = generateHistory(random, {
      clients: 2 + random.int(5),
      operations: 100 + random.int(100),
      keys: ['x'],
      // Unique-ish values make a corrupted read more often impossible, as in real workloads.
      values: Array.from({ length: 20 }, (_, i) => `v${i}`),
      unknownRate: 0.03,
      failRate: 0.03,
      durationNsMax: 40,
    });
    const corrupted = mutateResult(random, history, ['v0', 'v1', 'v2']);
    if (corrupted === undefined) continue;
    corruptedTotal += 1;
    const verdict = checkHistory(corrupted);
    t.not(verdict.verdict, 'unknown', `seed ${2000 + seed} decided within the default budget`);
    if (verdict.verdict === 'illegal') caught += 1;
    else t.ok(witnessesHold(corrupted, verdict), `seed ${2000 + seed}: accepted only with a valid witness`);
  }
  t.ok(caught >= corruptedTotal * 0.6, `caught ${caught} of ${corruptedTotal}`);
  t.comment(`corrupted larger histories caught: ${caught} of ${corruptedTotal}`);
});
