// Goal: the checker accepts exactly the linearizable key-value histories among hand-written ones
// that each pin one rule — real-time order, lost and stale values, cas outcomes, unknown outcomes
// taking effect late or never, failed operations never taking effect — and explains a violation
// in words that name the key, the longest linearizable prefix and the operations it could not place.
// Method: tiny histories with a known verdict (each also confirmed by the brute-force checker, so a
// wrong expectation in this file fails too), plus the text of a few explanations.
import t from 'tap';
import type { Test } from 'tap';
import { checkHistory, checkKey, describeOperation, formatCount, formatHistoryVerdict, formatKeyVerdict } from '../../src/check/check-history';
import type { KeyVerdict, Violation } from '../../src/check/check-history';
import type { HistoryOperation } from '../../src/check/history';
import { bruteForceLinearizable, cas, isLinearization, read, remove, write } from './helpers/histories';

function verdictOf(t: Test, history: HistoryOperation[]): KeyVerdict {
  const result = checkHistory(history);
  t.equal(result.keys.length, 1, 'one key');
  const verdict = result.keys[0]!;
  t.equal(verdict.verdict === 'linearizable', bruteForceLinearizable(history), 'the brute-force checker agrees');
  if (verdict.verdict === 'linearizable') t.ok(isLinearization(history, verdict.linearization), 'the witness is a linearization');
  return verdict;
}

function expectLinearizable(t: Test, history: HistoryOperation[]): void {
  const verdict = verdictOf(t, history);
  t.equal(verdict.verdict, 'linearizable', formatKeyVerdict(verdict));
}

function expectIllegal(t: Test, history: HistoryOperation[]): KeyVerdict {
  const verdict = verdictOf(t, history);
  t.equal(verdict.verdict, 'illegal', formatKeyVerdict(verdict));
  return verdict;
}

t.test('an empty history and a sequential one are linearizable', async (t) => {
  t.equal(checkHistory([]).verdict, 'linearizable');
  expectLinearizable(t, [read(1, null, 0, 1), write(1, 'a', 2, 3), read(2, 'a', 4, 5), remove(1, 6, 7), read(2, null, 8, 9)]);
});

t.test('a read after a completed write must not see the old value (stale read)', async (t) => {
  expectIllegal(t, [write(1, 'a', 0, 10), read(2, null, 20, 30)]);
  expectIllegal(t, [write(1, 'a', 0, 10), write(1, 'b', 20, 30), read(2, 'a', 40, 50)]);
});

t.test('a read overlapping a write may see either value, but never the old one after the new', async (t) => {
  expectLinearizable(t, [write(1, 'a', 0, 100), read(2, null, 10, 20), read(2, 'a', 30, 40), read(3, 'a', 50, 60)]);
  expectIllegal(t, [write(1, 'a', 0, 100), read(2, 'a', 10, 20), read(3, null, 30, 40)]);
});

t.test('a write acknowledged and then overwritten by an earlier value is a lost write', async (t) => {
  expectIllegal(t, [write(1, 'a', 0, 10), write(2, 'b', 20, 30), read(3, 'a', 40, 50)]);
  // Two concurrent writes: the later read shows which one won, and it must stay the winner.
  expectLinearizable(t, [write(1, 'a', 0, 50), write(2, 'b', 0, 50), read(3, 'a', 60, 70), read(3, 'a', 80, 90)]);
  expectIllegal(t, [write(1, 'a', 0, 50), write(2, 'b', 0, 50), read(3, 'a', 60, 70), read(3, 'b', 80, 90)]);
});

t.test('concurrent writes are linearizable only in the one order a later read allows', async (t) => {
  // write a spans write b entirely; the read starts after b returned but before a did.
  const history = [write(1, 'a', 0, 100), write(2, 'b', 10, 90), read(3, 'a', 95, 120)];
  const verdict = verdictOf(t, history);
  t.equal(verdict.verdict, 'linearizable');
  if (verdict.verdict === 'linearizable') t.same(verdict.linearization, [history[1], history[0], history[2]], 'b, then a, then the read');
  expectIllegal(t, [...history, read(3, 'b', 130, 140)]);
});

