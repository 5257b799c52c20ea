// Goal: concurrency, backpressure and lifecycle — requests run concurrently and reply out of
// order, the server stops reading at its in-flight bounds (requests, bytes, unread replies) and
// resumes as work completes, DISC and close() finish in-flight work first, vanished clients
// leave nothing behind, and the handshake-less kernel path and real listeners work. Method: a
// GatedDevice holds device calls until the test releases them, so every in-flight state is
// reached on purpose; counts on the device and resolver prove what the server did.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { MemoryDevice } from '../../src/block/memory-device';
import { NbdErrno } from '../../src/errors/cairn-error';
import { Command, CommandFlag, TransmissionFlag } from '../../src/nbd/protocol';
import { serveTransmission, shutdownDeadlineMsDefault } from '../../src/nbd/server';
import { transmissionFlagsFor } from '../../src/nbd/validate';
import { duplexPair } from './helpers/duplex-pair';
import { GatedDevice, TestResolver } from './helpers/exports';
import { RawClient } from './helpers/raw-client';
import { diskBytes, eventually, session } from './helpers/session';

const { READ, WRITE, FLUSH, DISC, WRITE_ZEROES } = Command;

function gatedSession(t: Parameters<typeof session>[0], options: Parameters<typeof session>[1] = {}) {
  const gated = new GatedDevice(new MemoryDevice({ sizeBytes: diskBytes }));
  const result = session(t, { ...options, device: gated });
  t.teardown(() => gated.open());
  return { ...result, gated };
}

void t.test('requests run concurrently and replies go out in completion order', async (t) => {
  const { connect, gated } = gatedSession(t);
  const client = connect();
  await client.negotiate({});
  client.sendRequest({ type: WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(512, 1) });
  client.sendRequest({ type: WRITE, cookie: 2n, offset: 512, payload: Buffer.alloc(512, 2) });
  client.sendRequest({ type: READ, cookie: 3n, offset: 4096, length: 8 });
  await gated.waitForPending(3);
  gated.release(2);
  t.equal((await client.simpleReply(8)).cookie, 3n);
  gated.release(1);
  t.equal((await client.simpleReply()).cookie, 2n);
  gated.release(0);
  t.equal((await client.simpleReply()).cookie, 1n);
});

void t.test('at the in-flight request bound the server stops reading and resumes as requests finish', async (t) => {
  const { connect, gated } = gatedSession(t, { limits: { inflightRequestsMax: 4 } });
  const client = connect();
  await client.negotiate({});
  for (let index = 0; index < 10; index++) client.sendRequest({ type: READ, cookie: BigInt(index), offset: index * 512, length: 512 });
  await gated.waitForPending(4);
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(gated.pending.length, 4, 'no fifth request was taken');
  gated.release();
  await gated.waitForPending(4);
  t.equal(gated.pending.length, 4, 'exactly one more after one finished');
  gated.open();
  const cookies = new Set<bigint>();
  for (let index = 0; index < 10; index++) cookies.add((await client.simpleReply(512)).cookie);
  t.equal(cookies.size, 10, 'every request answered once');
  t.equal(gated.waitingMax, 4);
});

void t.test('at the in-flight byte bound the server stops reading WRITE payloads', async (t) => {
  const { connect, gated } = gatedSession(t, { limits: { inflightBytesMax: 128 * 1024, payloadBytesMax: 64 * 1024 } });
  const client = connect();
  await client.negotiate({});
  for (let index = 0; index < 8; index++) client.sendRequest({ type: WRITE, cookie: BigInt(index), offset: 0, payload: Buffer.alloc(65536, index) });
  await gated.waitForPending(2);
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(gated.pending.length, 2, '2 × 64 KiB reach the 128 KiB bound');
  gated.open();
  for (let index = 0; index < 8; index++) t.equal((await client.simpleReply()).error, 0);
});

