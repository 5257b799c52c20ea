/**
 * Assertions are production code: a failed assertion means a broken invariant, is never caught,
 * and takes the process down so systemd restarts it (a correctness bug becomes an availability
 * bug, never silent corruption). Split compound conditions so the message names the one that failed.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: unknown, message?: string): asserts condition {
  if (!condition) throw new AssertionError(message ?? 'assertion failed');
}

/** Marks a switch as exhaustive: the compiler proves `value` is `never`. */
export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
