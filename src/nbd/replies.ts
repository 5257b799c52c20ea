/**
 * Encoders for everything the server sends: the greeting, option replies (with their INFO,
 * SERVER and META_CONTEXT payloads), the EXPORT_NAME ending, simple replies and structured reply
 * chunks. Pure: each function returns a new Buffer or writes into the one it is given.
 *
 * Invariants: every length field equals the bytes that follow it; strings are UTF-8 and error
 * messages are cut to `messageBytesMax` on a character boundary; 64-bit values are split into two
 * u32 halves so any safe integer encodes exactly.
 */
import { assert } from '../util/assert';
import type { RequestLike } from './validate';
import {
  AllocationState, exportNameReplyPaddingBytes, HandshakeFlag, Info, nbdMagicHigh, nbdMagicLow,
  optionMagicHigh, optionMagicLow, OptionReply, optionReplyHeaderBytes, optionReplyMagicHigh,
  optionReplyMagicLow, ReplyFlag, ReplyType, serverGreetingBytes, simpleReplyBytes, simpleReplyMagic,
  structuredReplyHeaderBytes, structuredReplyMagic,
} from './protocol';

const twoTo32 = 4294967296;
/** Error messages sent to clients are informative, not essays. */
export const messageBytesMax = 512;

export function writeUInt64BE(target: Buffer, value: number, at: number): void {
  assert(Number.isSafeInteger(value), 'u64 value must be a safe integer');
  assert(value >= 0, 'u64 value must not be negative');
  target.writeUInt32BE(Math.floor(value / twoTo32), at);
  target.writeUInt32BE(value % twoTo32, at + 4);
}

export function encodeServerGreeting(): Buffer {
  const greeting = Buffer.allocUnsafe(serverGreetingBytes);
  greeting.writeUInt32BE(nbdMagicHigh, 0);
  greeting.writeUInt32BE(nbdMagicLow, 4);
  greeting.writeUInt32BE(optionMagicHigh, 8);
  greeting.writeUInt32BE(optionMagicLow, 12);
  greeting.writeUInt16BE(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES, 16);
  return greeting;
}

export function encodeOptionReply(option: number, replyType: number, payload?: Buffer): Buffer {
  const payloadBytes = payload?.length ?? 0;
  const reply = Buffer.allocUnsafe(optionReplyHeaderBytes + payloadBytes);
  reply.writeUInt32BE(optionReplyMagicHigh, 0);
  reply.writeUInt32BE(optionReplyMagicLow, 4);
  reply.writeUInt32BE(option >>> 0, 8);
  reply.writeUInt32BE(replyType >>> 0, 12);
  reply.writeUInt32BE(payloadBytes, 16);
  if (payload !== undefined) payload.copy(reply, optionReplyHeaderBytes);
  return reply;
}

export function encodeOptionError(option: number, replyType: number, message: string): Buffer {
  assert(replyType >= 0x80000000, 'error replies have bit 31 set');
  return encodeOptionReply(option, replyType, truncatedUtf8(message));
}

export function encodeOptionAck(option: number): Buffer {
  return encodeOptionReply(option, OptionReply.ACK);
}

/** NBD_REP_SERVER: u32 name length, name, description (the rest). */
export function encodeServerEntry(option: number, name: string, description: string | undefined): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descriptionBytes = Buffer.from(description ?? '', 'utf8');
  const payload = Buffer.allocUnsafe(4 + nameBytes.length + descriptionBytes.length);
  payload.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(payload, 4);
  descriptionBytes.copy(payload, 4 + nameBytes.length);
  return encodeOptionReply(option, OptionReply.SERVER, payload);
}

export function encodeInfoExport(option: number, sizeBytes: number, transmissionFlags: number): Buffer {
  const payload = Buffer.allocUnsafe(12);
  payload.writeUInt16BE(Info.EXPORT, 0);
  writeUInt64BE(payload, sizeBytes, 2);
  payload.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, OptionReply.INFO, payload);
}

export function encodeInfoText(option: number, infoType: typeof Info.NAME | typeof Info.DESCRIPTION, text: string): Buffer {
  const textBytes = Buffer.from(text, 'utf8');
  const payload = Buffer.allocUnsafe(2 + textBytes.length);
  payload.writeUInt16BE(infoType, 0);
  textBytes.copy(payload, 2);
  return encodeOptionReply(option, OptionReply.INFO, payload);
}

export interface BlockSizes {
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  readonly maximumBytes: number;
}

export function encodeInfoBlockSize(option: number, sizes: BlockSizes): Buffer {
  const payload = Buffer.allocUnsafe(14);
  payload.writeUInt16BE(Info.BLOCK_SIZE, 0);
  payload.writeUInt32BE(sizes.minimumBytes, 2);
  payload.writeUInt32BE(sizes.preferredBytes, 6);
  payload.writeUInt32BE(sizes.maximumBytes, 10);
  return encodeOptionReply(option, OptionReply.INFO, payload);
}

