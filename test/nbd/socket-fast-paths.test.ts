/**
 * Goal: the socket fast paths of accepted connections (onread staging, direct payload receive,
 * bulk receive and send on the thread pool; see connection.ts, socket-input.ts,
 * bulk-channel.ts) deliver every byte exactly, in every pacing a client can choose: payloads
 * split anywhere, pauses longer than a bulk transfer waits (so transfers come back short and the
 * event loop finishes them), replies finished while a bulk send runs, a client that stops
 * reading, and clients that vanish mid-payload or mid-reply — after which the server keeps
 * serving and every descriptor it opened is closed again.
 *
 * Method: an in-process NbdServer over a MemoryDevice on a real Unix socket (the fast paths are
 * used only for sockets the server accepts), a raw client sending exact bytes with seeded
 * chunking and pauses, and the device itself as the oracle. BulkChannel's process-wide budget
 * and close ordering are checked against a scripted stand-in for the addon.
 */
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { BlockDevice, DirectWrite } from '../../src/block/block-device';
import { MemoryDevice } from '../../src/block/memory-device';
import { VolumeDevice } from '../../src/block/volume-device';
import { openStore } from '../extent/fixtures/extent-fixtures';
import { BulkChannel, bulkIdleMs, bulkTransfersMax, SocketCalls } from '../../src/nbd/bulk-channel';
import { bulkReceiveBytesMin, bulkSendBytesMin } from '../../src/nbd/connection';
import { NbdServer } from '../../src/nbd/server';
import { loadKernelBinding, loadSocketBinding } from '../../src/native/binding';
import { SeededRandom } from '../../src/util/random';
import { MiB } from '../../src/util/units';
import { TestResolver } from './helpers/exports';
import { eventually } from './helpers/session';
import { encodeRequest, RawClient } from './helpers/raw-client';

const deviceBytes = 64 * MiB;
const NBD_CMD_READ = 0;
const NBD_CMD_WRITE = 1;

/** The addon's socket calls, counting the bytes bulk receives took ahead of their payloads. */
function countingSocketCalls(): { calls: SocketCalls; aheadBytes: () => number } {
  const real = loadSocketBinding();
  let ahead = 0;
  const calls: SocketCalls = {
    ...real,
    recvAheadAsync: async (...args) => {
      const result = await real.recvAheadAsync(...args);
      ahead += result.ahead;
      return result;
    },
    recvWriteAsync: async (...args) => {
      const result = await real.recvWriteAsync(...args);
      ahead += result.ahead ?? 0;
      return result;
    },
  };
  return { calls, aheadBytes: () => ahead };
}

async function unixServer(t: Test, exported?: BlockDevice): Promise<{ server: NbdServer; device: BlockDevice; connect: () => Promise<RawClient>; aheadBytes: () => number }> {
  const device = exported ?? new MemoryDevice({ sizeBytes: deviceBytes });
  const { calls, aheadBytes } = countingSocketCalls();
  const server = new NbdServer({ socketCalls: calls, resolver: new TestResolver(new Map([['disk', { device }]]), 'disk') });
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-fast-paths-'));
  const socketPath = path.join(directory, 'nbd.sock');
  await server.listenUnix(socketPath);
  const clients: RawClient[] = [];
  t.teardown(async () => {
    for (const client of clients) client.destroy();
    await server.close();
    fs.rmSync(directory, { recursive: true, force: true });
  });
  return {
    server,
    device,
    aheadBytes,
    connect: async () => {
      const socket = net.createConnection(socketPath);
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const client = new RawClient(socket);
      clients.push(client);
      await client.negotiate({});
      return client;
    },
  };
}

/** A request header (payload, if any, sent separately). */
function requestHeader(type: number, cookie: number, offset: number, length: number): Buffer {
  return encodeRequest({ type, cookie: BigInt(cookie), offset, length });
}

function pattern(random: SeededRandom, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) bytes.writeUInt32LE(random.int(0x100000000) >>> 0, i);
  return bytes;
}

/** Sends `bytes` in seeded pieces, sometimes pausing longer than a bulk transfer waits. */
async function sendPaced(client: RawClient, bytes: Buffer, random: SeededRandom): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const piece = Math.min(bytes.length - at, 1 + random.int(random.int(4) === 0 ? 4096 : 512 * 1024));
    client.write(bytes.subarray(at, at + piece));
    at += piece;
    if (random.int(8) === 0) await new Promise((resolve) => setTimeout(resolve, bulkIdleMs + 10));
  }
}

