/**
 * Transmission-phase request parser: pure and incremental. Reads 28-byte request headers from the
 * shared ByteQueue with readUInt32BE (no per-header allocation beyond the request object) and cuts
 * WRITE payloads out of the queue — zero-copy when the payload lies inside one received chunk.
 *
 * Invariants: a header is consumed only when complete; a WRITE request is returned only together
 * with its whole payload; a payload longer than `payloadBytesMax` (limits.requestBytesMax, the
 * maximum we advertise in NBD_INFO_BLOCK_SIZE) is never accumulated: the parser fails and the
 * connection is dropped, because skipping up to 4 GiB to resynchronise serves no honest client.
 * Bad magic is fatal for the same reason (no way to find the next header). Everything else —
 * unknown commands and flags, bad ranges — is the validator's job, which answers with an errno.
 *
 * Direct receive: a large payload still arriving can be *adopted* (`directTarget`): the parser
 * takes a buffer of the payload's size, moves the bytes already queued into it, and hands out
 * the unfilled rest so the socket reads straight into it (no copy out of receive chunks).
 * Bytes that still arrive through the queue meanwhile are moved in first, in order, so the
 * payload is always filled front to back: `filled` bytes are in place, the rest is missing.
 */
import { requestBytesMax } from '../limits';
import { assert } from '../util/assert';
import { ByteQueue } from './byte-queue';
import { ioBufferPool } from './io-buffer-pool';
import { Command, requestHeaderBytes, requestMagic } from './protocol';

const twoTo32 = 4294967296;

/** One parsed request. The cookie is kept as two u32 halves and echoed verbatim. */
export class NbdRequest {
  constructor(
    readonly flags: number,
    readonly type: number,
    readonly cookieHigh: number,
    readonly cookieLow: number,
    /** Exact below 2^53; larger wire values round but stay larger than any device size. */
    readonly offset: number,
    readonly length: number,
    /** WRITE only: exactly `length` bytes, set by the parser once they all arrived. */
    public payload: Buffer | undefined,
  ) {}

  /**
   * WRITE only, set by the connection: the payload already went to the device as it arrived (a
   * DirectWrite) — true when it succeeded, else the error to answer with.
   */
  stored: true | Error | undefined = undefined;
}

/** A fatal protocol violation: the connection must be dropped. */
export class RequestParseFailure {
  constructor(readonly reason: string) {}
}

export interface RequestParserOptions {
  readonly payloadBytesMax?: number;
}

export class RequestParser {
  private readonly payloadBytesMax: number;
  /** A WRITE header whose payload has not fully arrived yet. */
  private pending: NbdRequest | undefined;
  private failure: RequestParseFailure | undefined;
  /** The pending WRITE's payload buffer once adopted for direct receive, and its filled prefix. */
  private adopted: Buffer | undefined;
  private filled = 0;

  constructor(private readonly queue: ByteQueue, options: RequestParserOptions = {}) {
    this.payloadBytesMax = options.payloadBytesMax ?? requestBytesMax;
    assert(this.payloadBytesMax > 0, 'payloadBytesMax must be positive');
  }

  /** The WRITE whose payload is still arriving, if any. */
  get pendingWrite(): NbdRequest | undefined {
    return this.pending;
  }

  /** Bytes still missing before the next request is complete (0 when unknown or none pending). */
  get missingPayloadBytes(): number {
    if (this.pending === undefined) return 0;
    return Math.max(0, this.pending.length - this.filled - this.queue.byteLength);
  }

  /**
   * Where the rest of the pending WRITE payload may be received directly: the unfilled part of
   * its adopted buffer. Adopts the payload when at least `minimumBytes` are missing; undefined
   * when no payload is pending, too little is missing, or it is complete (call next()).
   */
  directTarget(minimumBytes: number): Buffer | undefined {
    const request = this.pending;
    if (request === undefined) return undefined;
    if (this.adopted === undefined) {
      if (request.length - this.queue.byteLength < minimumBytes) return undefined;
      this.adopted = ioBufferPool.acquire(request.length);
      this.filled = 0;
    }
    this.absorbQueued(request);
    return this.filled < request.length ? this.adopted.subarray(this.filled) : undefined;
  }

