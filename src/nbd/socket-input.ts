/**
 * SocketInput: where a connection's socket reads land. The socket runs in Node's `onread` mode
 * (see adoptSocket): instead of allocating a fresh buffer per read and emitting 'data', Node
 * reads into the buffer `nextBuffer()` returns and reports the count to `onRead`.
 *
 * Two kinds of buffer:
 * - staging: consecutive regions of a slab (never reused while referenced: the slab moves on
 *   and the collector frees it once no queued chunk or payload view points into it), so small
 *   requests and headers cost no allocation per read and payloads inside one read stay zero-copy;
 * - direct: the unfilled rest of a large WRITE payload (the consumer's `directTarget`), so the
 *   kernel copies the payload straight into the buffer the write is served from.
 *
 * Node asks for the next buffer right after each read is reported, so a consumer's answer takes
 * effect from the following read on. Invariant: a read reported with a staging region is a new
 * chunk (`receivedChunk`); one reported with the direct target is `receivedDirect`.
 *
 * A third kind, ahead regions, serves reads made off the event loop while the socket is paused
 * (a bulk receive that also takes what follows its payload, see bulk-channel.ts). They come from
 * a slab of their own: Node holds the last staging region it was handed for its next read, so
 * an ahead read must never land there.
 */
import * as net from 'node:net';
import { assert } from '../util/assert';
import { KiB } from '../util/units';

/** What the connection does with arriving bytes. */
export interface InputConsumer {
  /** The buffer the next read should fill directly, or undefined for a staging region. */
  directTarget(): Buffer | undefined;
  /**
   * True while large payloads stream in: the next staging read then takes only a small region,
   * so a header read does not also pull (and stage, then copy) tens of KiB of payload.
   */
  expectsLargePayloads(): boolean;
  receivedChunk(chunk: Buffer): void;
  receivedDirect(count: number): void;
}

/** One staging slab; reads take regions of it until less than `stagingReadBytesMin` is left. */
export const stagingSlabBytes = 256 * KiB;
const stagingReadBytesMax = 64 * KiB;
const stagingReadBytesMin = 16 * KiB;
/** A staging read while large payloads stream in: a few headers and the start of a payload. */
const stagingReadBytesSmall = 4 * KiB;

/** Bytes an ahead read takes: the next request's header and the start of its payload, if any. */
export const aheadReadBytes = stagingReadBytesSmall;

/**
 * Consecutive regions of slabs. A region's bytes, once committed, are never handed out again
 * (the slab moves on, and the collector frees it once no chunk or payload view points into it).
 */
class Slabs {
  private slab: Buffer | undefined;
  private offset = 0;

  /** The next free region, at most `bytes` long (a fresh slab when less than the minimum is left). */
  region(bytes: number): Buffer {
    if (this.slab === undefined || this.slab.length - this.offset < stagingReadBytesMin) {
      this.slab = Buffer.allocUnsafeSlow(stagingSlabBytes);
      this.offset = 0;
    }
    return this.slab.subarray(this.offset, Math.min(this.slab.length, this.offset + bytes));
  }

  /** The first `count` bytes of the last region are in use now. */
  commit(count: number): void {
    this.offset += count;
  }
}

export class SocketInput {
  private consumer: InputConsumer | undefined;
  private readonly staging = new Slabs();
  private readonly ahead = new Slabs();
  private lastStaging: Buffer | undefined;
  private lastDirect: Buffer | undefined;
  private lastAhead: Buffer | undefined;
  /** A read callback (onRead) is running. */
  private inRead = false;

  /**
   * Binds the consumer. Call it in the tick that created the socket: Node reports reads only
   * from a later turn of the event loop, so none can arrive unbound.
   */
  attach(consumer: InputConsumer): void {
    this.consumer = consumer;
  }

  /** Node's `onread.buffer` hook. */
  readonly nextBuffer = (): Buffer => {
    const direct = this.consumer?.directTarget();
    if (direct !== undefined && direct.length > 0) {
      this.lastDirect = direct;
      this.lastStaging = undefined;
      return direct;
    }
    this.lastDirect = undefined;
    const region = this.staging.region(this.consumer?.expectsLargePayloads() === true ? stagingReadBytesSmall : stagingReadBytesMax);
    this.lastStaging = region;
    return region;
  };

  /**
   * Whether a buffer may be filled by someone other than Node now: false while Node holds a
   * direct target for its next read (nextBuffer handed one out) outside a read callback. Node
   * reads into the buffer it holds whenever the socket is next resumed, so filling that memory
   * meanwhile (a bulk receive of the same payload) would put those later bytes into a payload
   * already complete. Inside a read callback it is safe: Node asks for its next buffer right
   * after, and gets a staging region while a bulk receive runs.
   */
  get directTargetFree(): boolean {
    return this.inRead || this.lastDirect === undefined;
  }

  /** A region for one read off the event loop (see the module comment); at most one is out. */
  aheadRegion(): Buffer {
    this.lastAhead = this.ahead.region(aheadReadBytes);
    return this.lastAhead;
  }

  /** The ahead read filled `count` bytes of `region`: they are a new chunk, returned. */
  aheadReceived(region: Buffer, count: number): Buffer {
    assert(region === this.lastAhead && count <= region.length, 'an ahead read lands in the region aheadRegion() handed out');
    this.lastAhead = undefined;
    this.ahead.commit(count);
    return region.subarray(0, count);
  }

  /** Node's `onread.callback` hook; never pauses by itself (the connection pauses the socket). */
  readonly onRead = (count: number, buffer: Uint8Array): boolean => {
    const consumer = this.consumer;
    assert(consumer !== undefined, 'the consumer is attached before the first read');
    this.inRead = true;
    try {
      if (buffer === this.lastDirect) {
        consumer.receivedDirect(count);
        return true;
      }
      assert(buffer === this.lastStaging, 'a read lands in the buffer nextBuffer() handed out');
      this.staging.commit(count);
      consumer.receivedChunk(this.lastStaging.subarray(0, count));
      return true;
    } finally {
      this.inRead = false;
    }
  };
}

/**
 * Re-creates an accepted socket in `onread` mode over a duplicate of its descriptor (Node offers
 * `onread` only for sockets it creates) and destroys the original, which never read a byte
 * (its server must use pauseOnConnect). Returns undefined when the descriptor is not available
 * (the caller then serves the original socket as it is).
 */
export function adoptSocket(accepted: net.Socket, duplicate: (fd: number) => number): { socket: net.Socket; input: SocketInput; fd: number } | undefined {
  const fd = (accepted as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  let copy: number;
  try {
    copy = duplicate(fd);
  } catch {
    return undefined;
  }
  const input = new SocketInput();
  // Node 20 accepts `onread` here (lib/net.js); its type declarations list it only for connect().
  const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
    fd: copy, readable: true, writable: true, allowHalfOpen: true,
    onread: { buffer: input.nextBuffer, callback: input.onRead },
  };
  const socket = new net.Socket(options);
  accepted.destroy();
  return { socket, input, fd: copy };
}
