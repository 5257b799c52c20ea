/**
 * The length-prefixed frame every peer connection carries:
 *
 *   [u32 payload length][u16 type][u16 version][payload]      (big-endian, 8-byte header)
 *
 * `length` counts the payload only. Type 0 and version 0 are never valid, so a run of zero bytes
 * (a common shape of garbage) fails at once instead of looking like an empty message.
 *
 * FrameDecoder turns an arbitrary chunking of a byte stream into frames. Contract:
 * - the declared length is checked against `payloadBytesMax` as soon as the header is complete,
 *   before anything is allocated for the payload; payload bytes are only collected as they arrive,
 *   so memory held by one decoder is bounded by the bytes received and `payloadBytesMax + 8`;
 * - every malformed input throws FrameError (never anything else) and poisons the decoder: the
 *   stream has lost its framing, later calls throw the same error and the caller must drop the
 *   connection;
 * - a payload that lies inside one pushed chunk is a view of that chunk (no copy): callers that
 *   keep payloads must not reuse the chunk's memory.
 *
 * Pure: no I/O, no timers.
 */
import { framePayloadBytesMax } from '../limits';
import { assert } from '../util/assert';

export const frameHeaderBytes = 8;
export const frameTypeMax = 0xffff;
export const frameVersionMax = 0xffff;

export interface Frame {
  /** 1..65535; the meaning of each type belongs to the transport that uses it. */
  readonly type: number;
  /** 1..65535; version of the payload layout for this type. */
  readonly version: number;
  readonly payload: Uint8Array;
}

export type FrameErrorReason =
  /** The declared payload length exceeds the decoder's maximum. */
  | 'too-large'
  /** Type 0, or a type the decoder's `acceptType` refused. */
  | 'bad-type'
  /** Version 0, or a version the decoder's `acceptVersion` refused. */
  | 'bad-version'
  /** The stream ended inside a frame. */
  | 'truncated';

