// Goal: the JSON-lines history format of issue 3 parses exactly as documented — every field
// validated, every refusal naming the line and the field — and what Cairn writes reads back equal.
// Method: one valid line per operation kind and status, then one broken line per rule, checking
// the error's source, line number and message; round trips through formatHistory.
import t from 'tap';
import { formatHistory, formatOperation, HistoryFormatError, historyKeyLengthMax, historyLineBytesMax, parseHistory, parseHistoryLine, validateOperation } from '../../src/check/history';
import type { HistoryOperation } from '../../src/check/history';
import { cas, read, remove, write } from './helpers/histories';

const base = { client: 1, key: 'vol/7', call: 100, return: 250 };
const line = (fields: Record<string, unknown>): string => JSON.stringify({ ...base, ...fields });

t.test('every operation kind and status parses into the documented shape', async (t) => {
  const text = [
    line({ op: 'read', value: 'v1', status: 'ok' }),
    line({ op: 'read', value: null, from: null, to: null, ok: true, status: 'ok' }),
    line({ op: 'write', value: 'v2', status: 'unknown', ok: false }),
    line({ op: 'write', value: null, status: 'fail' }),
    line({ op: 'cas', from: 'v1', to: 'v3', ok: true, status: 'ok' }),
    line({ op: 'cas', from: null, to: 'v3', status: 'unknown' }),
    line({ op: 'delete', value: null, ok: true }),
    line({ op: 'read', status: 'unknown' }),
  ].join('\n');
  t.same(parseHistory(text), [
    { ...base, op: 'read', value: 'v1', status: 'ok' },
    { ...base, op: 'read', value: null, status: 'ok' },
    { ...base, op: 'write', value: 'v2', status: 'unknown' },
    { ...base, op: 'write', value: null, status: 'fail' },
    { ...base, op: 'cas', from: 'v1', to: 'v3', ok: true, status: 'ok' },
    { ...base, op: 'cas', from: null, to: 'v3', ok: false, status: 'unknown' },
    { ...base, op: 'delete', status: 'ok' },
    { ...base, op: 'read', value: null, status: 'unknown' },
  ]);
});

t.test('blank lines and a final newline are skipped but still counted', async (t) => {
  const operations = parseHistory(`\n${line({ op: 'write', value: 'a' })}\n   \n${line({ op: 'read', value: 'a' })}\r\n`);
  t.equal(operations.length, 2);
  t.throws(() => parseHistory(`\n\n${line({ op: 'read' })}\n`, 'run.jsonl'), { message: 'run.jsonl:3: a completed read needs "value" (null for an absent key)' });
});

