/**
 * Checks a key-value history for linearizability. Owns splitting the history per key, the cheap
 * proofs of common violations tried before searching, the per-key verdicts and their
 * explanations for humans.
 *
 * A history is linearizable iff each key's sub-history is (P-compositionality, Horn & Kroening
 * 2015, which holds for registers), so keys are searched independently with the register model of
 * kv-model.ts; operations with status `fail` are dropped, `unknown` ones get return time +∞.
 *
 * Verdicts are three-valued: `linearizable`, `illegal` (proven: no linearization exists) and
 * `unknown` (the per-key step budget ran out). A caller that gates a test must treat `unknown` as
 * a failure to prove, never as a pass. Pure: no I/O, no clock.
 */
import { assert } from '../util/assert';
import type { HistoryOperation, KvValue } from './history';
import { explainRefusal, formatValue, registerModel, toRegisterOperation, ValueTable } from './kv-model';
import type { RegisterOperation } from './kv-model';
import { searchLinearization, searchStepsLimit } from './linearizability';
import type { TimedOperation } from './linearizability';

/** Default search budget per key: a few seconds of search at most, and a bounded cache. */
export const stepsMaxPerKeyDefault = 5_000_000;
/** Prefix operations printed before a violation (the full prefix stays in the verdict). */
export const explanationPrefixLinesMax = 20;

export interface CheckOptions {
  /** Search steps per key before the key's verdict becomes `unknown`; see linearizability.ts. */
  readonly stepsMaxPerKey: number;
}

export type Verdict = 'linearizable' | 'illegal' | 'unknown';

/** Why a key's history is not linearizable. */
export type Violation =
  | {
      /**
       * Found before searching. `unproduced-value`: a read (or a swapping cas) saw a value that no
       * write called before it returned could store. `overwritten-value`: it saw a value whose one
       * and only write was certainly overwritten before it was called.
       */
      readonly kind: 'unproduced-value' | 'overwritten-value';
      readonly summary: string;
      /** The operation that saw the value, then the writes involved. */
      readonly operations: readonly HistoryOperation[];
    }
  | {
      /** The search exhausted every order. */
      readonly kind: 'no-linearization';
      readonly summary: string;
      /** The longest linearizable prefix found (at the deepest dead end), in order. */
      readonly prefix: readonly HistoryOperation[];
      readonly valueAfterPrefix: KvValue;
      /** The operation that returned before it could be placed after the prefix. */
      readonly blocking: HistoryOperation;
      /** What the search tried to place next (all called before `blocking` returned), and why the model refused each. */
      readonly unplaced: ReadonlyArray<{ readonly operation: HistoryOperation; readonly reason: string }>;
    };

interface KeyVerdictBase {
  readonly key: string;
  /** Operations searched (after dropping failed operations and unknown reads). */
  readonly operations: number;
  readonly dropped: number;
  readonly steps: number;
}

export type KeyVerdict =
  | (KeyVerdictBase & {
      readonly verdict: 'linearizable';
      /** A witness: the operations in a legal order; unknown-outcome ones left out never took effect. */
      readonly linearization: readonly HistoryOperation[];
    })
  | (KeyVerdictBase & { readonly verdict: 'illegal'; readonly violation: Violation })
  | (KeyVerdictBase & { readonly verdict: 'unknown'; readonly stepsMax: number; readonly deepestPrefixLength: number });

export interface HistoryVerdict {
  /** `illegal` if any key is, else `unknown` if any key is, else `linearizable`. */
  readonly verdict: Verdict;
  /** One verdict per key, keys in sorted order. */
  readonly keys: readonly KeyVerdict[];
}

/** Checks every key of `history`; see the module comment. */
export function checkHistory(history: readonly HistoryOperation[], options: Partial<CheckOptions> = {}): HistoryVerdict {
  const stepsMaxPerKey = options.stepsMaxPerKey ?? stepsMaxPerKeyDefault;
  assert(Number.isSafeInteger(stepsMaxPerKey) && stepsMaxPerKey > 0, 'stepsMaxPerKey must be a positive integer');
  assert(stepsMaxPerKey <= searchStepsLimit, `stepsMaxPerKey must be at most ${searchStepsLimit}`);
  const byKey = new Map<string, HistoryOperation[]>();
  for (const operation of history) {
    const operations = byKey.get(operation.key);
    if (operations === undefined) byKey.set(operation.key, [operation]);
    else operations.push(operation);
  }
  const keys = [...byKey.keys()].sort().map((key) => checkKey(key, byKey.get(key)!, stepsMaxPerKey));
  const verdict: Verdict = keys.some((k) => k.verdict === 'illegal') ? 'illegal' : keys.some((k) => k.verdict === 'unknown') ? 'unknown' : 'linearizable';
  return { verdict, keys };
}

