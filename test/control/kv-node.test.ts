// Goal: the KV node's client protocol works end to end through the typed client — sessions, put,
// get, cas, delete, following the leader, exactly-once retries — and bad client input closes only
// that connection; the process entry refuses bad flags with the reason; a client that reaches no
// node reports an outcome it can stand behind.
// Method: three KvNodes in this process on 127.0.0.1 (real TCP peer transport, LevelDB with fsync,
// 10 ms ticks) and a KvClient that knows all three; raw sockets send malformed frames and requests.
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient, KvClientError, kvFrameType, kvFrameVersion } from '../../src/control/kv-client';
import { KvNode } from '../../src/control/kv-node';
import { parseArguments } from '../../src/control/kv-node-main';
import type { PeerAddress } from '../../src/transport/peer-link';
import { FrameDecoder, encodeFrame } from '../../src/wire/frame';
import { pb } from '../../src/wire/messages';
import { freePort } from '../helpers/ports';

const host = '127.0.0.1';


async function startCluster(t: Test): Promise<{ nodes: KvNode[]; client: KvClient }> {
  const root = await mkdtemp(join(tmpdir(), 'cairn-kv-node-'));
  const members = new Map<number, PeerAddress>();
  for (const id of [1, 2, 3]) members.set(id, { host, port: await freePort() });
  const nodes = await Promise.all([1, 2, 3].map((nodeId) => KvNode.start({
    clusterId: 'kv-node-test', nodeId, members, dataDir: join(root, `n${nodeId}`), clientListen: { host, port: 0 }, tickMs: 10,
  })));
  const client = new KvClient({ endpoints: new Map(nodes.map((node, i) => [i + 1, { host, port: node.clientPort }])), attemptTimeoutMs: 500 });
  t.teardown(async () => {
    client.close();
    for (const node of nodes) await node.stop();
    await rm(root, { recursive: true, force: true });
  });
  return { nodes, client };
}

void t.test('a client session puts, gets, swaps and deletes through whichever node leads', async (t) => {
  const { client } = await startCluster(t);
  const session = await client.openSession();
  t.equal(await session.get('a'), null, 'an absent key reads as null');
  await session.put('a', '1');
  t.equal(await session.get('a'), '1');
  t.equal(await session.cas('a', '1', '2'), true, 'cas from the current value swaps');
  t.equal(await session.cas('a', '1', '3'), false, 'cas from a stale value does not');
  t.equal(await session.cas('b', null, 'new'), true, 'cas from absent creates');
  t.equal(await session.delete('a'), true);
  t.equal(await session.delete('a'), false, 'deleting an absent key reports it');
  t.equal(await session.get('a'), null);
  const statuses = await Promise.all([1, 2, 3].map((id) => client.status(id)));
  t.equal(statuses.filter((status) => status.role === 'leader').length, 1, 'one node leads');
});

void t.test('a retried request with the same sequence number is applied once and answered with the first result', async (t) => {
  const { client } = await startCluster(t);
  const session = await client.openSession();
  const first = await client.propose({ kind: 'cas', clientId: session.clientId, seq: 50, key: 'once', from: null, to: 'first' });
  const retry = await client.propose({ kind: 'cas', clientId: session.clientId, seq: 50, key: 'once', from: null, to: 'first' });
  t.same(first, { kind: 'cas', ok: true, value: null });
  t.same(retry, first, 'the retry gets the remembered answer, not a failed cas');
  const stale = await client.propose({ kind: 'put', clientId: session.clientId, seq: 49, key: 'once', value: 'late' });
  t.same(stale, { kind: 'stale' }, 'an older request is not applied after a newer one');
  t.equal(await session.get('once'), 'first');
});