export function encodeMetaContext(option: number, contextId: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const payload = Buffer.allocUnsafe(4 + nameBytes.length);
  payload.writeUInt32BE(contextId, 0);
  nameBytes.copy(payload, 4);
  return encodeOptionReply(option, OptionReply.META_CONTEXT, payload);
}

/** The end of a successful EXPORT_NAME: u64 size, u16 flags, 124 zeroes unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const reply = Buffer.alloc(10 + (noZeroes ? 0 : exportNameReplyPaddingBytes));
  writeUInt64BE(reply, sizeBytes, 0);
  reply.writeUInt16BE(transmissionFlags, 8);
  return reply;
}

export function writeSimpleReplyHeader(target: Buffer, error: number, request: RequestLike): void {
  target.writeUInt32BE(simpleReplyMagic, 0);
  target.writeUInt32BE(error, 4);
  target.writeUInt32BE(request.cookieHigh, 8);
  target.writeUInt32BE(request.cookieLow, 12);
}

export function encodeSimpleReply(error: number, request: RequestLike): Buffer {
  const reply = Buffer.allocUnsafe(simpleReplyBytes);
  writeSimpleReplyHeader(reply, error, request);
  return reply;
}

export function writeStructuredHeader(target: Buffer, at: number, flags: number, replyType: number,
  request: RequestLike, payloadBytes: number): void {
  target.writeUInt32BE(structuredReplyMagic, at);
  target.writeUInt16BE(flags, at + 4);
  target.writeUInt16BE(replyType, at + 6);
  target.writeUInt32BE(request.cookieHigh, at + 8);
  target.writeUInt32BE(request.cookieLow, at + 12);
  target.writeUInt32BE(payloadBytes, at + 16);
}

/** A final NONE chunk: the whole reply when there is nothing else to say. */
export function encodeStructuredDone(request: RequestLike): Buffer {
  const reply = Buffer.allocUnsafe(structuredReplyHeaderBytes);
  writeStructuredHeader(reply, 0, ReplyFlag.DONE, ReplyType.NONE, request, 0);
  return reply;
}

/** Header bytes before the data of a one-chunk structured READ reply (chunk header + offset). */
export const structuredReadPrefixBytes = structuredReplyHeaderBytes + 8;

/** Fills the prefix of a one-chunk READ reply: OFFSET_DATA with DONE, data follows at byte 28. */
export function writeStructuredReadPrefix(target: Buffer, request: RequestLike, dataBytes: number): void {
  writeStructuredHeader(target, 0, ReplyFlag.DONE, ReplyType.OFFSET_DATA, request, 8 + dataBytes);
  writeUInt64BE(target, request.offset, structuredReplyHeaderBytes);
}

/** ERROR chunk with DONE: u32 error, u16 message length, message. */
export function encodeStructuredError(request: RequestLike, error: number, message: string): Buffer {
  const messageBytes = truncatedUtf8(message);
  const reply = Buffer.allocUnsafe(structuredReplyHeaderBytes + 6 + messageBytes.length);
  writeStructuredHeader(reply, 0, ReplyFlag.DONE, ReplyType.ERROR, request, 6 + messageBytes.length);
  reply.writeUInt32BE(error, structuredReplyHeaderBytes);
  reply.writeUInt16BE(messageBytes.length, structuredReplyHeaderBytes + 4);
  messageBytes.copy(reply, structuredReplyHeaderBytes + 6);
  return reply;
}

export interface StatusDescriptor {
  readonly length: number;
  readonly hole: boolean;
  readonly zero: boolean;
}

/** BLOCK_STATUS chunk with DONE: u32 context id, descriptors × (u32 length, u32 flags). */
export function encodeBlockStatus(request: RequestLike, contextId: number,
  descriptors: readonly StatusDescriptor[]): Buffer {
  assert(descriptors.length > 0, 'block status needs at least one descriptor');
  const payloadBytes = 4 + 8 * descriptors.length;
  const reply = Buffer.allocUnsafe(structuredReplyHeaderBytes + payloadBytes);
  writeStructuredHeader(reply, 0, ReplyFlag.DONE, ReplyType.BLOCK_STATUS, request, payloadBytes);
  reply.writeUInt32BE(contextId, structuredReplyHeaderBytes);
  let at = structuredReplyHeaderBytes + 4;
  for (const descriptor of descriptors) {
    assert(descriptor.length > 0, 'descriptor lengths are non-zero');
    assert(descriptor.length < twoTo32, 'descriptor lengths fit u32');
    reply.writeUInt32BE(descriptor.length, at);
    reply.writeUInt32BE((descriptor.hole ? AllocationState.HOLE : 0) | (descriptor.zero ? AllocationState.ZERO : 0), at + 4);
    at += 8;
  }
  return reply;
}

/** UTF-8 bytes of `text`, cut to messageBytesMax without splitting a character. */
export function truncatedUtf8(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= messageBytesMax) return bytes;
  let end = messageBytesMax;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end);
}