function openDescriptors(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** A volume on a real extent store that counts the writes it lets callers store directly. */
async function storeDevice(t: Test): Promise<{ device: BlockDevice; direct: () => number }> {
  const store = await openStore(t, { onWarning: () => undefined });
  const volume = await VolumeDevice.open({ store, volumeId: 'fast', sizeBytes: deviceBytes, extentBytes: 8 * MiB });
  let direct = 0;
  const device: BlockDevice = Object.assign(Object.create(volume) as VolumeDevice, {
    directWrite: (offset: number, length: number): DirectWrite | undefined => {
      const range = volume.directWrite(offset, length);
      if (range !== undefined) direct++;
      return range;
    },
  });
  return { device, direct: () => direct };
}

for (const kind of ['memory', 'extent store'] as const) t.test(`large and small writes arrive exactly, however the client splits and pauses them (${kind} device)`, async (t) => {
  const store = kind === 'memory' ? undefined : await storeDevice(t);
  const direct = store?.direct;
  const { device, connect } = await unixServer(t, store?.device);
  if (kind === 'extent store') {
    // Open every extent file first, so most large writes go straight from the socket to the file.
    for (let offset = 0; offset < deviceBytes; offset += 8 * MiB) await device.write(offset, Buffer.alloc(512));
  }
  const client = await connect();
  const random = new SeededRandom(7);
  const expected = Buffer.alloc(deviceBytes);
  const sizes = [bulkReceiveBytesMin + 4096, 4096, 1 * MiB, 512, 8 * MiB, 64 * 1024, 32 * MiB - 4096, 3 * MiB];
  let offset = 0;
  for (const [cookie, length] of sizes.entries()) {
    const payload = pattern(random, length);
    payload.copy(expected, offset);
    await sendPaced(client, Buffer.concat([requestHeader(NBD_CMD_WRITE, cookie, offset, length), payload]), random);
    offset = (offset + length + 4096) % (deviceBytes - 32 * MiB);
  }
  const cookies = new Set<bigint>();
  for (let i = 0; i < sizes.length; i++) {
    const reply = await client.simpleReply();
    t.equal(reply.error, 0, `write ${reply.cookie} succeeded`);
    cookies.add(reply.cookie);
  }
  t.equal(cookies.size, sizes.length, 'one reply per write');
  const stored = Buffer.alloc(deviceBytes);
  await device.read(0, stored);
  t.ok(stored.equals(expected), 'the device holds exactly what was sent');
  if (kind === 'extent store') t.ok(direct !== undefined && direct() >= 2, `large payloads went straight from the socket to their files (${direct?.() ?? 0})`);
});

t.test('back-to-back large writes: each bulk receive takes the next request ahead, and every byte lands where it was sent', async (t) => {
  const { device, connect, aheadBytes } = await unixServer(t);
  const client = await connect();
  const random = new SeededRandom(11);
  const writes = 16;
  const payloads = Array.from({ length: writes }, () => pattern(random, MiB));
  // One write of everything: whenever a payload is complete, the next header is already queued.
  const NBD_CMD_FLUSH = 3;
  client.write(Buffer.concat([
    ...payloads.flatMap((payload, index) => [requestHeader(NBD_CMD_WRITE, index, (writes - 1 - index) * MiB, MiB), payload]),
    requestHeader(NBD_CMD_FLUSH, writes, 0, 0),
  ]));
  const errors: number[] = [];
  for (let i = 0; i <= writes; i++) errors.push((await client.simpleReply()).error);
  t.same(errors, new Array(writes + 1).fill(0), 'every write and the flush succeeded');
  const stored = Buffer.alloc(writes * MiB);
  await device.read(0, stored);
  t.ok(stored.equals(Buffer.concat([...payloads].reverse())), 'each payload is at its own offset');
  t.ok(aheadBytes() > 0, `the next requests came ahead of the event loop's reads (${aheadBytes()} bytes)`);
});

t.test('a payload Node holds for its next read is not bulk-received meanwhile: later bytes stay in their own requests', async (t) => {
  // Node's onread mode asks for the buffer of its next read right after each read. If that was
  // the rest of a pending payload (no bulk transfer could start: the process budget was used),
  // a bulk receive started later, outside a read, must not fill the same memory: Node would
  // put the bytes of its next read there too, into a payload already complete.
  const memory = new MemoryDevice({ sizeBytes: deviceBytes });
  let openGate: () => void = () => {};
  const gate = new Promise<void>((resolve) => { openGate = resolve; });
  const gated: BlockDevice = Object.assign(Object.create(memory) as MemoryDevice, {
    read: async (offset: number, target: Buffer): Promise<void> => {
      if (offset === 0) await gate; // the first READ finishes only when the test says so
      return memory.read(offset, target);
    },
  });
  const { connect } = await unixServer(t, gated);
  const client = await connect();
  // Take the whole process-wide bulk budget with receives from silent peers.
  const calls = loadSocketBinding();
  const kernel = loadKernelBinding();
  let occupying = true;
  const occupiers = Array.from({ length: bulkTransfersMax }, async () => {
    const [quiet, end] = kernel.nbdSocketPair();
    const channel = BulkChannel.open(end, calls);
    if (channel === undefined) throw new Error('a bulk channel opens');
    while (occupying) await channel.receive(Buffer.alloc(1));
    channel.close();
    calls.socketClose(end);
    calls.socketClose(quiet);
  });
  const random = new SeededRandom(21);
  const first = pattern(random, MiB);
  const second = pattern(random, 4096);
  client.write(requestHeader(NBD_CMD_READ, 1, 0, 4096));
  client.write(Buffer.concat([requestHeader(NBD_CMD_WRITE, 2, MiB, MiB), first.subarray(0, 64 * 1024)]));
  await new Promise((resolve) => setTimeout(resolve, 50)); // the server has read the header and holds the rest as Node's next buffer
  occupying = false;
  await Promise.all(occupiers);
  openGate(); // the READ completes outside any read callback: the connection looks for bulk work
  await new Promise((resolve) => setTimeout(resolve, 20));
  client.write(first.subarray(64 * 1024));
  await new Promise((resolve) => setTimeout(resolve, 50));
  client.write(Buffer.concat([requestHeader(NBD_CMD_WRITE, 3, 4 * MiB, second.length), second]));
  const replies = new Map<bigint, number>();
  for (let i = 0; i < 3; i++) {
    const reply = await client.simpleReply(replies.size === 0 ? 4096 : 0);
    replies.set(reply.cookie, reply.error);
  }
  t.same([...replies.entries()].sort(), [[1n, 0], [2n, 0], [3n, 0]], 'the READ and both writes succeeded');
  const stored = Buffer.alloc(MiB);
  await memory.read(MiB, stored);
  t.ok(stored.equals(first), 'the large write holds exactly its payload');
  const small = Buffer.alloc(second.length);
  await memory.read(4 * MiB, small);
  t.ok(small.equals(second), 'the write after it holds its own payload');
});

t.test('a write stored straight from the socket that fails is answered with an error; the connection goes on', async (t) => {
  const memory = new MemoryDevice({ sizeBytes: deviceBytes });
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-direct-'));
  const readOnlyFile = path.join(directory, 'extent');
  fs.writeFileSync(readOnlyFile, Buffer.alloc(4096));
  const fd = fs.openSync(readOnlyFile, 'r'); // pwrite on it fails with EBADF
  const finished: boolean[] = [];
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(directory, { recursive: true, force: true });
  });
  const failing: BlockDevice = Object.assign(Object.create(memory) as MemoryDevice, {
    directWrite: (): DirectWrite => ({
      fd, position: 0,
      finish: (wrote: boolean, error?: unknown) => {
        finished.push(wrote);
        return error === undefined ? undefined : new Error(`stored write failed: ${(error as Error).message}`);
      },
    }),
  });
  const { connect } = await unixServer(t, failing);
  const client = await connect();
  const payload = Buffer.alloc(2 * MiB, 0x42);
  client.write(Buffer.concat([requestHeader(NBD_CMD_WRITE, 1, 0, payload.length), payload]));
  const failed = await client.simpleReply();
  t.equal(failed.error, 5, 'EIO for the write that could not be stored');
  t.same(finished, [true], 'the device was told the write was attempted');
  client.write(requestHeader(NBD_CMD_READ, 2, 0, 4096));
  const read = await client.simpleReply(4096);
  t.same([read.error, read.cookie], [0, 2n], 'the connection still serves requests');
});

