/**
 * Goal: VolumeDevice meets the BlockDevice contract over the extent store, cuts requests at
 * extent boundaries into the right files, advertises honest capabilities, and answers
 * allocation queries in bounded, merged pieces even for a 1 TiB volume.
 *
 * Method: the shared conformance suite over a store on a temp drive with 1 MiB extents (the
 * smallest, so the suite's boundaries are extent boundaries); then device-specific checks that
 * read the extent files directly, count sync calls and time the bounded extents() walk.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { VolumeDevice, extentsDescriptorsMax, extentsScanExtentsMax, extentsScanSeeksMax } from '../../src/block/volume-device';
import { blockDeviceSuite } from '../suites/block-device-suite';
import { errnoError, MiB, openStore, pattern, spyNative, SyncRecorder, tempDrive } from '../extent/fixtures/extent-fixtures';
import { loadNativeBinding } from '../../src/native/binding';

const TiB = 1024 * 1024 * MiB;

/** Store options for the one-file-per-extent layout (segments of one 1 MiB extent). */
const perExtent = { segmentBytes: MiB };

blockDeviceSuite(t, async (t, options) => {
  const store = await openStore(t);
  return VolumeDevice.open({ store, volumeId: 'suite', sizeBytes: options.sizeBytes, extentBytes: MiB, readOnly: options.readOnly });
});

void t.test('the suite also passes with one file per extent', async (t) => {
  blockDeviceSuite(t, async (t, options) => {
    const store = await openStore(t, perExtent);
    return VolumeDevice.open({ store, volumeId: 'files', sizeBytes: options.sizeBytes, extentBytes: MiB, readOnly: options.readOnly });
  });
});

void t.test('the suite also passes when the volume spans several segments', async (t) => {
  blockDeviceSuite(t, async (t, options) => {
    const store = await openStore(t, { segmentBytes: 2 * MiB });
    return VolumeDevice.open({ store, volumeId: 'segments', sizeBytes: options.sizeBytes, extentBytes: MiB, readOnly: options.readOnly });
  });
});

void t.test('the suite also passes on tmpfs, where zero range and RWF_NOWAIT are missing', async (t) => {
  blockDeviceSuite(t, async (t, options) => {
    const store = await openStore(t, { drivePath: tempDrive(t, '/dev/shm'), onWarning: () => undefined });
    return VolumeDevice.open({ store, volumeId: 'shm', sizeBytes: options.sizeBytes, extentBytes: MiB, readOnly: options.readOnly });
  });
});

void t.test('a request across extents lands contiguously in their segment file', async (t) => {
  const store = await openStore(t);
  const device = await VolumeDevice.open({ store, volumeId: 'cut', sizeBytes: 4 * MiB, extentBytes: MiB });
  const data = pattern(MiB + 8192, 1);
  await device.write(MiB - 4096, data);
  const directory = device.volume.directory;
  t.same(fs.readdirSync(directory).sort(), ['0.segment', 'layout.json']);
  const file = fs.readFileSync(path.join(directory, '0.segment'));
  t.ok(file.subarray(MiB - 4096, 2 * MiB + 4096).equals(data), 'at its volume offset');
  t.ok(file.subarray(0, MiB - 4096).equals(Buffer.alloc(MiB - 4096)) && file.subarray(2 * MiB + 4096).equals(Buffer.alloc(2 * MiB - 4096)), 'nothing else written');
});

void t.test('with one file per extent, a request across extents is cut at the boundary into the right files', async (t) => {
  const store = await openStore(t, perExtent);
  const device = await VolumeDevice.open({ store, volumeId: 'cut', sizeBytes: 4 * MiB, extentBytes: MiB });
  const data = pattern(MiB + 8192, 1);
  await device.write(MiB - 4096, data);
  const directory = device.volume.directory;
  const first = fs.readFileSync(path.join(directory, '0.extent'));
  const second = fs.readFileSync(path.join(directory, '1.extent'));
  t.ok(first.subarray(MiB - 4096).equals(data.subarray(0, 4096)), 'the head ends extent 0');
  t.ok(second.subarray(0, MiB).equals(data.subarray(4096, 4096 + MiB)), 'the middle fills extent 1');
  const third = fs.readFileSync(path.join(directory, '2.extent'));
  t.ok(third.subarray(0, 4096).equals(data.subarray(4096 + MiB)), 'the tail starts extent 2');
  t.notOk(fs.existsSync(path.join(directory, '3.extent')), 'no other file');
});

