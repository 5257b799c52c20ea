// Goal: every handshake option and every handshake error path behaves as the NBD spec says, and
// a misbehaving client only ever loses its own connection. Method: a raw client over an in-memory
// duplex pair speaks exact bytes to an NbdServer over MemoryDevice exports.
import t from 'tap';
import { CairnError } from '../../src/errors/cairn-error';
import { requestBytesMax } from '../../src/limits';
import { OptionReply, TransmissionFlag } from '../../src/nbd/protocol';
import { duplexPair } from './helpers/duplex-pair';
import { ClosedError, infoData, metaContextData, RawClient } from './helpers/raw-client';
import { diskBytes, eventually, session } from './helpers/session';

const ACK = OptionReply.ACK;
const INFO = OptionReply.INFO;

function infoOf(replies: Array<{ type: number; data: Buffer }>, infoType: number): Buffer | undefined {
  return replies.find((reply) => reply.type === INFO && reply.data.readUInt16BE(0) === infoType)?.data;
}

async function expectClosed(t: { ok: (value: unknown, message: string) => unknown }, client: RawClient, what: string): Promise<void> {
  t.ok(await client.waitEnded(10_000), `server hung up: ${what}`);
}

void t.test('the greeting advertises fixed newstyle and no zeroes', async (t) => {
  const { connect } = session(t);
  const client = connect();
  t.same(await client.readGreeting(), { flags: 3 });
});

void t.test('EXPORT_NAME with NO_ZEROES ends with size and flags, then serves requests', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake(3);
  client.sendOption(1, Buffer.from('disk'));
  const reply = await client.read(10);
  t.equal(Number(reply.readBigUInt64BE(0)), diskBytes);
  const flags = reply.readUInt16BE(8);
  t.ok(flags & TransmissionFlag.HAS_FLAGS);
  t.equal(flags & TransmissionFlag.SEND_DF, 0, 'no DF without structured replies');
  t.equal(await client.writeSimple(1n, 0, Buffer.alloc(512, 7)), 0);
  t.same(await client.readSimple(2n, 0, 512), Buffer.alloc(512, 7));
});

void t.test('EXPORT_NAME without NO_ZEROES pads with 124 zero bytes; the default export is ""', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake(1);
  client.sendOption(1, Buffer.alloc(0));
  const reply = await client.read(134);
  t.equal(Number(reply.readBigUInt64BE(0)), diskBytes);
  t.ok(reply.subarray(10).equals(Buffer.alloc(124)));
  t.same(await client.readSimple(1n, 0, 16), Buffer.alloc(16));
});

void t.test('EXPORT_NAME for an unknown export hangs up (there is no error reply)', async (t) => {
  const { connect, server } = session(t);
  const client = connect();
  await client.startHandshake();
  client.sendOption(1, Buffer.from('nope'));
  await expectClosed(t, client, 'unknown export');
  await eventually(() => server.connectionCount === 0);
});

void t.test('ABORT is acknowledged and the connection closes; a client closing first is fine', async (t) => {
  const { connect, server } = session(t);
  const client = connect();
  await client.startHandshake();
  t.same((await client.option(2)).map((reply) => reply.type), [ACK]);
  await expectClosed(t, client, 'after ABORT');

  const rude = connect();
  await rude.startHandshake();
  rude.sendOption(2);
  rude.destroy();
  await eventually(() => server.connectionCount === 0, 15_000, 'connections gone');
});

void t.test('LIST answers one SERVER reply per export with its description, then ACK', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake();
  const replies = await client.option(3);
  t.same(replies.map((reply) => reply.type), [OptionReply.SERVER, OptionReply.SERVER, ACK]);
  const first = replies[0]!.data;
  const nameBytes = first.readUInt32BE(0);
  t.equal(first.subarray(4, 4 + nameBytes).toString(), 'disk');
  t.equal(first.subarray(4 + nameBytes).toString(), 'the test disk');
  t.equal(replies[1]!.data.subarray(4).toString(), 'ro');

  const withData = await client.option(3, Buffer.from('x'));
  t.same(withData.map((reply) => reply.type), [OptionReply.ERR_INVALID]);
  t.same((await client.option(3)).length, 3, 'negotiation continues after the error');
});

