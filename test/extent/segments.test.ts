/**
 * Goal: a volume's extents on a drive live in segment files at their offsets in the volume, so
 * one FLUSH syncs one file per segment written, however many extents were written; volumes
 * larger than a segment span several files, the last only as long as its part; a grown volume
 * reads zeroes past its last file's end; a volume recorded one file per extent keeps that
 * layout; and the segment size follows what the drive's filesystem can hold.
 *
 * Method: real stores on temp drives; file contents read back with fs at the offsets the layout
 * promises; syncs observed with the recording sync function; a filesystem that caps file
 * length imitated with RLIMIT_FSIZE (`ulimit -f`) in a child process, where ftruncate past the
 * cap fails with EFBIG as on ext2/ext3 with 1 KiB blocks (16 GiB).
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { segmentBytesDefault } from '../../src/extent/extent-store';
import { rejectsCode } from '../helpers/assertions';
import { MiB, openStore, pattern, SyncRecorder, tempDrive } from './fixtures/extent-fixtures';

const fileNames = (directory: string): string[] => fs.readdirSync(directory).sort();

void t.test('the extents of a volume share one segment file, each at its offset in the volume', async (t) => {
  const store = await openStore(t);
  t.equal(store.segmentBytes, segmentBytesDefault, 'this drive takes 1 TiB files');
  const volume = await store.openVolume({ volumeId: 'one', sizeBytes: 16 * MiB, extentBytes: MiB });
  t.equal(volume.segmentBytes, segmentBytesDefault);
  for (const index of [0, 5, 15]) await volume.write(index, 4096, pattern(8192, index + 1), false);
  t.same(fileNames(volume.directory), ['0.segment', 'layout.json']);
  t.same(JSON.parse(fs.readFileSync(path.join(volume.directory, 'layout.json'), 'utf8')),
    { version: 2, fileLayout: { extentBytes: MiB, segmentBytes: segmentBytesDefault } }, 'a record binaries before segments refuse');
  const file = path.join(volume.directory, '0.segment');
  t.equal(fs.statSync(file).size, 16 * MiB, 'as long as the volume');
  const bytes = fs.readFileSync(file);
  for (const index of [0, 5, 15]) {
    t.ok(bytes.subarray(index * MiB + 4096, index * MiB + 4096 + 8192).equals(pattern(8192, index + 1)), `extent ${index} sits at ${index} MiB`);
  }
  t.ok(bytes.subarray(MiB, 5 * MiB).equals(Buffer.alloc(4 * MiB)), 'extents never written are zero');
  const back = Buffer.alloc(8192);
  await volume.read(5, 4096, back);
  t.ok(back.equals(pattern(8192, 6)));
  t.ok(volume.hasFileFor(3), 'an unwritten extent of an existing segment has a file');
  t.same(await volume.allocation(3, 0, MiB, 8), [{ length: MiB, hole: true, zero: true }], 'and is a hole in it');
  t.same(await volume.allocation(5, 0, MiB, 8), [
    { length: 4096, hole: true, zero: true },
    { length: 8192, hole: false, zero: false },
    { length: MiB - 12288, hole: true, zero: true },
  ], 'allocation is per extent, within the segment');
});

void t.test('a flush syncs one file however many extents of the segment were written', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'sync', sizeBytes: 64 * MiB, extentBytes: MiB });
  for (let index = 0; index < 64; index += 7) await volume.write(index, 0, pattern(4096, index), false);
  await volume.flush();
  t.same(recorder.dataSince(0), ['0.segment'], 'one fdatasync for ten extents');
  t.same(recorder.metadataSince(0), [volume.directory], 'and one directory fsync, for the new file');
  const mark = recorder.calls.length;
  await volume.trim(3, 0, 4096);
  await volume.zero(40, 0, 4096, { noHole: true, fast: false });
  await volume.flush();
  t.same(recorder.dataSince(mark), ['0.segment'], 'trim and zero dirty the segment too');
  t.same(recorder.metadataSince(mark), [], 'no new file: no directory sync');
});

void t.test('a volume larger than a segment spans several files; the last is as long as its part', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { sync: recorder.sync, segmentBytes: 4 * MiB });
  const volume = await store.openVolume({ volumeId: 'span', sizeBytes: 10 * MiB - 4096, extentBytes: MiB });
  t.equal(volume.segmentBytes, 4 * MiB);
  for (const index of [0, 3, 4, 9]) await volume.write(index, 0, pattern(4096, index + 1), false);
  await volume.flush();
  t.same(fileNames(volume.directory), ['0.segment', '1.segment', '2.segment', 'layout.json']);
  t.same(recorder.dataSince(0), ['0.segment', '1.segment', '2.segment'], 'each written segment synced once');
  const sizes = ['0.segment', '1.segment', '2.segment'].map((name) => fs.statSync(path.join(volume.directory, name)).size);
  t.same(sizes, [4 * MiB, 4 * MiB, 2 * MiB], 'the last segment holds two extents, the last one partial but whole');
  const last = fs.readFileSync(path.join(volume.directory, '2.segment'));
  t.ok(last.subarray(MiB, MiB + 4096).equals(pattern(4096, 10)), 'extent 9 is the second extent of segment 2');
  const first = fs.readFileSync(path.join(volume.directory, '0.segment'));
  t.ok(first.subarray(3 * MiB, 3 * MiB + 4096).equals(pattern(4096, 4)), 'extent 3 ends segment 0');
  for (const index of [0, 3, 4, 9]) {
    const back = Buffer.alloc(4096);
    await volume.read(index, 0, back);
    t.ok(back.equals(pattern(4096, index + 1)), `extent ${index} reads back`);
  }
  t.ok(volume.hasFileFor(8), 'extent 8, never written, shares the file of segment 2');
  t.equal(volume.segmentOf(8), 2);
  t.equal(volume.fileCount, 3);
});

void t.test('a grown volume lengthens its open last file; a file cut short reads zeroes past its end and is lengthened on open', async (t) => {
  const drive = tempDrive(t);
  const store = await openStore(t, { drivePath: drive });
  const volume = await store.openVolume({ volumeId: 'grow', sizeBytes: 2 * MiB, extentBytes: MiB });
  await volume.write(1, 0, pattern(4096, 1), false);
  const file = path.join(volume.directory, '0.segment');
  t.equal(fs.statSync(file).size, 2 * MiB);
  volume.resize(5 * MiB);
  t.equal(fs.statSync(file).size, 5 * MiB, 'the open file follows the volume');
  const back = Buffer.alloc(8192, 0xff);
  await volume.read(3, 0, back);
  t.ok(back.equals(Buffer.alloc(8192)), 'the new extents read as zeroes');
  const before = await volume.allocatedBytes();
  await volume.zero(3, 0, 8192, { noHole: true, fast: false });
  t.ok(await volume.allocatedBytes() >= before + 8192, 'NO_HOLE allocates the new range inside the file');
  await volume.write(4, 4096, pattern(4096, 2), false);
  await store.closeVolume('grow');
  fs.truncateSync(file, 4 * MiB + 1024); // cut short, as by a crash between create and truncate
  const reopened = await store.openVolume({ volumeId: 'grow', sizeBytes: 5 * MiB, extentBytes: MiB });
  await reopened.read(1, 0, back.subarray(0, 4096));
  t.ok(back.subarray(0, 4096).equals(pattern(4096, 1)), 'bytes before the cut are intact');
  t.equal(fs.statSync(file).size, 5 * MiB, 'opening lengthens the file to its part of the volume');
  await reopened.read(4, 4096, back.subarray(0, 4096));
  t.ok(back.subarray(0, 4096).equals(Buffer.alloc(4096)), 'what the cut removed reads as zeroes');
});

void t.test('a volume recorded one file per extent keeps that layout on a store that makes segments', async (t) => {
  const drive = tempDrive(t);
  const directory = path.join(drive, 'volumes', 'old');
  fs.mkdirSync(directory, { recursive: true });
  fs.writeFileSync(path.join(directory, 'layout.json'), '{"extentBytes":1048576}\n');
  const old = Buffer.alloc(MiB);
  pattern(4096, 7).copy(old, 8192);
  fs.writeFileSync(path.join(directory, '1.extent'), old);
  const store = await openStore(t, { drivePath: drive });
  t.equal(await store.allocatedBytes('old') >= 4096, true, 'a closed volume counts its extent files');
  const volume = await store.openVolume({ volumeId: 'old', sizeBytes: 4 * MiB, extentBytes: MiB });
  t.equal(volume.segmentBytes, MiB, 'one extent per file, as recorded');
  const back = Buffer.alloc(4096);
  await volume.read(1, 8192, back);
  t.ok(back.equals(pattern(4096, 7)), 'the old file reads back');
  await volume.write(2, 0, pattern(4096, 8), false);
  await volume.flush();
  t.same(fileNames(directory), ['1.extent', '2.extent', 'layout.json']);
  const fresh = await store.openVolume({ volumeId: 'new', sizeBytes: 4 * MiB, extentBytes: MiB });
  await fresh.write(2, 0, pattern(4096, 9), false);
  t.same(fileNames(fresh.directory), ['0.segment', 'layout.json'], 'a new volume on the same store gets a segment');
});

void t.test('a segment record that breaks the layout rules is refused as corrupt; bad store options are config errors', async (t) => {
  const drive = tempDrive(t);
  const directory = path.join(drive, 'volumes', 'bad');
  fs.mkdirSync(directory, { recursive: true });
  const store = await openStore(t, { drivePath: drive });
  const records: Array<[unknown, RegExp]> = [
    ...[MiB / 2, 3 * MiB, 2 ** 51, '1', null].map((segmentBytes): [unknown, RegExp] =>
      [{ version: 2, fileLayout: { extentBytes: MiB, segmentBytes } }, /segmentBytes must be a power of two/]),
    [{ version: 2, fileLayout: { segmentBytes: 4 * MiB } }, /extentBytes must be a power of two/],
    [{ version: 3, fileLayout: { extentBytes: MiB, segmentBytes: 4 * MiB } }, /unknown version \(3\); this cairnd reads versions 1 and 2/],
    [{ version: 2, fileLayout: { extentBytes: MiB, segmentBytes: 4 * MiB }, extra: 1 }, /has unknown fields \(extra\)/],
    [{ version: 2 }, /has no fileLayout/],
    [{ extentBytes: MiB, segmentBytes: 4 * MiB }, /has unknown fields \(segmentBytes\)/],
    [[MiB], /is not a layout record/],
  ];
  for (const [record, message] of records) {
    fs.writeFileSync(path.join(directory, 'layout.json'), JSON.stringify(record));
    await rejectsCode(t, () => store.openVolume({ volumeId: 'bad', sizeBytes: MiB, extentBytes: MiB }), 'CAIRN_CORRUPT', message);
  }
  fs.writeFileSync(path.join(directory, 'layout.json'), JSON.stringify({ version: 2, fileLayout: { extentBytes: MiB, segmentBytes: 2 * MiB } }));
  fs.writeFileSync(path.join(directory, '0.segment'), Buffer.alloc(2 * MiB + 1));
  const volume = await store.openVolume({ volumeId: 'bad', sizeBytes: 4 * MiB, extentBytes: MiB });
  await rejectsCode(t, () => volume.read(0, 0, Buffer.alloc(1)), 'CAIRN_CORRUPT', /0\.segment is 2097153 bytes, longer than the volume's segment size/);
  for (const segmentBytes of [0, MiB / 2, 3 * MiB, 2 ** 51]) {
    await rejectsCode(t, () => openStore(t, { segmentBytes }), 'CAIRN_CONFIG', /segment size/);
  }
});

/** Runs fixtures/segment-probe.ts under `ulimit -f blocks` (512-byte units) and returns its JSON. */
async function probeUnderFileLimit(drive: string, blocks: number, asked?: number): Promise<Record<string, unknown>> {
  const loader = process.execArgv.filter((argument) => argument.includes('@tapjs/typescript'));
  const command = [process.execPath, ...loader, path.join(__dirname, 'fixtures', 'segment-probe.ts'), drive, String(asked ?? 0)]
    .map((word) => `'${word.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('sh', ['-c', `ulimit -f ${blocks} && exec ${command}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (...result) => resolve(result)));
  if (code !== 0) throw new Error(`segment-probe exited with ${code ?? signal}: ${stderr}`);
  return JSON.parse(stdout) as Record<string, unknown>;
}