void t.test('capabilities follow the drive: fast zero needs punch-hole; multi-conn and native FUA always', async (t) => {
  const store = await openStore(t);
  const device = await VolumeDevice.open({ store, volumeId: 'caps', sizeBytes: MiB });
  t.same(device.capabilities, {
    canWrite: true, canFlush: true, canTrim: true, canZero: true, canFastZero: true,
    canMultiConn: true, canCache: true, canExtents: true, fua: 'native',
  });
  t.equal(device.volume.extentBytes, 64 * MiB, 'the default extent size');
  const native = loadNativeBinding();
  const { native: noPunch } = spyNative({
    fallocate: (fd, mode, offset, length) => {
      if (mode === (native.constants.FALLOC_FL_PUNCH_HOLE | native.constants.FALLOC_FL_KEEP_SIZE)) throw errnoError('EOPNOTSUPP', 95, 'fallocate');
      native.fallocate(fd, mode, offset, length);
    },
  });
  const plainStore = await openStore(t, { native: noPunch, onWarning: () => undefined });
  const plain = await VolumeDevice.open({ store: plainStore, volumeId: 'plain', sizeBytes: MiB, extentBytes: MiB });
  t.equal(plain.capabilities.canFastZero, false, 'no punch-hole: no fast zero');
  const readOnly = await VolumeDevice.open({ store, volumeId: 'caps', sizeBytes: MiB, readOnly: true });
  t.equal(readOnly.capabilities.canWrite, false);
});

void t.test('FUA through the device is one durable write, not a write plus a flush', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { ...perExtent, sync: recorder.sync });
  const device = await VolumeDevice.open({ store, volumeId: 'fua', sizeBytes: 4 * MiB, extentBytes: MiB });
  await device.write(0, pattern(4096, 1));
  await device.flush();
  const mark = recorder.calls.length;
  await device.write(4096, pattern(4096, 2), { fua: true });
  t.equal(recorder.calls.length, mark, 'no sync call: RWF_DSYNC did it');
  await device.write(MiB - 2048, pattern(4096, 3), { fua: true });
  t.same(recorder.metadataSince(mark), [device.volume.directory], 'a FUA write that created a file syncs its directory');
  t.same(recorder.dataSince(mark), [], 'and no data file');
});

void t.test('a resized volume shows its new size through the device at once', async (t) => {
  const store = await openStore(t);
  const device = await VolumeDevice.open({ store, volumeId: 'grow', sizeBytes: MiB, extentBytes: MiB });
  await store.openVolume({ volumeId: 'grow', sizeBytes: 3 * MiB, extentBytes: MiB });
  t.equal(device.sizeBytes, 3 * MiB);
  await device.write(2 * MiB + 100, pattern(100, 4));
  const back = Buffer.alloc(100);
  await device.read(2 * MiB + 100, back);
  t.ok(back.equals(pattern(100, 4)));
});

void t.test('extents merge adjacent descriptors of one kind, across extents too', async (t) => {
  const store = await openStore(t);
  const device = await VolumeDevice.open({ store, volumeId: 'merge', sizeBytes: 8 * MiB, extentBytes: MiB });
  await device.write(MiB, pattern(2 * MiB, 5));
  t.same(await device.extents(0, 8 * MiB), [
    { length: MiB, hole: true, zero: true },
    { length: 2 * MiB, hole: false, zero: false },
    { length: 5 * MiB, hole: true, zero: true },
  ]);
  await device.trim(MiB, MiB);
  t.same(await device.extents(0, 8 * MiB), [
    { length: 2 * MiB, hole: true, zero: true },
    { length: MiB, hole: false, zero: false },
    { length: 5 * MiB, hole: true, zero: true },
  ], 'a trimmed extent merges with the hole before it');
});

void t.test('extents over a 1 TiB volume in one segment file come in one call', async (t) => {
  const store = await openStore(t);
  const device = await VolumeDevice.open({ store, volumeId: 'tib', sizeBytes: TiB, extentBytes: 64 * MiB });
  await device.write(0, pattern(4096, 6));
  await device.write(TiB - 4096, pattern(4096, 7));
  t.same(await device.extents(0, TiB), [
    { length: 4096, hole: false, zero: false },
    { length: TiB - 8192, hole: true, zero: true },
    { length: 4096, hole: false, zero: false },
  ], 'one lseek walk over the file');
});

