// Goal: every transmission command, flag and error path answers as the NBD spec says, with
// simple and with structured replies, and stored data is exactly what was written. Method: a raw
// client over an in-memory duplex pair sends exact request bytes to an NbdServer serving
// MemoryDevice exports; results are checked on the wire and on the device itself.
import t from 'tap';
import { MemoryDevice } from '../../src/block/memory-device';
import { BlockDevice } from '../../src/block/block-device';
import { CairnError, NbdErrno } from '../../src/errors/cairn-error';
import { requestBytesMax } from '../../src/limits';
import { Command, CommandFlag, ReplyFlag, ReplyType, TransmissionFlag } from '../../src/nbd/protocol';
import { RawClient } from './helpers/raw-client';
import { diskBytes, eventually, session } from './helpers/session';

const { READ, WRITE, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS } = Command;

async function simpleErrno(client: RawClient, request: Parameters<RawClient['sendRequest']>[0]): Promise<number> {
  client.sendRequest(request);
  const reply = await client.simpleReply();
  if (reply.cookie !== request.cookie) throw new Error('cookie mismatch');
  return reply.error;
}

function descriptorsOf(payload: Buffer): Array<[number, number]> {
  const descriptors: Array<[number, number]> = [];
  for (let at = 4; at < payload.length; at += 8) descriptors.push([payload.readUInt32BE(at), payload.readUInt32BE(at + 4)]);
  return descriptors;
}

/** A device whose calls fail with the given error (to test error mapping). */
function failingDevice(error: unknown): BlockDevice {
  const inner = new MemoryDevice({ sizeBytes: diskBytes });
  return {
    sizeBytes: inner.sizeBytes,
    capabilities: inner.capabilities,
    read: async () => { throw error; },
    write: async () => { throw error; },
    flush: async () => { throw error; },
    trim: async () => { throw error; },
    zero: async () => { throw error; },
    cache: async () => { throw error; },
    extents: async () => { throw error; },
  };
}

void t.test('WRITE, READ, FUA, FLUSH and CACHE with simple replies store and return the data', async (t) => {
  const { connect, device } = session(t);
  const client = connect();
  const { flags } = await client.negotiate({});
  for (const flag of ['SEND_FLUSH', 'SEND_FUA', 'SEND_TRIM', 'SEND_WRITE_ZEROES', 'SEND_FAST_ZERO', 'SEND_CACHE', 'CAN_MULTI_CONN'] as const) {
    t.ok(flags & TransmissionFlag[flag], flag);
  }
  const data = Buffer.alloc(8192);
  for (let index = 0; index < data.length; index++) data[index] = index % 251;
  t.equal(await client.writeSimple(1n, 4096, data), 0);
  t.equal(await client.writeSimple(2n, 65536, data.subarray(0, 512), CommandFlag.FUA), 0);
  t.equal(await simpleErrno(client, { type: FLUSH, cookie: 3n }), 0);
  t.equal(await simpleErrno(client, { type: CACHE, cookie: 4n, offset: 0, length: 8192 }), 0);
  t.same(await client.readSimple(5n, 4096, 8192), data);
  const stored = Buffer.alloc(8192);
  await device.read(4096, stored);
  t.same(stored, data, 'the device holds what was written');
  t.same(await client.readSimple(6n, 4000, 96), Buffer.alloc(96), 'bytes before the write read as zero');
});

void t.test('a 64-bit cookie is echoed exactly and zero-length READ/WRITE succeed', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.negotiate({});
  client.sendRequest({ type: READ, cookie: 0xffffffff00000001n, offset: 0, length: 0 });
  t.same(await client.simpleReply(0), { error: 0, cookie: 0xffffffff00000001n, data: Buffer.alloc(0) });
  t.equal(await client.writeSimple(0x8000000000000000n, diskBytes, Buffer.alloc(0)), 0);
});

void t.test('unaligned requests are served byte-exactly', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.negotiate({});
  t.equal(await client.writeSimple(1n, 3, Buffer.from('hello')), 0);
  t.equal((await client.readSimple(2n, 0, 10)).toString('latin1'), '\0\0\0hello\0\0');
  t.equal(await client.writeSimple(3n, diskBytes - 1, Buffer.from('z')), 0, 'the last byte');
});

