/**
 * NBD wire constants (fixed newstyle handshake, transmission phase, structured replies) as
 * published in NetworkBlockDevice/nbd doc/proto.md; see shared/reference/nbd.md §3. This module
 * owns names and numbers only: no parsing, no I/O. Every value is what travels on the wire
 * (big-endian); protocol errnos are NBD values, not host errno values, and come from src/errors so
 * the CairnError → NBD table and this server agree.
 */
import { NbdErrno } from '../errors/cairn-error';

export { NbdErrno };

/**
 * The 64-bit magics, split into u32 halves for allocation-free readUInt32BE checks:
 * "NBDMAGIC" (first 8 bytes from the server), "IHAVEOPT" (next 8 bytes; prefix of every client
 * option) and the option-reply magic 0x0003e889045565a9.
 */
export const nbdMagicHigh = 0x4e42444d;
export const nbdMagicLow = 0x41474943;
export const optionMagicHigh = 0x49484156;
export const optionMagicLow = 0x454f5054;
export const optionReplyMagicHigh = 0x0003e889;
export const optionReplyMagicLow = 0x045565a9;

export const requestMagic = 0x25609513;
export const simpleReplyMagic = 0x67446698;
export const structuredReplyMagic = 0x668e33ef;

/** Handshake flags (u16, server → client). */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;
/** Client flags (u32, client → server); any other bit makes the server hang up. */
export const ClientFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;
export const clientFlagsKnown = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES;

export const Option = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

export const OptionReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;
export type OptionReplyType = (typeof OptionReply)[keyof typeof OptionReply];

export const Info = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags (u16), sent with the export size. */
export const TransmissionFlag = {
  HAS_FLAGS: 0x0001,
  READ_ONLY: 0x0002,
  SEND_FLUSH: 0x0004,
  SEND_FUA: 0x0008,
  ROTATIONAL: 0x0010,
  SEND_TRIM: 0x0020,
  SEND_WRITE_ZEROES: 0x0040,
  SEND_DF: 0x0080,
  CAN_MULTI_CONN: 0x0100,
  SEND_RESIZE: 0x0200,
  SEND_CACHE: 0x0400,
  SEND_FAST_ZERO: 0x0800,
} as const;

export const Command = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CommandFlag = {
  FUA: 0x01,
  NO_HOLE: 0x02,
  DF: 0x04,
  REQ_ONE: 0x08,
  FAST_ZERO: 0x10,
} as const;
export const commandFlagsKnown =
  CommandFlag.FUA | CommandFlag.NO_HOLE | CommandFlag.DF | CommandFlag.REQ_ONE | CommandFlag.FAST_ZERO;

export const ReplyFlag = { DONE: 1 } as const;
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** base:allocation descriptor flags. */
export const AllocationState = { HOLE: 1, ZERO: 2 } as const;
export const baseAllocationContext = 'base:allocation';
/** The one meta context this server offers; ids are per connection, so a constant is fine. */
export const baseAllocationContextId = 1;

/** Fixed sizes of wire structures, in bytes. */
export const serverGreetingBytes = 18;
export const clientFlagsBytes = 4;
export const optionHeaderBytes = 16;
export const optionReplyHeaderBytes = 20;
export const requestHeaderBytes = 28;
export const simpleReplyBytes = 16;
export const structuredReplyHeaderBytes = 20;
export const exportNameReplyPaddingBytes = 124;

export function commandName(type: number): string {
  for (const [name, value] of Object.entries(Command)) if (value === type) return name;
  return `UNKNOWN(${type})`;
}

export function optionName(option: number): string {
  for (const [name, value] of Object.entries(Option)) if (value === option) return name;
  return `UNKNOWN(${option})`;
}

export function isOptionError(reply: number): boolean {
  return reply >= 0x80000000;
}