void t.test('INFO reports export, name, description and block sizes, and stays in negotiation', async (t) => {
  const { connect, resolver } = session(t);
  const client = connect();
  await client.startHandshake();
  const replies = await client.option(6, infoData('', [1, 2, 3]));
  t.equal(replies[replies.length - 1]!.type, ACK);
  const exportInfo = infoOf(replies, 0)!;
  t.equal(Number(exportInfo.readBigUInt64BE(2)), diskBytes);
  t.equal(infoOf(replies, 1)!.subarray(2).toString(), 'disk', 'the default export has a canonical name');
  t.equal(infoOf(replies, 2)!.subarray(2).toString(), 'the test disk');
  const sizes = infoOf(replies, 3)!;
  t.same([sizes.readUInt32BE(2), sizes.readUInt32BE(6), sizes.readUInt32BE(10)], [512, 4096, requestBytesMax]);
  await eventually(() => resolver.releases === 1, 15_000, 'INFO released its handle');

  const go = await client.negotiateAfterStart({ name: 'disk', infos: [1, 2, 3] });
  t.equal(go.flags, exportInfo.readUInt16BE(10), 'INFO and GO agree');
  t.same(await client.readSimple(9n, 0, 4), Buffer.alloc(4));
});

void t.test('INFO/GO for an unknown export is ERR_UNKNOWN; malformed data is ERR_INVALID; both continue', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake();
  const unknown = await client.option(6, infoData('missing', []));
  t.same(unknown.map((reply) => reply.type), [OptionReply.ERR_UNKNOWN]);
  t.match(unknown[0]!.data.toString(), /missing/);
  t.same((await client.option(7, Buffer.from([0, 0, 0, 9, 1]))).map((reply) => reply.type), [OptionReply.ERR_INVALID]);
  t.same((await client.option(7, infoData('x'.repeat(5000), []))).map((reply) => reply.type), [OptionReply.ERR_TOO_BIG]);
  t.same((await client.option(7, infoData('ro', [])))[0]?.type, INFO, 'GO still works');
});

void t.test('GO on a read-only export advertises READ_ONLY and no write flags', async (t) => {
  const { connect } = session(t);
  const client = connect();
  const { flags } = await client.negotiate({ name: 'ro' });
  t.ok(flags & TransmissionFlag.READ_ONLY);
  t.equal(flags & (TransmissionFlag.SEND_TRIM | TransmissionFlag.SEND_WRITE_ZEROES | TransmissionFlag.SEND_FUA), 0);
  t.ok(flags & TransmissionFlag.CAN_MULTI_CONN);
});

void t.test('STRUCTURED_REPLY is acknowledged once; again or with data is ERR_INVALID', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake();
  t.same((await client.option(8, Buffer.from('x'))).map((reply) => reply.type), [OptionReply.ERR_INVALID]);
  t.same((await client.option(8)).map((reply) => reply.type), [ACK]);
  t.same((await client.option(8)).map((reply) => reply.type), [OptionReply.ERR_INVALID]);
  const go = await client.option(7, infoData('', []));
  t.ok(infoOf(go, 0)!.readUInt16BE(10) & TransmissionFlag.SEND_DF, 'DF is advertised with structured replies');
});

void t.test('LIST_META_CONTEXT offers base:allocation for "", "base:" and itself, and ignores the unknown', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake();
  for (const queries of [[], ['base:'], ['base:allocation'], ['x-unknown:thing', 'base:allocation']]) {
    const replies = await client.option(9, metaContextData('disk', queries));
    t.same(replies.map((reply) => reply.type), [OptionReply.META_CONTEXT, ACK], JSON.stringify(queries));
    t.equal(replies[0]!.data.subarray(4).toString(), 'base:allocation');
  }
  t.same((await client.option(9, metaContextData('disk', ['x-unknown:']))).map((reply) => reply.type), [ACK]);
  t.same((await client.option(9, Buffer.from([1, 2, 3]))).map((reply) => reply.type), [OptionReply.ERR_INVALID]);
});

