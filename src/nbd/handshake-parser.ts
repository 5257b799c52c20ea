/**
 * The client side of the fixed newstyle handshake as a pure, incremental parser: it reads the
 * client flags, then one option at a time (`IHAVEOPT`, u32 option, u32 length, data), and decodes
 * the data of the options that carry structure (INFO/GO, LIST/SET_META_CONTEXT, EXPORT_NAME).
 *
 * Invariants: every length is checked before anything is allocated or consumed — option data
 * ≤ optionBytesMax (else the connection is dropped: we cannot cheaply skip an absurd payload
 * and a well-behaved client never sends one), strings ≤ nbdStringBytesMax, meta-context queries
 * ≤ nbdMetaQueriesMax. A failure is fatal for the connection; a decode error is an option
 * reply (ERR_INVALID / ERR_TOO_BIG) and negotiation continues. No I/O, no timers.
 */
import { isUtf8 } from 'node:buffer';
import { nbdMetaQueriesMax, nbdOptionBytesMax, nbdStringBytesMax } from '../limits';
import { assert } from '../util/assert';
import { ByteQueue } from './byte-queue';
import {
  clientFlagsBytes, clientFlagsKnown, OptionReply, optionHeaderBytes, optionMagicHigh, optionMagicLow,
} from './protocol';

export type HandshakeEvent =
  | { readonly kind: 'client-flags'; readonly flags: number }
  | { readonly kind: 'option'; readonly option: number; readonly data: Buffer }
  | { readonly kind: 'failure'; readonly reason: string };

export interface HandshakeParserOptions {
  readonly optionBytesMax?: number;
}

type HandshakeState = 'client-flags' | 'option-header' | 'option-data' | 'failed';

export class HandshakeParser {
  private state: HandshakeState = 'client-flags';
  private pendingOption = 0;
  private pendingBytes = 0;
  private readonly optionBytesMax: number;

  constructor(private readonly queue: ByteQueue, options: HandshakeParserOptions = {}) {
    this.optionBytesMax = options.optionBytesMax ?? nbdOptionBytesMax;
    assert(this.optionBytesMax > 0, 'optionBytesMax must be positive');
  }

  /** The next complete event, or undefined until more bytes arrive. After a failure: always it. */
  next(): HandshakeEvent | undefined {
    const queue = this.queue;
    switch (this.state) {
      case 'failed':
        return { kind: 'failure', reason: 'handshake already failed' };
      case 'client-flags': {
        if (queue.byteLength < clientFlagsBytes) return undefined;
        queue.prepare(clientFlagsBytes);
        const flags = queue.view.readUInt32BE(queue.viewOffset);
        queue.skip(clientFlagsBytes);
        if ((flags & ~clientFlagsKnown) !== 0) return this.fail(`unknown client flags 0x${flags.toString(16)}`);
        this.state = 'option-header';
        return { kind: 'client-flags', flags };
      }
      case 'option-header': {
        if (queue.byteLength < optionHeaderBytes) return undefined;
        queue.prepare(optionHeaderBytes);
        const view = queue.view;
        const at = queue.viewOffset;
        if (view.readUInt32BE(at) !== optionMagicHigh || view.readUInt32BE(at + 4) !== optionMagicLow) {
          return this.fail('bad option magic');
        }
        const option = view.readUInt32BE(at + 8);
        const length = view.readUInt32BE(at + 12);
        queue.skip(optionHeaderBytes);
        if (length > this.optionBytesMax) {
          return this.fail(`option ${option} data of ${length} bytes exceeds ${this.optionBytesMax}`);
        }
        this.pendingOption = option;
        this.pendingBytes = length;
        this.state = 'option-data';
        return this.next();
      }
      case 'option-data': {
        if (queue.byteLength < this.pendingBytes) return undefined;
        const data = queue.take(this.pendingBytes);
        assert(data.length === this.pendingBytes, 'option data length');
        this.state = 'option-header';
        return { kind: 'option', option: this.pendingOption, data };
      }
    }
  }