/** A malformed frame. Reported once per stream; the connection must be dropped. */
export class FrameError extends Error {
  override readonly name = 'FrameError';
  constructor(
    readonly reason: FrameErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export interface FrameCodecOptions {
  /** Largest payload accepted; defaults to limits.framePayloadBytesMax. */
  readonly payloadBytesMax?: number;
}

export interface FrameDecoderOptions extends FrameCodecOptions {
  /** Refuse types this returns false for (checked before the payload is read). */
  readonly acceptType?: (type: number) => boolean;
  /** Refuse versions this returns false for, given the frame's type. */
  readonly acceptVersion?: (type: number, version: number) => boolean;
}

function checkPayloadBytesMax(payloadBytesMax: number): number {
  assert(Number.isSafeInteger(payloadBytesMax), 'payloadBytesMax must be an integer');
  assert(payloadBytesMax >= 0, 'payloadBytesMax must not be negative');
  assert(payloadBytesMax < 2 ** 32, 'payloadBytesMax must fit the u32 length field');
  return payloadBytesMax;
}

/** Encodes one frame. Arguments out of range are programmer errors (AssertionError). */
export function encodeFrame(frame: Frame, options: FrameCodecOptions = {}): Buffer {
  const payloadBytesMax = checkPayloadBytesMax(options.payloadBytesMax ?? framePayloadBytesMax);
  assert(Number.isInteger(frame.type), 'frame type must be an integer');
  assert(frame.type >= 1 && frame.type <= frameTypeMax, `frame type ${frame.type} outside 1..${frameTypeMax}`);
  assert(Number.isInteger(frame.version), 'frame version must be an integer');
  assert(frame.version >= 1 && frame.version <= frameVersionMax, `frame version ${frame.version} outside 1..${frameVersionMax}`);
  assert(frame.payload.byteLength <= payloadBytesMax, `frame payload of ${frame.payload.byteLength} bytes exceeds ${payloadBytesMax}`);
  const target = Buffer.allocUnsafe(frameHeaderBytes + frame.payload.byteLength);
  target.writeUInt32BE(frame.payload.byteLength, 0);
  target.writeUInt16BE(frame.type, 4);
  target.writeUInt16BE(frame.version, 6);
  target.set(frame.payload, frameHeaderBytes);
  assert(target.byteLength === frameHeaderBytes + frame.payload.byteLength);
  return target;
}

/** Incremental decoder for one byte stream. */
export class FrameDecoder {
  private readonly payloadBytesMax: number;
  private readonly acceptType: (type: number) => boolean;
  private readonly acceptVersion: (type: number, version: number) => boolean;
  private readonly header = Buffer.alloc(frameHeaderBytes);
  private headerFilled = 0;
  /** Set once a complete header passed its checks: the frame whose payload is being collected. */
  private pending: { type: number; version: number; payloadBytes: number } | undefined;
  /** Payload pieces collected so far for `pending` (views of pushed chunks). */
  private pieces: Uint8Array[] = [];
  private piecesBytes = 0;
  private failure: FrameError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.payloadBytesMax = checkPayloadBytesMax(options.payloadBytesMax ?? framePayloadBytesMax);
    this.acceptType = options.acceptType ?? (() => true);
    this.acceptVersion = options.acceptVersion ?? (() => true);
  }

  /** Bytes received that do not yet form a complete frame (0 after a failure). */
  get bufferedBytes(): number {
    return this.headerFilled + (this.pending === undefined ? 0 : frameHeaderBytes) + this.piecesBytes;
  }

  /** Feeds the next bytes of the stream; returns the frames they complete, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.failure) throw this.failure;
    const frames: Frame[] = [];
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.pending === undefined) {
        const copied = Math.min(frameHeaderBytes - this.headerFilled, chunk.byteLength - offset);
        this.header.set(chunk.subarray(offset, offset + copied), this.headerFilled);
        this.headerFilled += copied;
        offset += copied;
        if (this.headerFilled < frameHeaderBytes) break;
        this.pending = this.checkHeader();
        this.headerFilled = 0;
      }
      const pending = this.pending;
      const wanted = pending.payloadBytes - this.piecesBytes;
      const taken = Math.min(wanted, chunk.byteLength - offset);
      if (taken > 0) {
        this.pieces.push(chunk.subarray(offset, offset + taken));
        this.piecesBytes += taken;
        offset += taken;
      }
      if (this.piecesBytes === pending.payloadBytes) {
        frames.push({ type: pending.type, version: pending.version, payload: this.takePayload() });
        this.pending = undefined;
      }
    }
    assert(offset === chunk.byteLength);
    return frames;
  }

  /** Declares the end of the stream: throws FrameError('truncated') when it ended inside a frame. */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.bufferedBytes > 0) {
      const detail = this.pending === undefined
        ? `${this.headerFilled} of ${frameHeaderBytes} header bytes`
        : `${this.piecesBytes} of ${this.pending.payloadBytes} payload bytes`;
      this.fail('truncated', `stream ended inside a frame (${detail})`);
    }
  }

  private checkHeader(): { type: number; version: number; payloadBytes: number } {
    const payloadBytes = this.header.readUInt32BE(0);
    const type = this.header.readUInt16BE(4);
    const version = this.header.readUInt16BE(6);
    if (payloadBytes > this.payloadBytesMax) {
      this.fail('too-large', `frame of type ${type} declares ${payloadBytes} payload bytes; at most ${this.payloadBytesMax} are accepted`);
    }
    if (type === 0 || !this.acceptType(type)) this.fail('bad-type', `frame type ${type} is not accepted on this stream`);
    if (version === 0 || !this.acceptVersion(type, version)) this.fail('bad-version', `frame type ${type} version ${version} is not accepted`);
    return { type, version, payloadBytes };
  }

  private takePayload(): Uint8Array {
    const pieces = this.pieces;
    const payloadBytes = this.piecesBytes;
    this.pieces = [];
    this.piecesBytes = 0;
    if (pieces.length === 1) return pieces[0] as Uint8Array;
    const payload = Buffer.concat(pieces, payloadBytes);
    assert(payload.byteLength === payloadBytes);
    return payload;
  }

  private fail(reason: FrameErrorReason, message: string): never {
    this.failure = new FrameError(reason, message);
    this.pending = undefined;
    this.headerFilled = 0;
    this.pieces = [];
    this.piecesBytes = 0;
    throw this.failure;
  }
}
