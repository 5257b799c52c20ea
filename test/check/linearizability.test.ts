// Goal: the generic search is right for models other than the register too — one that is not
// `overwriting` and has no read-only operations takes the unfiltered path for unknown outcomes —
// its results carry usable witnesses and explanations, and it refuses malformed input.
// Method: a counter model (increment, read) with hand-computed verdicts; the register model with
// and without its `overwriting` hint on random tiny histories, which must agree.
import t from 'tap';
import { checkHistory } from '../../src/check/check-history';
import { registerModel, toRegisterOperation, ValueTable } from '../../src/check/kv-model';
import type { RegisterOperation } from '../../src/check/kv-model';
import { searchLinearization, searchStepsLimit } from '../../src/check/linearizability';
import type { SequentialModel, TimedOperation } from '../../src/check/linearizability';
import { SeededRandom } from '../../src/util/random';
import { generateHistory, mutateResult } from './helpers/histories';

type CounterOperation = { kind: 'increment' } | { kind: 'read'; observed: number };

/** A counter: increments add one (not overwriting: the result depends on the state). */
const counterModel: SequentialModel<number, CounterOperation> = {
  initialState: 0,
  step: (state, operation) => (operation.kind === 'increment' ? state + 1 : operation.observed === state ? state : undefined),
  hashState: (state) => state,
  equalStates: (a, b) => a === b,
};

const increment = (callNs: number, returnNs: number): TimedOperation<CounterOperation> => ({ operation: { kind: 'increment' }, callNs, returnNs });
const readCounter = (observed: number, callNs: number, returnNs: number): TimedOperation<CounterOperation> => ({ operation: { kind: 'read', observed }, callNs, returnNs });
const limits = { stepsMax: 100_000 };

t.test('a counter with unknown increments: each may count once, late, or never', async (t) => {
  const history = [increment(0, 10), increment(5, Infinity), increment(6, Infinity), readCounter(1, 20, 30), readCounter(3, 40, 50)];
  const result = searchLinearization(counterModel, history, limits);
  t.equal(result.verdict, 'linearizable');
  if (result.verdict === 'linearizable') t.same(result.order, [0, 3, 1, 2, 4], 'both unknown increments land between the reads');
  t.equal(searchLinearization(counterModel, [...history, readCounter(4, 60, 70)], limits).verdict, 'illegal', 'no third increment exists');
  t.equal(searchLinearization(counterModel, [increment(0, 10), increment(5, Infinity), readCounter(1, 20, 30)], limits).verdict, 'linearizable', 'never is allowed');
  t.equal(searchLinearization(counterModel, [readCounter(1, 0, 10), increment(20, Infinity)], limits).verdict, 'illegal', 'not before its call');
});

t.test('an illegal result names the prefix, its state, the blocking operation and the refused candidates', async (t) => {
  // Two increments in sequence, then a read of 1 that starts after both returned.
  const history = [increment(0, 10), increment(20, 30), readCounter(1, 40, 50), readCounter(2, 45, 60)];
  const result = searchLinearization(counterModel, history, limits);
  if (result.verdict !== 'illegal') throw new Error(`expected illegal, got ${result.verdict}`);
  t.same(result.prefix, [0, 1, 3], 'the read of 2 was placed');
  t.equal(result.stateAfterPrefix, 2);
  t.equal(result.blocking, 2);
  t.same(result.candidates, [2], 'the read of 1 was refused');
  t.ok(result.steps > 0);
});

t.test('an operation starting exactly when another returns counts as concurrent with it', async (t) => {
  // A read of 0 called at the very nanosecond the increment returned may go first.
  t.equal(searchLinearization(counterModel, [increment(0, 10), readCounter(0, 10, 20)], limits).verdict, 'linearizable');
  t.equal(searchLinearization(counterModel, [increment(0, 10), readCounter(0, 11, 20)], limits).verdict, 'illegal');
});

t.test('the budget yields unknown with the depth reached, and bad limits or times are refused', async (t) => {
  const history = Array.from({ length: 12 }, (_, i) => increment(i, 100 + i));
  const undecided = searchLinearization(counterModel, [...history, readCounter(3, 200, 210)], { stepsMax: 20 });
  t.equal(undecided.verdict, 'unknown');
  if (undecided.verdict === 'unknown') {
    t.ok(undecided.steps >= 20 && undecided.steps < 40, 'stops within one configuration of the budget');
    t.ok(undecided.deepestPrefixLength > 0);
  }
  t.throws(() => searchLinearization(counterModel, history, { stepsMax: 0 }), /stepsMax must be positive/);
  t.throws(() => searchLinearization(counterModel, history, { stepsMax: 1.5 }), /integer/);
  t.throws(() => searchLinearization(counterModel, history, { stepsMax: searchStepsLimit + 1 }), /at most/);
  t.throws(() => searchLinearization(counterModel, [increment(10, 5)], limits), /returnNs must not be before callNs/);
  t.throws(() => searchLinearization(counterModel, [increment(NaN, 5)], limits), /callNs must be finite/);
  t.same(searchLinearization(counterModel, [], limits), { verdict: 'linearizable', steps: 0, order: [] });
});

t.test('the register model gives the same verdicts with and without its overwriting hint', async (t) => {
  const plainModel: SequentialModel<number, RegisterOperation> = { ...registerModel, overwriting: false };
  let compared = 0;
  for (let seed = 1; seed <= 600; seed++) {
    const random = new SeededRandom(seed);
    const generated = generateHistory(random, { clients: 3, operations: 12, keys: ['k'], values: ['a', 'b'], unknownRate: 0.3, failRate: 0, durationNsMax: 20 });
    const history = random.int(2) === 0 ? generated : mutateResult(random, generated, ['a', 'b']) ?? generated;
    const table = new ValueTable();
    const timed = history.flatMap((operation) => {
      const input = toRegisterOperation(operation, table);
      return input === undefined ? [] : [{ operation: input, callNs: operation.call, returnNs: operation.status === 'unknown' ? Infinity : operation.return }];
    });
    const hinted = searchLinearization(registerModel, timed, { stepsMax: 1_000_000 }).verdict;
    const plain = searchLinearization(plainModel, timed, { stepsMax: 1_000_000 }).verdict;
    if (hinted !== plain) t.fail(`seed ${seed}: ${hinted} with the hint, ${plain} without`, { history });
    compared += 1;
  }
  t.equal(compared, 600);
  t.equal(checkHistory([]).keys.length, 0);
});
