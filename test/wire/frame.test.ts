// Goal: the frame codec round-trips frames under any chunking of the stream, refuses every
// malformed frame with a typed FrameError before allocating for its payload, stays failed after an
// error, and never throws anything but FrameError on random garbage.
// Method: encode frames, feed them back in every split and in random chunks; hand-craft each bad
// header; feed seeded random bytes and random corruptions of valid streams.
import t from 'tap';
import { encodeFrame, FrameDecoder, FrameError, frameHeaderBytes, type Frame } from '../../src/wire/frame';
import { framePayloadBytesMax } from '../../src/limits';
import { AssertionError } from '../../src/util/assert';
import { SeededRandom } from '../../src/util/random';

function header(payloadBytes: number, type: number, version: number): Buffer {
  const bytes = Buffer.alloc(frameHeaderBytes);
  bytes.writeUInt32BE(payloadBytes, 0);
  bytes.writeUInt16BE(type, 4);
  bytes.writeUInt16BE(version, 6);
  return bytes;
}

function plain(frames: readonly Frame[]): Array<{ type: number; version: number; payload: string }> {
  return frames.map((frame) => ({ type: frame.type, version: frame.version, payload: Buffer.from(frame.payload).toString('hex') }));
}

function failure(run: () => unknown): FrameError | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  return undefined;
}

const frames: Frame[] = [
  { type: 1, version: 1, payload: Buffer.from('hello') },
  { type: 0xffff, version: 0xffff, payload: new Uint8Array(0) },
  { type: 7, version: 3, payload: new SeededRandom(1).fill(Buffer.alloc(300)) },
];

void t.test('encodeFrame writes the documented layout', async (t) => {
  const bytes = encodeFrame({ type: 0x0102, version: 0x0304, payload: Buffer.from([9, 8]) });
  t.same([...bytes], [0, 0, 0, 2, 1, 2, 3, 4, 9, 8]);
});

void t.test('frames round-trip whole, byte by byte, and split at every offset', async (t) => {
  const stream = Buffer.concat(frames.map((frame) => encodeFrame(frame)));
  t.same(plain(new FrameDecoder().push(stream)), plain(frames), 'one chunk');
  const byteByByte = new FrameDecoder();
  const collected: Frame[] = [];
  for (const byte of stream) collected.push(...byteByByte.push(Uint8Array.of(byte)));
  t.same(plain(collected), plain(frames), 'one byte at a time');
  byteByByte.end();
  for (let split = 0; split <= stream.length; split++) {
    const decoder = new FrameDecoder();
    const got = [...decoder.push(stream.subarray(0, split)), ...decoder.push(stream.subarray(split))];
    decoder.end();
    if (JSON.stringify(plain(got)) !== JSON.stringify(plain(frames))) t.fail(`split at ${split} lost frames`);
  }
  t.pass('every split point decodes the same frames');
});

void t.test('a payload inside one chunk is a view of it; a split one is assembled', async (t) => {
  const stream = encodeFrame(frames[0]!);
  const [whole] = new FrameDecoder().push(stream);
  t.equal(whole!.payload.buffer, stream.buffer, 'no copy when the payload lies in one chunk');
  const decoder = new FrameDecoder();
  t.same(decoder.push(stream.subarray(0, 10)), []);
  t.equal(decoder.bufferedBytes, 10);
  const [joined] = decoder.push(stream.subarray(10));
  t.equal(Buffer.from(joined!.payload).toString(), 'hello');
  t.equal(decoder.bufferedBytes, 0);
});

void t.test('a declared length past the maximum fails at the header, before any payload arrives', async (t) => {
  const decoder = new FrameDecoder({ payloadBytesMax: 1024 });
  t.same(decoder.push(encodeFrame({ type: 1, version: 1, payload: Buffer.alloc(1024) }, { payloadBytesMax: 1024 })).length, 1, 'the maximum itself is fine');
  const error = failure(() => decoder.push(header(1025, 9, 1)));
  t.equal(error?.reason, 'too-large');
  t.equal(error?.message, 'frame of type 9 declares 1025 payload bytes; at most 1024 are accepted');
  t.equal(decoder.bufferedBytes, 0, 'nothing was kept for the payload');
  const huge = failure(() => new FrameDecoder().push(header(0xffffffff, 1, 1)));
  t.equal(huge?.reason, 'too-large');
  t.match(huge?.message, `at most ${framePayloadBytesMax} are accepted`);
});

