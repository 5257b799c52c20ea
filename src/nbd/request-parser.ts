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
 */
import { requestBytesMax } from '../limits';
import { assert } from '../util/assert';
import { ByteQueue } from './byte-queue';
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

  constructor(private readonly queue: ByteQueue, options: RequestParserOptions = {}) {
    this.payloadBytesMax = options.payloadBytesMax ?? requestBytesMax;
    assert(this.payloadBytesMax > 0, 'payloadBytesMax must be positive');
  }

  /** Bytes still missing before the next request is complete (0 when unknown or none pending). */
  get missingPayloadBytes(): number {
    return this.pending === undefined ? 0 : Math.max(0, this.pending.length - this.queue.byteLength);
  }

  /** The next complete request, undefined until more bytes arrive, or the fatal failure. */
  next(): NbdRequest | RequestParseFailure | undefined {
    if (this.failure !== undefined) return this.failure;
    const queue = this.queue;
    if (this.pending !== undefined) return this.maybeCompletePayload(this.pending);
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