void t.test('TRIM and WRITE_ZEROES zero the range; NO_HOLE keeps it allocated, FAST_ZERO is honoured', async (t) => {
  const { connect, device } = session(t);
  const client = connect();
  await client.negotiate({});
  const ones = Buffer.alloc(65536 * 3, 1);
  t.equal(await client.writeSimple(1n, 0, ones), 0);
  t.equal(await simpleErrno(client, { type: TRIM, cookie: 2n, offset: 0, length: 65536 }), 0);
  t.same(await client.readSimple(3n, 0, 65536), Buffer.alloc(65536));
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, flags: CommandFlag.NO_HOLE | CommandFlag.FUA, cookie: 4n, offset: 65536, length: 65536 }), 0);
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, flags: CommandFlag.FAST_ZERO, cookie: 5n, offset: 131072, length: 65536 }), 0);
  t.same(await client.readSimple(6n, 65536, 131072), Buffer.alloc(131072));
  const extents = await device.extents(0, 196608);
  t.same(extents.map((extent) => extent.hole), [true, false, true], 'trim freed, NO_HOLE kept, plain zero freed');
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, cookie: 7n, offset: 0, length: 0 }), 0, 'zero of nothing');
});

void t.test('FAST_ZERO on a device that cannot zero fast is ENOTSUP; the same error elsewhere is EINVAL', async (t) => {
  const { connect } = session(t, { extra: { broken: { device: failingDevice(new CairnError('CAIRN_NOT_SUPPORTED', 'no')) } } });
  const client = connect();
  const { flags } = await client.negotiate({ name: 'broken' });
  t.ok(flags & TransmissionFlag.SEND_FAST_ZERO, 'advertised: failing fast is what the flag asks for');
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, flags: CommandFlag.FAST_ZERO, cookie: 1n, offset: 0, length: 4096 }), NbdErrno.ENOTSUP);
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, cookie: 2n, offset: 0, length: 4096 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: TRIM, cookie: 3n, offset: 0, length: 4096 }), NbdErrno.EINVAL);
});

void t.test('device errors map to NBD errnos, with messages in structured replies', async (t) => {
  const { connect } = session(t, {
    extra: {
      full: { device: failingDevice(new CairnError('CAIRN_NO_SPACE', 'pool is full')) },
      eio: { device: failingDevice(Object.assign(new Error('disk on fire'), { code: 'EIO' })) },
    },
  });
  const full = connect();
  await full.negotiate({ name: 'full', structured: true });
  t.equal(await simpleErrno(full, { type: WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(512) }), NbdErrno.ENOSPC);
  t.equal(await simpleErrno(full, { type: FLUSH, cookie: 2n }), NbdErrno.ENOSPC);
  full.sendRequest({ type: READ, cookie: 3n, offset: 0, length: 512 });
  const chunk = await full.structuredChunk();
  t.equal(chunk.type, ReplyType.ERROR);
  t.equal(chunk.flags, ReplyFlag.DONE);
  t.equal(chunk.payload.readUInt32BE(0), NbdErrno.ENOSPC);
  t.equal(chunk.payload.subarray(6, 6 + chunk.payload.readUInt16BE(4)).toString(), 'pool is full');

  const eio = connect();
  await eio.negotiate({ name: 'eio' });
  eio.sendRequest({ type: READ, cookie: 4n, offset: 0, length: 512 });
  t.same(await eio.simpleReply(512), { error: NbdErrno.EIO, cookie: 4n, data: Buffer.alloc(0) }, 'no data after an error header');
  t.equal(await simpleErrno(eio, { type: CACHE, cookie: 5n, offset: 0, length: 1 }), NbdErrno.EIO);
  t.equal(await simpleErrno(eio, { type: READ, cookie: 6n, offset: diskBytes, length: 1 }), NbdErrno.EINVAL, 'the connection survives');
});

void t.test('out-of-range requests: EINVAL for reads, ENOSPC for writes, the payload is consumed', async (t) => {
  const { connect, device } = session(t);
  const client = connect();
  await client.negotiate({});
  t.equal(await simpleErrno(client, { type: READ, cookie: 1n, offset: diskBytes, length: 1 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: READ, cookie: 2n, offset: 2n ** 63n, length: 1 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: WRITE, cookie: 3n, offset: diskBytes - 100, payload: Buffer.alloc(4096, 9) }), NbdErrno.ENOSPC);
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, cookie: 4n, offset: diskBytes, length: 512 }), NbdErrno.ENOSPC);
  t.equal(await simpleErrno(client, { type: TRIM, cookie: 5n, offset: diskBytes - 1, length: 2 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: CACHE, cookie: 6n, offset: 0, length: diskBytes + 1 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: READ, cookie: 7n, offset: 0, length: requestBytesMax + 1 }), NbdErrno.EINVAL);
  t.same(await client.readSimple(8n, diskBytes - 4096, 4096), Buffer.alloc(4096), 'still in sync: the refused payload was skipped');
  t.equal(device.allocatedBytes, 0, 'nothing was written');
});

