/**
 * Goal: the extent store keeps a volume's bytes in sparse per-extent files, frees space on
 * TRIM, stays within its descriptor budget, and makes exactly the right files durable on FLUSH
 * and FUA.
 *
 * Method: real stores on temp drives under os.tmpdir() (ext4 here). Space is measured with stat
 * blocks; durability structure with an injected sync function that records (and can hold or
 * fail) every sync; engine choices and injected errno failures with a spy around the addon;
 * dirty pages with cachestat(2).
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ExtentStore } from '../../src/extent/extent-store';
import { loadNativeBinding } from '../../src/native/binding';
import { rejectsCode, throwsCode } from '../helpers/assertions';
import { errnoError, MiB, openStore, pattern, spyNative, SyncRecorder, tempDrive } from './fixtures/extent-fixtures';

const TiB = 1024 * 1024 * MiB;
/** Store options for the one-file-per-extent layout (every extent here is at least 1 MiB). */
const perExtent = { segmentBytes: MiB };
const native = loadNativeBinding();

void t.test('a missing extent reads as zeroes and no file is created until the first write', async (t) => {
  const store = await openStore(t, perExtent);
  const volume = await store.openVolume({ volumeId: 'v1', sizeBytes: 16 * MiB, extentBytes: MiB });
  const target = Buffer.alloc(4096, 0xff);
  await volume.read(3, 1000, target);
  t.ok(target.equals(Buffer.alloc(4096)), 'zeroes');
  t.same(fs.readdirSync(volume.directory).sort(), ['layout.json']);
  await volume.write(3, 1000, Buffer.from('hello extent'), false);
  const file = path.join(volume.directory, '3.extent');
  t.equal(fs.statSync(file).size, MiB, 'the file is created at the full extent size');
  const back = Buffer.alloc(12);
  await volume.read(3, 1000, back);
  t.equal(back.toString(), 'hello extent');
  t.ok(volume.hasFileFor(3));
  t.notOk(volume.hasFileFor(2));
});

void t.test('a 1 TiB volume uses no space until written, and one write allocates one extent', async (t) => {
  const store = await openStore(t);
  const volume = await store.openVolume({ volumeId: 'huge', sizeBytes: TiB, extentBytes: 64 * MiB });
  t.equal(volume.extentCount, 16384);
  t.equal(await volume.allocatedBytes(), 0);
  await volume.write(16383, 64 * MiB - 4096, pattern(4096, 1), false);
  await volume.flush();
  const allocated = await store.allocatedBytes('huge');
  t.ok(allocated > 0 && allocated <= 64 * 1024, `one block or so (${allocated} bytes)`);
  t.equal(volume.fileCount, 1);
  const back = Buffer.alloc(4096);
  await volume.read(16383, 64 * MiB - 4096, back);
  t.ok(back.equals(pattern(4096, 1)));
});

void t.test('TRIM frees space (stat blocks drop) and the range reads as zeroes', async (t) => {
  const store = await openStore(t, perExtent);
  const volume = await store.openVolume({ volumeId: 'trim', sizeBytes: 8 * MiB, extentBytes: 4 * MiB });
  await volume.write(0, 0, pattern(4 * MiB, 2), false);
  await volume.flush();
  const before = await volume.allocatedBytes();
  t.ok(before >= 4 * MiB, `4 MiB allocated (${before})`);
  await volume.trim(0, MiB, 2 * MiB);
  const after = await volume.allocatedBytes();
  t.ok(after <= before - 2 * MiB, `2 MiB freed (${after})`);
  const back = Buffer.alloc(4 * MiB);
  await volume.read(0, 0, back);
  t.ok(back.subarray(MiB, 3 * MiB).equals(Buffer.alloc(2 * MiB)), 'trimmed range is zero');
  t.ok(back.subarray(0, MiB).equals(pattern(4 * MiB, 2).subarray(0, MiB)), 'the rest is intact');
  t.ok(back.subarray(3 * MiB).equals(pattern(4 * MiB, 2).subarray(3 * MiB)));
  await volume.trim(1, 0, MiB);
  t.notOk(volume.hasFileFor(1), 'trimming a missing extent creates nothing');
});