void t.test('type 0, version 0 and refused types or versions are malformed', async (t) => {
  t.equal(failure(() => new FrameDecoder().push(header(0, 0, 1)))?.reason, 'bad-type');
  t.equal(failure(() => new FrameDecoder().push(Buffer.alloc(64)))?.reason, 'bad-type', 'zeroed garbage fails at once');
  t.equal(failure(() => new FrameDecoder().push(header(0, 1, 0)))?.reason, 'bad-version');
  const picky = (): FrameDecoder => new FrameDecoder({ acceptType: (type) => type === 5, acceptVersion: (_type, version) => version <= 2 });
  t.same(plain(picky().push(header(0, 5, 2))), [{ type: 5, version: 2, payload: '' }]);
  const badType = failure(() => picky().push(header(0, 6, 1)));
  t.equal(badType?.reason, 'bad-type');
  t.equal(badType?.message, 'frame type 6 is not accepted on this stream');
  const badVersion = failure(() => picky().push(header(0, 5, 3)));
  t.equal(badVersion?.reason, 'bad-version');
  t.equal(badVersion?.message, 'frame type 5 version 3 is not accepted');
});

void t.test('a stream that ends inside a header or a payload is truncated', async (t) => {
  const inHeader = new FrameDecoder();
  inHeader.push(Buffer.from([0, 0]));
  const headerError = failure(() => inHeader.end());
  t.equal(headerError?.reason, 'truncated');
  t.equal(headerError?.message, 'stream ended inside a frame (2 of 8 header bytes)');
  const inPayload = new FrameDecoder();
  inPayload.push(encodeFrame(frames[0]!).subarray(0, 10));
  t.equal(failure(() => inPayload.end())?.message, 'stream ended inside a frame (2 of 5 payload bytes)');
  const afterHeader = new FrameDecoder();
  afterHeader.push(header(3, 1, 1));
  t.equal(failure(() => afterHeader.end())?.message, 'stream ended inside a frame (0 of 3 payload bytes)');
  const clean = new FrameDecoder();
  clean.push(encodeFrame(frames[1]!));
  t.equal(failure(() => clean.end()), undefined, 'ending between frames is fine');
});

void t.test('after an error the decoder stays failed with the same error', async (t) => {
  const decoder = new FrameDecoder();
  const first = failure(() => decoder.push(header(0, 0, 1)));
  t.equal(failure(() => decoder.push(encodeFrame(frames[0]!))), first);
  t.equal(failure(() => decoder.end()), first);
});

void t.test('encoding out-of-range frames is a programmer error', async (t) => {
  t.throws(() => encodeFrame({ type: 0, version: 1, payload: new Uint8Array(0) }), AssertionError);
  t.throws(() => encodeFrame({ type: 0x10000, version: 1, payload: new Uint8Array(0) }), AssertionError);
  t.throws(() => encodeFrame({ type: 1, version: 0, payload: new Uint8Array(0) }), AssertionError);
  t.throws(() => encodeFrame({ type: 1.5, version: 1, payload: new Uint8Array(0) }), AssertionError);
  t.throws(() => encodeFrame({ type: 1, version: 1, payload: Buffer.alloc(11) }, { payloadBytesMax: 10 }), AssertionError);
  t.throws(() => new FrameDecoder({ payloadBytesMax: 2 ** 32 }), AssertionError);
});

void t.test('random garbage and corrupted streams throw nothing but FrameError', async (t) => {
  const random = new SeededRandom(2024);
  const valid = Buffer.concat(frames.map((frame) => encodeFrame(frame)));
  let frameErrors = 0;
  let decoded = 0;
  for (let round = 0; round < 2000; round++) {
    const bytes = round % 2 === 0 ? random.fill(Buffer.alloc(random.int(256))) : Buffer.from(valid);
    if (round % 2 === 1) for (let flips = 1 + random.int(4); flips > 0; flips--) bytes[random.int(bytes.length)] = random.int(256);
    const decoder = new FrameDecoder({ payloadBytesMax: 4096 });
    try {
      let offset = 0;
      while (offset < bytes.length) {
        const size = 1 + random.int(40);
        decoded += decoder.push(bytes.subarray(offset, offset + size)).length;
        offset += size;
      }
      decoder.end();
    } catch (error) {
      if (!(error instanceof FrameError)) {
        t.fail(`round ${round} threw ${String(error)}`);
        return;
      }
      frameErrors++;
    }
  }
  t.ok(frameErrors > 500, `${frameErrors} streams were refused`);
  t.ok(decoded > 0, `${decoded} frames still decoded where the damage allowed`);
});