void t.test('the segment size falls to the longest file the filesystem takes; an asked one it cannot take is refused', async (t) => {
  const capped = await probeUnderFileLimit(tempDrive(t), 65536); // 32 MiB
  t.equal(capped['segmentBytes'], 32 * MiB, 'halved from 1 TiB until a file that long fits');
  t.same(capped['files'], ['0.segment', '1.segment', 'layout.json'], 'a 64 MiB volume then spans two files');
  t.equal(capped['readBack'], true);
  const refused = await probeUnderFileLimit(tempDrive(t), 65536, 64 * MiB);
  t.equal(refused['error'], 'CAIRN_CONFIG');
  t.match(String(refused['message']), /cannot hold a file of 67108864 bytes; choose a smaller segment size/);
});

void t.test('a FUA write syncs the directory of a segment it created, and nothing when the segment exists', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { sync: recorder.sync });
  const volume = await store.openVolume({ volumeId: 'fua', sizeBytes: 8 * MiB, extentBytes: MiB });
  await volume.write(2, 0, pattern(4096, 1), true);
  t.same(recorder.calls, [{ data: [], metadata: [volume.directory] }], 'the new file\'s directory entry, no data file');
  const mark = recorder.calls.length;
  await volume.write(6, 0, pattern(4096, 2), true);
  t.equal(recorder.calls.length, mark, 'another extent of the same segment: RWF_DSYNC alone');
  await volume.flush();
  t.equal(recorder.calls.length, mark, 'FUA writes leave nothing for flush');
});

