// Goal: the Raft peer transport delivers messages between configured members of one cluster and
// nothing else; bad input from a connection closes that connection only; a slow peer costs bounded
// memory (messages are dropped and reported unreachable instead of queued without limit); a link
// comes back by itself after its peer restarts.
// Method: real PeerTransports on 127.0.0.1 with small bounds, plus raw sockets and raw servers that
// play misbehaving peers (garbage, oversized frame headers, hellos of other clusters, messages from
// the wrong sender, a peer that stops reading). Every socket and transport is closed in teardown.
import t, { type Test } from 'tap';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger, LogFields } from '../../src/observe/logger';
import { type Message, makeMessage } from '../../src/raft';
import { SeededRandom } from '../../src/util/random';
import { FrameDecoder, encodeFrame } from '../../src/wire/frame';
import { decodePeerHello, encodePeerHello, encodeRaftMessage } from '../../src/wire/raft-codec';
import { peerFrameType, peerFrameVersion } from '../../src/transport/peer-link';
import { PeerTransport, type PeerTransportOptions } from '../../src/transport/peer-transport';
import { freePort } from '../helpers/ports';
import { peerHandshakeTimeoutMs } from '../../src/limits';

const host = '127.0.0.1';

/** A logger that keeps every line, for asserting on what operators would see. */
function recordingLogger(lines: string[]): Logger {
  const logger: Logger = {
    error: (message: string, fields?: LogFields) => lines.push(`error ${message} ${JSON.stringify(fields ?? {})}`),
    warn: (message: string, fields?: LogFields) => lines.push(`warn ${message} ${JSON.stringify(fields ?? {})}`),
    info: (message: string, fields?: LogFields) => lines.push(`info ${message} ${JSON.stringify(fields ?? {})}`),
    debug: () => {},
    child: () => logger,
  };
  return logger;
}


interface Node {
  readonly transport: PeerTransport;
  readonly received: Message[];
  readonly unreachable: number[];
  readonly logs: string[];
}

async function startNode(t: Test, options: Partial<PeerTransportOptions> & Pick<PeerTransportOptions, 'nodeId' | 'peers'> & { port: number }): Promise<Node> {
  const received: Message[] = [];
  const unreachable: number[] = [];
  const logs: string[] = [];
  const transport = await PeerTransport.start({
    clusterId: 'test', listen: { host, port: options.port }, random: new SeededRandom(options.nodeId),
    onMessage: (message) => received.push(message), onUnreachable: (peerId) => unreachable.push(peerId),
    logger: recordingLogger(logs), backoffMinMs: 10, backoffMaxMs: 50, handshakeTimeoutMs: 500, ...options,
  });
  t.teardown(() => transport.close());
  return { transport, received, unreachable, logs };
}

