/**
 * Seeded pseudo-random numbers (xoshiro128**, seeded through splitmix32) so that tests, fuzzers and
 * the simulator replay exactly from one seed. Not for secrets: use node:crypto for those.
 */
import { assert } from './assert';

export interface Random {
  /** Uniform integer in [0, bound). */
  int(bound: number): number;
  /** Uniform float in [0, 1). */
  float(): number;
}

export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    assert(Number.isSafeInteger(seed), 'seed must be an integer');
    let state = (seed ^ Math.floor(seed / 2 ** 32)) >>> 0;
    const next = (): number => {
      state = (state + 0x9e3779b9) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
  }

  /** Next 32-bit unsigned value. */
  next32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c = (this.c ^ this.a) >>> 0;
    this.d = (this.d ^ this.b) >>> 0;
    this.b = (this.b ^ this.c) >>> 0;
    this.a = (this.a ^ this.d) >>> 0;
    this.c = (this.c ^ t) >>> 0;
    this.d = rotl(this.d, 11);
    return result;
  }

  float(): number {
    return (this.next32() * 2 ** 21 + (this.next32() >>> 11)) / 2 ** 53;
  }

  int(bound: number): number {
    assert(Number.isSafeInteger(bound) && bound > 0, 'bound must be a positive integer');
    return Math.floor(this.float() * bound);
  }

  /** Fills a buffer with pseudo-random bytes. */
  fill(target: Buffer): Buffer {
    for (let i = 0; i < target.length; i += 4) {
      const value = this.next32();
      for (let j = 0; j < 4 && i + j < target.length; j++) target[i + j] = (value >>> (8 * j)) & 0xff;
    }
    return target;
  }

  /** A new independent generator derived from this one (for per-component streams). */
  fork(): SeededRandom {
    return new SeededRandom(this.next32() * 2 ** 20 + (this.next32() >>> 12));
  }
}

function rotl(value: number, shift: number): number {
  return ((value << shift) | (value >>> (32 - shift))) >>> 0;
}