void t.test('read-only exports refuse WRITE, TRIM and WRITE_ZEROES with EPERM', async (t) => {
  const { connect, device } = session(t);
  await device.write(0, Buffer.alloc(512, 5));
  const client = connect();
  await client.negotiate({ name: 'ro' });
  t.equal(await simpleErrno(client, { type: WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(512) }), NbdErrno.EPERM);
  t.equal(await simpleErrno(client, { type: TRIM, cookie: 2n, offset: 0, length: 512 }), NbdErrno.EPERM);
  t.equal(await simpleErrno(client, { type: WRITE_ZEROES, cookie: 3n, offset: 0, length: 512 }), NbdErrno.EPERM);
  t.same(await client.readSimple(4n, 0, 512), Buffer.alloc(512, 5), 'data untouched');
  t.equal(await simpleErrno(client, { type: FLUSH, cookie: 5n }), 0, 'flush is fine');
});

void t.test('unknown commands and flags, and misplaced flags, are EINVAL and the connection continues', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.negotiate({});
  t.equal(await simpleErrno(client, { type: 8, cookie: 1n }), NbdErrno.EINVAL, 'RESIZE');
  t.equal(await simpleErrno(client, { type: 0x1234, cookie: 2n, offset: 5, length: 6 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: READ, flags: 0x40, cookie: 3n, length: 1 }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: WRITE, flags: CommandFlag.NO_HOLE, cookie: 4n, payload: Buffer.alloc(3) }), NbdErrno.EINVAL);
  t.equal(await simpleErrno(client, { type: READ, flags: CommandFlag.DF, cookie: 5n, length: 1 }), NbdErrno.EINVAL, 'DF without structured replies');
  t.equal(await simpleErrno(client, { type: BLOCK_STATUS, cookie: 6n, length: 512 }), NbdErrno.EINVAL, 'no structured replies');
  t.equal(await simpleErrno(client, { type: FLUSH, cookie: 7n, length: 512 }), NbdErrno.EINVAL);
  t.same(await client.readSimple(8n, 0, 1), Buffer.alloc(1));
});

void t.test('structured READ is one OFFSET_DATA chunk with DONE (also with DF); empty READ is NONE', async (t) => {
  const { connect } = session(t);
  const client = connect();
  const { flags } = await client.negotiate({ structured: true });
  t.ok(flags & TransmissionFlag.SEND_DF);
  t.equal(await client.writeSimple(1n, 1000, Buffer.from('structured!')), 0, 'WRITE still gets a simple reply');
  for (const readFlags of [0, CommandFlag.DF]) {
    client.sendRequest({ type: READ, flags: readFlags, cookie: 2n, offset: 1000, length: 11 });
    const chunk = await client.structuredChunk();
    t.match(chunk, { flags: ReplyFlag.DONE, type: ReplyType.OFFSET_DATA, cookie: 2n });
    t.equal(Number(chunk.payload.readBigUInt64BE(0)), 1000);
    t.equal(chunk.payload.subarray(8).toString(), 'structured!');
  }
  client.sendRequest({ type: READ, cookie: 3n, offset: 0, length: 0 });
  t.match(await client.structuredChunk(), { flags: ReplyFlag.DONE, type: ReplyType.NONE, cookie: 3n, payload: Buffer.alloc(0) });
  client.sendRequest({ type: READ, cookie: 4n, offset: diskBytes, length: 1 });
  const error = await client.structuredChunk();
  t.equal(error.type, ReplyType.ERROR);
  t.equal(error.payload.readUInt32BE(0), NbdErrno.EINVAL);
  client.sendRequest({ type: READ, flags: CommandFlag.DF, cookie: 5n, offset: 0, length: requestBytesMax + 512 });
  t.equal((await client.structuredChunk()).payload.readUInt32BE(0), NbdErrno.EINVAL, 'past the end before too big');
});

