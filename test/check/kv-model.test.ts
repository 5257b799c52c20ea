// Goal: the register model accepts exactly the outputs a single-copy key-value store can give,
// drops exactly the operations that cannot matter, and says in words why it refuses one.
// Method: tables of (state, operation) → next state or refusal, per status; interning round trips.
import t from 'tap';
import { absentValue, explainRefusal, formatValue, registerModel, toRegisterOperation, ValueTable } from '../../src/check/kv-model';
import type { RegisterOperation } from '../../src/check/kv-model';
import { cas, read, remove, write } from './helpers/histories';

t.test('values intern to dense ids, absent to 0, and come back unchanged', async (t) => {
  const table = new ValueTable();
  t.equal(table.intern(null), absentValue);
  const a = table.intern('a');
  const b = table.intern('b');
  t.equal(table.intern('a'), a);
  t.not(a, b);
  t.same([a, b], [1, 2]);
  t.equal(table.valueOf(a), 'a');
  t.equal(table.valueOf(absentValue), null);
  t.equal(table.intern(''), 3, 'the empty string is a value, not absent');
  t.throws(() => table.valueOf(9), /was interned/);
});

t.test('the register steps as a single-copy store would', async (t) => {
  const cases: Array<[string, number, RegisterOperation, number | undefined]> = [
    ['read of the current value', 1, { kind: 'read', observed: 1 }, 1],
    ['read of another value', 1, { kind: 'read', observed: 2 }, undefined],
    ['read of absent while absent', 0, { kind: 'read', observed: 0 }, 0],
    ['write', 1, { kind: 'write', value: 2 }, 2],
    ['write of absent (delete)', 1, { kind: 'write', value: 0 }, 0],
    ['cas that swapped, from the current value', 1, { kind: 'cas', from: 1, to: 2, outcome: 'swapped' }, 2],
    ['cas that swapped, from another value', 3, { kind: 'cas', from: 1, to: 2, outcome: 'swapped' }, undefined],
    ['cas that did not swap, value differs from "from"', 3, { kind: 'cas', from: 1, to: 2, outcome: 'unchanged' }, 3],
    ['cas that did not swap although the value was "from"', 1, { kind: 'cas', from: 1, to: 2, outcome: 'unchanged' }, undefined],
    ['unknown cas where it would swap', 1, { kind: 'cas', from: 1, to: 2, outcome: 'unknown' }, 2],
    ['unknown cas where it would not swap', 3, { kind: 'cas', from: 1, to: 2, outcome: 'unknown' }, undefined],
  ];
  for (const [name, state, operation, expected] of cases) t.equal(registerModel.step(state, operation), expected, name);
  t.equal(registerModel.initialState, absentValue);
});

t.test('reads and unswapped cas are read-only; the model declares itself overwriting', async (t) => {
  t.equal(registerModel.isReadOnly?.({ kind: 'read', observed: 1 }), true);
  t.equal(registerModel.isReadOnly?.({ kind: 'cas', from: 1, to: 2, outcome: 'unchanged' }), true);
  t.equal(registerModel.isReadOnly?.({ kind: 'cas', from: 1, to: 2, outcome: 'swapped' }), false);
  t.equal(registerModel.isReadOnly?.({ kind: 'write', value: 2 }), false);
  t.equal(registerModel.overwriting, true);
  t.ok(registerModel.equalStates(3, 3));
  t.notOk(registerModel.equalStates(3, 4));
});

t.test('history operations translate per status; failed operations and unknown reads are dropped', async (t) => {
  const table = new ValueTable();
  t.same(toRegisterOperation(read(1, 'a', 0, 1), table), { kind: 'read', observed: table.intern('a') });
  t.same(toRegisterOperation(read(1, null, 0, 1), table), { kind: 'read', observed: absentValue });
  t.equal(toRegisterOperation(read(1, 'a', 0, 1, 'unknown'), table), undefined);
  t.equal(toRegisterOperation(read(1, 'a', 0, 1, 'fail'), table), undefined);
  t.same(toRegisterOperation(write(1, 'b', 0, 1, 'unknown'), table), { kind: 'write', value: table.intern('b') });
  t.equal(toRegisterOperation(write(1, 'b', 0, 1, 'fail'), table), undefined);
  t.same(toRegisterOperation(remove(1, 0, 1), table), { kind: 'write', value: absentValue });
  t.same(toRegisterOperation(cas(1, 'a', 'b', true, 0, 1), table), { kind: 'cas', from: 1, to: 2, outcome: 'swapped' });
  t.same(toRegisterOperation(cas(1, 'a', 'b', false, 0, 1), table), { kind: 'cas', from: 1, to: 2, outcome: 'unchanged' });
  t.same(toRegisterOperation(cas(1, 'a', 'b', false, 0, 1, 'unknown'), table), { kind: 'cas', from: 1, to: 2, outcome: 'unknown' });
  t.equal(toRegisterOperation(cas(1, 'a', 'b', true, 0, 1, 'fail'), table), undefined);
});

t.test('a refusal is explained in words, and an accepted operation has no explanation', async (t) => {
  t.equal(explainRefusal(read(1, 'a', 0, 1), 'b'), 'it returned "a" but the value was "b"');
  t.equal(explainRefusal(read(1, null, 0, 1), 'b'), 'it returned absent but the value was "b"');
  t.equal(explainRefusal(cas(1, 'a', 'c', true, 0, 1), null), 'it needs the value "a" to swap but the value was absent');
  t.equal(explainRefusal(cas(1, 'a', 'c', false, 0, 1), 'a'), 'it reported no swap but the value was "a", equal to its "from"');
  t.equal(explainRefusal(cas(1, 'a', 'c', false, 0, 1, 'unknown'), 'b'), 'it needs the value "a" to swap but the value was "b"');
  t.equal(explainRefusal(read(1, 'a', 0, 1), 'a'), undefined);
  t.equal(explainRefusal(write(1, 'a', 0, 1), 'b'), undefined);
  t.equal(explainRefusal(read(1, 'a', 0, 1, 'fail'), 'b'), undefined, 'a dropped operation is never refused');
});

t.test('values are quoted for humans, long ones shortened', async (t) => {
  t.equal(formatValue(null), 'absent');
  t.equal(formatValue('a"b'), '"a\\"b"');
  t.equal(formatValue('x'.repeat(200)), `"${'x'.repeat(56)}…"`);
});