void t.test('WRITE_ZEROES punches without NO_HOLE and keeps the blocks with it', async (t) => {
  const store = await openStore(t);
  const volume = await store.openVolume({ volumeId: 'zero', sizeBytes: 4 * MiB, extentBytes: 2 * MiB });
  await volume.write(0, 0, pattern(2 * MiB, 3), false);
  await volume.write(1, 0, pattern(2 * MiB, 4), false);
  await volume.flush();
  const full = await volume.allocatedBytes();
  await volume.zero(0, 0, 2 * MiB, { noHole: false, fast: true });
  const punched = await volume.allocatedBytes();
  t.ok(punched <= full - 2 * MiB, 'zero without NO_HOLE frees');
  await volume.zero(1, 0, 2 * MiB, { noHole: true, fast: false });
  t.equal(await volume.allocatedBytes(), punched, 'zero with NO_HOLE keeps the blocks');
  const back = Buffer.alloc(2 * MiB);
  for (const index of [0, 1]) {
    back.fill(1);
    await volume.read(index, 0, back);
    t.ok(back.equals(Buffer.alloc(2 * MiB)), `extent ${index} reads zeroes`);
  }
  await volume.zero(0, 0, 4096, { noHole: true, fast: false });
  await volume.flush();
  t.ok(await volume.allocatedBytes() > punched, 'NO_HOLE on a hole allocates it');
});

void t.test('allocation follows SEEK_DATA / SEEK_HOLE and is bounded by descriptorsMax', async (t) => {
  const store = await openStore(t);
  const volume = await store.openVolume({ volumeId: 'map', sizeBytes: 8 * MiB, extentBytes: 4 * MiB });
  t.same(await volume.allocation(0, 0, 4 * MiB, 16), [{ length: 4 * MiB, hole: true, zero: true }], 'no file: one hole');
  await volume.write(0, MiB, pattern(64 * 1024, 5), false);
  await volume.write(0, 3 * MiB, pattern(64 * 1024, 6), false);
  t.same(await volume.allocation(0, 0, 4 * MiB, 16), [
    { length: MiB, hole: true, zero: true },
    { length: 64 * 1024, hole: false, zero: false },
    { length: 2 * MiB - 64 * 1024, hole: true, zero: true },
    { length: 64 * 1024, hole: false, zero: false },
    { length: MiB - 64 * 1024, hole: true, zero: true },
  ]);
  t.same(await volume.allocation(0, MiB + 4096, 8192, 16), [{ length: 8192, hole: false, zero: false }], 'inside data');
  const prefix = await volume.allocation(0, 0, 4 * MiB, 2);
  t.same(prefix, [{ length: MiB, hole: true, zero: true }, { length: 64 * 1024, hole: false, zero: false }], 'a prefix');
  await volume.trim(0, MiB, 64 * 1024);
  t.same((await volume.allocation(0, 0, 2 * MiB, 16))[0], { length: 2 * MiB, hole: true, zero: true }, 'trim shows as a hole');
});

void t.test('flush fdatasyncs exactly the files written since the last flush, and the directory of new ones', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { ...perExtent, sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'dur', sizeBytes: 8 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(4096, 1), false);
  await volume.write(2, 0, pattern(4096, 2), false);
  await volume.write(2, 8192, pattern(4096, 3), false);
  await volume.read(5, 0, Buffer.alloc(4096));
  t.equal(recorder.calls.length, 0, 'writes without FUA sync nothing');
  await volume.flush();
  t.same(recorder.dataSince(0), ['0.extent', '2.extent'], 'each dirty file once');
  t.same(recorder.metadataSince(0), [volume.directory], 'the directory, for the two new files');
  for (const name of ['0.extent', '2.extent']) {
    const fd = fs.openSync(path.join(volume.directory, name), 'r');
    t.equal(native.cachestat(fd, 0, 0).dirtyPages, 0, `${name} has no dirty page left`);
    fs.closeSync(fd);
  }

  let mark = recorder.calls.length;
  await volume.flush();
  t.equal(recorder.calls.length, mark, 'nothing written: nothing synced');

  await volume.write(2, 0, pattern(4096, 4), false);
  await volume.flush();
  t.same(recorder.dataSince(mark), ['2.extent']);
  t.same(recorder.metadataSince(mark), [], 'no new file: no directory sync');

  mark = recorder.calls.length;
  await volume.trim(0, 0, 4096);
  await volume.zero(2, 0, 4096, { noHole: true, fast: false });
  await volume.flush();
  t.same(recorder.dataSince(mark), ['0.extent', '2.extent'], 'trim and zero dirty their files too');
});

