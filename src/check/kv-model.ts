/**
 * The sequential specification of one key of a key-value store: a register holding a string or
 * nothing, with read, write, compare-and-swap and delete. Owns the model the linearizability
 * search runs on, the translation of history operations into model inputs (including which
 * operations are dropped), and the human description of why an operation is impossible.
 *
 * Values are interned per key into small integers (`ValueTable`): the search compares and hashes
 * states constantly, and an integer state makes that cheap. Id 0 is always the absent key.
 *
 * Semantics (per status, see history.ts):
 * - read: legal iff it returned the current value; no effect. A read whose outcome is unknown or
 *   failed has no effect and observed nothing, so it is dropped.
 * - write v / delete: always legal; the value becomes v / absent. Delete is a write of absent.
 * - cas from→to that swapped: legal iff the value is `from`; it becomes `to`.
 * - cas that did not swap: legal iff the value is not `from`; no effect.
 * - cas with an unknown outcome: placed only where the value is `from` (and then it swaps): placing
 *   it anywhere else would have no effect, which is the same as never placing it.
 * - any operation with status `fail` certainly did not take effect: dropped.
 * Operations with status `unknown` get return time +∞ from the caller (check-history.ts).
 *
 * For the search (linearizability.ts): reads and unswapped cas are read-only, and the model is
 * `overwriting` — every operation leaves the value alone or, when legal, sets it to a value of its
 * own — so an operation with an unknown outcome is only tried where it makes another legal.
 */
import { AssertionError, assert, unreachable } from '../util/assert';
import type { HistoryOperation, KvValue } from './history';
import type { SequentialModel } from './linearizability';

/** An interned value of one key; `absentValue` is the absent key. */
export type ValueId = number;
export const absentValue: ValueId = 0;

/** Interns the values of one key. Invariant: ids are dense, 0 is null, others index `values`. */
export class ValueTable {
  private readonly ids = new Map<string, ValueId>();
  private readonly values: string[] = [];

  intern(value: KvValue): ValueId {
    if (value === null) return absentValue;
    let id = this.ids.get(value);
    if (id === undefined) {
      this.values.push(value);
      id = this.values.length;
      this.ids.set(value, id);
    }
    return id;
  }

  valueOf(id: ValueId): KvValue {
    if (id === absentValue) return null;
    const value = this.values[id - 1];
    assert(value !== undefined, `value id ${id} was interned`);
    return value;
  }
}

export type CasOutcome = 'swapped' | 'unchanged' | 'unknown';

export type RegisterOperation =
  | { readonly kind: 'read'; readonly observed: ValueId }
  | { readonly kind: 'write'; readonly value: ValueId }
  | { readonly kind: 'cas'; readonly from: ValueId; readonly to: ValueId; readonly outcome: CasOutcome };

export const registerModel: SequentialModel<ValueId, RegisterOperation> = {
  initialState: absentValue,
  step(state: ValueId, operation: RegisterOperation): ValueId | undefined {
    switch (operation.kind) {
      case 'read':
        return operation.observed === state ? state : undefined;
      case 'write':
        return operation.value;
      case 'cas':
        if (operation.outcome === 'unchanged') return state === operation.from ? undefined : state;
        return state === operation.from ? operation.to : undefined;
      default:
        return unreachable(operation);
    }
  },
  isReadOnly: (operation: RegisterOperation): boolean => operation.kind === 'read' || (operation.kind === 'cas' && operation.outcome === 'unchanged'),
  overwriting: true,
  hashState: (state: ValueId): number => state,
  equalStates: (a: ValueId, b: ValueId): boolean => a === b,
};

/** The model input for `operation`, or undefined when it is dropped (see the module comment). */
export function toRegisterOperation(operation: HistoryOperation, table: ValueTable): RegisterOperation | undefined {
  if (operation.status === 'fail') return undefined;
  const known = operation.status === 'ok';
  switch (operation.op) {
    case 'read':
      return known ? { kind: 'read', observed: table.intern(operation.value) } : undefined;
    case 'write':
      return { kind: 'write', value: table.intern(operation.value) };
    case 'delete':
      return { kind: 'write', value: absentValue };
    case 'cas': {
      const outcome: CasOutcome = known ? (operation.ok ? 'swapped' : 'unchanged') : 'unknown';
      return { kind: 'cas', from: table.intern(operation.from), to: table.intern(operation.to), outcome };
    }
    default:
      return unreachable(operation);
  }
}

/** Why the model refuses `operation` in `state`, in words; undefined when it accepts it. */
export function explainRefusal(operation: HistoryOperation, state: KvValue): string | undefined {
  const table = new ValueTable();
  const input = toRegisterOperation(operation, table);
  if (input === undefined || registerModel.step(table.intern(state), input) !== undefined) return undefined;
  const current = formatValue(state);
  switch (input.kind) {
    case 'read':
      return `it returned ${formatValue(table.valueOf(input.observed))} but the value was ${current}`;
    case 'cas':
      return input.outcome === 'unchanged'
        ? `it reported no swap but the value was ${current}, equal to its "from"`
        : `it needs the value ${formatValue(table.valueOf(input.from))} to swap but the value was ${current}`;
    case 'write':
      throw new AssertionError('the model refused a write, which is always legal');
  }
}

/** A value as humans read it in explanations: quoted, or "absent". */
export function formatValue(value: KvValue): string {
  if (value === null) return 'absent';
  const quoted = JSON.stringify(value);
  return quoted.length > 60 ? `${quoted.slice(0, 57)}…"` : quoted;
}