t.test('two concurrent cas from the same value cannot both swap', async (t) => {
  expectIllegal(t, [write(1, 'a', 0, 10), cas(2, 'a', 'b', true, 20, 40), cas(3, 'a', 'c', true, 20, 40)]);
  expectLinearizable(t, [write(1, 'a', 0, 10), cas(2, 'a', 'b', true, 20, 40), cas(3, 'a', 'c', false, 20, 40), read(1, 'b', 50, 60)]);
  expectIllegal(t, [write(1, 'a', 0, 10), cas(2, 'a', 'b', true, 20, 40), cas(3, 'a', 'c', false, 20, 40), read(1, 'c', 50, 60)]);
});

t.test('a cas that reports no swap although the value equalled "from" is refused', async (t) => {
  expectIllegal(t, [write(1, 'a', 0, 10), cas(2, 'a', 'b', false, 20, 30)]);
  expectLinearizable(t, [write(1, 'a', 0, 10), cas(2, 'x', 'b', false, 20, 30), read(2, 'a', 40, 50)]);
  // A swap that a later read does not show.
  expectIllegal(t, [write(1, 'a', 0, 10), cas(2, 'a', 'b', true, 20, 30), read(3, 'a', 40, 50)]);
  // cas from absent creates the key.
  expectLinearizable(t, [cas(1, null, 'a', true, 0, 10), read(2, 'a', 20, 30), cas(2, null, 'b', false, 40, 50)]);
});

t.test('an unknown write may take effect late, long after its client gave up', async (t) => {
  expectLinearizable(t, [write(1, 'a', 0, 10, 'unknown'), read(2, null, 20, 30), read(2, 'a', 40, 50), read(3, 'a', 60, 70)]);
  // Late effect is still one effect: once seen, it cannot be undone without another write.
  expectIllegal(t, [write(1, 'a', 0, 10, 'unknown'), read(2, 'a', 20, 30), read(2, null, 40, 50)]);
});

t.test('an unknown write may never take effect, but it cannot take effect before its call', async (t) => {
  expectLinearizable(t, [write(1, 'a', 0, 10, 'unknown'), read(2, null, 20, 30), read(3, null, 1000, 1010)]);
  expectIllegal(t, [read(2, 'a', 0, 10), write(1, 'a', 20, 30, 'unknown')]);
  // Unknown operations only ever help: many of them pending do not make a legal history illegal.
  expectLinearizable(t, [write(1, 'a', 0, 10), write(2, 'x', 5, 6, 'unknown'), write(3, 'y', 7, 8, 'unknown'), read(4, 'a', 20, 30), read(4, 'y', 40, 50)]);
});

t.test('an unknown cas takes effect only where it would swap', async (t) => {
  expectLinearizable(t, [write(1, 'a', 0, 10), cas(2, 'a', 'b', false, 20, 30, 'unknown'), read(3, 'a', 40, 50), read(3, 'b', 60, 70)]);
  expectIllegal(t, [write(1, 'c', 0, 10), cas(2, 'a', 'b', false, 20, 30, 'unknown'), read(3, 'b', 40, 50)]);
});

t.test('a failed operation never takes effect, and an unknown read constrains nothing', async (t) => {
  expectIllegal(t, [write(1, 'a', 0, 10, 'fail'), read(2, 'a', 20, 30)]);
  expectLinearizable(t, [write(1, 'a', 0, 10, 'fail'), read(2, null, 20, 30), read(2, 'zz', 40, 50, 'unknown')]);
  const verdict = checkHistory([write(1, 'a', 0, 10, 'fail'), read(2, null, 20, 30), read(2, 'zz', 40, 50, 'unknown')]).keys[0]!;
  t.equal(verdict.operations, 1);
  t.equal(verdict.dropped, 2);
});

