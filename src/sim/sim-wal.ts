/**
 * The byte format of the simulated disk: a write-ahead log of framed records, each one write
 * batch of a node — a Ready's hard state, snapshot and entries together (one batch, as the driver
 * writes one LevelDB batch), or a local compaction (snapshot taken, log prefix discarded).
 *
 *   frame   = u32 payload length | u32 CRC-32 (IEEE) of payload | payload
 *   payload = u8 kind
 *             kind 1 ready:   u8 flags (1 hard state, 2 snapshot) [| hardState] [| snapshot]
 *                             | u32 entry count | entries
 *             kind 2 compact: snapshot | u64 compact index
 *   hardState = u64 term | u64 vote | u64 commit
 *   snapshot  = u64 index | u64 term | confState | u32 data length | data
 *   confState = 4 × (u32 count | count × u64 id) for voters, votersOutgoing, learners, learnersNext
 *               | u8 autoLeave
 *   entry     = u64 term | u64 index | u8 type (0 normal, 1 confChange) | u32 data length | data
 *   u64       = u32 high | u32 low (a safe integer)
 *
 * Recovery reads frames from the start and stops at the first one that is short, over the length
 * bound, fails its checksum or does not decode: a torn last write is detected there and it and
 * everything after it are discarded. Every length is checked against the bytes left before
 * anything is allocated.
 */
import type { ConfState, Entry, HardState, Snapshot } from '../raft/types';
import { assert } from '../util/assert';

export type WalRecord =
  | { readonly kind: 'ready'; readonly hardState?: HardState; readonly snapshot?: Snapshot; readonly entries: readonly Entry[] }
  | { readonly kind: 'compact'; readonly snapshot: Snapshot; readonly compactIndex: number };

/** Largest frame payload accepted on recovery (a bound for corrupt length fields). */
export const walFramePayloadBytesMax = 64 * 1024 * 1024;
const frameHeaderBytes = 8;
const idListMax = 1024;

export function encodeWalRecord(record: WalRecord): Uint8Array {
  const writer = new Writer();
  writer.u32(0); // length, patched below
  writer.u32(0); // checksum, patched below
  if (record.kind === 'ready') {
    writer.u8(1);
    writer.u8((record.hardState === undefined ? 0 : 1) | (record.snapshot === undefined ? 0 : 2));
    if (record.hardState !== undefined) {
      writer.u64(record.hardState.term);
      writer.u64(record.hardState.vote);
      writer.u64(record.hardState.commit);
    }
    if (record.snapshot !== undefined) writeSnapshot(writer, record.snapshot);
    writer.u32(record.entries.length);
    for (const entry of record.entries) {
      writer.u64(entry.term);
      writer.u64(entry.index);
      writer.u8(entry.type === 'normal' ? 0 : 1);
      writer.bytes(entry.data);
    }
  } else {
    writer.u8(2);
    writeSnapshot(writer, record.snapshot);
    writer.u64(record.compactIndex);
  }
  const frame = writer.finish();
  const payloadBytes = frame.length - frameHeaderBytes;
  assert(payloadBytes <= walFramePayloadBytesMax, `wal record of ${payloadBytes} bytes exceeds the frame bound`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  view.setUint32(0, payloadBytes);
  view.setUint32(4, crc32(frame.subarray(frameHeaderBytes)));
  return frame;
}

export interface WalReadResult {
  readonly records: WalRecord[];
  /** Bytes of intact frames; anything after is a torn or corrupt tail. */
  readonly validBytes: number;
  /** Why reading stopped before the end, if it did. */
  readonly tail: string | undefined;
}

/** Reads every intact frame of `bytes` in order; stops at the first damaged one. */
export function readWal(bytes: Uint8Array): WalReadResult {
  const records: WalRecord[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < frameHeaderBytes) return { records, validBytes: offset, tail: 'short frame header' };
    const length = view.getUint32(offset);
    const checksum = view.getUint32(offset + 4);
    if (length > walFramePayloadBytesMax) return { records, validBytes: offset, tail: `frame length ${length} over the bound` };
    if (bytes.length - offset - frameHeaderBytes < length) return { records, validBytes: offset, tail: 'short frame payload' };
    const payload = bytes.subarray(offset + frameHeaderBytes, offset + frameHeaderBytes + length);
    if (crc32(payload) !== checksum) return { records, validBytes: offset, tail: 'checksum mismatch' };
    const record = decodePayload(payload);
    if (typeof record === 'string') return { records, validBytes: offset, tail: record };
    records.push(record);
    offset += frameHeaderBytes + length;
  }
  return { records, validBytes: offset, tail: undefined };
}

