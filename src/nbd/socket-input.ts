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

export class SocketInput {
  private consumer: InputConsumer | undefined;
  private slab = Buffer.allocUnsafeSlow(stagingSlabBytes);
  private slabOffset = 0;
  private lastStaging: Buffer | undefined;
  private lastDirect: Buffer | undefined;

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
    if (this.slab.length - this.slabOffset < stagingReadBytesMin) {
      this.slab = Buffer.allocUnsafeSlow(stagingSlabBytes);
      this.slabOffset = 0;
    }
    const readBytes = this.consumer?.expectsLargePayloads() === true ? stagingReadBytesSmall : stagingReadBytesMax;
    const region = this.slab.subarray(this.slabOffset, Math.min(this.slab.length, this.slabOffset + readBytes));
    this.lastStaging = region;
    return region;
  };

  /** Node's `onread.callback` hook; never pauses by itself (the connection pauses the socket). */
  readonly onRead = (count: number, buffer: Uint8Array): boolean => {
    const consumer = this.consumer;
    assert(consumer !== undefined, 'the consumer is attached before the first read');
    if (buffer === this.lastDirect) {
      consumer.receivedDirect(count);
      return true;
    }
    assert(buffer === this.lastStaging, 'a read lands in the buffer nextBuffer() handed out');
    this.slabOffset += count;
    consumer.receivedChunk(this.lastStaging.subarray(0, count));
    return true;
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
