/**
 * The history format: one client operation on one key of a key-value store, as written by tests
 * and drivers (one JSON object per line) and read by the linearizability checker. Owns the
 * `HistoryOperation` type, the validation of one decoded record and the JSON-lines text codec.
 * Pure: no I/O (files are history-file.ts's job).
 *
 * The line format (issue 3), fields in this order when written:
 *
 *   {"client":N,"op":"read"|"write"|"cas"|"delete","key":"k","value":…,"from":…,"to":…,"ok":bool,
 *    "call":ns,"return":ns,"status":"ok"|"fail"|"unknown"}
 *
 * - `value`: the value a read returned or a write stored; `null` is an absent key.
 * - `cas` swaps `from` → `to`; `ok` says whether it swapped (a cas that did not swap observed a
 *   value other than `from`).
 * - `delete` is an extension of issue 3's format: it removes the key (a write of `null`, which is
 *   also accepted). Fields that do not apply to an operation (`from`/`to`/`ok` on a read, say)
 *   may be absent or `null`; `ok` may be `true` on any completed operation and any boolean on
 *   one that did not complete.
 * - `call`/`return`: nanoseconds from one monotonic clock, relative to any origin. They are read
 *   as JSON numbers; beyond 2^53 they round to neighbouring integers, which can only turn a strict
 *   "returned before called" into a tie, and ties count as overlapping — a rounding error can
 *   hide a violation by a nanosecond, never invent one.
 * - `status`: `ok` — completed with the recorded result; `fail` — certainly did not take effect
 *   (a refused proposal); `unknown` — timed out or lost its connection: it may take effect at any
 *   time after `call`, or never, and its result fields are meaningless. A missing status is `ok`.
 *
 * Invariants of a parsed operation: `call <= return`, both finite; `client` is a non-negative
 * safe integer; `key` is at most `historyKeyLengthMax` UTF-16 units; a completed read carries
 * `value`, a completed cas carries `ok`. Unknown fields are refused so a misspelt field cannot be
 * silently ignored.
 */

/** Longest key accepted, in UTF-16 code units (keys are names like "vol/7", not data). */
export const historyKeyLengthMax = 4096;
/** Longest line of a history file, in bytes, checked before the line is decoded. */
export const historyLineBytesMax = 1024 * 1024;

export type KvValue = string | null;
export type OperationStatus = 'ok' | 'fail' | 'unknown';
export type OperationKind = 'read' | 'write' | 'cas' | 'delete';

interface OperationBase {
  readonly client: number;
  readonly key: string;
  /** Nanoseconds on the history's monotonic clock when the client sent the request. */
  readonly call: number;
  /** Nanoseconds when the client got the answer (or gave up, for `unknown`). */
  readonly return: number;
  readonly status: OperationStatus;
}

export interface ReadOperation extends OperationBase {
  readonly op: 'read';
  /** What the read returned; meaningless unless status is ok (null when not recorded). */
  readonly value: KvValue;
}

export interface WriteOperation extends OperationBase {
  readonly op: 'write';
  /** The value stored; null removes the key. */
  readonly value: KvValue;
}

export interface CasOperation extends OperationBase {
  readonly op: 'cas';
  readonly from: KvValue;
  readonly to: KvValue;
  /** Whether it swapped; meaningless (false) unless status is ok. */
  readonly ok: boolean;
}

export interface DeleteOperation extends OperationBase {
  readonly op: 'delete';
}

export type HistoryOperation = ReadOperation | WriteOperation | CasOperation | DeleteOperation;

/** A history line that is not a valid operation; `lineNumber` is 1-based. */
export class HistoryFormatError extends Error {
  override readonly name = 'HistoryFormatError';
  constructor(readonly source: string, readonly lineNumber: number, readonly detail: string) {
    super(`${source}:${lineNumber}: ${detail}`);
  }
}

const knownFields = new Set(['client', 'op', 'key', 'value', 'from', 'to', 'ok', 'call', 'return', 'status']);
const fieldsByKind: Record<OperationKind, ReadonlySet<string>> = {
  read: new Set(['value']),
  write: new Set(['value']),
  cas: new Set(['from', 'to', 'ok']),
  delete: new Set(),
};

/**
 * Validates one decoded JSON value as an operation. Throws a plain Error whose message names the
 * offending field; `parseHistory` adds the source and line number.
 */