/** Checks the operations of one key (all must have that key). */
export function checkKey(key: string, history: readonly HistoryOperation[], stepsMax: number): KeyVerdict {
  const table = new ValueTable();
  const kept: HistoryOperation[] = [];
  const timed: Array<TimedOperation<RegisterOperation>> = [];
  for (const operation of history) {
    assert(operation.key === key, 'every operation belongs to the key checked');
    const input = toRegisterOperation(operation, table);
    if (input === undefined) continue;
    kept.push(operation);
    timed.push({ operation: input, callNs: operation.call, returnNs: operation.status === 'unknown' ? Infinity : operation.return });
  }
  const base = { key, operations: kept.length, dropped: history.length - kept.length };

  const anomaly = findValueAnomaly(kept);
  if (anomaly !== undefined) return { ...base, steps: 0, verdict: 'illegal', violation: anomaly };

  const result = searchLinearization(registerModel, timed, { stepsMax });
  switch (result.verdict) {
    case 'linearizable':
      return { ...base, steps: result.steps, verdict: 'linearizable', linearization: result.order.map((index) => kept[index]!) };
    case 'unknown':
      return { ...base, steps: result.steps, verdict: 'unknown', stepsMax, deepestPrefixLength: result.deepestPrefixLength };
    case 'illegal': {
      const valueAfterPrefix = table.valueOf(result.stateAfterPrefix);
      const blocking = kept[result.blocking]!;
      const unplaced = result.candidates.map((index) => {
        const operation = kept[index]!;
        const reason = explainRefusal(operation, valueAfterPrefix);
        assert(reason !== undefined, 'the model refused every candidate, so each has a reason');
        return { operation, reason };
      });
      const summary =
        `no linearization: the longest linearizable prefix has ${result.prefix.length} of ${kept.length} operations and leaves the value ` +
        `${formatValue(valueAfterPrefix)}; then ${describeOperation(blocking)} returned before it could be placed`;
      const prefix = result.prefix.map((index) => kept[index]!);
      return { ...base, steps: result.steps, verdict: 'illegal', violation: { kind: 'no-linearization', summary, prefix, valueAfterPrefix, blocking, unplaced } };
    }
  }
}

/**
 * Cheap proofs of the two most common violations, before (and instead of) a search that would
 * have to exhaust every order to find them: an observed value that no write called in time could
 * store, and an observed value whose only write (with a known outcome) was followed, strictly in
 * real time, by another change that returned before the observer was called. Every linearization
 * orders the write, the change and the observer that way, so the value was gone when observed.
 * Absent (null) is the initial value and is left to the search.
 */
function findValueAnomaly(operations: readonly HistoryOperation[]): Violation | undefined {
  const writers = new Map<string, HistoryOperation[]>();
  const changes: HistoryOperation[] = [];
  for (const operation of operations) {
    const swaps = operation.op === 'cas' && (operation.ok || operation.status === 'unknown');
    const stored = operation.op === 'write' ? operation.value : swaps ? operation.to : null;
    if (stored !== null && !writers.get(stored)?.push(operation)) writers.set(stored, [operation]);
    if (operation.status === 'ok' && operation.op !== 'read' && (operation.op !== 'cas' || operation.ok)) changes.push(operation);
  }
  // Changes with a known outcome by call time, and the earliest return among each suffix.
  changes.sort((a, b) => a.call - b.call);
  const earliestReturnFrom: HistoryOperation[] = [];
  for (let i = changes.length - 1; i >= 0; i--) {
    const later = earliestReturnFrom[i + 1];
    earliestReturnFrom[i] = later !== undefined && later.return < changes[i]!.return ? later : changes[i]!;
  }
  for (const operation of operations) {
    if (operation.status !== 'ok') continue;
    const seen = operation.op === 'read' ? operation.value : operation.op === 'cas' && operation.ok ? operation.from : null;
    if (seen === null) continue;
    const verb = `${describeOperation(operation)} ${operation.op === 'read' ? 'returned' : 'swapped from'} ${formatValue(seen)}`;
    const candidates = writers.get(seen) ?? [];
    if (!candidates.some((writer) => writer.call <= operation.return)) {
      return { kind: 'unproduced-value', summary: `${verb}, but no write of that value was called before it returned`, operations: [operation] };
    }
    const writer = candidates[0]!;
    if (candidates.length !== 1 || writer.status !== 'ok') continue;
    const first = binarySearchAfter(changes, writer.return);
    const overwriter = earliestReturnFrom[first];
    if (overwriter === undefined || overwriter.return >= operation.call) continue;
    return {
      kind: 'overwritten-value',
      summary: `${verb}, but its only write, ${describeOperation(writer)}, was overwritten by ${describeOperation(overwriter)}, which was called after that write returned and returned before the ${operation.op} was called`,
      operations: [operation, writer, overwriter],
    };
  }
  return undefined;
}