for (const segmentBytes of [MiB, 2 * MiB]) {
  void t.test(`a FUA write to a file evicted before its directory was synced still waits for that sync (segments of ${segmentBytes / MiB} MiB)`, async (t) => {
    const recorder = new SyncRecorder();
    const store = await openStore(t, { sync: recorder.sync, openFilesMax: 1, segmentBytes });
    const volume = await store.openVolume({ volumeId: 'evict', sizeBytes: 8 * MiB, extentBytes: MiB });
    const otherSegment = segmentBytes / MiB;
    await volume.write(0, 0, pattern(4096, 1), false); // creates file 0
    await volume.write(otherSegment, 0, pattern(4096, 2), false); // creates file 1, evicting file 0 (written back)
    t.same(recorder.metadataSince(0), [], 'no directory sync yet');
    await volume.write(0, 4096, pattern(4096, 3), true); // reopens file 0
    t.same(recorder.metadataSince(0), [volume.directory], 'the FUA write waited for the directory entry of its file');
    const mark = recorder.calls.length;
    await volume.write(otherSegment, 4096, pattern(4096, 4), true); // file 1: covered by that directory sync
    t.same(recorder.metadataSince(mark), [], 'one directory sync covers every file created before it');
  });
}

void t.test('segments of several volumes share the descriptor budget; an evicted dirty segment is written back first', async (t) => {
  const recorder = new SyncRecorder();
  const store = await openStore(t, { sync: recorder.sync, openFilesMax: 1 });
  const a = await store.openVolume({ volumeId: 'a', sizeBytes: 4 * MiB, extentBytes: MiB });
  const b = await store.openVolume({ volumeId: 'b', sizeBytes: 4 * MiB, extentBytes: MiB });
  for (let round = 0; round < 4; round++) {
    await a.write(round, 0, pattern(4096, round), false);
    await b.write(round, 0, pattern(4096, 10 + round), false);
    t.ok(store.openFileCount <= 1, `one descriptor open after round ${round}`);
  }
  t.equal(recorder.dataSince(0).length, 7, 'every eviction of a dirty segment synced it first');
  for (let round = 0; round < 4; round++) {
    const back = Buffer.alloc(4096);
    await a.read(round, 0, back);
    t.ok(back.equals(pattern(4096, round)), `a extent ${round}`);
    await b.read(round, 0, back);
    t.ok(back.equals(pattern(4096, 10 + round)), `b extent ${round}`);
  }
});

void t.test('a closed volume\'s space counts every data file, even when its layout record is damaged or missing', async (t) => {
  const drive = tempDrive(t);
  const store = await openStore(t, { drivePath: drive });
  const volume = await store.openVolume({ volumeId: 'stat', sizeBytes: 8 * MiB, extentBytes: MiB });
  await volume.write(3, 0, pattern(MiB, 1), false);
  await store.closeVolume('stat');
  const allocated = await store.allocatedBytes('stat');
  t.ok(allocated >= MiB, `1 MiB allocated (${allocated})`);
  const record = path.join(volume.directory, 'layout.json');
  fs.writeFileSync(record, '{"version": 2, "fileLayo');
  t.equal(await store.allocatedBytes('stat'), allocated, 'a torn record does not stop the count');
  fs.rmSync(record);
  t.equal(await store.allocatedBytes('stat'), allocated, 'nor does a missing one');
  await rejectsCode(t, () => store.openVolume({ volumeId: 'stat', sizeBytes: 8 * MiB, extentBytes: MiB }).then((v) => v.read(3, 0, Buffer.alloc(1))),
    'CAIRN_CORRUPT', /no layout record/);
});