t.test('a read of a value no write produced is refused and explained at once', async (t) => {
  const verdict = expectIllegal(t, [write(1, 'a', 0, 10), read(2, 'b', 20, 30)]);
  t.equal(verdict.steps, 0, 'found without searching');
  t.match(formatKeyVerdict(verdict), /client 2 read → "b" \[call 20, return 30\] returned "b", but no write of that value was called before it returned/);
  const swap = expectIllegal(t, [cas(1, 'q', 'r', true, 0, 10)]);
  t.match(formatKeyVerdict(swap), /swapped from "q"/);
});

t.test('a stale read of a value whose only write was overwritten is refused without a search', async (t) => {
  const verdict = expectIllegal(t, [write(1, 'a', 0, 10), write(2, 'b', 20, 30), read(3, 'a', 40, 50)]);
  t.equal(verdict.steps, 0, 'found without searching');
  t.match(
    formatKeyVerdict(verdict),
    'client 3 read → "a" [call 40, return 50] returned "a", but its only write, client 1 write "a" [call 0, return 10], was overwritten by ' +
      'client 2 write "b" [call 20, return 30], which was called after that write returned and returned before the read was called',
  );
  // With a second write of "a" the shortcut does not apply; the search still finds the violation.
  const searched = expectIllegal(t, [write(1, 'a', 0, 10), write(2, 'b', 20, 30), read(3, 'a', 40, 50), write(4, 'a', 0, 5)]);
  t.ok(searched.steps > 0);
});

/** The search's explanation of an illegal verdict; fails the test when there is none. */
function searchViolation(verdict: KeyVerdict): Extract<Violation, { kind: 'no-linearization' }> {
  if (verdict.verdict === 'illegal' && verdict.violation.kind === 'no-linearization') return verdict.violation;
  throw new Error(`expected a violation found by search, got ${formatKeyVerdict(verdict)}`);
}

t.test('a violation is explained with the key, the longest prefix and what could not be placed', async (t) => {
  // "a" is written twice (so no shortcut applies), then overwritten by "b" before the last read.
  const history = [write(1, 'a', 0, 10), write(2, 'a', 0, 10), write(3, 'b', 20, 30), read(4, 'b', 35, 38), read(4, 'a', 40, 50)];
  const result = checkHistory(history.map((operation) => ({ ...operation, key: 'vol/7' })));
  t.equal(result.verdict, 'illegal');
  const violation = searchViolation(result.keys[0]!);
  t.equal(violation.prefix.length, 4);
  t.equal(violation.valueAfterPrefix, 'b');
  t.equal(violation.blocking.call, 40);
  const text = formatHistoryVerdict(result);
  t.match(text, /^key "vol\/7": NOT LINEARIZABLE \(5 operations, 0 dropped, \d+ steps\)/);
  t.match(text, /longest linearizable prefix has 4 of 5 operations and leaves the value "b"/);
  t.match(text, /1\. client 1 write "a" \[call 0, return 10\]\n {4}2\. client 2 write "a" \[call 0, return 10\]\n {4}3\. client 3 write "b" \[call 20, return 30\]\n {4}4\. client 4 read → "b"/);
  t.match(text, /client 4 read → "a" \[call 40, return 50\]: it returned "a" but the value was "b"/);
});

t.test('a long prefix is shortened to its last operations in the text, but kept whole in the verdict', async (t) => {
  const history: HistoryOperation[] = Array.from({ length: 30 }, (_, i) => write(1, `v${i % 2}`, i * 10, i * 10 + 5));
  history.push(read(2, 'v0', 400, 410));
  const verdict = checkHistory(history).keys[0]!;
  t.equal(searchViolation(verdict).prefix.length, 30);
  const text = formatKeyVerdict(verdict);
  t.match(text, /… 10 earlier operations\n {4}11\. client 1 write "v0" \[call 100, return 105\]/);
  t.notMatch(text, / {4}10\. client/);
});

