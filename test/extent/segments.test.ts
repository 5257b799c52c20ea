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
 * cap fails with EFBIG as on ext4 with 1 KiB blocks.
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
    { extentBytes: MiB, segmentBytes: segmentBytesDefault });
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
  t.notOk(volume.hasFileFor(5) && !volume.hasFileFor(4), 'extents of one segment agree');
  t.equal(volume.fileCount, 3);
});

void t.test('a grown volume reads zeroes past its last file\'s end; a write there extends the file', async (t) => {
  const drive = tempDrive(t);
  const store = await openStore(t, { drivePath: drive });
  const volume = await store.openVolume({ volumeId: 'grow', sizeBytes: 2 * MiB, extentBytes: MiB });
  await volume.write(1, 0, pattern(4096, 1), false);
  const file = path.join(volume.directory, '0.segment');
  t.equal(fs.statSync(file).size, 2 * MiB);
  volume.resize(5 * MiB);
  const back = Buffer.alloc(8192, 0xff);
  await volume.read(3, 0, back);
  t.ok(back.equals(Buffer.alloc(8192)), 'past the end of the file reads as zeroes');
  t.same(await volume.allocation(3, 0, MiB, 8), [{ length: MiB, hole: true, zero: true }], 'and maps as a hole');
  await volume.write(4, 4096, pattern(4096, 2), false);
  t.equal(fs.statSync(file).size, 4 * MiB + 8192, 'the write extended the file');
  await volume.read(4, 4096, back.subarray(0, 4096));
  t.ok(back.subarray(0, 4096).equals(pattern(4096, 2)));
  await volume.read(4, 8192, back);
  t.ok(back.equals(Buffer.alloc(8192)), 'past the new end: zeroes again');
  await store.closeVolume('grow');
  const reopened = await store.openVolume({ volumeId: 'grow', sizeBytes: 5 * MiB, extentBytes: MiB });
  await reopened.read(1, 0, back.subarray(0, 4096));
  t.ok(back.subarray(0, 4096).equals(pattern(4096, 1)));
  t.equal(fs.statSync(file).size, 5 * MiB, 'opening lengthens the file to the grown volume');
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
  for (const record of [{ extentBytes: MiB, segmentBytes: MiB / 2 }, { extentBytes: MiB, segmentBytes: 3 * MiB },
    { extentBytes: MiB, segmentBytes: 2 ** 51 }, { extentBytes: MiB, segmentBytes: '1' }]) {
    fs.writeFileSync(path.join(directory, 'layout.json'), JSON.stringify(record));
    await rejectsCode(t, () => store.openVolume({ volumeId: 'bad', sizeBytes: MiB, extentBytes: MiB }), 'CAIRN_CORRUPT', /segmentBytes/);
  }
  fs.writeFileSync(path.join(directory, 'layout.json'), JSON.stringify({ extentBytes: MiB, segmentBytes: 2 * MiB }));
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
