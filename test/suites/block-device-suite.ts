/**
 * The BlockDevice conformance suite: the contract in src/block/block-device.ts, checked the same
 * way against every implementation. A device test file calls
 *
 *   blockDeviceSuite(t, (t, options) => makeDevice(options), { boundaryBytes });
 *
 * and gets one subtest per property. The factory builds a fresh device of `options.sizeBytes`
 * (read-only when asked) and registers its own cleanup on the given test. `boundaryBytes` is
 * where the device cuts requests internally (its extent size; a multiple of its chunk size for
 * finer-grained devices): unaligned and cross-boundary I/O is aimed at multiples of it, and
 * allocation is checked at 64 KiB granularity. Sub-suites follow `capabilities`.
 */
import type { Test } from 'tap';
import type { BlockDevice, Extent } from '../../src/block/block-device';
import { rejectsCode } from '../helpers/assertions';

export interface BlockDeviceFactoryOptions {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
}

export type BlockDeviceFactory = (t: Test, options: BlockDeviceFactoryOptions) => Promise<BlockDevice>;

export interface BlockDeviceSuiteOptions {
  /** Where the device splits requests internally (default 1 MiB). */
  readonly boundaryBytes?: number;
}

const KiB = 1024;

/** Deterministic bytes: different seeds give different contents. */
function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    buffer[i] = state >>> 24;
  }
  return buffer;
}

async function readBack(device: BlockDevice, offset: number, length: number): Promise<Buffer> {
  const target = Buffer.alloc(length, 0xee);
  await device.read(offset, target);
  return target;
}

/** Calls extents() until [offset, offset+length) is covered, checking the contract on the way. */
async function allocationMap(t: Test, device: BlockDevice, offset: number, length: number): Promise<Array<Extent & { offset: number }>> {
  const map: Array<Extent & { offset: number }> = [];
  let position = offset;
  for (let calls = 0; position < offset + length; calls++) {
    if (calls > 100_000) throw new Error('extents() makes no progress');
    const extents = await device.extents(position, offset + length - position);
    if (extents.length === 0) throw new Error('extents() returned nothing');
    for (const extent of extents) {
      if (!(extent.length > 0)) t.fail('descriptors are non-empty');
      if (extent.hole && !extent.zero) t.fail('this device reports holes that read as zeroes');
      map.push({ ...extent, offset: position });
      position += extent.length;
    }
  }
  return map;
}

/** The kinds of descriptor covering [offset, offset+length). */
function kindsIn(map: ReadonlyArray<Extent & { offset: number }>, offset: number, length: number): Array<{ hole: boolean; zero: boolean }> {
  return map.filter((extent) => extent.offset < offset + length && extent.offset + extent.length > offset)
    .map((extent) => ({ hole: extent.hole, zero: extent.zero }));
}