void t.test('malformed client input closes that connection only; an undecodable command is refused', async (t) => {
  const { nodes, client } = await startCluster(t);
  const port = (nodes[0] as KvNode).clientPort;
  const closes = async (name: string, bytes: Buffer): Promise<void> => {
    const socket = connect({ host, port });
    socket.on('error', () => {});
    socket.resume();
    socket.on('connect', () => socket.write(bytes));
    // A connection left open would hang here until tap's timeout fails the test.
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    t.pass(`${name}: the connection is closed by the node`);
  };
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0x7fffffff, 0);
  header.writeUInt16BE(kvFrameType.request, 4);
  header.writeUInt16BE(kvFrameVersion, 6);
  await closes('a header declaring 2 GiB', header);
  await closes('a response frame type from a client', encodeFrame({ type: kvFrameType.response, version: kvFrameVersion, payload: Uint8Array.of(1) }));
  await closes('an undecodable request', encodeFrame({ type: kvFrameType.request, version: kvFrameVersion, payload: Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f) }));
  // A well-formed request whose command is not a KV command: answered, connection kept.
  const socket = connect({ host, port });
  t.teardown(() => socket.destroy());
  const decoder = new FrameDecoder({ payloadBytesMax: 1 << 20 });
  const answer = new Promise<ReturnType<typeof pb.KvResponse.decode>>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      const frame = decoder.push(chunk)[0];
      if (frame !== undefined) resolve(pb.KvResponse.decode(frame.payload));
    });
  });
  socket.write(encodeFrame({ type: kvFrameType.request, version: kvFrameVersion, payload: pb.KvRequest.encode({ callId: 9, propose: Uint8Array.of(7, 7, 7) }).finish() }));
  const response = await answer;
  t.equal(Number(response.callId), 9, 'the answer carries the call id');
  t.equal(response.error?.code, 'CAIRN_INVALID_ARGUMENT', 'the command is refused as invalid');
  t.notOk(socket.destroyed, 'the connection stays open');
  const session = await client.openSession();
  await session.put('still', 'works');
  t.equal(await session.get('still'), 'works', 'the node still serves other clients');
});

void t.test('a client that reaches no node gives up with the outcome it can stand behind', async (t) => {
  const deadPort = await freePort();
  const client = new KvClient({ endpoints: new Map([[1, { host, port: deadPort }]]), attemptTimeoutMs: 100, operationTimeoutMs: 300 });
  t.teardown(() => client.close());
  const error = await client.propose({ kind: 'put', clientId: 3, seq: 2, key: 'k', value: 'v' }).catch((caught: unknown) => caught);
  t.ok(error instanceof KvClientError, 'a KvClientError');
  t.match(error, { code: 'CAIRN_UNAVAILABLE', outcome: 'not-applied' }, 'refused connections never carried the request');
});

void t.test('the process entry refuses bad flags with the reason', async (t) => {
  const good = ['--id', '1', '--peers', '1=127.0.0.1:7001,2=127.0.0.1:7002', '--data-dir', '/tmp/x', '--client-listen', '127.0.0.1:7101'];
  const parsed = parseArguments([...good, '--tick-ms', '20']);
  t.equal(parsed.nodeId, 1);
  t.equal(parsed.members.get(2)?.port, 7002);
  t.equal(parsed.tickMs, 20);
  t.equal(parsed.clusterId, 'cairn-kv');
  const refused: Array<[string[], RegExp]> = [
    [good.slice(2), /--id is required/],
    [[...good, '--bogus', '1'], /unknown flag '--bogus'/],
    [[...good, '--tick-ms'], /--tick-ms needs a value/],
    [[...good, '--tick-ms', '0'], /--tick-ms: expected an integer >= 1/],
    [['--id', '3', ...good.slice(2)], /--peers must include this node \(3\)/],
    [['--id', '1', '--peers', '1=127.0.0.1:7001,1=127.0.0.1:7002', ...good.slice(4)], /node 1 listed twice/],
    [['--id', '1', '--peers', '1=nowhere', ...good.slice(4)], /expected host:port/],
    [[...good.slice(0, 6), '--client-listen', '127.0.0.1:99999'], /--client-listen: expected host:port/],
    [[...good, '--log-level', 'loud'], /unknown level 'loud'/],
  ];
  for (const [argv, reason] of refused) t.throws(() => parseArguments(argv), reason, reason.source);
});