t.test('every broken field is refused with its file, line and a message naming the field', async (t) => {
  const cases: Array<[string, string]> = [
    ['{"client":', 'not valid JSON'],
    ['[1,2]', 'expected a JSON object'],
    ['null', 'expected a JSON object'],
    [line({ op: 'read', value: 'a', retrun: 5 }), 'unknown field(s) "retrun"'],
    [line({ op: 'read', value: 'a', client: -1 }), '"client" must be a non-negative integer, got -1'],
    [line({ op: 'read', value: 'a', client: '1' }), '"client" must be a non-negative integer, got "1"'],
    [line({ op: 'scan', value: 'a' }), '"op" must be "read", "write", "cas" or "delete", got "scan"'],
    [line({ op: 'read', value: 'a', key: 7 }), '"key" must be a string, got 7'],
    [line({ op: 'read', value: 'a', key: 'k'.repeat(historyKeyLengthMax + 1) }), `"key" is ${historyKeyLengthMax + 1} characters long`],
    [line({ op: 'read', value: 'a', call: '100' }), '"call" must be a finite number of nanoseconds, got "100"'],
    [JSON.stringify({ client: 1, op: 'read', key: 'k', value: 'a', return: 5 }), '"call" must be a finite number of nanoseconds, got nothing'],
    [line({ op: 'read', value: 'a', return: null }), '"return" must be a finite number of nanoseconds, got null'],
    [line({ op: 'read', value: 'a', call: 300 }), '"return" (250) is before "call" (300)'],
    [line({ op: 'read', value: 'a', status: 'timeout' }), '"status" must be "ok", "fail" or "unknown", got "timeout"'],
    [line({ op: 'read', value: 7 }), '"value" must be a string or null, got 7'],
    [line({ op: 'read', value: 'a', from: 'x' }), '"from" does not apply to read; omit it or use null'],
    [line({ op: 'delete', value: 'a' }), '"value" does not apply to delete'],
    [line({ op: 'write', value: 'a', ok: 'yes' }), '"ok" must be a boolean, got "yes"'],
    [line({ op: 'write', value: 'a', ok: false }), '"ok": false on a write with status "ok"'],
    [line({ op: 'write' }), 'a write needs "value" (null removes the key)'],
    [line({ op: 'cas', to: 'b', ok: true }), 'a cas needs "from"'],
    [line({ op: 'cas', from: 'a', ok: true }), 'a cas needs "to"'],
    [line({ op: 'cas', from: 'a', to: 'b' }), 'a completed cas needs "ok"'],
    [line({ op: 'cas', from: 'a', to: 'b', ok: null }), 'a completed cas needs "ok"'],
    [line({ op: 'cas', from: 1, to: 'b', ok: true }), '"from" must be a string or null, got 1'],
  ];
  for (const [text, message] of cases) {
    const valid = line({ op: 'write', value: 'ok' });
    try {
      parseHistory(`${valid}\n${valid}\n${text}\n${valid}`, 'history/run-1.jsonl');
      t.fail(`accepted: ${text.slice(0, 80)}`);
    } catch (error) {
      t.ok(error instanceof HistoryFormatError, 'a HistoryFormatError');
      const formatError = error as HistoryFormatError;
      t.equal(formatError.lineNumber, 3);
      t.equal(formatError.source, 'history/run-1.jsonl');
      t.ok(formatError.message.startsWith('history/run-1.jsonl:3: '), formatError.message);
      t.ok(formatError.detail.includes(message), `${formatError.detail} mentions ${message}`);
    }
  }
});

t.test('a line longer than the limit is refused before it is decoded', async (t) => {
  const long = line({ op: 'write', value: 'x'.repeat(historyLineBytesMax) });
  t.throws(() => parseHistory(long, 'big.jsonl'), { message: `big.jsonl:1: line is longer than ${historyLineBytesMax} characters` });
  t.equal(parseHistoryLine('   ', 'x', 1), undefined);
});

t.test('validateOperation reports plain errors for callers that decode JSON themselves', async (t) => {
  t.throws(() => validateOperation({ client: 1 }), /"op" must be/);
  t.same(validateOperation({ ...base, op: 'read', value: 'a' }), { ...base, op: 'read', value: 'a', status: 'ok' });
});

t.test('formatted histories use the documented field order and read back equal', async (t) => {
  const operations: HistoryOperation[] = [
    read(1, 'a', 1, 2),
    read(1, null, 3, 4, 'unknown'),
    write(2, 'b', 5, 6, 'fail'),
    write(2, null, 5, 6),
    cas(3, null, 'c', true, 7, 8),
    cas(3, 'c', null, false, 9, 10, 'unknown'),
    remove(4, 11, 12),
    write(5, 'unicode ✓ "quoted"\n', 13, 2 ** 60),
  ];
  const text = formatHistory(operations);
  t.equal(text.split('\n').length, operations.length + 1, 'one line each, newline-terminated');
  t.same(parseHistory(text), operations);
  t.equal(formatOperation(operations[4]!), '{"client":3,"op":"cas","key":"k","from":null,"to":"c","ok":true,"call":7,"return":8,"status":"ok"}');
  t.equal(formatOperation(operations[6]!), '{"client":4,"op":"delete","key":"k","call":11,"return":12,"status":"ok"}');
  t.equal(formatHistory([]), '');
});

t.test('status defaults to ok, as in the reference format', async (t) => {
  t.same(parseHistory('{"client":3,"op":"write","key":"vol/7","value":"v1","call":1000,"return":1450}'), [
    { client: 3, op: 'write', key: 'vol/7', value: 'v1', call: 1000, return: 1450, status: 'ok' },
  ]);
});