export function validateOperation(record: unknown): HistoryOperation {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw new Error('expected a JSON object');
  }
  const fields = record as Record<string, unknown>;
  const unknownFields = Object.keys(fields).filter((name) => !knownFields.has(name));
  if (unknownFields.length > 0) throw new Error(`unknown field(s) ${unknownFields.map((name) => JSON.stringify(name)).join(', ')}`);

  const client = fields['client'];
  if (!Number.isSafeInteger(client) || (client as number) < 0) throw new Error(`"client" must be a non-negative integer, got ${show(client)}`);
  const op = fields['op'];
  if (op !== 'read' && op !== 'write' && op !== 'cas' && op !== 'delete') {
    throw new Error(`"op" must be "read", "write", "cas" or "delete", got ${show(op)}`);
  }
  const key = fields['key'];
  if (typeof key !== 'string') throw new Error(`"key" must be a string, got ${show(key)}`);
  if (key.length > historyKeyLengthMax) throw new Error(`"key" is ${key.length} characters long; at most ${historyKeyLengthMax} are allowed`);
  const call = fields['call'];
  const returned = fields['return'];
  if (typeof call !== 'number' || !Number.isFinite(call)) throw new Error(`"call" must be a finite number of nanoseconds, got ${show(call)}`);
  if (typeof returned !== 'number' || !Number.isFinite(returned)) throw new Error(`"return" must be a finite number of nanoseconds, got ${show(returned)}`);
  if (returned < call) throw new Error(`"return" (${returned}) is before "call" (${call})`);
  const statusField = fields['status'] ?? 'ok';
  if (statusField !== 'ok' && statusField !== 'fail' && statusField !== 'unknown') {
    throw new Error(`"status" must be "ok", "fail" or "unknown", got ${show(statusField)}`);
  }
  const status: OperationStatus = statusField;
  const completed = status === 'ok';

  for (const name of ['value', 'from', 'to']) {
    if (fieldsByKind[op].has(name)) continue;
    if (fields[name] !== undefined && fields[name] !== null) throw new Error(`"${name}" does not apply to ${op}; omit it or use null`);
  }
  const okField = fields['ok'];
  if (okField !== undefined && okField !== null && typeof okField !== 'boolean') throw new Error(`"ok" must be a boolean, got ${show(okField)}`);
  if (op !== 'cas' && completed && okField === false) {
    throw new Error(`"ok": false on a ${op} with status "ok"; an operation that did not take effect has status "fail"`);
  }

  const base = { client: client as number, key, call, return: returned, status };
  switch (op) {
    case 'read': {
      if (completed && !('value' in fields)) throw new Error('a completed read needs "value" (null for an absent key)');
      return { ...base, op, value: completed ? valueField(fields, 'value') : optionalValueField(fields, 'value') };
    }
    case 'write':
      if (!('value' in fields)) throw new Error('a write needs "value" (null removes the key)');
      return { ...base, op, value: valueField(fields, 'value') };
    case 'cas': {
      if (!('from' in fields)) throw new Error('a cas needs "from" (null for an absent key)');
      if (!('to' in fields)) throw new Error('a cas needs "to" (null removes the key)');
      if (completed && typeof okField !== 'boolean') throw new Error('a completed cas needs "ok": true if it swapped, false if not');
      return { ...base, op, from: valueField(fields, 'from'), to: valueField(fields, 'to'), ok: completed ? okField === true : false };
    }
    case 'delete':
      return { ...base, op };
  }
}

/**
 * Parses JSON-lines text. Blank lines are skipped; every other line must be one operation.
 * `source` names the text in errors (a file name). Lines longer than `historyLineBytesMax`
 * characters are refused before they are decoded (the file reader bounds bytes before that).
 */
export function parseHistory(text: string, source = 'history'): HistoryOperation[] {
  const operations: HistoryOperation[] = [];
  let lineStart = 0;
  let lineNumber = 0;
  while (lineStart < text.length) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd === -1) lineEnd = text.length;
    lineNumber += 1;
    if (lineEnd - lineStart > historyLineBytesMax) {
      throw new HistoryFormatError(source, lineNumber, `line is longer than ${historyLineBytesMax} characters`);
    }
    const operation = parseHistoryLine(text.slice(lineStart, lineEnd), source, lineNumber);
    if (operation !== undefined) operations.push(operation);
    lineStart = lineEnd + 1;
  }
  return operations;
}

/** Parses one line; undefined for a blank line. Errors name `source` and `lineNumber`. */
export function parseHistoryLine(line: string, source: string, lineNumber: number): HistoryOperation | undefined {
  if (line.trim() === '') return undefined;
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch (error) {
    throw new HistoryFormatError(source, lineNumber, `not valid JSON (${(error as Error).message})`);
  }
  try {
    return validateOperation(record);
  } catch (error) {
    throw new HistoryFormatError(source, lineNumber, (error as Error).message);
  }
}

/** One operation as a JSON line (no newline), fields in the documented order. */
export function formatOperation(operation: HistoryOperation): string {
  const head = { client: operation.client, op: operation.op, key: operation.key };
  const tail = { call: operation.call, return: operation.return, status: operation.status };
  switch (operation.op) {
    case 'read':
    case 'write':
      return JSON.stringify({ ...head, value: operation.value, ...tail });
    case 'cas':
      return JSON.stringify({ ...head, from: operation.from, to: operation.to, ok: operation.ok, ...tail });
    case 'delete':
      return JSON.stringify({ ...head, ...tail });
  }
}

/** A whole history as JSON-lines text, one operation per line, ending with a newline. */
export function formatHistory(operations: readonly HistoryOperation[]): string {
  return operations.map((operation) => `${formatOperation(operation)}\n`).join('');
}

function valueField(fields: Record<string, unknown>, name: string): KvValue {
  const value = fields[name];
  if (value === null || typeof value === 'string') return value;
  throw new Error(`"${name}" must be a string or null, got ${show(value)}`);
}

function optionalValueField(fields: Record<string, unknown>, name: string): KvValue {
  return fields[name] === undefined ? null : valueField(fields, name);
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value); // a decoded JSON value, so never undefined here
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
