/**
 * KvStore: the ordered key/value store Cairn persists metadata in (the applied cluster map today;
 * the Raft log and hard state, and replica-local state later, share the same instance). Keys and
 * values are bytes; keys sort bytewise, so fixed-width big-endian numbers sort numerically.
 *
 * Contract every implementation keeps:
 * - `batch` is atomic: after a crash either every operation of the batch is visible or none is;
 *   operations apply in order, so a later put or del of the same key wins;
 * - with `sync: true` the batch is durable (fsync) when the promise resolves; with `sync: false`
 *   it survives a process crash but may be lost on power failure;
 * - reads see every write whose promise resolved;
 * - iteration yields keys in ascending (or, with `reverse`, descending) byte order and sees a
 *   consistent snapshot taken when it starts;
 * - after `close()` every call rejects with CAIRN_CLOSED; I/O failures reject with CAIRN_IO.
 */
import { assert } from '../util/assert';

export type KvOperation =
  | { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: 'del'; readonly key: Uint8Array };

export interface KvWriteOptions {
  /** true: durable (fsync) before the promise resolves. Required so every writer decides. */
  readonly sync: boolean;
}

/** A key range: every key starting with `prefix`, or `gte <= key < lt`. */
export type KvRange =
  | { readonly prefix: Uint8Array }
  | { readonly gte: Uint8Array; readonly lt?: Uint8Array }
  | { readonly gt: Uint8Array; readonly lt?: Uint8Array };

export interface KvIterateOptions {
  readonly reverse?: boolean;
  /** Stop after this many entries. */
  readonly limit?: number;
}

export interface KvStore {
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  put(key: Uint8Array, value: Uint8Array, options: KvWriteOptions): Promise<void>;
  batch(operations: readonly KvOperation[], options: KvWriteOptions): Promise<void>;
  iterate(range: KvRange, options?: KvIterateOptions): AsyncIterableIterator<[Uint8Array, Uint8Array]>;
  close(): Promise<void>;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 bytes of a string key. */
export function keyOf(text: string): Uint8Array {
  return textEncoder.encode(text);
}

/** A UTF-8 key back to text; throws TypeError for bytes that are not UTF-8. */
export function keyText(key: Uint8Array): string {
  return textDecoder.decode(key);
}

/**
 * The smallest key greater than every key that starts with `prefix` (the exclusive upper bound of
 * a prefix range), or undefined when no such key exists (the prefix is all 0xff bytes).
 */
export function prefixUpperBound(prefix: Uint8Array): Uint8Array | undefined {
  assert(prefix.byteLength > 0, 'prefix must not be empty');
  const bound = Uint8Array.from(prefix);
  for (let i = bound.byteLength - 1; i >= 0; i--) {
    if ((bound[i] as number) < 0xff) {
      bound[i] = (bound[i] as number) + 1;
      return bound.subarray(0, i + 1);
    }
  }
  return undefined;
}