void t.test('a write that lands during a flush stays dirty for the next flush', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { ...perExtent, sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'race', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(4096, 1), false);
  await volume.flush();
  await volume.write(0, 0, pattern(4096, 2), false);
  recorder.hold();
  const flushing = volume.flush();
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(recorder.waiting, 1, 'the flush is syncing');
  await volume.write(0, 4096, pattern(4096, 3), false);
  recorder.release();
  await flushing;
  const mark = recorder.calls.length;
  await volume.flush();
  t.same(recorder.dataSince(mark), ['0.extent'], 'the file written during the flush is synced again');
});

void t.test('a flush called while another flush is syncing waits for that sync', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'wait', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(1, 0, pattern(4096, 1), false);
  recorder.hold();
  let firstDone = false;
  let secondDone = false;
  const first = volume.flush().then(() => { firstDone = true; });
  await new Promise((resolve) => setImmediate(resolve));
  const second = volume.flush().then(() => { secondDone = true; });
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  t.notOk(firstDone);
  t.notOk(secondDone, 'the second flush found nothing dirty but must not resolve before the first sync');
  recorder.release();
  await Promise.all([first, second]);
  t.ok(firstDone && secondDone);
});

void t.test('a FUA write is one RWF_DSYNC write, plus a directory fsync only when it created the file', async (t) => {
  const recorder = new SyncRecorder();
  const { native: spy, log } = spyNative();
  const store = await openStore(t, { ...perExtent, sync: recorder.sync, native: spy });
  const volume = await store.openVolume({ volumeId: 'fua', sizeBytes: 4 * MiB, extentBytes: MiB });
  log.length = 0;
  await volume.write(1, 4096, pattern(4096, 1), true);
  const writes = log.filter((line) => line.startsWith('pwrite'));
  t.equal(writes.length, 1, 'one write call');
  t.match(writes[0], /^pwriteAsync\(\d+, <4096 bytes>, 4096, true\)$/, 'on the pool, with RWF_DSYNC');
  t.same(recorder.calls, [{ data: [], metadata: [volume.directory] }], 'the new file\'s directory entry');
  const fd = fs.openSync(path.join(volume.directory, '1.extent'), 'r');
  t.teardown(() => fs.closeSync(fd));
  t.equal(native.cachestat(fd, 4096, 4096).dirtyPages, 0, 'the FUA data is on disk');

  const mark = recorder.calls.length;
  await volume.write(1, 0, pattern(4096, 2), true);
  t.equal(recorder.calls.length, mark, 'an existing file needs no sync call');
  await volume.flush();
  t.equal(recorder.calls.length, mark, 'FUA writes leave nothing for flush');
});

void t.test('a failed sync is sticky: this flush and every later one fail with CAIRN_IO naming the file', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { ...perExtent, sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'eio', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(4096, 1), false);
  await volume.flush();
  await volume.write(0, 0, pattern(4096, 2), false);
  recorder.failWith(errnoError('EIO', 5, 'fdatasync'));
  await rejectsCode(t, () => volume.flush(), 'CAIRN_IO', /0\.extent.*I\/O error/);
  recorder.failWith(undefined);
  await rejectsCode(t, () => volume.flush(), 'CAIRN_IO', /0\.extent/);
  await rejectsCode(t, () => volume.flush(), 'CAIRN_IO');
});