void t.test('extents over a 1 TiB volume spread over two drives cost one lseek walk per extent, within the seek budget', async (t) => {
  const stores = [await openStore(t), await openStore(t)];
  const device = await VolumeDevice.openPlaced({ stores, volumeId: 'two', sizeBytes: TiB, extentBytes: 64 * MiB, routeExtent: (index) => index % 2 });
  await device.write(0, pattern(4096, 1));
  await device.write(64 * MiB, pattern(4096, 2));
  const first = await device.extents(0, TiB);
  t.same(first.slice(0, 4), [
    { length: 4096, hole: false, zero: false },
    { length: 64 * MiB - 4096, hole: true, zero: true },
    { length: 4096, hole: false, zero: false },
    { length: first[3]!.length, hole: true, zero: true },
  ], 'each drive\'s data is found in its own segment file');
  let position = first.reduce((sum, extent) => sum + extent.length, 0);
  let calls = 1;
  while (position < TiB) {
    position += (await device.extents(position, TiB - position)).reduce((sum, extent) => sum + extent.length, 0);
    calls++;
  }
  const bound = Math.ceil(16384 / (extentsScanSeeksMax / 2)) + 1;
  t.ok(calls <= bound, `the whole volume in ${calls} calls (at most ${bound})`);
});

void t.test('with one file per extent, extents over a 1 TiB volume return a bounded prefix (a bounded number of extents visited), and the caller can walk on', async (t) => {
  const store = await openStore(t, { segmentBytes: 64 * MiB });
  const device = await VolumeDevice.open({ store, volumeId: 'tib', sizeBytes: TiB, extentBytes: 64 * MiB });
  await device.write(0, pattern(4096, 6));
  await device.write(TiB - 4096, pattern(4096, 7));
  const first = await device.extents(0, TiB);
  const described = first.reduce((sum, extent) => sum + extent.length, 0);
  t.same(first[0], { length: 4096, hole: false, zero: false });
  t.ok(described < TiB, 'a prefix, not the whole volume');
  t.ok(described <= extentsScanExtentsMax * 64 * MiB, `at most ${extentsScanExtentsMax} extents visited`);
  let position = described;
  let calls = 1;
  let last = first[first.length - 1]!;
  while (position < TiB) {
    const next = await device.extents(position, TiB - position);
    calls++;
    last = next[next.length - 1]!;
    position += next.reduce((sum, extent) => sum + extent.length, 0);
  }
  t.equal(position, TiB);
  t.same(last, { length: 4096, hole: false, zero: false }, 'the written tail is found');
  t.ok(calls <= Math.ceil(16384 / extentsScanExtentsMax) + 1, `${calls} calls`);
});

void t.test('extents stop after a bounded number of lseek calls and descriptors', async (t) => {
  // One file per extent, each an empty sparse file (made directly, before the volume opens): a
  // walk over one returns one hole, counted as 2 seeks, so the budget runs out after
  // extentsScanSeeksMax / 2 files, however many follow.
  const store = await openStore(t, perExtent);
  const walks = extentsScanSeeksMax / 2;
  const files = walks + 16;
  const directory = path.join(store.volumesPath, 'files');
  fs.mkdirSync(directory);
  fs.writeFileSync(path.join(directory, 'layout.json'), JSON.stringify({ extentBytes: MiB }));
  for (let index = 0; index < files; index++) {
    const fd = fs.openSync(path.join(directory, `${index}.extent`), 'w');
    fs.ftruncateSync(fd, MiB);
    fs.closeSync(fd);
  }
  const device = await VolumeDevice.open({ store, volumeId: 'files', sizeBytes: (files + 4) * MiB, extentBytes: MiB });
  const extents = await device.extents(0, (files + 4) * MiB);
  t.same(extents, [{ length: walks * MiB, hole: true, zero: true }], `stops after ${walks} files, one merged hole`);
  const many = await VolumeDevice.open({ store, volumeId: 'many', sizeBytes: 16 * MiB, extentBytes: 16 * MiB });
  for (let block = 0; block < 2 * extentsDescriptorsMax; block += 2) await many.write(block * 8192, pattern(4096, block));
  const limited = await many.extents(0, 16 * MiB);
  t.equal(limited.length, extentsDescriptorsMax, 'at most the descriptor bound');
  t.ok(limited.reduce((sum, extent) => sum + extent.length, 0) < 16 * MiB, 'a prefix');
});