void t.test('SET_META_CONTEXT needs structured replies, selects base:allocation, zero queries select nothing', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake();
  t.same((await client.option(10, metaContextData('disk', ['base:allocation']))).map((reply) => reply.type),
    [OptionReply.ERR_INVALID]);
  await client.expectAck(8);
  const set = await client.option(10, metaContextData('disk', ['base:allocation', 'base:allocation', 'x-a:b']));
  t.same(set.map((reply) => reply.type), [OptionReply.META_CONTEXT, ACK]);
  t.ok(set[0]!.data.readUInt32BE(0) > 0, 'an id');
  t.same((await client.option(10, metaContextData('disk', []))).map((reply) => reply.type), [ACK]);
  const tooMany = metaContextData('disk', Array.from({ length: 200 }, () => 'base:allocation'));
  t.same((await client.option(10, tooMany)).map((reply) => reply.type), [OptionReply.ERR_TOO_BIG]);
});

void t.test('STARTTLS, withdrawn, experimental and unknown options get ERR_UNSUP and negotiation continues', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake();
  for (const option of [5, 4, 11, 12, 0, 0xffffffff]) {
    const replies = await client.option(option, Buffer.from('some data to skip'));
    t.same(replies.map((reply) => reply.type), [OptionReply.ERR_UNSUP], `option ${option}`);
    t.equal(replies[0]!.option, option, 'the option is echoed');
  }
  await client.negotiateAfterStart({});
});

void t.test('resolver errors reach the client: CairnError messages are shown, other errors are not', async (t) => {
  const { connect, resolver } = session(t);
  const client = connect();
  await client.startHandshake();
  resolver.openError = new CairnError('CAIRN_VOLUME_IN_USE', 'volume disk is attached elsewhere');
  let replies = await client.option(7, infoData('disk', []));
  t.equal(replies[0]!.type, OptionReply.ERR_POLICY);
  t.equal(replies[0]!.data.toString(), 'volume disk is attached elsewhere');
  resolver.openError = new CairnError('CAIRN_VOLUME_NOT_FOUND', 'no volume named disk');
  t.equal((await client.option(7, infoData('disk', [])))[0]!.type, OptionReply.ERR_UNKNOWN);
  resolver.openError = new CairnError('CAIRN_SHUTTING_DOWN', 'stopping');
  t.equal((await client.option(7, infoData('disk', [])))[0]!.type, OptionReply.ERR_SHUTDOWN);
  resolver.openError = new Error('secret internal detail');
  replies = await client.option(7, infoData('disk', []));
  t.equal(replies[0]!.type, OptionReply.ERR_POLICY);
  t.notMatch(replies[0]!.data.toString(), /secret/);
  resolver.openError = undefined;
  await client.negotiateAfterStart({});
});

void t.test('unknown client flags, bad option magic and oversized option data drop the connection', async (t) => {
  const { connect, server } = session(t);
  const flags = connect();
  await flags.startHandshake(0x10003);
  await expectClosed(t, flags, 'unknown client flag');

  const magic = connect();
  await magic.startHandshake();
  magic.write(Buffer.alloc(16, 0x41));
  await expectClosed(t, magic, 'bad option magic');

  const big = connect();
  await big.startHandshake();
  big.sendOption(6, Buffer.alloc(0), 0xffffffff);
  await expectClosed(t, big, 'a 4 GiB option');

  const fine = connect();
  await fine.negotiate({});
  t.same(await fine.readSimple(1n, 0, 8), Buffer.alloc(8), 'other connections keep working');
  await eventually(() => server.connectionCount === 1);
});

void t.test('a client without FIXED_NEWSTYLE may only use EXPORT_NAME', async (t) => {
  const { connect } = session(t);
  const old = connect();
  await old.startHandshake(0);
  old.sendOption(1, Buffer.from('disk'));
  t.equal(Number((await old.read(134)).readBigUInt64BE(0)), diskBytes);

  const confused = connect();
  await confused.startHandshake(0);
  confused.sendOption(3);
  await expectClosed(t, confused, 'LIST from a non-fixed client');
});

