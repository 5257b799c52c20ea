// Goal: the pure handshake and request parsers accept every well-formed byte stream however it
// is chunked, check every length before allocating, and turn malformed input into a failure or
// an option error instead of an exception. Method: feed crafted bytes, byte by byte and whole.
import t from 'tap';
import { ByteQueue } from '../../src/nbd/byte-queue';
import {
  decodeExportName, decodeInfoRequest, decodeMetaContextRequest, HandshakeEvent, HandshakeParser, OptionDecodeError,
} from '../../src/nbd/handshake-parser';
import { NbdRequest, RequestParseFailure, RequestParser } from '../../src/nbd/request-parser';
import { nbdMetaQueriesMax, nbdOptionBytesMax, nbdStringBytesMax, requestBytesMax } from '../../src/limits';
import { OptionReply } from '../../src/nbd/protocol';
import { infoData, metaContextData, NBD_OPT_MAGIC, REQUEST_MAGIC } from './helpers/raw-client';

function optionBytes(option: number, data: Buffer, length = data.length): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD_OPT_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(length, 12);
  return Buffer.concat([header, data]);
}

function requestBytes(type: number, options: { flags?: number; cookie?: bigint; offset?: bigint; length?: number; payload?: Buffer } = {}): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(REQUEST_MAGIC, 0);
  header.writeUInt16BE(options.flags ?? 0, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(options.cookie ?? 0n, 8);
  header.writeBigUInt64BE(options.offset ?? 0n, 16);
  header.writeUInt32BE(options.length ?? options.payload?.length ?? 0, 24);
  return options.payload === undefined ? header : Buffer.concat([header, options.payload]);
}

function drainHandshake(parser: HandshakeParser): HandshakeEvent[] {
  const events: HandshakeEvent[] = [];
  for (let event = parser.next(); event !== undefined; event = parser.next()) {
    events.push(event);
    if (event.kind === 'failure') break;
  }
  return events;
}

void t.test('the handshake parser yields client flags then options, byte by byte', async (t) => {
  const flags = Buffer.from([0, 0, 0, 3]);
  const stream = Buffer.concat([flags, optionBytes(8, Buffer.alloc(0)), optionBytes(3, Buffer.alloc(0)), optionBytes(99, Buffer.from('xyz'))]);
  const queue = new ByteQueue();
  const parser = new HandshakeParser(queue);
  const events: HandshakeEvent[] = [];
  for (const byte of stream) {
    queue.push(Buffer.from([byte]));
    events.push(...drainHandshake(parser));
  }
  t.same(events.map((event) => event.kind), ['client-flags', 'option', 'option', 'option']);
  t.same(events[0], { kind: 'client-flags', flags: 3 });
  const last = events[3];
  t.ok(last?.kind === 'option' && last.option === 99 && last.data.toString() === 'xyz');
  t.equal(queue.byteLength, 0);
});

void t.test('unknown client flag bits, a bad option magic and oversized option data are fatal', async (t) => {
  const unknownFlags = new ByteQueue();
  unknownFlags.push(Buffer.from([0, 0, 0, 7]));
  t.match(new HandshakeParser(unknownFlags).next(), { kind: 'failure', reason: /unknown client flags/ });

  const badMagic = new ByteQueue();
  const parser = new HandshakeParser(badMagic);
  badMagic.push(Buffer.from([0, 0, 0, 3]));
  parser.next();
  const bytes = optionBytes(3, Buffer.alloc(0));
  bytes[0] = 0;
  badMagic.push(bytes);
  t.match(parser.next(), { kind: 'failure', reason: /bad option magic/ });
  t.match(parser.next(), { kind: 'failure' }, 'a failed parser stays failed');

  const oversized = new ByteQueue();
  const parser2 = new HandshakeParser(oversized);
  oversized.push(Buffer.from([0, 0, 0, 3]));
  parser2.next();
  oversized.push(optionBytes(1, Buffer.alloc(0), nbdOptionBytesMax + 1));
  t.match(parser2.next(), { kind: 'failure', reason: /exceeds/ }, 'refused from the header alone, before any data');
});

void t.test('INFO/GO data decodes exactly and rejects every inconsistent length', async (t) => {
  t.same(decodeInfoRequest(infoData('disk', [1, 3])), { name: 'disk', infoTypes: [1, 3] });
  t.same(decodeInfoRequest(infoData('', [])), { name: '', infoTypes: [] });
  const good = infoData('disk', [1]);
  t.match(decodeInfoRequest(good.subarray(0, 5)), { reply: OptionReply.ERR_INVALID }, 'too short');
  t.match(decodeInfoRequest(Buffer.concat([good, Buffer.from([0])])), { reply: OptionReply.ERR_INVALID }, 'trailing byte');
  t.match(decodeInfoRequest(good.subarray(0, good.length - 1)), { reply: OptionReply.ERR_INVALID }, 'count runs past');
  const lying = Buffer.from(good);
  lying.writeUInt32BE(0xffffffff, 0);
  t.match(decodeInfoRequest(lying), { reply: OptionReply.ERR_INVALID }, 'name length runs past');
  t.match(decodeInfoRequest(infoData('a\0b', [])), { reply: OptionReply.ERR_INVALID, message: /NUL/ });
  const badUtf8 = infoData('ab', []);
  badUtf8[4] = 0xff;
  t.match(decodeInfoRequest(badUtf8), { reply: OptionReply.ERR_INVALID, message: /UTF-8/ });
  t.match(decodeInfoRequest(infoData('x'.repeat(nbdStringBytesMax + 1), [])), { reply: OptionReply.ERR_TOO_BIG });
  t.same(decodeInfoRequest(infoData('é'.repeat(nbdStringBytesMax / 2), [])), { name: 'é'.repeat(nbdStringBytesMax / 2), infoTypes: [] });
});