  private fail(reason: string): HandshakeEvent {
    this.state = 'failed';
    return { kind: 'failure', reason };
  }
}

/** An option whose data is malformed: answered with `reply` and negotiation continues. */
export class OptionDecodeError {
  constructor(readonly reply: number, readonly message: string) {}
}

export interface InfoRequest {
  readonly name: string;
  readonly infoTypes: readonly number[];
}

export interface MetaContextRequest {
  readonly exportName: string;
  readonly queries: readonly string[];
}

/** EXPORT_NAME data is the name itself. */
export function decodeExportName(data: Buffer): string | OptionDecodeError {
  return decodeString(data, 0, data.length);
}

/** INFO / GO data: u32 name length, name, u16 count, count × u16 info type; nothing else. */
export function decodeInfoRequest(data: Buffer): InfoRequest | OptionDecodeError {
  if (data.length < 6) return invalid(`INFO/GO data of ${data.length} bytes is too short`);
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 6) return invalid('export name length runs past the option data');
  const name = decodeString(data, 4, nameBytes);
  if (name instanceof OptionDecodeError) return name;
  const count = data.readUInt16BE(4 + nameBytes);
  const expectedBytes = 4 + nameBytes + 2 + 2 * count;
  if (expectedBytes !== data.length) {
    return invalid(`INFO/GO data is ${data.length} bytes, its fields say ${expectedBytes}`);
  }
  const infoTypes: number[] = [];
  for (let index = 0; index < count; index++) infoTypes.push(data.readUInt16BE(4 + nameBytes + 2 + 2 * index));
  return { name, infoTypes };
}

/** LIST/SET_META_CONTEXT data: u32 name length, name, u32 count, count × (u32 length, query). */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest | OptionDecodeError {
  if (data.length < 8) return invalid(`meta context data of ${data.length} bytes is too short`);
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.length - 8) return invalid('export name length runs past the option data');
  const exportName = decodeString(data, 4, nameBytes);
  if (exportName instanceof OptionDecodeError) return exportName;
  let at = 4 + nameBytes;
  const count = data.readUInt32BE(at);
  at += 4;
  if (count > nbdMetaQueriesMax) {
    return new OptionDecodeError(OptionReply.ERR_TOO_BIG, `${count} meta context queries exceed ${nbdMetaQueriesMax}`);
  }
  const queries: string[] = [];
  for (let index = 0; index < count; index++) {
    if (data.length - at < 4) return invalid(`meta context query ${index} runs past the option data`);
    const queryBytes = data.readUInt32BE(at);
    at += 4;
    if (queryBytes > data.length - at) return invalid(`meta context query ${index} runs past the option data`);
    const query = decodeString(data, at, queryBytes);
    if (query instanceof OptionDecodeError) return query;
    at += queryBytes;
    queries.push(query);
  }
  if (at !== data.length) return invalid(`${data.length - at} trailing bytes after the meta context queries`);
  return { exportName, queries };
}

/** A protocol string: ≤ nbdStringBytesMax bytes of UTF-8 without NUL. */
function decodeString(data: Buffer, start: number, length: number): string | OptionDecodeError {
  assert(start + length <= data.length, 'string bounds checked by the caller');
  if (length > nbdStringBytesMax) {
    return new OptionDecodeError(OptionReply.ERR_TOO_BIG, `string of ${length} bytes exceeds ${nbdStringBytesMax}`);
  }
  const bytes = data.subarray(start, start + length);
  if (bytes.includes(0)) return invalid('string contains NUL');
  if (!isUtf8(bytes)) return invalid('string is not valid UTF-8');
  return bytes.toString('utf8');
}

function invalid(message: string): OptionDecodeError {
  return new OptionDecodeError(OptionReply.ERR_INVALID, message);
}
