/**
 * Test helpers for the history checker: terse operation builders, a generator of histories from a
 * real sequential execution, an independent brute-force checker and a witness validator.
 *
 * The brute-force checker and the validator deliberately share no code with src/check beyond the
 * operation type: they apply the definition of linearizability literally (an order of the
 * operations that took effect, respecting real time, legal for a map of registers), so that the
 * checker is compared against the definition, not against itself.
 */
import type { CasOperation, DeleteOperation, HistoryOperation, KvValue, OperationStatus, ReadOperation, WriteOperation } from '../../../src/check/history';
import type { SeededRandom } from '../../../src/util/random';

export function read(client: number, value: KvValue, call: number, ret: number, status: OperationStatus = 'ok', key = 'k'): ReadOperation {
  return { client, op: 'read', key, value, call, return: ret, status };
}

export function write(client: number, value: KvValue, call: number, ret: number, status: OperationStatus = 'ok', key = 'k'): WriteOperation {
  return { client, op: 'write', key, value, call, return: ret, status };
}

export function cas(client: number, from: KvValue, to: KvValue, ok: boolean, call: number, ret: number, status: OperationStatus = 'ok', key = 'k'): CasOperation {
  return { client, op: 'cas', key, from, to, ok, call, return: ret, status };
}

export function remove(client: number, call: number, ret: number, status: OperationStatus = 'ok', key = 'k'): DeleteOperation {
  return { client, op: 'delete', key, call, return: ret, status };
}

/** Applies `operation` to `state` literally; false when its recorded output is impossible. */
function applyLiterally(state: Map<string, KvValue>, operation: HistoryOperation): boolean {
  const current = state.get(operation.key) ?? null;
  const known = operation.status === 'ok';
  switch (operation.op) {
    case 'read':
      return !known || operation.value === current;
    case 'write':
      state.set(operation.key, operation.value);
      return true;
    case 'delete':
      state.set(operation.key, null);
      return true;
    case 'cas':
      if (known && operation.ok !== (current === operation.from)) return false;
      if (current === operation.from) state.set(operation.key, operation.to);
      return true;
  }
}

const returnOf = (operation: HistoryOperation): number => (operation.status === 'unknown' ? Infinity : operation.return);

/**
 * Whether `order` is a linearization of `history`: it holds every completed operation exactly once,
 * only operations that did not fail, respects real time (never y after x when y returned before x
 * was called) and is legal for a map of registers starting empty.
 */
export function isLinearization(history: readonly HistoryOperation[], order: readonly HistoryOperation[]): boolean {
  const placed = new Set(order);
  if (placed.size !== order.length) return false;
  for (const operation of order) if (!history.includes(operation) || operation.status === 'fail') return false;
  for (const operation of history) if (operation.status === 'ok' && !placed.has(operation)) return false;
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) if (returnOf(order[j]!) < order[i]!.call) return false;
  }
  const state = new Map<string, KvValue>();
  return order.every((operation) => applyLiterally(state, operation));
}

/**
 * Brute force: tries every order of every subset of the operations that did not fail which holds
 * all completed ones (depth-first, pruning only orders already illegal). Exponential: ≤ 8 operations.
 */
export function bruteForceLinearizable(history: readonly HistoryOperation[]): boolean {
  const candidates = history.filter((operation) => operation.status !== 'fail');
  if (candidates.length > 8) throw new Error('brute force is for tiny histories');
  const required = candidates.filter((operation) => operation.status === 'ok').length;
  const used = new Array<boolean>(candidates.length).fill(false);
  const order: HistoryOperation[] = [];
  const extend = (state: Map<string, KvValue>, placedRequired: number): boolean => {
    if (placedRequired === required) return true;
    for (let i = 0; i < candidates.length; i++) {
      if (used[i]) continue;
      const operation = candidates[i]!;
      if (order.some((earlier) => returnOf(operation) < earlier.call)) continue;
      const next = new Map(state);
      if (!applyLiterally(next, operation)) continue;
      used[i] = true;
      order.push(operation);
      const found = extend(next, placedRequired + (operation.status === 'ok' ? 1 : 0));
      order.pop();
      used[i] = false;
      if (found) return true;
    }
    return false;
  };
  return extend(new Map(), 0);
}