void t.test('ENOSPC maps to CAIRN_NO_SPACE and EIO to CAIRN_IO, with the path', async (t) => {
  let failing = false;
  const { native: spy } = spyNative({
    pwrite: (fd, source, position) => {
      if (failing) throw errnoError('ENOSPC', 28, 'pwritev2');
      return native.pwrite(fd, source, position);
    },
    preadAsync: (fd, target, position) => (failing ? Promise.reject(errnoError('EIO', 5, 'preadv2')) : native.preadAsync(fd, target, position)),
  });
  const store = await openStore(t, { ...perExtent, native: spy, inlineIoBytesMax: 65536 });
  failing = true;
  const volume = await store.openVolume({ volumeId: 'errs', sizeBytes: 4 * MiB, extentBytes: MiB });
  await rejectsCode(t, () => volume.write(0, 0, Buffer.alloc(4096), false), 'CAIRN_NO_SPACE', /0\.extent: the drive has no free space left \(ENOSPC\)/);
  await volume.write(0, 0, Buffer.alloc(MiB), false); // larger than inline: goes through the pool
  await rejectsCode(t, () => volume.read(0, 0, Buffer.alloc(MiB)), 'CAIRN_IO', /read .*0\.extent: the drive reported an I\/O error \(EIO\)/);
});

void t.test('the descriptor cache stays within its bound and writes back dirty files it evicts', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { ...perExtent, sync: recorder.sync, openFilesMax: 4 });
  const volume = await store.openVolume({ volumeId: 'lru', sizeBytes: 64 * MiB, extentBytes: MiB });
  for (let index = 0; index < 32; index++) {
    await volume.write(index, 0, pattern(4096, index), false);
    t.ok(store.openFileCount <= 4, `at most 4 open after writing extent ${index}`);
  }
  const evicted = recorder.dataSince(0);
  t.equal(evicted.length, 28, 'every evicted dirty file was synced before its close');
  t.equal(new Set(evicted).size, 28);
  const mark = recorder.calls.length;
  await volume.flush();
  t.equal(recorder.dataSince(mark).length, 4, 'flush syncs the files still open and dirty');
  for (let index = 0; index < 32; index++) {
    const back = Buffer.alloc(4096);
    await volume.read(index, 0, back);
    if (!back.equals(pattern(4096, index))) t.fail(`extent ${index} reads back what was written`);
  }
  t.ok(store.openFileCount <= 4);
});

void t.test('a descriptor with I/O in flight is never closed by eviction', async (t) => {
  let inFlight = 0;
  let maxInFlight = 0;
  const { native: spy } = spyNative({
    preadAsync: async (fd, target, position) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      try {
        return await native.preadAsync(fd, target, position); // EBADF here: the fd was closed under us
      } finally {
        inFlight--;
      }
    },
  });
  const store = await openStore(t, { ...perExtent, native: spy, openFilesMax: 2, inlineIoBytesMax: 0 });
  const volume = await store.openVolume({ volumeId: 'busy', sizeBytes: 16 * MiB, extentBytes: MiB });
  for (let index = 0; index < 16; index++) await volume.write(index, 0, pattern(8192, index), false);
  const reads = Array.from({ length: 16 }, async (_, index) => {
    const back = Buffer.alloc(8192);
    await volume.read(index, 0, back);
    return back.equals(pattern(8192, index));
  });
  t.same(await Promise.all(reads), new Array(16).fill(true), 'every read succeeded with its own data');
  t.ok(maxInFlight > 2, `reads overlapped beyond the cache size (${maxInFlight})`);
  t.ok(store.openFileCount <= 16);
});

