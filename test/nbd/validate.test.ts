// Goal: request policy is decided once, here, exactly as the NBD spec and nbdkit's
// validate_request/nbd_errno say; advertised flags follow the device. Method: table-driven
// checks of validateRequest, nbdErrorFor, transmissionFlagsFor, blockSizesFor, descriptorsFor.
import t from 'tap';
import { CairnError, NbdErrno } from '../../src/errors/cairn-error';
import { MemoryDevice } from '../../src/block/memory-device';
import { requestBytesMax } from '../../src/limits';
import { Command, CommandFlag, TransmissionFlag } from '../../src/nbd/protocol';
import {
  blockSizesFor, descriptorsFor, nbdErrorFor, RequestLike, TransmissionContext, transmissionFlagsFor, validateRequest,
} from '../../src/nbd/validate';

const sizeBytes = 1024 * 1024;
const writableFlags = transmissionFlagsFor(new MemoryDevice({ sizeBytes }).capabilities, false, true);
const context: TransmissionContext = {
  sizeBytes, transmissionFlags: writableFlags, structuredReplies: true, blockStatus: true, payloadBytesMax: requestBytesMax,
};

function request(type: number, offset: number, length: number, flags = 0): RequestLike {
  return { type, offset, length, flags, cookieHigh: 0, cookieLow: 1 };
}

void t.test('in-range requests with legal flags pass', async (t) => {
  t.equal(validateRequest(request(Command.READ, 0, 4096), context), 0);
  t.equal(validateRequest(request(Command.READ, sizeBytes - 1, 1, CommandFlag.DF), context), 0);
  t.equal(validateRequest(request(Command.WRITE, 512, 4096, CommandFlag.FUA), context), 0);
  t.equal(validateRequest(request(Command.WRITE, sizeBytes, 0), context), 0, 'length 0 at the end is in range');
  t.equal(validateRequest(request(Command.FLUSH, 0, 0, CommandFlag.FUA), context), 0, 'FUA is legal on any command');
  t.equal(validateRequest(request(Command.TRIM, 0, sizeBytes, CommandFlag.FUA), context), 0);
  t.equal(validateRequest(request(Command.WRITE_ZEROES, 0, sizeBytes, CommandFlag.NO_HOLE | CommandFlag.FAST_ZERO), context), 0);
  t.equal(validateRequest(request(Command.CACHE, 0, sizeBytes), context), 0);
  t.equal(validateRequest(request(Command.BLOCK_STATUS, 0, sizeBytes, CommandFlag.REQ_ONE), context), 0);
});

void t.test('ranges past the end are ENOSPC for write and zero, EINVAL otherwise', async (t) => {
  t.equal(validateRequest(request(Command.WRITE, sizeBytes - 511, 512), context), NbdErrno.ENOSPC);
  t.equal(validateRequest(request(Command.WRITE_ZEROES, sizeBytes + 1, 0), context), NbdErrno.ENOSPC);
  for (const type of [Command.READ, Command.TRIM, Command.CACHE, Command.BLOCK_STATUS]) {
    t.equal(validateRequest(request(type, sizeBytes, 1), context), NbdErrno.EINVAL, `type ${type}`);
  }
  t.equal(validateRequest(request(Command.READ, 2 ** 64, 1), context), NbdErrno.EINVAL, 'an offset beyond 2^53');
  t.equal(validateRequest(request(Command.FLUSH, 1, 0), context), NbdErrno.EINVAL, 'FLUSH with an offset');
  t.equal(validateRequest(request(Command.FLUSH, 0, 1), context), NbdErrno.EINVAL, 'FLUSH with a length');
});

void t.test('read-only exports refuse writes with EPERM before anything else', async (t) => {
  const readOnly = { ...context, transmissionFlags: transmissionFlagsFor(new MemoryDevice({ sizeBytes }).capabilities, true, true) };
  t.ok(readOnly.transmissionFlags & TransmissionFlag.READ_ONLY);
  for (const type of [Command.WRITE, Command.TRIM, Command.WRITE_ZEROES]) {
    t.equal(validateRequest(request(type, sizeBytes * 2, 1), readOnly), NbdErrno.EPERM, `type ${type}`);
  }
  t.equal(validateRequest(request(Command.READ, 0, 1), readOnly), 0);
  t.equal(validateRequest(request(Command.READ, 0, 1, CommandFlag.FUA), readOnly), NbdErrno.EINVAL,
    'FUA was not advertised on a read-only export');
});