async function until(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function heartbeat(from: number, to: number, commit = 7): Message {
  return makeMessage({ type: 'MsgHeartbeat', from, to, term: 3, commit, context: Uint8Array.of(1, 2) });
}

/** Sends until a message gets through (the link connects in the background). */
async function sendUntilDelivered(from: Node, to: Node, message: Message): Promise<void> {
  const before = to.received.length;
  await until(`a message from ${message.from} to ${message.to}`, () => {
    if (to.received.length > before) return true;
    from.transport.send(message);
    return false;
  });
}

async function pair(t: Test): Promise<[Node, Node]> {
  const [portA, portB] = [await freePort(), await freePort()];
  const a = await startNode(t, { nodeId: 1, port: portA, peers: new Map([[2, { host, port: portB }], [3, { host, port: 1 }]]) });
  const b = await startNode(t, { nodeId: 2, port: portB, peers: new Map([[1, { host, port: portA }], [3, { host, port: 1 }]]) });
  return [a, b];
}

function rawSocket(t: Test, port: number): Socket & { gone: Promise<void> } {
  const socket = connect({ host, port }) as Socket & { gone: Promise<void> };
  socket.on('error', () => {});
  socket.resume(); // read (and drop) whatever the node answers, so its close is seen
  socket.gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  t.teardown(() => socket.destroy());
  return socket;
}

function helloFrame(fields: { clusterId?: string; fromNode: number; toNode: number; protocolVersion?: number }): Buffer {
  return encodeFrame({
    type: peerFrameType.hello, version: peerFrameVersion,
    payload: encodePeerHello({ clusterId: fields.clusterId ?? 'test', fromNode: fields.fromNode, toNode: fields.toNode, protocolVersion: fields.protocolVersion ?? 1 }),
  });
}

void t.test('two members exchange messages both ways after the hello, with every field intact', async (t) => {
  const [a, b] = await pair(t);
  await sendUntilDelivered(a, b, heartbeat(1, 2));
  await sendUntilDelivered(b, a, heartbeat(2, 1, 9));
  const got = b.received[0] as Message;
  t.match(got, { type: 'MsgHeartbeat', from: 1, to: 2, term: 3, commit: 7 });
  t.same([...got.context], [1, 2]);
  t.equal((a.received[0] as Message).commit, 9);
  const app = makeMessage({ type: 'MsgApp', from: 1, to: 2, term: 3, index: 10, logTerm: 3, commit: 9, entries: [{ index: 11, term: 3, type: 'normal', data: Uint8Array.of(5) }] });
  t.ok(a.transport.send(app), 'a connected link takes the message');
  await until('the append', () => b.received.some((m) => m.type === 'MsgApp'));
  t.same([...(b.received.find((m) => m.type === 'MsgApp')?.entries[0]?.data ?? [])], [5]);
  t.equal(a.transport.stats().peers.get(2)?.state, 'ready');
});

void t.test('a node of another cluster, or at the wrong address, is refused with a clear log line and gets nothing through', async (t) => {
  const [portA, portB, portC] = [await freePort(), await freePort(), await freePort()];
  const a = await startNode(t, { nodeId: 1, port: portA, peers: new Map([[2, { host, port: portB }], [3, { host, port: portC }]]) });
  const b = await startNode(t, { nodeId: 2, port: portB, clusterId: 'other', peers: new Map([[1, { host, port: portA }]]) });
  // Node 4 listens where node 1 expects node 3.
  const c = await startNode(t, { nodeId: 4, port: portC, peers: new Map([[1, { host, port: portA }]]) });
  await until('refusals on every side', () => a.logs.some((l) => /refusing peer connection.*cluster 'other'/.test(l))
    && b.logs.some((l) => /refusing a peer connection.*belongs to cluster 'test', this node to 'other'/.test(l))
    && a.logs.some((l) => /refusing peer connection.*says it is node 4.*expected node 3/.test(l))
    && a.logs.some((l) => /refusing a peer connection.*node 4 is not a configured peer/.test(l))).catch((error: unknown) => {
    t.comment([...a.logs, '--', ...b.logs, '--', ...c.logs].join('\n'));
    throw error;
  });
  for (let i = 0; i < 20; i++) {
    a.transport.send(heartbeat(1, 2));
    a.transport.send(heartbeat(1, 3));
    b.transport.send(heartbeat(2, 1));
    c.transport.send(heartbeat(4, 1));
    await sleep(10);
  }
  t.equal(a.received.length + b.received.length + c.received.length, 0, 'no message crossed a refused connection');
  t.ok(a.unreachable.includes(2) && a.unreachable.includes(3), 'sends to refused peers are reported unreachable');
  t.ok(a.logs.filter((l) => /refusing peer connection.*cluster 'other'/.test(l)).length <= 2, 'a repeated refusal is logged once, not per retry');
});

void t.test('garbage, oversized headers and forged messages close that connection only', async (t) => {
  const [a, b] = await pair(t);
  await sendUntilDelivered(a, b, heartbeat(1, 2));
  const port = b.transport.port;
  const cases: Array<[string, (socket: Socket) => void]> = [
    ['random bytes', (socket) => socket.write(new SeededRandom(1).fill(Buffer.alloc(64)))],
    ['a header declaring 4 GiB, with no payload sent', (socket) => {
      const header = Buffer.alloc(8);
      header.writeUInt32BE(0xffffffff, 0);
      header.writeUInt16BE(peerFrameType.hello, 4);
      header.writeUInt16BE(1, 6);
      socket.write(header);
    }],
    ['a raft frame before the hello', (socket) => socket.write(encodeFrame({ type: peerFrameType.raft, version: 1, payload: encodeRaftMessage(heartbeat(3, 2)) }))],
    ['an undecodable hello', (socket) => socket.write(encodeFrame({ type: peerFrameType.hello, version: 1, payload: Uint8Array.of(0xff, 0xff, 0xff) }))],
    ['a hello from an unknown version', (socket) => socket.write(helloFrame({ fromNode: 3, toNode: 2, protocolVersion: 9 }))],
    ['protobuf garbage after a good hello', (socket) => {
      socket.write(helloFrame({ fromNode: 3, toNode: 2 }));
      socket.write(encodeFrame({ type: peerFrameType.raft, version: 1, payload: Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01) }));
    }],
    ['a message forged as coming from another node', (socket) => {
      socket.write(helloFrame({ fromNode: 3, toNode: 2 }));
      socket.write(encodeFrame({ type: peerFrameType.raft, version: 1, payload: encodeRaftMessage(heartbeat(1, 2)) }));
    }],
    ['a message for another node', (socket) => {
      socket.write(helloFrame({ fromNode: 3, toNode: 2 }));
      socket.write(encodeFrame({ type: peerFrameType.raft, version: 1, payload: encodeRaftMessage(heartbeat(3, 1)) }));
    }],
  ];
  for (const [name, misbehave] of cases) {
    const socket = rawSocket(t, port);
    socket.on('connect', () => misbehave(socket));
    await socket.gone; // a connection left open would hang here until tap's timeout fails the test
    t.pass(`${name}: the connection is closed`);
    const before = b.received.length;
    await sendUntilDelivered(a, b, heartbeat(1, 2, 100 + before));
    t.ok(b.received.length > before, `${name}: the real peer still gets through`);
  }
  t.notOk(b.received.some((m) => m.from !== 1), 'nothing but the real peer\'s messages was delivered');
  t.equal(a.transport.stats().peers.get(2)?.connects, 1, 'the real peer\'s connection was never dropped');
});