  /** The adopted payload buffer of the pending WRITE and how much of it is filled, if adopted. */
  adoptedPayload(): { readonly buffer: Buffer; readonly filled: number } | undefined {
    return this.adopted === undefined ? undefined : { buffer: this.adopted, filled: this.filled };
  }

  /** `count` bytes were received straight into the last directTarget(). */
  directReceived(count: number): void {
    const request = this.pending;
    assert(request !== undefined && this.adopted !== undefined, 'direct bytes need an adopted payload');
    assert(Number.isSafeInteger(count) && count >= 0 && this.filled + count <= request.length, 'direct bytes fit the payload');
    assert(this.queue.byteLength === 0, 'direct bytes arrive only after every queued byte was absorbed');
    this.filled += count;
  }

  /** The next complete request, undefined until more bytes arrive, or the fatal failure. */
  next(): NbdRequest | RequestParseFailure | undefined {
    if (this.failure !== undefined) return this.failure;
    const queue = this.queue;
    if (this.pending !== undefined) {
      return this.adopted === undefined ? this.maybeCompletePayload(this.pending) : this.maybeCompleteAdopted(this.pending);
    }
    if (queue.byteLength < requestHeaderBytes) return undefined;
    queue.prepare(requestHeaderBytes);
    const view = queue.view;
    const at = queue.viewOffset;
    const magic = view.readUInt32BE(at);
    if (magic !== requestMagic) {
      this.failure = new RequestParseFailure(`bad request magic 0x${magic.toString(16)}`);
      return this.failure;
    }
    const flags = view.readUInt16BE(at + 4);
    const type = view.readUInt16BE(at + 6);
    const cookieHigh = view.readUInt32BE(at + 8);
    const cookieLow = view.readUInt32BE(at + 12);
    const offset = view.readUInt32BE(at + 16) * twoTo32 + view.readUInt32BE(at + 20);
    const length = view.readUInt32BE(at + 24);
    queue.skip(requestHeaderBytes);
    if (type !== Command.WRITE) return new NbdRequest(flags, type, cookieHigh, cookieLow, offset, length, undefined);
    if (length > this.payloadBytesMax) {
      this.failure = new RequestParseFailure(`WRITE payload of ${length} bytes exceeds ${this.payloadBytesMax}`);
      return this.failure;
    }
    return this.maybeCompletePayload(new NbdRequest(flags, type, cookieHigh, cookieLow, offset, length, undefined));
  }

  private maybeCompleteAdopted(request: NbdRequest): NbdRequest | undefined {
    const adopted = this.adopted;
    assert(adopted !== undefined, 'an adopted payload exists');
    this.absorbQueued(request);
    if (this.filled < request.length) return undefined;
    this.pending = undefined;
    this.adopted = undefined;
    this.filled = 0;
    request.payload = adopted;
    return request;
  }

  /** Moves queued payload bytes into the adopted buffer (they precede anything received directly). */
  private absorbQueued(request: NbdRequest): void {
    const adopted = this.adopted;
    assert(adopted !== undefined, 'an adopted payload exists');
    const count = Math.min(this.queue.byteLength, request.length - this.filled);
    if (count === 0) return;
    this.queue.takeInto(adopted, this.filled, count);
    this.filled += count;
  }

  private maybeCompletePayload(request: NbdRequest): NbdRequest | undefined {
    if (this.queue.byteLength < request.length) {
      this.pending = request;
      return undefined;
    }
    this.pending = undefined;
    request.payload = this.queue.take(request.length);
    assert(request.payload.length === request.length, 'payload length');
    return request;
  }
}