void t.test('unknown commands and flags, and flags on the wrong command, are EINVAL', async (t) => {
  t.equal(validateRequest(request(8, 0, 0), context), NbdErrno.EINVAL, 'RESIZE is not supported');
  t.equal(validateRequest(request(0xffff, 0, 0), context), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.READ, 0, 1, 0x20), context), NbdErrno.EINVAL, 'PAYLOAD_LEN');
  t.equal(validateRequest(request(Command.READ, 0, 1, 0x8000), context), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.WRITE, 0, 1, CommandFlag.NO_HOLE), context), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.TRIM, 0, 1, CommandFlag.FAST_ZERO), context), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.WRITE, 0, 1, CommandFlag.DF), context), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.READ, 0, 1, CommandFlag.REQ_ONE), context), NbdErrno.EINVAL);
  const simple = { ...context, structuredReplies: false };
  t.equal(validateRequest(request(Command.READ, 0, 1, CommandFlag.DF), simple), NbdErrno.EINVAL, 'DF without structured replies');
  t.equal(validateRequest(request(Command.BLOCK_STATUS, 0, 1), simple), NbdErrno.EINVAL, 'BLOCK_STATUS without structured replies');
  t.equal(validateRequest(request(Command.BLOCK_STATUS, 0, 1), { ...context, blockStatus: false }), NbdErrno.EINVAL,
    'BLOCK_STATUS without a selected context');
  t.equal(validateRequest(request(Command.BLOCK_STATUS, 0, 0), context), NbdErrno.EINVAL, 'BLOCK_STATUS of nothing');
});

void t.test('oversized reads are EINVAL, or EOVERFLOW only with DF; big trims and zeroes are fine', async (t) => {
  const big = { ...context, sizeBytes: 2 ** 40 };
  t.equal(validateRequest(request(Command.READ, 0, requestBytesMax + 1), big), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.READ, 0, requestBytesMax + 1, CommandFlag.DF), big), NbdErrno.EOVERFLOW);
  t.equal(validateRequest(request(Command.READ, 0, requestBytesMax), big), 0);
  t.equal(validateRequest(request(Command.WRITE_ZEROES, 0, 0xffffffff), big), 0);
  t.equal(validateRequest(request(Command.TRIM, 0, 0xffffffff), big), 0);
});

void t.test('commands the device cannot run are EINVAL (CACHE is always accepted)', async (t) => {
  const bare = { ...context, transmissionFlags: TransmissionFlag.HAS_FLAGS };
  t.equal(validateRequest(request(Command.FLUSH, 0, 0), bare), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.TRIM, 0, 1), bare), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.WRITE_ZEROES, 0, 1), bare), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.WRITE, 0, 1, CommandFlag.FUA), bare), NbdErrno.EINVAL);
  t.equal(validateRequest(request(Command.CACHE, 0, 1), bare), 0);
});