void t.test('too many options and a slow handshake drop the connection', async (t) => {
  const { connect } = session(t, { limits: { optionsMax: 5, handshakeTimeoutMs: 500 } });
  const chatty = connect();
  await chatty.startHandshake();
  for (let index = 0; index < 5; index++) await chatty.option(99);
  chatty.sendOption(99);
  await expectClosed(t, chatty, 'sixth option');

  const slow = connect();
  await slow.startHandshake();
  const started = Date.now();
  await expectClosed(t, slow, 'handshake timeout');
  t.ok(Date.now() - started >= 400, 'not before the timeout');

  const quick = connect();
  await quick.negotiate({});
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.same(await quick.readSimple(1n, 0, 8), Buffer.alloc(8), 'no timeout once transmission started');
});

void t.test('clients vanishing mid-handshake leave no connection and no open handle behind', async (t) => {
  const { connect, server, resolver } = session(t);
  const cuts: Array<(client: RawClient) => Promise<void>> = [
    async (client) => { client.destroy(); },
    async (client) => { await client.readGreeting(); client.write(Buffer.from([0, 0])); client.destroy(); },
    async (client) => { await client.startHandshake(); client.write(Buffer.from('IHAVE')); client.end(); },
    async (client) => { await client.startHandshake(); client.sendOption(7, Buffer.alloc(0), 100); client.write(Buffer.alloc(50)); client.destroy(); },
    async (client) => { await client.startHandshake(); client.sendOption(7, infoData('disk', [])); client.end(); },
  ];
  for (const cut of cuts) await cut(connect());

  let release: () => void = () => {};
  resolver.openGate = new Promise((resolve) => { release = resolve; });
  const pending = connect();
  await pending.startHandshake();
  pending.sendOption(7, infoData('disk', []));
  await new Promise((resolve) => setTimeout(resolve, 20));
  pending.destroy();
  release();
  resolver.openGate = undefined;

  await eventually(() => server.connectionCount === 0, 15_000, 'every connection closed');
  t.equal(resolver.releases, resolver.opens, 'every opened handle was released');
});

void t.test('a shutting-down server answers options with ERR_SHUTDOWN (ABORT still works)', async (t) => {
  const { connect, server } = session(t, { shutdownDeadlineMs: 2000 });
  const client = connect();
  await client.startHandshake();
  await client.expectAck(8);
  const closed = server.close();
  for (const option of [3, 6, 7, 8, 99]) {
    t.same((await client.option(option, option === 6 || option === 7 ? infoData('', []) : undefined)).map((r) => r.type),
      [OptionReply.ERR_SHUTDOWN], `option ${option}`);
  }
  t.same((await client.option(2)).map((reply) => reply.type), [ACK]);
  await closed;
  t.equal(server.status, 'closed');
  const [serverSide] = duplexPair();
  t.equal(server.serve(serverSide), undefined, 'a closed server refuses streams');
  t.ok(serverSide.destroyed);
});

void t.test('reads from a hung-up connection fail with ClosedError (the helper can tell)', async (t) => {
  const { connect } = session(t);
  const client = connect();
  await client.startHandshake(0xff);
  await t.rejects(client.read(1), { name: 'ClosedError', message: 'closed' });
  t.ok(new ClosedError() instanceof Error);
});

void t.test('a client that sends GO and ends its side before the export opens is closed, not left hanging', async (t) => {
  // The daemon fuzz test (test/daemon/fuzz.test.ts) found this over real sockets: 'end' arrived
  // while GO was still opening the export, and the connection entered transmission waiting for
  // requests forever. The in-memory pair delivers 'end' later; this checks the same contract.
  const { connect, server, resolver } = session(t);
  let release: () => void = () => {};
  resolver.openGate = new Promise((resolve) => { release = resolve; });
  const client = connect();
  await client.startHandshake();
  client.sendOption(7, infoData('disk', []));
  client.end();
  await new Promise((resolve) => setTimeout(resolve, 20));
  release();
  resolver.openGate = undefined;
  await expectClosed(t, client, 'GO completed after the client ended');
  await eventually(() => server.connectionCount === 0, 15_000, 'the connection closed');
  t.equal(resolver.releases, resolver.opens, 'its handle was released');
});
