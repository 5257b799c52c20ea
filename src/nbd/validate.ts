/**
 * Request policy, in the style of nbdkit's `validate_request` and `nbd_errno`: every request is
 * checked once, here, before any device call; every thrown error becomes an NBD errno in one
 * function that knows the flag-dependent cases. Also derives the transmission flags and block
 * sizes an export advertises, so the handshake, the validator and the kernel attach path agree.
 *
 * Invariants: a request that passes `validateRequest` lies inside the device, carries only flags
 * legal for its command and for what was negotiated, and is a command the device can run; so
 * a device error after validation is a real device error. ENOTSUP leaves the server only for
 * WRITE_ZEROES with FAST_ZERO, EOVERFLOW only for a READ with DF; both become EINVAL otherwise.
 * Pure: no I/O.
 */
import { isCairnError, NbdErrno, nbdErrnoOf } from '../errors/cairn-error';
import { blockBytes, nbdMinimumBlockBytes, requestBytesMax } from '../limits';
import type { BlockCapabilities, Extent } from '../block/block-device';
import { assert } from '../util/assert';
import { Command, CommandFlag, commandFlagsKnown, TransmissionFlag } from './protocol';
import type { BlockSizes, StatusDescriptor } from './replies';

/** What the validator and encoders need from a request. */
export interface RequestLike {
  readonly flags: number;
  readonly type: number;
  readonly cookieHigh: number;
  readonly cookieLow: number;
  readonly offset: number;
  readonly length: number;
}

/** What was negotiated for one connection's export. */
export interface TransmissionContext {
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** base:allocation was selected by SET_META_CONTEXT for this export. */
  readonly blockStatus: boolean;
  /** Largest READ/WRITE payload (the advertised maximum block size). */
  readonly payloadBytesMax: number;
}

/** Transmission flags for a device: capabilities, read-only, and DF only with structured replies. */
export function transmissionFlagsFor(capabilities: BlockCapabilities, readOnly: boolean,
  structuredReplies: boolean): number {
  let flags: number = TransmissionFlag.HAS_FLAGS;
  const writable = capabilities.canWrite && !readOnly;
  if (!writable) flags |= TransmissionFlag.READ_ONLY;
  if (capabilities.canFlush) flags |= TransmissionFlag.SEND_FLUSH;
  if (writable && capabilities.fua !== 'none') flags |= TransmissionFlag.SEND_FUA;
  if (writable && capabilities.canTrim) flags |= TransmissionFlag.SEND_TRIM;
  if (writable && capabilities.canZero) {
    // FAST_ZERO is always honest to advertise: a device that cannot zero fast fails at once with
    // CAIRN_NOT_SUPPORTED (→ NBD_ENOTSUP), which is exactly what the flag asks for.
    flags |= TransmissionFlag.SEND_WRITE_ZEROES | TransmissionFlag.SEND_FAST_ZERO;
  }
  if (structuredReplies) flags |= TransmissionFlag.SEND_DF;
  if (capabilities.canMultiConn) flags |= TransmissionFlag.CAN_MULTI_CONN;
  if (capabilities.canCache) flags |= TransmissionFlag.SEND_CACHE;
  return flags;
}

/**
 * Block sizes advertised in NBD_INFO_BLOCK_SIZE: minimum 512 (1 if the export size is not a
 * multiple of it, as the spec wants the size to be a multiple of the minimum), preferred 4096,
 * maximum = the largest payload accepted.
 */
export function blockSizesFor(sizeBytes: number, payloadBytesMax = requestBytesMax): BlockSizes {
  const minimumBytes = sizeBytes % nbdMinimumBlockBytes === 0 ? nbdMinimumBlockBytes : 1;
  const sizes = { minimumBytes, preferredBytes: blockBytes, maximumBytes: payloadBytesMax };
  assert(sizes.preferredBytes >= sizes.minimumBytes, 'preferred block ≥ minimum');
  assert(sizes.maximumBytes >= sizes.preferredBytes, 'maximum payload ≥ preferred block');
  return sizes;
}