t.test('a large READ reply and the small replies finished during its bulk send all arrive intact', async (t) => {
  const { device, connect } = await unixServer(t);
  const random = new SeededRandom(11);
  const contents = pattern(random, deviceBytes);
  await device.write(0, contents);
  for (const slowReader of [false, true]) {
    const client = await connect();
    const lengths = new Map<bigint, { offset: number; length: number }>();
    const requests: Buffer[] = [];
    for (let cookie = 1; cookie <= 40; cookie++) {
      const length = cookie % 10 === 1 ? 4 * MiB + 512 * (cookie % 3) : 4096 * (1 + random.int(8));
      const offset = random.int((deviceBytes - length) / 512) * 512;
      lengths.set(BigInt(cookie), { offset, length });
      requests.push(requestHeader(NBD_CMD_READ, cookie, offset, length));
    }
    client.write(Buffer.concat(requests));
    // A reader that stops for a while makes bulk sends come back short: the event loop finishes them.
    if (slowReader) await new Promise((resolve) => setTimeout(resolve, 5 * bulkIdleMs));
    for (let i = 0; i < lengths.size; i++) {
      const reply = await client.readReply((cookie) => lengths.get(cookie)?.length ?? 0);
      t.equal(reply.kind, 'simple');
      if (reply.kind !== 'simple') return;
      const request = lengths.get(reply.cookie);
      t.ok(request !== undefined && reply.error === 0, `read ${reply.cookie} answered`);
      if (request === undefined) return;
      t.ok(reply.data.equals(contents.subarray(request.offset, request.offset + request.length)),
        `read ${reply.cookie} (${request.length} bytes, ${slowReader ? 'slow' : 'fast'} reader) carries the device's bytes`);
    }
    t.ok(lengths.get(1n)!.length >= bulkSendBytesMin, 'the large replies qualify for bulk sends');
    client.destroy();
  }
});

