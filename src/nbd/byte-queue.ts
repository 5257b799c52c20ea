/**
 * ByteQueue: the receive accumulator shared by the handshake and request parsers. Chunks from the
 * stream are queued as they arrive (never copied on arrival); the parsers read fixed-size headers
 * through `prepare` without allocating and cut payloads out with `take`, which is zero-copy when
 * the payload lies inside one received chunk.
 *
 * Invariants: `byteLength` equals the unconsumed bytes of the queued chunks; chunks[head] is the
 * first chunk with unconsumed bytes (or head === chunks.length when empty); no empty chunk is
 * ever queued. Pure: no I/O, no timers.
 */
import { assert } from '../util/assert';
import { ioBufferPool } from './io-buffer-pool';

/** Largest header `prepare` can assemble across chunk boundaries. */
export const byteQueueHeaderBytesMax = 32;

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private headOffset = 0;
  private byteCount = 0;
  private readonly scratch = Buffer.alloc(byteQueueHeaderBytesMax);

  /** After `prepare(n)`: the first n unconsumed bytes are `view[viewOffset, viewOffset + n)`. */
  view: Buffer = this.scratch;
  viewOffset = 0;

  get byteLength(): number {
    return this.byteCount;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.byteCount += chunk.length;
  }

  /**
   * Makes the first `count` bytes readable at `view`/`viewOffset` without consuming them. The view
   * may be a reused scratch buffer: it is valid only until the next call on this queue.
   */
  prepare(count: number): void {
    assert(count <= this.byteCount, 'prepare past the queued bytes');
    assert(count <= byteQueueHeaderBytesMax, 'prepare is for headers only');
    const first = this.chunks[this.head];
    assert(first !== undefined || count === 0, 'queue bookkeeping broken');
    if (first === undefined || first.length - this.headOffset >= count) {
      this.view = first ?? this.scratch;
      this.viewOffset = this.headOffset;
      return;
    }
    this.copyOut(this.scratch, count);
    this.view = this.scratch;
    this.viewOffset = 0;
  }

  /** Consumes `count` bytes and returns them: a view of the received chunk when contiguous. */
  take(count: number): Buffer {
    assert(count <= this.byteCount, 'take past the queued bytes');
    const first = this.chunks[this.head];
    if (first === undefined) {
      assert(count === 0, 'queue bookkeeping broken');
      return Buffer.alloc(0);
    }
    if (first.length - this.headOffset >= count) {
      const slice = first.subarray(this.headOffset, this.headOffset + count);
      this.skip(count);
      return slice;
    }
    const target = ioBufferPool.acquire(count); // the consumer releases it when done (WRITE payloads)
    this.copyOut(target, count);
    this.skip(count);
    return target;
  }

  /** Consumes `count` bytes, copying them into `target` at `targetOffset`. */
  takeInto(target: Buffer, targetOffset: number, count: number): void {
    assert(count <= this.byteCount, 'take past the queued bytes');
    assert(targetOffset >= 0 && targetOffset + count <= target.length, 'takeInto past the target');
    this.copyOut(target.subarray(targetOffset), count);
    this.skip(count);
  }

  /** Consumes `count` bytes. */
  skip(count: number): void {
    assert(count >= 0, 'skip a negative count');
    assert(count <= this.byteCount, 'skip past the queued bytes');
    let rest = count;
    this.byteCount -= count;
    while (rest > 0) {
      const first = this.chunks[this.head];
      assert(first !== undefined, 'queue bookkeeping broken');
      const available = first.length - this.headOffset;
      if (rest < available) {
        this.headOffset += rest;
        rest = 0;
      } else {
        rest -= available;
        this.chunks[this.head] = emptyBuffer; // drop the reference so the chunk can be collected
        this.head += 1;
        this.headOffset = 0;
      }
    }
    this.maybeCompact();
  }

  /** Drops everything queued (connection closing). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.headOffset = 0;
    this.byteCount = 0;
  }

  private copyOut(target: Buffer, count: number): void {
    let copied = 0;
    let index = this.head;
    let offset = this.headOffset;
    while (copied < count) {
      const chunk = this.chunks[index];
      assert(chunk !== undefined, 'queue bookkeeping broken');
      const length = Math.min(chunk.length - offset, count - copied);
      chunk.copy(target, copied, offset, offset + length);
      copied += length;
      index += 1;
      offset = 0;
    }
  }

  private maybeCompact(): void {
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
      assert(this.byteCount === 0, 'empty queue with bytes counted');
    } else if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }
}

const emptyBuffer = Buffer.alloc(0);