/** Returns 0 if the request may run, else the NBD errno to reply with (nbdkit validate_request order). */
export function validateRequest(request: RequestLike, context: TransmissionContext): number {
  const type = request.type;
  const flags = request.flags;
  const transmissionFlags = context.transmissionFlags;
  const isWrite = type === Command.WRITE || type === Command.TRIM || type === Command.WRITE_ZEROES;
  if (isWrite && (transmissionFlags & TransmissionFlag.READ_ONLY) !== 0) return NbdErrno.EPERM;

  switch (type) {
    case Command.READ:
    case Command.WRITE:
    case Command.TRIM:
    case Command.CACHE:
    case Command.WRITE_ZEROES:
    case Command.BLOCK_STATUS:
      if (request.offset > context.sizeBytes || request.length > context.sizeBytes - request.offset) {
        return type === Command.WRITE || type === Command.WRITE_ZEROES ? NbdErrno.ENOSPC : NbdErrno.EINVAL;
      }
      break;
    case Command.FLUSH:
      if (request.offset !== 0 || request.length !== 0) return NbdErrno.EINVAL;
      break;
    default:
      return NbdErrno.EINVAL; // unknown command (DISC never reaches the validator)
  }

  if ((flags & ~commandFlagsKnown) !== 0) return NbdErrno.EINVAL;
  if ((flags & (CommandFlag.NO_HOLE | CommandFlag.FAST_ZERO)) !== 0 && type !== Command.WRITE_ZEROES) return NbdErrno.EINVAL;
  if ((flags & CommandFlag.DF) !== 0 && (type !== Command.READ || !context.structuredReplies)) return NbdErrno.EINVAL;
  if ((flags & CommandFlag.REQ_ONE) !== 0 && type !== Command.BLOCK_STATUS) return NbdErrno.EINVAL;
  if ((flags & CommandFlag.FUA) !== 0 && (transmissionFlags & TransmissionFlag.SEND_FUA) === 0) return NbdErrno.EINVAL;
  if ((flags & CommandFlag.FAST_ZERO) !== 0 && (transmissionFlags & TransmissionFlag.SEND_FAST_ZERO) === 0) {
    return NbdErrno.EINVAL;
  }

  switch (type) {
    case Command.READ:
      if (request.length > context.payloadBytesMax) {
        return (flags & CommandFlag.DF) !== 0 ? NbdErrno.EOVERFLOW : NbdErrno.EINVAL;
      }
      return 0;
    case Command.WRITE:
      return request.length > context.payloadBytesMax ? NbdErrno.EINVAL : 0;
    case Command.FLUSH:
      return (transmissionFlags & TransmissionFlag.SEND_FLUSH) === 0 ? NbdErrno.EINVAL : 0;
    case Command.TRIM:
      return (transmissionFlags & TransmissionFlag.SEND_TRIM) === 0 ? NbdErrno.EINVAL : 0;
    case Command.WRITE_ZEROES:
      return (transmissionFlags & TransmissionFlag.SEND_WRITE_ZEROES) === 0 ? NbdErrno.EINVAL : 0;
    case Command.BLOCK_STATUS:
      if (!context.structuredReplies || !context.blockStatus) return NbdErrno.EINVAL;
      return request.length === 0 ? NbdErrno.EINVAL : 0;
    default:
      return 0; // CACHE: a hint, accepted even when not advertised
  }
}

/**
 * The one place where a thrown error becomes an NBD errno. ENOTSUP is legal only as the answer
 * to FAST_ZERO and EOVERFLOW only to DF; anywhere else they become EINVAL.
 */
export function nbdErrorFor(error: unknown, request: RequestLike): NbdErrno {
  const errno = nbdErrnoOf(error);
  if (errno === NbdErrno.ENOTSUP) {
    const fastZero = request.type === Command.WRITE_ZEROES && (request.flags & CommandFlag.FAST_ZERO) !== 0;
    return fastZero ? NbdErrno.ENOTSUP : NbdErrno.EINVAL;
  }
  if (errno === NbdErrno.EOVERFLOW) {
    const dfRead = request.type === Command.READ && (request.flags & CommandFlag.DF) !== 0;
    return dfRead ? NbdErrno.EOVERFLOW : NbdErrno.EINVAL;
  }
  return errno;
}

/** A client-facing message for an error: CairnError messages are meant for users; others are not. */
export function clientMessageOf(error: unknown): string {
  if (isCairnError(error)) return error.message;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? `I/O error (${code})` : 'I/O error';
}

/**
 * base:allocation descriptors for a BLOCK_STATUS reply from the device's extents: at most
 * `descriptorsMax`, each clipped so the total never passes the request (allowed, and it keeps
 * every length below 2^32), exactly one with REQ_ONE. Extents start at the request offset.
 */
export function descriptorsFor(extents: readonly Extent[], length: number, requestOne: boolean,
  descriptorsMax: number): StatusDescriptor[] {
  assert(length > 0, 'block status of an empty range');
  assert(descriptorsMax > 0, 'descriptorsMax must be positive');
  const limit = requestOne ? 1 : descriptorsMax;
  const descriptors: StatusDescriptor[] = [];
  let covered = 0;
  for (const extent of extents) {
    if (covered >= length) break;
    assert(extent.length > 0, 'device extents are non-empty');
    const clipped = Math.min(extent.length, length - covered);
    const last = descriptors[descriptors.length - 1];
    if (last !== undefined && last.hole === extent.hole && last.zero === extent.zero) {
      descriptors[descriptors.length - 1] = { length: last.length + clipped, hole: last.hole, zero: last.zero };
    } else if (descriptors.length < limit) {
      descriptors.push({ length: clipped, hole: extent.hole, zero: extent.zero });
    } else {
      break;
    }
    covered += clipped;
  }
  if (descriptors.length === 0) descriptors.push({ length, hole: false, zero: false });
  return descriptors;
}