void t.test('errors map to NBD errnos; ENOTSUP only with FAST_ZERO and EOVERFLOW only with DF', async (t) => {
  const notSupported = new CairnError('CAIRN_NOT_SUPPORTED', 'slow');
  t.equal(nbdErrorFor(notSupported, request(Command.WRITE_ZEROES, 0, 1, CommandFlag.FAST_ZERO)), NbdErrno.ENOTSUP);
  t.equal(nbdErrorFor(notSupported, request(Command.WRITE_ZEROES, 0, 1)), NbdErrno.EINVAL);
  t.equal(nbdErrorFor(notSupported, request(Command.TRIM, 0, 1)), NbdErrno.EINVAL);
  const overflow = Object.assign(new Error('x'), { code: 'EOVERFLOW' });
  t.equal(nbdErrorFor(overflow, request(Command.READ, 0, 1)), NbdErrno.EIO, 'host EOVERFLOW is just an I/O error');
  t.equal(nbdErrorFor(new CairnError('CAIRN_NO_SPACE', 'full'), request(Command.WRITE, 0, 1)), NbdErrno.ENOSPC);
  t.equal(nbdErrorFor(new CairnError('CAIRN_READ_ONLY', 'ro'), request(Command.WRITE, 0, 1)), NbdErrno.EPERM);
  t.equal(nbdErrorFor(new CairnError('CAIRN_SHUTTING_DOWN', 'bye'), request(Command.READ, 0, 1)), NbdErrno.ESHUTDOWN);
  t.equal(nbdErrorFor(Object.assign(new Error('x'), { code: 'EDQUOT' }), request(Command.WRITE, 0, 1)), NbdErrno.ENOSPC);
  t.equal(nbdErrorFor(new Error('boom'), request(Command.READ, 0, 1)), NbdErrno.EIO);
});

void t.test('transmission flags follow capabilities, read-only and structured replies', async (t) => {
  const capabilities = new MemoryDevice({ sizeBytes }).capabilities;
  const flags = transmissionFlagsFor(capabilities, false, false);
  t.equal(flags & TransmissionFlag.READ_ONLY, 0);
  for (const flag of ['HAS_FLAGS', 'SEND_FLUSH', 'SEND_FUA', 'SEND_TRIM', 'SEND_WRITE_ZEROES', 'SEND_FAST_ZERO',
    'CAN_MULTI_CONN', 'SEND_CACHE'] as const) {
    t.ok(flags & TransmissionFlag[flag], flag);
  }
  t.equal(flags & TransmissionFlag.SEND_DF, 0, 'DF only with structured replies');
  t.ok(transmissionFlagsFor(capabilities, false, true) & TransmissionFlag.SEND_DF);
  const readOnly = transmissionFlagsFor(capabilities, true, false);
  t.ok(readOnly & TransmissionFlag.READ_ONLY);
  t.equal(readOnly & (TransmissionFlag.SEND_TRIM | TransmissionFlag.SEND_WRITE_ZEROES | TransmissionFlag.SEND_FUA), 0);
  const plain = transmissionFlagsFor({ ...capabilities, canMultiConn: false, canFlush: false, fua: 'none', canTrim: false,
    canZero: false, canCache: false }, false, false);
  t.equal(plain, TransmissionFlag.HAS_FLAGS);
  t.ok(transmissionFlagsFor({ ...capabilities, canWrite: false }, false, false) & TransmissionFlag.READ_ONLY);
});

void t.test('block sizes: 512 minimum unless the size is not a multiple, 4 KiB preferred, maximum payload', async (t) => {
  t.same(blockSizesFor(1024 * 1024), { minimumBytes: 512, preferredBytes: 4096, maximumBytes: requestBytesMax });
  t.same(blockSizesFor(1000), { minimumBytes: 1, preferredBytes: 4096, maximumBytes: requestBytesMax });
});

void t.test('block status descriptors are merged, bounded, clipped to the request, exactly one with REQ_ONE', async (t) => {
  const extents = [
    { length: 4096, hole: false, zero: false },
    { length: 4096, hole: false, zero: false },
    { length: 8192, hole: true, zero: true },
    { length: 2 ** 40, hole: false, zero: false },
  ];
  t.same(descriptorsFor(extents, 20000, false, 1024), [
    { length: 8192, hole: false, zero: false },
    { length: 8192, hole: true, zero: true },
    { length: 20000 - 16384, hole: false, zero: false },
  ]);
  t.same(descriptorsFor(extents, 1000, true, 1024), [{ length: 1000, hole: false, zero: false }]);
  t.same(descriptorsFor(extents, 20000, true, 1024), [{ length: 8192, hole: false, zero: false }], 'merged before counting');
  t.equal(descriptorsFor(extents, 2 ** 32 - 1, false, 2).length, 2, 'bounded');
  t.same(descriptorsFor([], 512, false, 4), [{ length: 512, hole: false, zero: false }], 'no extents: allocated data');
});