void t.test('BLOCK_STATUS reports holes and data for base:allocation, bounded and REQ_ONE-exact', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.negotiate({ structured: true, metaContexts: ['base:allocation'] });
  t.equal(await client.writeSimple(1n, 65536, Buffer.alloc(65536, 1)), 0);
  client.sendRequest({ type: BLOCK_STATUS, cookie: 2n, offset: 0, length: 262144 });
  const chunk = await client.structuredChunk();
  t.match(chunk, { type: ReplyType.BLOCK_STATUS, flags: ReplyFlag.DONE, cookie: 2n });
  t.ok(chunk.payload.readUInt32BE(0) > 0, 'the context id from SET');
  t.same(descriptorsOf(chunk.payload), [[65536, 3], [65536, 0], [131072, 3]]);

  client.sendRequest({ type: BLOCK_STATUS, flags: CommandFlag.REQ_ONE, cookie: 3n, offset: 4096, length: 512 });
  t.same(descriptorsOf((await client.structuredChunk()).payload), [[512, 3]]);

  client.sendRequest({ type: BLOCK_STATUS, cookie: 4n, offset: diskBytes - 512, length: 1024 });
  t.equal((await client.structuredChunk()).payload.readUInt32BE(0), NbdErrno.EINVAL, 'past the end');
});

void t.test('BLOCK_STATUS without SET_META_CONTEXT, or set for another export, is EINVAL', async (t) => {
  const { connect } = session(t);
  const unset = connect();
  await unset.negotiate({ structured: true });
  unset.sendRequest({ type: BLOCK_STATUS, cookie: 1n, offset: 0, length: 512 });
  const chunk = await unset.structuredChunk();
  t.equal(chunk.type, ReplyType.ERROR);
  t.equal(chunk.payload.readUInt32BE(0), NbdErrno.EINVAL);

  const other = connect();
  await other.startHandshake();
  await other.expectAck(8);
  const set = await other.option(10, (await import('./helpers/raw-client')).metaContextData('ro', ['base:allocation']));
  t.equal(set.length, 2);
  await other.negotiateAfterStart({ name: 'disk' });
  other.sendRequest({ type: BLOCK_STATUS, cookie: 2n, offset: 0, length: 512 });
  t.equal((await other.structuredChunk()).payload.readUInt32BE(0), NbdErrno.EINVAL);
});

void t.test('a device without extents reports everything as allocated data', async (t) => {
  const inner = new MemoryDevice({ sizeBytes: diskBytes });
  const device: BlockDevice = Object.assign(Object.create(inner) as MemoryDevice, {
    capabilities: { ...inner.capabilities, canExtents: false },
  });
  const { connect } = session(t, { extra: { flat: { device } } });
  const client = connect();
  await client.negotiate({ name: 'flat', structured: true, metaContexts: ['base:allocation'] });
  client.sendRequest({ type: BLOCK_STATUS, cookie: 1n, offset: 0, length: 8192 });
  t.same(descriptorsOf((await client.structuredChunk()).payload), [[8192, 0]]);
});

void t.test('a WRITE payload beyond the maximum, or a bad magic, drops only that connection', async (t) => {
  const { connect, server } = session(t);
  const good = connect();
  await good.negotiate({});
  const huge = connect();
  await huge.negotiate({});
  huge.sendRequest({ type: WRITE, cookie: 1n, offset: 0, length: requestBytesMax + 1, payload: Buffer.alloc(100) });
  t.ok(await huge.waitEnded(10_000), 'oversized WRITE: disconnected');
  const magic = connect();
  await magic.negotiate({});
  magic.sendRequest({ type: READ, cookie: 1n, length: 1, magic: 0x25609514 });
  t.ok(await magic.waitEnded(10_000), 'bad magic: disconnected');
  t.equal(await good.writeSimple(9n, 0, Buffer.alloc(512, 3)), 0);
  t.same(await good.readSimple(10n, 0, 512), Buffer.alloc(512, 3));
  await eventually(() => server.connectionCount === 1);
});

void t.test('a request split into single bytes is answered once complete', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.negotiate({});
  const header = Buffer.alloc(28);
  header.writeUInt32BE(0x25609513, 0);
  header.writeUInt16BE(WRITE, 6);
  header.writeBigUInt64BE(77n, 8);
  header.writeBigUInt64BE(512n, 16);
  header.writeUInt32BE(4, 24);
  const bytes = Buffer.concat([header, Buffer.from('abcd')]);
  for (const byte of bytes) {
    client.write(Buffer.from([byte]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.same(await client.simpleReply(), { error: 0, cookie: 77n, data: Buffer.alloc(0) });
  t.equal((await client.readSimple(78n, 512, 4)).toString(), 'abcd');
});
