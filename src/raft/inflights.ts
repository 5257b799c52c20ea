/**
 * Inflights: the sliding window of appends sent to one follower and not yet acknowledged,
 * bounded by a message count AND a byte total. A ring buffer of (last index, bytes) in send order.
 *
 * Invariants: indexes are added in increasing order; count <= capacity; bytes is the sum of the
 * sizes in the window.
 */
import { assert } from '../util/assert';

export class Inflights {
  private readonly indexes: number[];
  private readonly sizes: number[];
  private start = 0;
  private countValue = 0;
  private bytesValue = 0;

  constructor(readonly capacity: number, readonly bytesMax: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, `inflights capacity ${capacity} must be positive`);
    assert(bytesMax > 0, `inflights bytesMax ${bytesMax} must be positive`);
    this.indexes = new Array<number>(capacity).fill(0);
    this.sizes = new Array<number>(capacity).fill(0);
  }

  get count(): number {
    return this.countValue;
  }

  get bytes(): number {
    return this.bytesValue;
  }

  /** True when no further message may be sent: the count or the byte bound is reached. */
  full(): boolean {
    return this.countValue === this.capacity || this.bytesValue >= this.bytesMax;
  }

  /** Records a message whose last entry is `index`. The caller checked !full(). */
  add(index: number, bytes: number): void {
    assert(!this.full(), `inflights add ${index}: window is full (${this.countValue} messages, ${this.bytesValue} bytes)`);
    if (this.countValue > 0) {
      const last = this.indexes[(this.start + this.countValue - 1) % this.capacity] as number;
      assert(index > last, `inflights add ${index} not after last in-flight index ${last}`);
    }
    const slot = (this.start + this.countValue) % this.capacity;
    this.indexes[slot] = index;
    this.sizes[slot] = bytes;
    this.countValue++;
    this.bytesValue += bytes;
  }

  /** Frees every message whose last index is <= `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.countValue > 0) {
      const slot = this.start;
      if ((this.indexes[slot] as number) > index) break;
      this.bytesValue -= this.sizes[slot] as number;
      this.start = (this.start + 1) % this.capacity;
      this.countValue--;
    }
    if (this.countValue === 0) this.start = 0;
  }

  reset(): void {
    this.start = 0;
    this.countValue = 0;
    this.bytesValue = 0;
  }

  clone(): Inflights {
    const copy = new Inflights(this.capacity, this.bytesMax);
    for (let i = 0; i < this.countValue; i++) {
      const slot = (this.start + i) % this.capacity;
      copy.add(this.indexes[slot] as number, this.sizes[slot] as number);
    }
    return copy;
  }
}
