/**
 * Records client operations as a history for the linearizability checker. Owns the life of one
 * recorded operation: invoked (call time taken), then exactly one of completed (return time and
 * result), failed (certainly not applied) or unknown (the client stopped waiting).
 *
 * Pure: time comes from the injected clock (`process.hrtime.bigint` in drivers, a counter in
 * tests). Times are stored relative to the first reading, so a bigint clock beyond 2^53 ns still
 * yields exact numbers. The clock must never go backwards (asserted).
 *
 * Usage in a driver:
 *
 *   const handle = recorder.invoke(client, { op: 'read', key });
 *   try { recorder.completeRead(handle, await kv.get(key)); }
 *   catch (error) { if (isRefusal(error)) recorder.fail(handle); else recorder.unknown(handle); }
 *
 * Invariants: at most `operationsMax` operations are recorded (invoke asserts); each handle is
 * resolved at most once; operations still pending when the history is exported are exported as
 * `unknown` with the export time as their return.
 */
import { assert, unreachable } from '../util/assert';
import { formatHistory, historyKeyLengthMax } from './history';
import type { HistoryOperation, KvValue, OperationStatus } from './history';

/** Default bound on the operations one recorder keeps in memory. */
export const recordedOperationsMaxDefault = 1_000_000;

export type OperationInput =
  | { readonly op: 'read'; readonly key: string }
  | { readonly op: 'write'; readonly key: string; readonly value: KvValue }
  | { readonly op: 'cas'; readonly key: string; readonly from: KvValue; readonly to: KvValue }
  | { readonly op: 'delete'; readonly key: string };

export interface HistoryRecorderOptions {
  /** Monotonic nanoseconds; any origin. */
  readonly clockNs: () => bigint | number;
  readonly operationsMax?: number;
}

interface Recorded {
  readonly client: number;
  readonly input: OperationInput;
  readonly callNs: number;
  /** Undefined while pending. */
  returnNs: number | undefined;
  status: OperationStatus;
  /** A read's value or a cas's swap flag, once completed. */
  result: KvValue | boolean;
}

export class HistoryRecorder {
  private readonly clockNs: () => bigint | number;
  private readonly operationsMax: number;
  private readonly origin: bigint | number;
  private lastNs = 0;
  private readonly recorded: Recorded[] = [];
  private pending = 0;

  constructor(options: HistoryRecorderOptions) {
    this.clockNs = options.clockNs;
    this.operationsMax = options.operationsMax ?? recordedOperationsMaxDefault;
    assert(Number.isSafeInteger(this.operationsMax) && this.operationsMax > 0, 'operationsMax must be a positive integer');
    this.origin = this.clockNs();
  }

  /** Operations invoked and not yet resolved. */
  get pendingCount(): number {
    return this.pending;
  }

  get operationCount(): number {
    return this.recorded.length;
  }

  /** Records the call of an operation now; returns the handle to resolve it with. */
  invoke(client: number, input: OperationInput): number {
    assert(Number.isSafeInteger(client) && client >= 0, 'client must be a non-negative integer');
    assert(input.key.length <= historyKeyLengthMax, `keys are at most ${historyKeyLengthMax} characters`);
    assert(this.recorded.length < this.operationsMax, `at most ${this.operationsMax} operations per recorder`);
    this.recorded.push({ client, input, callNs: this.now(), returnNs: undefined, status: 'ok', result: null });
    this.pending += 1;
    return this.recorded.length - 1;
  }

  /** A read returned `value` (null: the key was absent). */
  completeRead(handle: number, value: KvValue): void {
    this.resolve(handle, 'ok', value, 'read');
  }

  /** A cas completed; `swapped` says whether it replaced `from` by `to`. */
  completeCas(handle: number, swapped: boolean): void {
    this.resolve(handle, 'ok', swapped, 'cas');
  }

  /** A write or delete completed. */
  completeWrite(handle: number): void {
    this.resolve(handle, 'ok', null, 'write', 'delete');
  }

  /** The operation certainly did not take effect (refused before being applied). */
  fail(handle: number): void {
    this.resolve(handle, 'fail', null);
  }

  /** The outcome is not known (timeout, lost connection): it may take effect later, or never. */
  unknown(handle: number): void {
    this.resolve(handle, 'unknown', null);
  }

  /** The history so far, in invocation order; pending operations appear as unknown, returning now. */
  operations(): HistoryOperation[] {
    const exportNs = this.pending > 0 ? this.now() : 0;
    return this.recorded.map((recorded) => toOperation(recorded, exportNs));
  }

  /** The history so far as JSON lines (see history.ts). */
  toJsonLines(): string {
    return formatHistory(this.operations());
  }

  private resolve(handle: number, status: OperationStatus, result: KvValue | boolean, ...kinds: Array<OperationInput['op']>): void {
    const recorded = this.recorded[handle];
    assert(recorded !== undefined, `operation handle ${handle} was issued by this recorder`);
    assert(recorded.returnNs === undefined, `operation handle ${handle} is resolved only once`);
    assert(kinds.length === 0 || kinds.includes(recorded.input.op), `operation ${handle} is a ${recorded.input.op}, not a ${kinds.join(' or ')}`);
    recorded.returnNs = this.now();
    recorded.status = status;
    recorded.result = result;
    this.pending -= 1;
    assert(this.pending >= 0);
  }

  private now(): number {
    const reading = this.clockNs();
    const elapsedNs = typeof reading === 'bigint' && typeof this.origin === 'bigint' ? Number(reading - this.origin) : Number(reading) - Number(this.origin);
    assert(Number.isFinite(elapsedNs), 'the clock returns finite times');
    assert(elapsedNs >= this.lastNs, `the clock went backwards (${elapsedNs} ns after ${this.lastNs} ns)`);
    this.lastNs = elapsedNs;
    return elapsedNs;
  }
}

function toOperation(recorded: Recorded, exportNs: number): HistoryOperation {
  const { client, input, callNs } = recorded;
  const status: OperationStatus = recorded.returnNs === undefined ? 'unknown' : recorded.status;
  const base = { client, key: input.key, call: callNs, return: recorded.returnNs ?? exportNs, status };
  switch (input.op) {
    case 'read':
      return { ...base, op: 'read', value: status === 'ok' ? (recorded.result as KvValue) : null };
    case 'write':
      return { ...base, op: 'write', value: input.value };
    case 'cas':
      return { ...base, op: 'cas', from: input.from, to: input.to, ok: status === 'ok' && recorded.result === true };
    case 'delete':
      return { ...base, op: 'delete' };
    default:
      return unreachable(input);
  }
}