t.test('every operation that could not be placed after the prefix is listed with its reason', async (t) => {
  // Three concurrent writes; the first read pins "a" as the last of them, the second read is stale.
  const history = [write(1, 'a', 0, 10), write(2, 'b', 0, 10), write(3, 'c', 0, 10), read(4, 'a', 20, 30), cas(5, 'c', 'd', true, 35, 60), read(4, 'c', 40, 50)];
  const verdict = expectIllegal(t, history);
  t.same(searchViolation(verdict).unplaced.map(({ operation }) => operation), [history[4], history[5]]);
  const text = formatKeyVerdict(verdict);
  t.match(text, /value after it: "a"; could not be placed next:/);
  t.match(text, /client 5 cas "c" → "d" \(swapped\) \[call 35, return 60\]: it needs the value "c" to swap but the value was "a"/);
  t.match(text, /client 4 read → "c" \[call 40, return 50\]: it returned "c" but the value was "a"/);
});

t.test('keys are checked independently and reported in sorted order', async (t) => {
  const history = [write(1, 'a', 0, 10, 'ok', 'y'), read(2, null, 20, 30, 'ok', 'x'), write(1, 'b', 0, 10, 'ok', 'x'), read(2, 'a', 20, 30, 'ok', 'y')];
  const result = checkHistory(history);
  t.same(result.keys.map((k) => [k.key, k.verdict]), [['x', 'illegal'], ['y', 'linearizable']]);
  t.equal(result.verdict, 'illegal');
});

t.test('a search that runs out of steps says unknown, never illegal or linearizable', async (t) => {
  const history: HistoryOperation[] = [];
  for (let client = 0; client < 10; client++) history.push(write(client, `v${client}`, 0, 100));
  history.push(read(20, 'v3', 200, 210), read(20, 'v5', 220, 230));
  const undecided = checkHistory(history, { stepsMaxPerKey: 5 });
  t.equal(undecided.verdict, 'unknown');
  const key = undecided.keys[0]!;
  t.equal(key.verdict, 'unknown');
  t.ok(key.steps >= 5 && key.steps < 40, 'stops within one configuration of the budget');
  t.match(formatKeyVerdict(key), /UNKNOWN — search budget of 5 steps exhausted/);
  t.equal(checkHistory(history).verdict, 'illegal', 'with the default budget the violation is proven');
  t.throws(() => checkHistory(history, { stepsMaxPerKey: 0 }), /stepsMaxPerKey/);
});

t.test('operations are described with client, result and times', async (t) => {
  t.equal(describeOperation(read(3, null, 1, 2)), 'client 3 read → absent [call 1, return 2]');
  t.equal(describeOperation(read(3, 'x', 1, 2, 'unknown')), 'client 3 read → ? [call 1, outcome unknown]');
  t.equal(describeOperation(cas(1, 'a', null, true, 1, 2)), 'client 1 cas "a" → absent (swapped) [call 1, return 2]');
  t.equal(describeOperation(cas(1, 'a', 'b', false, 1, 2, 'unknown')), 'client 1 cas "a" → "b" [call 1, outcome unknown]');
  t.equal(describeOperation(remove(2, 5, 6, 'fail')), 'client 2 delete [call 5, return 6] (failed)');
  t.equal(describeOperation(write(2, 'x'.repeat(100), 5, 6)), `client 2 write "${'x'.repeat(56)}…" [call 5, return 6]`);
});

t.test('checkKey refuses an operation of another key', async (t) => {
  t.throws(() => checkKey('a', [write(1, 'v', 0, 1, 'ok', 'b')], 10), /belongs to the key/);
});

t.test('counts read as words: one key, two keys', async (t) => {
  t.equal(formatCount(1, 'key'), '1 key');
  t.equal(formatCount(0, 'key'), '0 keys');
  t.equal(formatCount(12, 'earlier operation'), '12 earlier operations');
});