function writeSnapshot(writer: Writer, snapshot: Snapshot): void {
  writer.u64(snapshot.metadata.index);
  writer.u64(snapshot.metadata.term);
  const conf = snapshot.metadata.confState;
  for (const ids of [conf.voters, conf.votersOutgoing, conf.learners, conf.learnersNext]) {
    writer.u32(ids.length);
    for (const id of ids) writer.u64(id);
  }
  writer.u8(conf.autoLeave ? 1 : 0);
  writer.bytes(snapshot.data);
}

/** A record, or a string saying why the payload does not decode. */
function decodePayload(payload: Uint8Array): WalRecord | string {
  const reader = new Reader(payload);
  try {
    const kind = reader.u8();
    if (kind === 1) {
      const flags = reader.u8();
      if (flags > 3) return `bad flags ${flags}`;
      const hardState = (flags & 1) !== 0 ? { term: reader.u64(), vote: reader.u64(), commit: reader.u64() } : undefined;
      const snapshot = (flags & 2) !== 0 ? readSnapshot(reader) : undefined;
      const count = reader.u32();
      if (count * 21 > reader.remaining) return `${count} entries cannot fit`;
      const entries: Entry[] = [];
      for (let i = 0; i < count; i++) {
        const term = reader.u64();
        const index = reader.u64();
        const type = reader.u8();
        if (type > 1) return `bad entry type ${type}`;
        entries.push({ term, index, type: type === 0 ? 'normal' : 'confChange', data: reader.bytes() });
      }
      reader.end();
      return { kind: 'ready', entries, ...(hardState === undefined ? {} : { hardState }), ...(snapshot === undefined ? {} : { snapshot }) };
    }
    if (kind === 2) {
      const snapshot = readSnapshot(reader);
      const compactIndex = reader.u64();
      reader.end();
      return { kind: 'compact', snapshot, compactIndex };
    }
    return `unknown record kind ${kind}`;
  } catch (error) {
    if (error instanceof WalDecodeError) return error.message;
    throw error;
  }
}

function readSnapshot(reader: Reader): Snapshot {
  const index = reader.u64();
  const term = reader.u64();
  const lists: number[][] = [];
  for (let l = 0; l < 4; l++) {
    const count = reader.u32();
    if (count > idListMax || count * 8 > reader.remaining) throw new WalDecodeError(`id list of ${count} cannot fit`);
    const ids: number[] = [];
    for (let i = 0; i < count; i++) ids.push(reader.u64());
    lists.push(ids);
  }
  const autoLeave = reader.u8();
  if (autoLeave > 1) throw new WalDecodeError(`bad autoLeave ${autoLeave}`);
  const confState: ConfState = {
    voters: lists[0] as number[], votersOutgoing: lists[1] as number[], learners: lists[2] as number[],
    learnersNext: lists[3] as number[], autoLeave: autoLeave === 1,
  };
  return { metadata: { index, term, confState }, data: reader.bytes() };
}

class WalDecodeError extends Error {}

class Writer {
  private buffer = new Uint8Array(256);
  private view = new DataView(this.buffer.buffer);
  private length = 0;

  private reserve(count: number): void {
    if (this.length + count <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + count) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
    this.view = new DataView(next.buffer);
  }

  u8(value: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, value);
    this.length += 1;
  }

  u32(value: number): void {
    assert(Number.isInteger(value) && value >= 0 && value < 2 ** 32, `u32 out of range: ${value}`);
    this.reserve(4);
    this.view.setUint32(this.length, value);
    this.length += 4;
  }

  u64(value: number): void {
    assert(Number.isSafeInteger(value) && value >= 0, `u64 must be a non-negative safe integer: ${value}`);
    this.reserve(8);
    this.view.setUint32(this.length, Math.floor(value / 2 ** 32));
    this.view.setUint32(this.length + 4, value % 2 ** 32);
    this.length += 8;
  }

  bytes(data: Uint8Array): void {
    this.u32(data.length);
    this.reserve(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

class Reader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  get remaining(): number {
    return this.data.length - this.offset;
  }

  private need(count: number): void {
    if (this.remaining < count) throw new WalDecodeError(`truncated at ${this.offset} (need ${count})`);
  }

  u8(): number {
    this.need(1);
    return this.view.getUint8(this.offset++);
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  u64(): number {
    this.need(8);
    const value = this.view.getUint32(this.offset) * 2 ** 32 + this.view.getUint32(this.offset + 4);
    this.offset += 8;
    if (!Number.isSafeInteger(value)) throw new WalDecodeError('u64 past 2^53');
    return value;
  }

  bytes(): Uint8Array {
    const length = this.u32();
    this.need(length);
    const value = this.data.slice(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  end(): void {
    if (this.remaining !== 0) throw new WalDecodeError(`${this.remaining} trailing bytes`);
  }
}

const crcTable = ((): Uint32Array => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, reflected, as zlib computes it). */
export function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = (crcTable[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