t.test('clients vanishing mid-payload or mid-reply leave the server serving and every descriptor closed', async (t) => {
  const { server, device, connect } = await unixServer(t);
  const before = openDescriptors();
  for (let round = 0; round < 6; round++) {
    const writer = await connect();
    writer.write(Buffer.concat([requestHeader(NBD_CMD_WRITE, 1, 0, 8 * MiB), Buffer.alloc(MiB + round * 4096, 0xee)]));
    const reader = await connect();
    reader.write(requestHeader(NBD_CMD_READ, 2, 0, 16 * MiB));
    await new Promise((resolve) => setTimeout(resolve, round * 5));
    writer.destroy();
    reader.destroy();
  }
  const survivor = await connect();
  const payload = Buffer.alloc(2 * MiB, 0x5a);
  survivor.write(Buffer.concat([requestHeader(NBD_CMD_WRITE, 3, 4 * MiB, payload.length), payload]));
  t.equal((await survivor.simpleReply()).error, 0, 'a new client is served');
  survivor.write(requestHeader(NBD_CMD_READ, 4, 4 * MiB, payload.length));
  const reply = await survivor.simpleReply(payload.length);
  t.ok(reply.error === 0 && reply.data.equals(payload), 'and reads its bytes back');
  const stored = Buffer.alloc(8);
  await device.read(0, stored);
  t.ok(stored.equals(Buffer.alloc(8)), 'the abandoned partial write stored nothing');
  survivor.destroy();
  await eventually(() => server.connectionCount === 0, 15_000, 'connections to close');
  await eventually(() => openDescriptors() <= before, 15_000, 'descriptors to be closed');
  t.ok(openDescriptors() <= before, 'no descriptor leaked');
});

interface ScriptedTransfer { resolve: (count: number) => void }

function scriptedBinding(): { binding: SocketCalls; transfers: ScriptedTransfer[]; closed: number[]; shutdowns: number[] } {
  const transfers: ScriptedTransfer[] = [];
  const closed: number[] = [];
  const shutdowns: number[] = [];
  let nextFd = 100;
  const transfer = (): Promise<number> => new Promise((resolve) => transfers.push({ resolve }));
  const binding: SocketCalls = {
    socketDup: () => nextFd++,
    socketShutdown: (fd) => { shutdowns.push(fd); },
    socketClose: (fd) => { closed.push(fd); },
    sendAsync: transfer,
    recvAsync: transfer,
    recvAheadAsync: () => transfer().then((received) => ({ received, ahead: 0 })),
    recvWriteAsync: () => transfer().then((received) => ({ received, written: 0 })),
  };
  return { binding, transfers, closed, shutdowns };
}

t.test('bulk transfers are capped process-wide and a descriptor closes only after its transfers settle', async (t) => {
  const { binding, transfers, closed, shutdowns } = scriptedBinding();
  const channels = Array.from({ length: bulkTransfersMax + 1 }, () => BulkChannel.open(3, binding));
  const [first, ...rest] = channels;
  if (first === undefined || rest.some((channel) => channel === undefined)) throw new Error('channels open');
  const running = [first, ...rest.slice(0, bulkTransfersMax - 1)].map((channel) => channel!.send([Buffer.alloc(1)]));
  const last = rest[rest.length - 1]!;
  t.equal(transfers.length, bulkTransfersMax);
  t.notOk(last.available, `no channel may start a transfer beyond ${bulkTransfersMax} at once`);
  first.close();
  t.same(shutdowns, [first.fd], 'closing a busy channel shuts its socket down to wake the transfer');
  t.same(closed, [], 'but does not close the descriptor under the running transfer');
  transfers[0]?.resolve(0);
  await running[0];
  t.same(closed, [first.fd], 'the descriptor closes once the transfer settled');
  t.ok(last.available, 'and the budget has room again');
  for (const transfer of transfers.slice(1)) transfer.resolve(1);
  await Promise.all(running);
  for (const channel of channels) channel?.close();
  t.equal(new Set(closed).size, channels.length, 'every descriptor closed exactly once');
});