void t.test('meta context data decodes queries and bounds their number and size', async (t) => {
  t.same(decodeMetaContextRequest(metaContextData('d', ['base:allocation', 'x-foo:'])),
    { exportName: 'd', queries: ['base:allocation', 'x-foo:'] });
  t.same(decodeMetaContextRequest(metaContextData('', [])), { exportName: '', queries: [] });
  const tooMany = metaContextData('', Array.from({ length: nbdMetaQueriesMax + 1 }, () => 'a'));
  t.match(decodeMetaContextRequest(tooMany), { reply: OptionReply.ERR_TOO_BIG });
  const good = metaContextData('d', ['base:allocation']);
  for (let cut = 0; cut < good.length; cut++) {
    t.ok(decodeMetaContextRequest(good.subarray(0, cut)) instanceof OptionDecodeError, `truncated at ${cut}`);
  }
  const lying = Buffer.from(good);
  lying.writeUInt32BE(0x7fffffff, 5); // count field, after u32 name length + "d"
  t.match(decodeMetaContextRequest(lying), { reply: OptionReply.ERR_TOO_BIG });
  t.match(decodeMetaContextRequest(Buffer.concat([good, Buffer.from([1])])), { message: /trailing/ });
  t.match(decodeMetaContextRequest(metaContextData('', ['x'.repeat(nbdStringBytesMax + 1)])), { reply: OptionReply.ERR_TOO_BIG });
  t.equal(decodeExportName(Buffer.from('vol')), 'vol');
  t.ok(decodeExportName(Buffer.from([0x61, 0, 0x62])) instanceof OptionDecodeError);
});

void t.test('the request parser yields requests byte by byte with exact 64-bit fields', async (t) => {
  const payload = Buffer.from('hello world!');
  const stream = Buffer.concat([
    requestBytes(0, { flags: 0x04, cookie: 0xfedcba9876543210n, offset: 0x1_0000_0200n, length: 4096 }),
    requestBytes(1, { cookie: 2n, offset: 512n, payload }),
    requestBytes(2, { cookie: 3n }),
  ]);
  const queue = new ByteQueue();
  const parser = new RequestParser(queue);
  const requests: NbdRequest[] = [];
  for (const byte of stream) {
    queue.push(Buffer.from([byte]));
    for (let request = parser.next(); request !== undefined; request = parser.next()) {
      if (request instanceof RequestParseFailure) throw new Error(request.reason);
      requests.push(request);
    }
  }
  t.equal(requests.length, 3);
  const [read, write, disc] = requests;
  t.match(read, { type: 0, flags: 4, cookieHigh: 0xfedcba98, cookieLow: 0x76543210, offset: 0x1_0000_0200, length: 4096, payload: undefined });
  t.match(write, { type: 1, offset: 512, length: payload.length });
  t.same(write?.payload, payload);
  t.match(disc, { type: 2 });
});

void t.test('a WRITE payload inside one chunk is not copied; one split over chunks arrives whole', async (t) => {
  const payload = Buffer.alloc(4096, 0xab);
  const chunk = requestBytes(1, { cookie: 1n, payload });
  const queue = new ByteQueue();
  const parser = new RequestParser(queue);
  queue.push(chunk);
  const request = parser.next();
  t.ok(request instanceof NbdRequest);
  const written = (request as NbdRequest).payload;
  t.equal(written?.buffer, chunk.buffer, 'payload is a view of the received chunk');

  queue.push(chunk.subarray(0, 1000));
  t.equal(parser.next(), undefined);
  t.equal(parser.missingPayloadBytes, 4096 - 972);
  queue.push(chunk.subarray(1000));
  const second = parser.next() as NbdRequest;
  t.same(second.payload, payload);
});

void t.test('bad magic and a WRITE payload larger than the maximum are fatal before allocation', async (t) => {
  const queue = new ByteQueue();
  const parser = new RequestParser(queue);
  const bytes = requestBytes(0, { length: 512 });
  bytes.writeUInt32BE(0x12560953, 0); // a reserved magic
  queue.push(bytes);
  t.match(parser.next(), { reason: /bad request magic/ });
  t.match(parser.next(), { reason: /bad request magic/ }, 'stays failed');

  const queue2 = new ByteQueue();
  const parser2 = new RequestParser(queue2);
  queue2.push(requestBytes(1, { length: requestBytesMax + 1 }));
  t.match(parser2.next(), { reason: /exceeds/ });

  const queue3 = new ByteQueue();
  const parser3 = new RequestParser(queue3);
  queue3.push(requestBytes(0, { length: 0xffffffff }));
  t.match(parser3.next(), { type: 0, length: 0xffffffff }, 'a huge READ is the validator\'s business (EINVAL), not fatal');
});

void t.test('unknown commands parse as requests with no payload', async (t) => {
  const queue = new ByteQueue();
  const parser = new RequestParser(queue);
  queue.push(Buffer.concat([requestBytes(42, { length: 100 }), requestBytes(0, { length: 1 })]));
  t.match(parser.next(), { type: 42, length: 100, payload: undefined });
  t.match(parser.next(), { type: 0, length: 1 });
});