void t.test('a connection that never says hello is closed after the handshake timeout, and inbound connections are bounded', async (t) => {
  const port = await freePort();
  const node = await startNode(t, { nodeId: 1, port, peers: new Map([[2, { host, port: 1 }]]), handshakeTimeoutMs: 200, inboundConnectionsMax: 2 });
  const silent = rawSocket(t, port);
  const second = rawSocket(t, port);
  await until('two inbound connections', () => node.transport.stats().inboundConnections === 2);
  const third = rawSocket(t, port);
  await third.gone;
  t.ok(node.logs.some((l) => /too many inbound connections/.test(l)), 'a connection past the bound is closed for being past it');
  const started = Date.now();
  await silent.gone;
  await second.gone;
  t.equal(node.logs.filter((l) => /no hello within the handshake timeout/.test(l)).length, 2, 'both silent connections are closed by the handshake timeout');
  // 200 ms configured; the default is 5 s. The bound tells them apart with a 12x margin.
  t.ok(Date.now() - started < peerHandshakeTimeoutMs / 2, 'the configured timeout, not the default');
});

void t.test('a peer that stops reading costs bounded memory: messages are dropped and reported unreachable', async (t) => {
  // The slow peer answers the hello, then never reads again.
  const sockets: Socket[] = [];
  const slow: Server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    const decoder = new FrameDecoder({ payloadBytesMax: 256 });
    socket.once('data', (chunk: Buffer) => {
      const hello = decodePeerHello((decoder.push(chunk)[0] as { payload: Uint8Array }).payload);
      socket.write(helloFrame({ fromNode: hello.toNode, toNode: hello.fromNode }));
      socket.pause();
    });
  });
  await new Promise<void>((resolve) => slow.listen(0, host, resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    slow.close();
  });
  const slowPort = (slow.address() as { port: number }).port;
  const queueBytesMax = 4 * 1024 * 1024;
  const node = await startNode(t, { nodeId: 1, port: await freePort(), peers: new Map([[2, { host, port: slowPort }]]), queueBytesMax, queueFramesMax: 10_000 });
  await until('the link to the slow peer', () => node.transport.stats().peers.get(2)?.state === 'ready');
  const payload = new Uint8Array(64 * 1024);
  let accepted = 0;
  let dropped = 0;
  for (let i = 0; i < 2000; i++) {
    const message = makeMessage({ type: 'MsgApp', from: 1, to: 2, term: 1, index: i, entries: [{ index: i + 1, term: 1, type: 'normal', data: payload }] });
    if (node.transport.send(message)) accepted++;
    else dropped++;
    if (i % 100 === 0) await sleep(1); // let the socket push what the kernel takes
  }
  const stats = node.transport.stats().peers.get(2);
  t.ok(dropped > 1000, `most of 2000 × 64 KiB messages were dropped (${dropped} dropped, ${accepted} accepted)`);
  t.ok(stats !== undefined && stats.queuedBytes <= queueBytesMax, `at most ${queueBytesMax} bytes wait in the queue (${stats?.queuedBytes})`);
  t.equal(node.unreachable.length, dropped, 'every drop was reported unreachable');
  t.equal(stats?.state, 'ready', 'the link itself stays up');
});

void t.test('a link reconnects by itself after its peer restarts', async (t) => {
  const [portA, portB] = [await freePort(), await freePort()];
  const a = await startNode(t, { nodeId: 1, port: portA, peers: new Map([[2, { host, port: portB }]]) });
  const b1 = await startNode(t, { nodeId: 2, port: portB, peers: new Map([[1, { host, port: portA }]]) });
  await sendUntilDelivered(a, b1, heartbeat(1, 2));
  await b1.transport.close();
  await until('the link to notice', () => a.transport.stats().peers.get(2)?.state !== 'ready');
  t.notOk(a.transport.send(heartbeat(1, 2)), 'a message to a peer that is down is dropped at once');
  await sleep(100); // a few failed redials
  const b2 = await startNode(t, { nodeId: 2, port: portB, peers: new Map([[1, { host, port: portA }]]) });
  await sendUntilDelivered(a, b2, heartbeat(1, 2, 55));
  await sendUntilDelivered(b2, a, heartbeat(2, 1, 66));
  t.equal(b2.received[0]?.commit, 55, 'the restarted peer receives again');
  t.ok((a.transport.stats().peers.get(2)?.connects ?? 0) >= 2, 'the link connected a second time');
});