void t.test('reads use RWF_NOWAIT on the main thread and fall back to the pool on a miss', async (t) => {
  const { native: spy, log } = spyNative();
  const store = await openStore(t, { native: spy });
  t.ok(store.driveFeatures.nowaitRead, 'the drive supports non-blocking reads');
  const volume = await store.openVolume({ volumeId: 'nowait', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(65536, 1), false);
  log.length = 0;
  const back = Buffer.alloc(4096);
  await volume.read(0, 0, back);
  t.same(log.map((line) => line.split('(')[0]), ['preadNowait'], 'a cache hit never leaves the main thread');
  await volume.flush();
  const fd = volume.openSegments.get(0)?.fd ?? -1;
  // DONTNEED may leave a page cached (the kernel skips folios it cannot drop at that moment):
  // drop and read again until a read misses. Every read is a hit on the main thread, or a
  // miss there followed by the pool; never anything else.
  const patterns = new Set<string>();
  let misses = 0;
  for (let attempt = 0; attempt < 20 && misses === 0; attempt++) {
    native.fadvise(fd, 0, 0, native.constants.POSIX_FADV_DONTNEED);
    log.length = 0;
    await volume.read(0, 8192, back);
    const calls = log.map((line) => line.split('(')[0]).join(',');
    patterns.add(calls);
    if (calls === 'preadNowait,preadAsync') misses++;
    t.ok(back.equals(pattern(65536, 1).subarray(8192, 12288)), 'the read returns the written bytes');
  }
  t.equal(misses, 1, 'a dropped page was missed');
  t.ok([...patterns].every((calls) => calls === 'preadNowait' || calls === 'preadNowait,preadAsync'), `a miss goes to the pool (${[...patterns].join(' | ')})`);
  log.length = 0;
  await volume.read(0, 0, Buffer.alloc(MiB));
  t.same(log.map((line) => line.split('(')[0]), ['preadAsync'], 'a large read goes straight to the pool');
});

void t.test('a drive without punch-hole falls back to writing zeroes, reports it once, and refuses fast zero', async (t) => {
  const unsupported = (): never => { throw errnoError('EOPNOTSUPP', 95, 'fallocate'); };
  const modesPunch = native.constants.FALLOC_FL_PUNCH_HOLE | native.constants.FALLOC_FL_KEEP_SIZE;
  let punchWorks = true;
  const { native: spy } = spyNative({
    fallocate: (fd, mode, offset, length) => (mode === modesPunch ? unsupported() : native.fallocate(fd, mode, offset, length)),
    fallocateAsync: (fd, mode, offset, length) => (mode === modesPunch && !punchWorks
      ? Promise.reject(errnoError('EOPNOTSUPP', 95, 'fallocate')) : native.fallocateAsync(fd, mode, offset, length)),
  });
  const warnings: string[] = [];
  const store = await openStore(t, { native: spy, onWarning: (message) => warnings.push(message) });
  t.notOk(store.driveFeatures.punchHole, 'the probe found no punch-hole');
  t.equal(warnings.length, 1);
  t.match(warnings[0], /does not support punching holes/);
  const volume = await store.openVolume({ volumeId: 'nopunch', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(MiB, 1), false);
  await volume.trim(0, 4096, 8192);
  await volume.zero(0, 65536, 4096, { noHole: false, fast: false });
  const back = Buffer.alloc(MiB);
  await volume.read(0, 0, back);
  const expected = pattern(MiB, 1);
  expected.fill(0, 4096, 12288);
  expected.fill(0, 65536, 69632);
  t.ok(back.equals(expected), 'trim and zero wrote zeroes');
  await rejectsCode(t, () => volume.zero(0, 0, 4096, { noHole: false, fast: true }), 'CAIRN_NOT_SUPPORTED');
  t.equal(warnings.length, 1, 'reported once');

  // A drive whose probe passed but whose punch fails later (e.g. a remount) degrades at runtime.
  const drive2 = tempDrive(t);
  punchWorks = true;
  const { native: spy2 } = spyNative({
    fallocateAsync: (fd, mode, offset, length) => (mode === modesPunch && !punchWorks
      ? Promise.reject(errnoError('EOPNOTSUPP', 95, 'fallocate')) : native.fallocateAsync(fd, mode, offset, length)),
  });
  const warnings2: string[] = [];
  const store2 = await openStore(t, { drivePath: drive2, native: spy2, onWarning: (message) => warnings2.push(message) });
  t.ok(store2.driveFeatures.punchHole);
  const volume2 = await store2.openVolume({ volumeId: 'later', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume2.write(0, 0, pattern(8192, 2), false);
  punchWorks = false;
  await volume2.trim(0, 0, 4096);
  await volume2.trim(0, 4096, 4096);
  t.notOk(store2.driveFeatures.punchHole);
  t.equal(warnings2.length, 1, 'the first failure is reported, once');
  const back2 = Buffer.alloc(8192, 1);
  await volume2.read(0, 0, back2);
  t.ok(back2.equals(Buffer.alloc(8192)));
});

void t.test('on tmpfs (no zero range, no RWF_NOWAIT) every path still works', async (t) => {
  const warnings: string[] = [];
  const store = await openStore(t, { drivePath: tempDrive(t, '/dev/shm'), onWarning: (message) => warnings.push(message) });
  t.same(store.driveFeatures, { punchHole: true, zeroRange: false, nowaitRead: false, nowaitWrite: false });
  t.equal(warnings.length, 1);
  t.match(warnings[0], /FALLOC_FL_ZERO_RANGE/);
  const volume = await store.openVolume({ volumeId: 'shm', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(MiB, 7), false);
  await volume.zero(0, 0, 65536, { noHole: true, fast: true });
  const back = Buffer.alloc(MiB);
  await volume.read(0, 0, back);
  const expected = pattern(MiB, 7);
  expected.fill(0, 0, 65536);
  t.ok(back.equals(expected), 'zeroed by punch + allocate, read through the pool');
  t.same((await volume.allocation(0, 0, MiB, 8)).length >= 1, true);
  await volume.flush();
});

void t.test('volume ids, ranges and extent sizes are checked', async (t) => {
  const store = await openStore(t);
  for (const bad of ['', '.hidden', '-x', 'a/b', '..', 'x'.repeat(64), 'sp ace']) {
    await rejectsCode(t, () => store.openVolume({ volumeId: bad, sizeBytes: MiB, extentBytes: MiB }), 'CAIRN_INVALID_ARGUMENT');
  }
  await rejectsCode(t, () => store.openVolume({ volumeId: 'v', sizeBytes: MiB, extentBytes: 3 * MiB }), 'CAIRN_INVALID_ARGUMENT');
  await rejectsCode(t, () => store.openVolume({ volumeId: 'v', sizeBytes: -1, extentBytes: MiB }), 'CAIRN_INVALID_ARGUMENT');
  const volume = await store.openVolume({ volumeId: 'v', sizeBytes: 2 * MiB + 4096, extentBytes: MiB });
  t.equal(volume.extentCount, 3);
  await rejectsCode(t, () => volume.read(3, 0, Buffer.alloc(1)), 'CAIRN_OUT_OF_RANGE');
  await rejectsCode(t, () => volume.write(2, 4096, Buffer.alloc(1), false), 'CAIRN_OUT_OF_RANGE', /outside volume v/);
  await rejectsCode(t, () => volume.read(0, MiB - 1, Buffer.alloc(2)), 'CAIRN_OUT_OF_RANGE');
  await rejectsCode(t, () => volume.trim(-1, 0, 1), 'CAIRN_INVALID_ARGUMENT');
  await volume.write(2, 0, Buffer.alloc(4096, 1), false);
  await rejectsCode(t, () => store.openVolume({ volumeId: 'v', sizeBytes: 2 * MiB, extentBytes: 2 * MiB }), 'CAIRN_VOLUME_EXISTS');
  t.equal(await store.openVolume({ volumeId: 'v', sizeBytes: MiB, extentBytes: MiB }), volume, 'same handle');
});

void t.test('a volume grows on resize, refuses to shrink, and survives close and reopen', async (t) => {
  const drive = tempDrive(t);
  const first = await ExtentStore.open({ drivePath: drive, ...perExtent });
  const volume = await first.openVolume({ volumeId: 'grow', sizeBytes: 2 * MiB, extentBytes: MiB });
  await volume.write(1, 100, pattern(1000, 9), false);
  volume.resize(5 * MiB);
  t.equal(volume.extentCount, 5);
  await volume.write(4, 0, pattern(4096, 10), false);
  throwsCode(t, () => volume.resize(MiB), 'CAIRN_SHRINK_REFUSED');
  await first.close();
  await rejectsCode(t, () => volume.read(0, 0, Buffer.alloc(1)), 'CAIRN_CLOSED');
  await rejectsCode(t, () => first.openVolume({ volumeId: 'grow', sizeBytes: MiB, extentBytes: MiB }), 'CAIRN_CLOSED');

  const second = await openStore(t, { ...perExtent, drivePath: drive });
  t.same(await second.listVolumes(), ['grow']);
  await rejectsCode(t, () => second.openVolume({ volumeId: 'grow', sizeBytes: 5 * MiB, extentBytes: 2 * MiB }),
    'CAIRN_VOLUME_EXISTS', /extents of 1048576 bytes/);
  const reopened = await second.openVolume({ volumeId: 'grow', sizeBytes: 5 * MiB, extentBytes: MiB });
  t.ok(reopened.hasFileFor(1) && reopened.hasFileFor(4));
  const back = Buffer.alloc(1000);
  await reopened.read(1, 100, back);
  t.ok(back.equals(pattern(1000, 9)));
});

void t.test('deleting a volume removes every extent durably and closes its handle', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'gone', sizeBytes: 8 * MiB, extentBytes: MiB });
  const keep = await store.openVolume({ volumeId: 'kept', sizeBytes: MiB, extentBytes: MiB });
  for (let index = 0; index < 8; index++) await volume.write(index, 0, pattern(4096, index), false);
  await keep.write(0, 0, pattern(4096, 99), false);
  const pending = volume.read(0, 0, Buffer.alloc(4096));
  await store.deleteVolume('gone');
  await pending;
  t.notOk(fs.existsSync(volume.directory));
  t.same(await store.listVolumes(), ['kept']);
  t.equal(await store.allocatedBytes('gone'), 0);
  await rejectsCode(t, () => volume.write(0, 0, Buffer.alloc(1), false), 'CAIRN_CLOSED');
  await store.deleteVolume('gone');
  t.equal(store.openFileCount, 1, 'only the kept volume\'s file is open');
  const back = Buffer.alloc(4096);
  await keep.read(0, 0, back);
  t.ok(back.equals(pattern(4096, 99)));
  const fresh = await store.openVolume({ volumeId: 'gone', sizeBytes: MiB, extentBytes: MiB });
  await fresh.read(0, 0, back);
  t.ok(back.equals(Buffer.alloc(4096)), 'a re-created volume starts empty');
});

void t.test('an extent file cut short by a crash is sized up; one too long is refused as corrupt', async (t) => {
  const drive = tempDrive(t);
  const store = await openStore(t, { ...perExtent, drivePath: drive });
  const volume = await store.openVolume({ volumeId: 'short', sizeBytes: 4 * MiB, extentBytes: MiB });
  await store.closeVolume('short');
  fs.writeFileSync(path.join(volume.directory, '0.extent'), Buffer.alloc(100, 5));
  fs.writeFileSync(path.join(volume.directory, '1.extent'), Buffer.alloc(MiB + 1));
  const reopened = await store.openVolume({ volumeId: 'short', sizeBytes: 4 * MiB, extentBytes: MiB });
  const back = Buffer.alloc(200);
  await reopened.read(0, 0, back);
  t.ok(back.subarray(0, 100).equals(Buffer.alloc(100, 5)) && back.subarray(100).equals(Buffer.alloc(100)));
  t.equal(fs.statSync(path.join(volume.directory, '0.extent')).size, MiB);
  await rejectsCode(t, () => reopened.read(1, 0, back), 'CAIRN_CORRUPT', /longer than the volume's segment size on this drive/);
});

void t.test('a drive that is not a directory is a configuration error', async (t) => {
  const drive = tempDrive(t);
  fs.writeFileSync(path.join(drive, 'file'), 'x');
  await rejectsCode(t, () => ExtentStore.open({ drivePath: path.join(drive, 'file') }), 'CAIRN_CONFIG');
  await rejectsCode(t, () => ExtentStore.open({ drivePath: path.join(drive, 'missing') }), 'CAIRN_CONFIG');
});

void t.test('a torn or foreign layout record is refused as corrupt; stats work without opening', async (t) => {
  const drive = tempDrive(t);
  const store = await openStore(t, { ...perExtent, drivePath: drive });
  const volume = await store.openVolume({ volumeId: 'rec', sizeBytes: 4 * MiB, extentBytes: MiB });
  await volume.write(0, 0, pattern(MiB, 1), false);
  await store.closeVolume('rec');
  t.ok(await store.allocatedBytes('rec') >= MiB, 'allocation of a closed volume, from its files');
  t.equal(await store.allocatedBytes('never'), 0);
  const record = path.join(volume.directory, 'layout.json');
  t.same(JSON.parse(fs.readFileSync(record, 'utf8')), { extentBytes: MiB }, 'one file per extent keeps the original record, which older binaries read');
  for (const text of ['', '{"extentBytes":', '{}', 'x'.repeat(5000)]) {
    fs.writeFileSync(record, text);
    await rejectsCode(t, () => store.openVolume({ volumeId: 'rec', sizeBytes: 4 * MiB, extentBytes: MiB }), 'CAIRN_CORRUPT', /layout/);
  }
});