export interface GeneratorOptions {
  readonly clients: number;
  readonly operations: number;
  readonly keys: readonly string[];
  /** Values writes and cas choose from; small pools make cas and stale reads interesting. Empty: every write stores a new value. */
  readonly values: readonly string[];
  readonly unknownRate: number;
  readonly failRate: number;
  /** Longest operation, in ns; longer means more overlap. */
  readonly durationNsMax: number;
  /** How long after its call an unknown operation may take effect (default 4 × durationNsMax). */
  readonly effectNsMax?: number;
}

/**
 * A history produced by a real sequential execution, hence linearizable: each client issues
 * operations one after another; each operation takes effect at a random instant inside its
 * [call, return] window (an unknown one: at a random instant after its call, possibly after it
 * gave up, or never); outputs are computed by applying operations in order of those instants.
 */
export function generateHistory(random: SeededRandom, options: GeneratorOptions): HistoryOperation[] {
  const clientNs = new Array<number>(options.clients).fill(0);
  const pick = <T>(items: readonly T[]): T => items[random.int(items.length)]!;
  const value = (fresh: string): KvValue => (random.int(8) === 0 ? null : options.values.length === 0 ? fresh : pick(options.values));
  const planned: Array<{ operation: HistoryOperation; effectNs: number | undefined }> = [];
  /** The last value written per key in issue order: cas often expects it, as real clients do. */
  const lastWritten = new Map<string, KvValue>();
  for (let i = 0; i < options.operations; i++) {
    const client = random.int(options.clients);
    const call = clientNs[client]! + random.int(3);
    const ret = call + 1 + random.int(options.durationNsMax);
    clientNs[client] = ret;
    const roll = random.float();
    const status: OperationStatus = roll < options.unknownRate ? 'unknown' : roll < options.unknownRate + options.failRate ? 'fail' : 'ok';
    const key = pick(options.keys);
    const kind = random.int(10);
    const operation: HistoryOperation =
      kind < 4 ? read(client, null, call, ret, status, key)
      : kind < 7 ? write(client, options.values.length > 0 ? pick(options.values) : `${client}.${i}`, call, ret, status, key)
      : kind < 9 ? cas(client, random.int(2) === 0 ? lastWritten.get(key) ?? null : value('not-a-value'), value(`${client}.${i}`), false, call, ret, status, key)
      : remove(client, call, ret, status, key);
    let effectNs: number | undefined = call + random.int(ret - call + 1);
    if (status === 'fail') effectNs = undefined;
    if (status === 'unknown') effectNs = random.int(2) === 0 ? undefined : call + random.int(options.effectNsMax ?? 4 * options.durationNsMax);
    if (operation.op === 'write' || operation.op === 'cas') lastWritten.set(key, operation.op === 'write' ? operation.value : operation.to);
    planned.push({ operation, effectNs });
  }
  const state = new Map<string, KvValue>();
  const effective = planned.map((entry, index) => ({ ...entry, index })).filter((entry) => entry.effectNs !== undefined);
  effective.sort((a, b) => a.effectNs! - b.effectNs! || a.index - b.index);
  for (const entry of effective) {
    const operation = entry.operation;
    const current = state.get(operation.key) ?? null;
    if (operation.op === 'read') planned[entry.index]!.operation = { ...operation, value: operation.status === 'ok' ? current : null };
    if (operation.op === 'cas') planned[entry.index]!.operation = { ...operation, ok: operation.status === 'ok' && current === operation.from };
    applyLiterally(state, planned[entry.index]!.operation);
  }
  return planned.map((entry) => entry.operation);
}

/** A copy of `history` with one completed read or cas given a different result, or undefined. */
export function mutateResult(random: SeededRandom, history: readonly HistoryOperation[], values: readonly string[]): HistoryOperation[] | undefined {
  const targets = history.map((operation, index) => ({ operation, index })).filter(({ operation }) => operation.status === 'ok' && (operation.op === 'read' || operation.op === 'cas'));
  if (targets.length === 0) return undefined;
  const { operation, index } = targets[random.int(targets.length)]!;
  const mutated = [...history];
  if (operation.op === 'cas') {
    mutated[index] = { ...operation, ok: !operation.ok };
  } else if (operation.op === 'read') {
    const choices = [null, ...values, 'never-written'].filter((candidate) => candidate !== operation.value);
    mutated[index] = { ...operation, value: choices[random.int(choices.length)]! };
  }
  return mutated;
}
