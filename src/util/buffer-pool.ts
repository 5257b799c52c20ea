/**
 * BufferPool: reuses large I/O buffers (NBD READ replies, WRITE payloads that span receive
 * chunks) instead of allocating fresh memory per request. Fresh large buffers are costly here:
 * each is new memory to fault in, and their external bytes drive V8's garbage collector (20 % of
 * the main thread at 1 MiB sequential I/O before this pool).
 *
 * Contract: `acquire(length)` returns a Buffer of exactly `length` bytes (contents undefined).
 * `release(buffer)` gives it back once nothing reads or writes it any more — for a socket write,
 * in the write's callback. Releasing a buffer the pool did not hand out is a no-op, so callers may
 * release unconditionally; a buffer that is never released is simply garbage-collected.
 *
 * Invariants: only lengths in [minimumBytes, maximumBytes] are pooled, in power-of-two size
 * classes; at most retainedBytesMax bytes sit idle in the pool; a buffer is handed out at most
 * once at a time (a WeakSet tracks the ones out).
 */
import { assert } from './assert';

export interface BufferPoolOptions {
  readonly minimumBytes: number;
  readonly maximumBytes: number;
  readonly retainedBytesMax: number;
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly out = new WeakSet<ArrayBuffer>();
  private retainedBytes = 0;

  constructor(private readonly options: BufferPoolOptions) {
    assert(options.minimumBytes > 0, 'minimumBytes is positive');
    assert(options.maximumBytes >= options.minimumBytes, 'maximumBytes is at least minimumBytes');
    assert(options.retainedBytesMax >= 0, 'retainedBytesMax is not negative');
  }

  /** Bytes idle in the pool. */
  get idleBytes(): number {
    return this.retainedBytes;
  }

  acquire(length: number): Buffer {
    assert(Number.isSafeInteger(length) && length >= 0, 'length is a non-negative integer');
    if (length < this.options.minimumBytes || length > this.options.maximumBytes) return Buffer.allocUnsafe(length);
    const classBytes = sizeClassOf(length);
    const list = this.free.get(classBytes);
    let backing = list?.pop();
    if (backing !== undefined) this.retainedBytes -= classBytes;
    else backing = Buffer.allocUnsafeSlow(classBytes).buffer;
    assert(backing.byteLength === classBytes, 'a pooled buffer has its class size');
    this.out.add(backing);
    return Buffer.from(backing, 0, length);
  }

  release(buffer: Buffer): void {
    const backing = buffer.buffer as ArrayBuffer;
    if (!this.out.has(backing)) return;
    this.out.delete(backing);
    const classBytes = backing.byteLength;
    if (this.retainedBytes + classBytes > this.options.retainedBytesMax) return;
    let list = this.free.get(classBytes);
    if (list === undefined) {
      list = [];
      this.free.set(classBytes, list);
    }
    list.push(backing);
    this.retainedBytes += classBytes;
  }
}

function sizeClassOf(length: number): number {
  let size = 1;
  while (size < length) size *= 2;
  return size;
}