export function blockDeviceSuite(t: Test, factory: BlockDeviceFactory, options: BlockDeviceSuiteOptions = {}): void {
  const boundary = options.boundaryBytes ?? 1024 * KiB;
  // The fixed offsets below (up to 192 KiB into a boundary) assume boundaries this far apart.
  if (boundary < 256 * KiB || boundary % (64 * KiB) !== 0) throw new Error('boundaryBytes must be a multiple of 64 KiB, at least 256 KiB');
  const sizeBytes = 8 * boundary;
  const writable = (t: Test): Promise<BlockDevice> => factory(t, { sizeBytes, readOnly: false });

  void t.test('capabilities are coherent and the size is what was asked', async (t) => {
    const device = await writable(t);
    t.equal(device.sizeBytes, sizeBytes);
    const caps = device.capabilities;
    t.ok(caps.canWrite, 'a writable device can write');
    t.ok(['none', 'emulate', 'native'].includes(caps.fua));
    if (caps.fua !== 'none') t.ok(caps.canFlush, 'FUA needs flush');
    if (caps.canFastZero) t.ok(caps.canZero, 'fast zero needs zero');
  });

  void t.test('a fresh device reads zeroes everywhere', async (t) => {
    const device = await writable(t);
    t.ok((await readBack(device, 0, sizeBytes)).equals(Buffer.alloc(sizeBytes)));
  });

  void t.test('reads return what was written (read your writes)', async (t) => {
    const device = await writable(t);
    const offsets = [0, 4 * KiB, boundary, 3 * boundary + 64 * KiB, sizeBytes - 4 * KiB];
    for (const [i, offset] of offsets.entries()) await device.write(offset, pattern(4 * KiB, i + 1));
    for (const [i, offset] of offsets.entries()) {
      t.ok((await readBack(device, offset, 4 * KiB)).equals(pattern(4 * KiB, i + 1)), `at ${offset}`);
    }
    await device.write(4 * KiB, pattern(4 * KiB, 99));
    t.ok((await readBack(device, 4 * KiB, 4 * KiB)).equals(pattern(4 * KiB, 99)), 'the last write wins');
  });

  void t.test('unaligned writes change exactly their bytes', async (t) => {
    const device = await writable(t);
    const base = pattern(64 * KiB, 7);
    const start = boundary + 8 * KiB;
    await device.write(start, base);
    const cases: Array<[number, number]> = [[1, 1], [511, 3], [4095, 2], [1000, 1000], [12345, 4097], [65535, 1]];
    const expected = Buffer.from(base);
    for (const [i, [offset, length]] of cases.entries()) {
      const data = pattern(length, 100 + i);
      await device.write(start + offset, data);
      data.copy(expected, offset);
    }
    t.ok((await readBack(device, start, 64 * KiB)).equals(expected), 'the window matches byte for byte');
    t.ok((await readBack(device, start - 1, 1)).equals(Buffer.alloc(1)), 'the byte before is untouched');
    t.ok((await readBack(device, start + 64 * KiB, 1)).equals(Buffer.alloc(1)), 'the byte after is untouched');
    t.ok((await readBack(device, start + 12345, 3)).equals(expected.subarray(12345, 12348)), 'an unaligned read');
  });

  void t.test('I/O across internal boundaries reads back whole and in pieces', async (t) => {
    const device = await writable(t);
    const small = pattern(5000, 11);
    await device.write(boundary - 1000, small);
    t.ok((await readBack(device, boundary - 1000, 5000)).equals(small));
    t.ok((await readBack(device, boundary, 4000)).equals(small.subarray(1000)), 'the part past the boundary');
    const large = pattern(2 * boundary + 777, 12);
    const start = 3 * boundary + 333;
    await device.write(start, large);
    t.ok((await readBack(device, start, large.length)).equals(large), 'spanning three boundaries');
    const pieces = Buffer.alloc(large.length);
    for (let done = 0; done < large.length; done += 100_003) {
      const length = Math.min(100_003, large.length - done);
      (await readBack(device, start + done, length)).copy(pieces, done);
    }
    t.ok(pieces.equals(large), 'read in unaligned pieces');
  });

  void t.test('concurrent writes to distinct ranges all land', async (t) => {
    const device = await writable(t);
    const writes = Array.from({ length: 48 }, (_, i) => ({
      offset: i * Math.floor(sizeBytes / 48) + (i % 7) * 513,
      data: pattern(4 * KiB + (i % 5) * 12_289, 200 + i),
    }));
    await Promise.all(writes.map(({ offset, data }) => device.write(offset, data)));
    const reads = await Promise.all(writes.map(({ offset, data }) => readBack(device, offset, data.length)));
    for (const [i, back] of reads.entries()) if (!back.equals(writes[i]!.data)) t.fail(`write ${i} reads back`);
    t.pass('48 concurrent writes checked');
  });

  void t.test('flush and FUA writes resolve, and the data stays readable', async (t) => {
    const device = await writable(t);
    await device.flush();
    await device.write(boundary - 2048, pattern(4 * KiB, 1), { fua: true });
    await device.write(2 * boundary, pattern(4 * KiB, 2));
    await device.flush();
    await Promise.all([device.flush(), device.write(5 * boundary, pattern(4 * KiB, 3)), device.flush()]);
    t.ok((await readBack(device, boundary - 2048, 4 * KiB)).equals(pattern(4 * KiB, 1)));
    t.ok((await readBack(device, 2 * boundary, 4 * KiB)).equals(pattern(4 * KiB, 2)));
    t.ok((await readBack(device, 5 * boundary, 4 * KiB)).equals(pattern(4 * KiB, 3)));
  });

  void t.test('zeroing reads back zeroes and leaves the neighbours alone', async (t) => {
    const device = await writable(t);
    if (!device.capabilities.canZero) { t.pass('device cannot zero'); return; }
    const data = pattern(3 * boundary, 21);
    await device.write(0, data);
    const expected = Buffer.from(data);
    const ranges: Array<[number, number, { noHole?: boolean; fua?: boolean }]> = [
      [4 * KiB, 4 * KiB, {}],
      [boundary - 100, 300, { noHole: true }],
      [boundary + 64 * KiB, boundary, { fua: true }],
      [123, 1, { noHole: true, fua: true }],
    ];
    for (const [offset, length, flags] of ranges) {
      await device.zero(offset, length, flags);
      expected.fill(0, offset, offset + length);
    }
    t.ok((await readBack(device, 0, 3 * boundary)).equals(expected));
    if (device.capabilities.canFastZero) {
      await device.zero(2 * boundary + 4 * KiB, 8 * KiB, { fast: true });
      expected.fill(0, 2 * boundary + 4 * KiB, 2 * boundary + 12 * KiB);
      t.ok((await readBack(device, 0, 3 * boundary)).equals(expected), 'fast zero');
    } else {
      await rejectsCode(t, () => device.zero(0, 4 * KiB, { fast: true }), 'CAIRN_NOT_SUPPORTED');
    }
  });

  void t.test('trimmed ranges read back zeroes', async (t) => {
    const device = await writable(t);
    if (!device.capabilities.canTrim) { t.pass('device cannot trim'); return; }
    const data = pattern(2 * boundary, 31);
    await device.write(boundary, data);
    await device.trim(boundary + 64 * KiB, 128 * KiB);
    await device.trim(2 * boundary - 10, 20, { fua: true });
    const expected = Buffer.from(data);
    expected.fill(0, 64 * KiB, 192 * KiB);
    expected.fill(0, boundary - 10, boundary + 10);
    t.ok((await readBack(device, boundary, 2 * boundary)).equals(expected));
  });

  void t.test('extents reflect writes and trims, and every zero descriptor reads as zeroes', async (t) => {
    const device = await writable(t);
    if (!device.capabilities.canExtents) { t.pass('device does not report extents'); return; }
    const fresh = await allocationMap(t, device, 0, sizeBytes);
    t.same(kindsIn(fresh, 0, sizeBytes).filter((kind) => !kind.zero), [], 'a fresh device is all zero');
    const written = 2 * boundary + 128 * KiB;
    await device.write(written, pattern(128 * KiB, 41));
    await device.write(boundary - 64 * KiB, pattern(128 * KiB, 42)); // across a boundary
    const after = await allocationMap(t, device, 0, sizeBytes);
    t.same(kindsIn(after, written, 128 * KiB), [{ hole: false, zero: false }], 'the written range is data');
    t.same(kindsIn(after, boundary - 64 * KiB, 128 * KiB), [{ hole: false, zero: false }], 'merged across the boundary');
    t.ok(kindsIn(after, 0, 64 * KiB).every((kind) => kind.hole && kind.zero), 'untouched space is a hole');
    if (device.capabilities.canTrim) {
      await device.trim(written, 128 * KiB);
      const trimmed = await allocationMap(t, device, written, 128 * KiB);
      t.ok(trimmed.every((extent) => extent.zero), 'trimmed space reads as zeroes');
    }
    for (const extent of await allocationMap(t, device, 0, sizeBytes)) {
      if (extent.zero && !(await readBack(device, extent.offset, Math.min(extent.length, sizeBytes - extent.offset))).equals(
        Buffer.alloc(Math.min(extent.length, sizeBytes - extent.offset)))) {
        t.fail(`descriptor at ${extent.offset} says zero but holds data`);
      }
    }
    const middle = await device.extents(written + 4 * KiB, 4 * KiB);
    t.ok(middle.length >= 1 && middle[0]!.length >= 1, 'a query may start inside a descriptor');
  });

  void t.test('requests outside the device fail with CAIRN_OUT_OF_RANGE, malformed ones with CAIRN_INVALID_ARGUMENT', async (t) => {
    const device = await writable(t);
    await rejectsCode(t, () => device.read(sizeBytes - 1, Buffer.alloc(2)), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.read(sizeBytes, Buffer.alloc(1)), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.write(sizeBytes - 4096, Buffer.alloc(8192)), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.trim(sizeBytes, 1), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.zero(0, sizeBytes + 1), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.cache(sizeBytes - 1, 2), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.extents(0, sizeBytes + 4096), 'CAIRN_OUT_OF_RANGE');
    await rejectsCode(t, () => device.read(-1, Buffer.alloc(1)), 'CAIRN_INVALID_ARGUMENT');
    await rejectsCode(t, () => device.write(0.5, Buffer.alloc(1)), 'CAIRN_INVALID_ARGUMENT');
    await rejectsCode(t, () => device.trim(0, -1), 'CAIRN_INVALID_ARGUMENT');
    t.ok((await readBack(device, sizeBytes - 4096, 4096)).equals(Buffer.alloc(4096)), 'a refused write changed nothing');
  });

  void t.test('zero-length requests and cache hints change nothing', async (t) => {
    const device = await writable(t);
    await device.write(boundary, pattern(8 * KiB, 51));
    await device.write(sizeBytes, Buffer.alloc(0));
    await device.read(sizeBytes, Buffer.alloc(0));
    await device.trim(boundary, 0);
    await device.zero(boundary, 0);
    t.same(await device.extents(boundary, 0), []);
    await device.cache(0, sizeBytes);
    t.ok((await readBack(device, boundary, 8 * KiB)).equals(pattern(8 * KiB, 51)));
  });

  void t.test('a read-only device reads but refuses every change with CAIRN_READ_ONLY', async (t) => {
    const device = await factory(t, { sizeBytes, readOnly: true });
    t.notOk(device.capabilities.canWrite);
    t.ok((await readBack(device, 0, 4096)).equals(Buffer.alloc(4096)));
    await rejectsCode(t, () => device.write(0, Buffer.alloc(4096)), 'CAIRN_READ_ONLY');
    await rejectsCode(t, () => device.trim(0, 4096), 'CAIRN_READ_ONLY');
    await rejectsCode(t, () => device.zero(0, 4096), 'CAIRN_READ_ONLY');
    await rejectsCode(t, () => device.write(sizeBytes, Buffer.alloc(1)), 'CAIRN_READ_ONLY');
    await device.flush();
    t.ok((await readBack(device, 0, 4096)).equals(Buffer.alloc(4096)));
  });
}