void t.test('a client that does not read its replies stops the server from reading more requests', async (t) => {
  const { connect, device } = session(t, { limits: { inflightBytesMax: 128 * 1024, payloadBytesMax: 64 * 1024 } });
  const client = connect();
  await client.negotiate({});
  let reads = 0;
  const read = device.read.bind(device);
  device.read = async (offset: number, target: Buffer): Promise<void> => {
    reads += 1;
    return read(offset, target);
  };
  client.stream.pause();
  for (let index = 0; index < 200; index++) client.sendRequest({ type: READ, cookie: BigInt(index), offset: 0, length: 65536 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.ok(reads < 20, `reads stop while replies pile up (${reads} of 200)`);
  client.stream.resume();
  for (let index = 0; index < 200; index++) t.equal((await client.simpleReply(65536)).cookie, BigInt(index));
  t.equal(reads, 200);
});

void t.test('DISC finishes in-flight requests, then closes; nothing after DISC is read', async (t) => {
  const { connect, gated, resolver, server } = gatedSession(t);
  const client = connect();
  await client.negotiate({});
  client.sendRequest({ type: WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(512, 7) });
  client.sendRequest({ type: FLUSH, cookie: 2n });
  await gated.waitForPending(2);
  client.sendRequest({ type: DISC, cookie: 3n });
  client.sendRequest({ type: WRITE, cookie: 4n, offset: 512, payload: Buffer.alloc(512, 8) });
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.notOk(client.ended, 'still open while requests run');
  gated.releaseAll();
  t.same([(await client.simpleReply()).cookie, (await client.simpleReply()).cookie], [1n, 2n]);
  t.ok(await client.waitEnded(10_000), 'closed after the replies');
  await eventually(() => server.connectionCount === 0);
  t.equal(gated.pending.length, 0, 'the WRITE after DISC never ran');
  t.equal(resolver.releases, resolver.opens);
});

void t.test('close() finishes in-flight requests, then closes connections and resolves', async (t) => {
  const { connect, gated, resolver, server } = gatedSession(t);
  const client = connect();
  await client.negotiate({});
  client.sendRequest({ type: WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(512, 1) });
  await gated.waitForPending(1);
  let closed = false;
  const closing = server.close().then(() => { closed = true; });
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.notOk(closed, 'waits for the in-flight request');
  gated.release();
  t.equal((await client.simpleReply()).error, 0, 'the in-flight request completed normally');
  await closing;
  t.ok(await client.waitEnded(10_000));
  t.equal(resolver.releases, resolver.opens);
});

void t.test('at the shutdown deadline in-flight requests get ESHUTDOWN; the handle waits for the device', async (t) => {
  const { connect, gated, resolver, server } = gatedSession(t, { shutdownDeadlineMs: 100 });
  const client = connect();
  await client.negotiate({ structured: true });
  client.sendRequest({ type: WRITE_ZEROES, flags: CommandFlag.FUA, cookie: 1n, offset: 0, length: 4096 });
  client.sendRequest({ type: READ, cookie: 2n, offset: 0, length: 4096 });
  await gated.waitForPending(2);
  let closed = false;
  const closeCalled = Date.now();
  const closing = server.close().then(() => { closed = true; });
  const first = await client.readReply();
  const second = await client.readReply();
  const errors = [first, second].map((reply) => (reply.kind === 'simple' ? reply.error : reply.payload.readUInt32BE(0)));
  t.same(errors, [NbdErrno.ESHUTDOWN, NbdErrno.ESHUTDOWN]);
  t.equal(second.kind, 'structured', 'the READ error is a structured chunk');
  t.ok(await client.waitEnded(), 'disconnected after the deadline');
  t.ok(Date.now() - closeCalled < shutdownDeadlineMsDefault / 4, 'the configured 100 ms deadline, not the 10 s default');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.notOk(closed, 'close waits until the device calls settle');
  t.equal(resolver.releases, 0);
  gated.releaseAll();
  await closing;
  t.equal(resolver.releases, 1);
});

void t.test('close() does not wait forever for a client that stopped reading its replies', async (t) => {
  const { connect, server, resolver } = session(t, {
    shutdownDeadlineMs: 100, limits: { inflightBytesMax: 128 * 1024, payloadBytesMax: 64 * 1024 },
  });
  const stuck = connect();
  await stuck.negotiate({});
  stuck.stream.pause();
  for (let index = 0; index < 50; index++) stuck.sendRequest({ type: READ, cookie: BigInt(index), offset: 0, length: 65536 });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const aborted = connect();
  await aborted.startHandshake();
  aborted.stream.pause();
  aborted.sendOption(2);
  // Neither client reads, so close() resolves only through the shutdown deadline: the configured
  // 100 ms, not the 10 s default (the bound is 25x the deadline, far from any scheduling noise).
  const started = Date.now();
  await server.close();
  t.ok(Date.now() - started < shutdownDeadlineMsDefault / 4, 'closed by the configured deadline, not the default');
  t.equal(server.connectionCount, 0);
  t.equal(resolver.releases, resolver.opens);
});

void t.test('a client vanishing mid-payload or with requests in flight leaves nothing behind', async (t) => {
  const { connect, gated, resolver, server } = gatedSession(t);
  const midPayload = connect();
  await midPayload.negotiate({});
  midPayload.sendRequest({ type: WRITE, cookie: 1n, offset: 0, length: 4096, payload: Buffer.alloc(1000) });
  await new Promise((resolve) => setTimeout(resolve, 20));
  midPayload.destroy();

  const midHeader = connect();
  await midHeader.negotiate({});
  midHeader.write(Buffer.from([0x25, 0x60, 0x95]));
  midHeader.end();

  const inflight = connect();
  await inflight.negotiate({});
  inflight.sendRequest({ type: READ, cookie: 1n, offset: 0, length: 4096 });
  inflight.sendRequest({ type: WRITE, cookie: 2n, offset: 0, payload: Buffer.alloc(4096, 1) });
  await gated.waitForPending(2);
  inflight.destroy();
  await eventually(() => server.connectionCount === 1, 15_000, 'closed connections gone, one waits for its device calls');
  t.equal(resolver.releases, 2, 'the handle of the busy connection is still held');
  gated.releaseAll();
  await eventually(() => server.connectionCount === 0, 15_000, 'all connections gone');
  t.equal(resolver.releases, resolver.opens, 'every handle released exactly once');
  t.equal(gated.pending.length, 0, 'the partial WRITE never ran');
});

void t.test('a client that half-closes still gets replies to everything it sent', async (t) => {
  const { connect, server } = session(t);
  const client = connect();
  await client.negotiate({});
  client.sendRequest({ type: WRITE, cookie: 1n, offset: 0, payload: Buffer.alloc(512, 4) });
  client.sendRequest({ type: READ, cookie: 2n, offset: 0, length: 512 });
  client.end();
  t.equal((await client.simpleReply()).cookie, 1n);
  t.same((await client.simpleReply(512)).data, Buffer.alloc(512, 4));
  t.ok(await client.waitEnded(10_000));
  await eventually(() => server.connectionCount === 0);
});

void t.test('the connection bound refuses extra streams at once', async (t) => {
  const { connect, server } = session(t, { connectionsMax: 2 });
  const a = connect();
  const b = connect();
  const c = connect();
  await a.readGreeting();
  await b.readGreeting();
  t.ok(await c.waitEnded(10_000), 'the third is refused');
  t.equal(server.connectionCount, 2);
});

void t.test('serveTransmission speaks the transmission phase only, with simple replies, and releases', async (t) => {
  const device = new MemoryDevice({ sizeBytes: diskBytes });
  const resolver = new TestResolver(new Map([['k', { device }]]));
  const handle = await resolver.open('k');
  if (handle === undefined) throw new Error('no handle');
  const flags = transmissionFlagsFor(device.capabilities, false, false);
  const [serverSide, clientSide] = duplexPair();
  const connection = serveTransmission(serverSide, handle, { transmissionFlags: flags });
  const client = new RawClient(clientSide);
  t.equal(await client.writeSimple(1n, 0, Buffer.alloc(4096, 0xee), CommandFlag.FUA), 0);
  t.same(await client.readSimple(2n, 0, 4096), Buffer.alloc(4096, 0xee));
  t.equal((await (async () => {
    client.sendRequest({ type: READ, flags: CommandFlag.DF, cookie: 3n, length: 1 });
    return (await client.simpleReply()).error;
  })()), NbdErrno.EINVAL, 'DF without structured replies');
  client.sendRequest({ type: DISC, cookie: 4n });
  await connection.closed;
  t.equal(resolver.releases, 1);

  const readOnlyHandle = await resolver.open('k');
  t.throws(() => serveTransmission(duplexPair()[0], readOnlyHandle!, {
    transmissionFlags: TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_DF,
  }), /DF needs structured replies/);
  readOnlyHandle!.release();
});

void t.test('TCP (with TCP_NODELAY) and Unix listeners serve clients and close cleanly', async (t) => {
  const { server } = session(t);
  const address = await server.listenTcp('127.0.0.1', 0);
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-nbd-'));
  t.teardown(() => fs.rmSync(directory, { recursive: true, force: true }));
  const socketPath = path.join(directory, 'nbd.sock');
  await server.listenUnix(socketPath);
  for (const options of [{ host: '127.0.0.1', port: address.port }, { path: socketPath }]) {
    const socket = net.connect(options);
    const client = new RawClient(socket);
    await client.negotiate({});
    t.equal(await client.writeSimple(1n, 0, Buffer.alloc(1024, 1)), 0);
    t.same(await client.readSimple(2n, 0, 1024), Buffer.alloc(1024, 1));
    client.sendRequest({ type: DISC, cookie: 3n });
    t.ok(await client.waitEnded(10_000), 'DISC closes the socket');
  }
  const lingering = new RawClient(net.connect({ path: socketPath }));
  await lingering.negotiate({});
  await server.close();
  t.ok(await lingering.waitEnded(10_000), 'close() ends idle connections');
  await t.rejects(new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: address.port });
    socket.on('connect', () => { socket.destroy(); resolve(undefined); });
    socket.on('error', reject);
  }), 'the TCP listener is closed');
});
