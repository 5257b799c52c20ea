// Goal: a driver's recorded history is the one the checker needs: call and return from the one
// injected clock (exact for bigint clocks beyond 2^53), each operation resolved exactly once with
// its result, pending operations exported as unknown, and misuse refused loudly.
// Method: a hand-stepped fake clock; the exported JSON lines parsed back and checked.
import t from 'tap';
import { checkHistory } from '../../src/check/check-history';
import { parseHistory } from '../../src/check/history';
import { HistoryRecorder } from '../../src/check/history-recorder';

/** A clock that advances by `stepNs` on every reading, starting at `startNs`. */
function steppingClock(startNs: bigint, stepNs: bigint): () => bigint {
  let now = startNs - stepNs;
  return () => (now += stepNs);
}

t.test('operations record call and return times relative to the first clock reading', async (t) => {
  const recorder = new HistoryRecorder({ clockNs: steppingClock(2n ** 62n, 10n) });
  const write = recorder.invoke(1, { op: 'write', key: 'k', value: 'a' });
  const read = recorder.invoke(2, { op: 'read', key: 'k' });
  t.equal(recorder.pendingCount, 2);
  recorder.completeWrite(write);
  recorder.completeRead(read, 'a');
  t.equal(recorder.pendingCount, 0);
  t.same(recorder.operations(), [
    { client: 1, key: 'k', call: 10, return: 30, status: 'ok', op: 'write', value: 'a' },
    { client: 2, key: 'k', call: 20, return: 40, status: 'ok', op: 'read', value: 'a' },
  ]);
});

t.test('every kind and outcome exports in the file format and reads back', async (t) => {
  const recorder = new HistoryRecorder({ clockNs: steppingClock(1000n, 1n) });
  const handles = [
    recorder.invoke(1, { op: 'cas', key: 'k', from: null, to: 'a' }),
    recorder.invoke(2, { op: 'cas', key: 'k', from: 'x', to: 'b' }),
    recorder.invoke(3, { op: 'delete', key: 'k' }),
    recorder.invoke(4, { op: 'write', key: 'k', value: 'c' }),
    recorder.invoke(5, { op: 'read', key: 'k' }),
    recorder.invoke(6, { op: 'cas', key: 'k', from: 'c', to: 'd' }),
  ];
  recorder.completeCas(handles[0]!, true);
  recorder.completeCas(handles[1]!, false);
  recorder.completeWrite(handles[2]!);
  recorder.fail(handles[3]!);
  recorder.unknown(handles[4]!);
  recorder.unknown(handles[5]!);
  const operations = parseHistory(recorder.toJsonLines());
  t.same(operations, recorder.operations());
  t.same(operations.map((operation) => [operation.op, operation.status]), [['cas', 'ok'], ['cas', 'ok'], ['delete', 'ok'], ['write', 'fail'], ['read', 'unknown'], ['cas', 'unknown']]);
  t.same(operations.map((operation) => (operation.op === 'cas' ? operation.ok : null)), [true, false, null, null, null, false]);
  t.equal(checkHistory(operations).verdict, 'linearizable');
});

t.test('operations still pending at export are unknown and return at the export time', async (t) => {
  const recorder = new HistoryRecorder({ clockNs: steppingClock(0n, 5n) });
  recorder.invoke(1, { op: 'write', key: 'k', value: 'a' });
  const [pending] = recorder.operations();
  t.same(pending, { client: 1, key: 'k', call: 5, return: 10, status: 'unknown', op: 'write', value: 'a' });
  t.equal(recorder.pendingCount, 1, 'exporting resolves nothing');
  t.equal(recorder.operationCount, 1);
});

t.test('a number clock works too', async (t) => {
  let now = 7;
  const recorder = new HistoryRecorder({ clockNs: () => (now += 3) });
  recorder.completeRead(recorder.invoke(0, { op: 'read', key: 'k' }), null);
  t.same(recorder.operations(), [{ client: 0, key: 'k', call: 3, return: 6, status: 'ok', op: 'read', value: null }]);
});

t.test('misuse is refused: double resolution, wrong kind, foreign handle, bad client, bound, clock going back', async (t) => {
  const recorder = new HistoryRecorder({ clockNs: steppingClock(0n, 1n), operationsMax: 3 });
  const read = recorder.invoke(1, { op: 'read', key: 'k' });
  t.throws(() => recorder.completeWrite(read), /operation 0 is a read, not a write or delete/);
  t.throws(() => recorder.completeCas(read, true), /not a cas/);
  recorder.completeRead(read, 'a');
  t.throws(() => recorder.completeRead(read, 'a'), /resolved only once/);
  t.throws(() => recorder.unknown(read), /resolved only once/);
  t.throws(() => recorder.fail(99), /issued by this recorder/);
  t.throws(() => recorder.invoke(-1, { op: 'read', key: 'k' }), /non-negative integer/);
  t.throws(() => recorder.invoke(1, { op: 'read', key: 'k'.repeat(5000) }), /keys are at most/);
  recorder.invoke(1, { op: 'read', key: 'k' });
  recorder.invoke(1, { op: 'read', key: 'k' });
  t.throws(() => recorder.invoke(1, { op: 'read', key: 'k' }), /at most 3 operations/);
  t.throws(() => new HistoryRecorder({ clockNs: () => 0, operationsMax: 0 }), /positive integer/);

  const readings = [100n, 90n];
  const backwards = new HistoryRecorder({ clockNs: () => readings.shift() ?? 0n });
  t.throws(() => backwards.invoke(1, { op: 'read', key: 'k' }), /the clock went backwards/);
});