/** The index of the first of `sorted` (by call time) called strictly after `timeNs`. */
function binarySearchAfter(sorted: readonly HistoryOperation[], timeNs: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (sorted[middle]!.call > timeNs) high = middle;
    else low = middle + 1;
  }
  return low;
}

/** One operation in words, e.g. `client 3 read → "v1" [call 100, return 250]`. */
export function describeOperation(operation: HistoryOperation): string {
  const known = operation.status === 'ok';
  let action: string;
  switch (operation.op) {
    case 'read':
      action = `read → ${known ? formatValue(operation.value) : '?'}`;
      break;
    case 'write':
      action = `write ${formatValue(operation.value)}`;
      break;
    case 'delete':
      action = 'delete';
      break;
    case 'cas':
      action = `cas ${formatValue(operation.from)} → ${formatValue(operation.to)} ${known ? (operation.ok ? '(swapped)' : '(no swap)') : ''}`.trimEnd();
      break;
  }
  const times = operation.status === 'unknown' ? `call ${operation.call}, outcome unknown` : `call ${operation.call}, return ${operation.return}`;
  const failed = operation.status === 'fail' ? ' (failed)' : '';
  return `client ${operation.client} ${action} [${times}]${failed}`;
}

/** A key's verdict for humans: one line, plus the explanation of a violation. */
export function formatKeyVerdict(verdict: KeyVerdict): string {
  const counts = `${formatCount(verdict.operations, 'operation')}, ${verdict.dropped} dropped, ${formatCount(verdict.steps, 'step')}`;
  const title = `key ${JSON.stringify(verdict.key)}`;
  switch (verdict.verdict) {
    case 'linearizable':
      return `${title}: linearizable (${counts})`;
    case 'unknown':
      return (
        `${title}: UNKNOWN — search budget of ${formatCount(verdict.stepsMax, 'step')} exhausted, deepest prefix ${formatCount(verdict.deepestPrefixLength, 'operation')} (${counts}); ` +
        'not proven either way: raise the budget, or put fewer concurrent clients or unknown outcomes on one key'
      );
    case 'illegal':
      return [`${title}: NOT LINEARIZABLE (${counts})`, ...explainViolation(verdict.violation).map((line) => `  ${line}`)].join('\n');
  }
}

/** `count` and `noun`, plural unless the count is one: "1 key", "3 keys". */
export function formatCount(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** Every key's verdict for humans, violations explained. */
export function formatHistoryVerdict(verdict: HistoryVerdict): string {
  return verdict.keys.map(formatKeyVerdict).join('\n');
}

function explainViolation(violation: Violation): string[] {
  if (violation.kind !== 'no-linearization') return [violation.summary];
  const lines = [violation.summary];
  const shown = violation.prefix.slice(-explanationPrefixLinesMax);
  const hidden = violation.prefix.length - shown.length;
  lines.push(violation.prefix.length === 0 ? 'longest linearizable prefix: empty' : 'longest linearizable prefix:');
  if (hidden > 0) lines.push(`  … ${formatCount(hidden, 'earlier operation')}`);
  shown.forEach((operation, i) => lines.push(`  ${hidden + i + 1}. ${describeOperation(operation)}`));
  lines.push(`value after it: ${formatValue(violation.valueAfterPrefix)}; could not be placed next:`);
  for (const { operation, reason } of violation.unplaced) lines.push(`  ${describeOperation(operation)}: ${reason}`);
  return lines;
}
