/**
 * Goal: every call of the native addon does what its system call promises on a real filesystem,
 * and every failure is an Error with code / errno / syscall and a plain explanation — never a
 * crash, whatever JavaScript passes in.
 *
 * Method: temp files under os.tmpdir() (ext4 here) and /dev/shm (tmpfs, which lacks
 * FALLOC_FL_ZERO_RANGE and RWF_NOWAIT: the "filesystem lacks it" paths); allocation is checked
 * with stat blocks, page-cache state with cachestat(2). Argument checks run twice: through the
 * validating binding and against the raw addon loaded with process.dlopen.
 */
import t, { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  checkedBinding, fallocateModes, findPackageRoot, isNativeError, loadNativeBinding, nativeAddonPath, NativeBinding,
} from '../../src/native/binding';
import { CairnError } from '../../src/errors/cairn-error';

const native = loadNativeBinding();
const modes = fallocateModes(native.constants);
const MiB = 1024 * 1024;
const badFd = 0x7fffffff; // valid as an argument, never open

function rawAddon(): NativeBinding {
  const holder = { exports: {} as unknown };
  process.dlopen(holder, nativeAddonPath());
  return holder.exports as NativeBinding;
}

function tempFile(t: Test, directory = os.tmpdir()): { fd: number; file: string } {
  const dir = fs.mkdtempSync(path.join(directory, 'cairn-native-'));
  const file = path.join(dir, 'data');
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { fd, file };
}

function blocksOf(fd: number): number {
  return fs.fstatSync(fd).blocks;
}

function expectErrno(t: Test, error: unknown, code: string, syscall: string, explanation?: RegExp): void {
  t.ok(isNativeError(error), `a native error: ${String(error)}`);
  if (!isNativeError(error)) return;
  t.equal(error.code, code);
  t.equal(error.syscall, syscall);
  t.equal(typeof error.errno, 'number');
  t.ok(error.errno < 0, 'errno is negative, as in Node fs errors');
  t.match(error.message, new RegExp(`\\(${code}\\)$`));
  if (explanation) t.match(error.message, explanation);
}

void t.test('the loader returns one binding whose constants match Linux headers', async (t) => {
  t.equal(loadNativeBinding(), native, 'loaded once per process');
  t.equal(native.constants.FALLOC_FL_KEEP_SIZE, 1);
  t.equal(native.constants.FALLOC_FL_PUNCH_HOLE, 2);
  t.equal(native.constants.FALLOC_FL_ZERO_RANGE, 16);
  t.equal(native.constants.WOULD_BLOCK, -1);
  t.equal(native.constants.NOT_FOUND, -1);
  t.same(modes, { allocate: 0, punchHole: 3, zeroRange: 17 });
});

void t.test('the addon is found from src/ and from dist/src/, and a missing root is a clear error', async (t) => {
  const root = findPackageRoot();
  t.ok(fs.existsSync(path.join(root, 'package.json')));
  t.equal(findPackageRoot(path.join(root, 'src', 'native')), root);
  t.equal(findPackageRoot(path.join(root, 'dist', 'src', 'native')), root);
  t.equal(nativeAddonPath(root), path.join(root, 'build', 'Release', 'cairn_native.node'));
  t.ok(fs.existsSync(nativeAddonPath(root)));
  t.throws(() => findPackageRoot('/'), CairnError);
});

void t.test('punching a hole frees the blocks of a real file and reads back zeroes', async (t) => {
  const { fd } = tempFile(t);
  const data = Buffer.alloc(MiB, 0xab);
  fs.writeSync(fd, data, 0, MiB, 0);
  fs.fsyncSync(fd);
  const before = blocksOf(fd);
  t.ok(before >= MiB / 512, `1 MiB is allocated (${before} blocks)`);
  native.fallocate(fd, modes.punchHole, 0, MiB);
  t.ok(blocksOf(fd) < before - (MiB / 512) / 2, `blocks dropped (${blocksOf(fd)})`);
  t.equal(fs.fstatSync(fd).size, MiB, 'KEEP_SIZE: the size stays');
  const back = Buffer.alloc(MiB, 1);
  fs.readSync(fd, back, 0, MiB, 0);
  t.ok(back.equals(Buffer.alloc(MiB)), 'the hole reads as zeroes');
});

void t.test('zero range keeps the blocks allocated and reads back zeroes; allocate reserves blocks', async (t) => {
  const { fd } = tempFile(t);
  fs.writeSync(fd, Buffer.alloc(MiB, 0xcd), 0, MiB, 0);
  fs.fsyncSync(fd);
  const before = blocksOf(fd);
  await native.fallocateAsync(fd, modes.zeroRange, 0, MiB);
  t.ok(blocksOf(fd) >= before, 'still allocated');
  const back = Buffer.alloc(MiB, 1);
  fs.readSync(fd, back, 0, MiB, 0);
  t.ok(back.equals(Buffer.alloc(MiB)), 'zeroed');
  native.fallocate(fd, modes.allocate, MiB, MiB);
  t.ok(blocksOf(fd) >= before + MiB / 512, 'mode 0 allocates the second MiB');
  t.equal(fs.fstatSync(fd).size, 2 * MiB, 'mode 0 extends the file');
});

void t.test('seekData and seekHole map a sparse file, with NOT_FOUND past the last data and past the end', async (t) => {
  const { fd } = tempFile(t);
  fs.ftruncateSync(fd, 4 * MiB);
  fs.writeSync(fd, Buffer.alloc(64 * 1024, 1), 0, 64 * 1024, MiB);
  t.equal(native.seekData(fd, 0), MiB);
  t.equal(native.seekHole(fd, MiB), MiB + 64 * 1024);
  t.equal(native.seekHole(fd, 0), 0, 'the file starts with a hole');
  t.equal(native.seekData(fd, 2 * MiB), native.constants.NOT_FOUND, 'only a hole follows');
  t.equal(native.seekHole(fd, 4 * MiB), native.constants.NOT_FOUND, 'past the end');
});

void t.test('preadNowait serves cached pages and reports WOULD_BLOCK for pages on disk only', async (t) => {
  const { fd } = tempFile(t);
  fs.writeSync(fd, Buffer.alloc(8192, 7), 0, 8192, 0);
  const target = Buffer.alloc(4096);
  t.equal(native.preadNowait(fd, target, 0), 4096);
  t.ok(target.equals(Buffer.alloc(4096, 7)));
  t.equal(native.preadNowait(fd, target, 8192), 0, 'end of file reads nothing');
  t.equal(native.preadNowait(fd, Buffer.alloc(0), 0), 0, 'an empty read reads nothing');
  await native.syncMany([fd], []);
  native.fadvise(fd, 0, 0, native.constants.POSIX_FADV_DONTNEED);
  t.equal(native.cachestat(fd, 0, 0).cachedPages, 0, 'evicted');
  t.equal(native.preadNowait(fd, target, 0), native.constants.WOULD_BLOCK);
  native.fadvise(fd, 0, 0, native.constants.POSIX_FADV_WILLNEED);
  const reread = Buffer.alloc(4096);
  t.equal(await native.preadAsync(fd, reread, 0), 4096, 'the pool read waits for the disk');
  t.ok(reread.equals(Buffer.alloc(4096, 7)));
});

void t.test('pwriteNowait writes or says it would block, or names the missing feature', async (t) => {
  const { fd } = tempFile(t);
  const source = Buffer.alloc(4096, 9);
  try {
    const count = native.pwriteNowait(fd, source, 0);
    t.ok(count === 4096 || count === native.constants.WOULD_BLOCK, `result ${count}`);
  } catch (error) {
    expectErrno(t, error, 'EOPNOTSUPP', 'pwritev2', /non-blocking \(RWF_NOWAIT\) writes/);
  }
});

void t.test('pwrite and the pool calls move bytes; dsync leaves no dirty page behind', async (t) => {
  const { fd } = tempFile(t);
  fs.ftruncateSync(fd, MiB);
  t.equal(native.pwrite(fd, Buffer.alloc(4096, 1), 0), 4096);
  t.equal(await native.pwriteAsync(fd, Buffer.alloc(8192, 2), 4096, false), 8192);
  t.ok(native.cachestat(fd, 0, 12288).dirtyPages > 0, 'plain writes wait in the page cache');
  t.equal(await native.pwriteAsync(fd, Buffer.alloc(4096, 3), 65536, true), 4096);
  t.equal(native.cachestat(fd, 65536, 4096).dirtyPages, 0, 'the RWF_DSYNC write is on disk');
  t.equal(native.cachestat(fd, 65536, 4096).writebackPages, 0);
  const back = Buffer.alloc(12288);
  t.equal(await native.preadAsync(fd, back, 0), 12288);
  t.ok(back.subarray(0, 4096).equals(Buffer.alloc(4096, 1)));
  t.ok(back.subarray(4096).equals(Buffer.alloc(8192, 2)));
  t.equal(await native.preadAsync(fd, Buffer.alloc(4096), MiB - 1024), 1024, 'a read stops at end of file');
});

void t.test('syncMany makes every file durable and names the descriptor that failed', async (t) => {
  const first = tempFile(t);
  const second = tempFile(t);
  native.pwrite(first.fd, Buffer.alloc(8192, 1), 0);
  native.pwrite(second.fd, Buffer.alloc(8192, 1), 0);
  const directoryFd = fs.openSync(path.dirname(first.file), 'r');
  t.teardown(() => fs.closeSync(directoryFd));
  await native.syncMany([first.fd, second.fd], [directoryFd]);
  t.equal(native.cachestat(first.fd, 0, 0).dirtyPages, 0);
  t.equal(native.cachestat(second.fd, 0, 0).dirtyPages, 0);
  await native.syncMany([], []);

  native.pwrite(second.fd, Buffer.alloc(4096, 2), 0);
  try {
    await native.syncMany([badFd, second.fd], []);
    t.fail('syncMany with a closed descriptor must reject');
  } catch (error) {
    expectErrno(t, error, 'EBADF', 'fdatasync', /not open/);
    t.equal((error as { fd?: number }).fd, badFd);
  }
  t.equal(native.cachestat(second.fd, 0, 0).dirtyPages, 0, 'the good descriptor was still synced');
});

void t.test('tmpfs lacks zero range and RWF_NOWAIT: the errors say so in words', async (t) => {
  const { fd } = tempFile(t, '/dev/shm');
  fs.ftruncateSync(fd, MiB);
  native.fallocate(fd, modes.punchHole, 0, 4096); // tmpfs punches holes
  let caught: unknown;
  try {
    native.fallocate(fd, modes.zeroRange, 0, 4096);
  } catch (error) {
    caught = error;
  }
  expectErrno(t, caught, 'EOPNOTSUPP', 'fallocate', /does not support zeroing a range in place .*put the drive on ext4, xfs or btrfs/);
  await t.rejects(native.fallocateAsync(fd, modes.zeroRange, 0, 4096), { code: 'EOPNOTSUPP', syscall: 'fallocate' });
  t.throws(() => native.preadNowait(fd, Buffer.alloc(16), 0), { code: 'EOPNOTSUPP', syscall: 'preadv2', message: /RWF_NOWAIT/ });
});

void t.test('a descriptor that is not open gives an EBADF error object from every call', async (t) => {
  const buffer = Buffer.alloc(16);
  const synchronous: Array<[string, string, () => unknown]> = [
    ['fallocate', 'fallocate', () => native.fallocate(badFd, modes.punchHole, 0, 1)],
    ['seekData', 'lseek', () => native.seekData(badFd, 0)],
    ['seekHole', 'lseek', () => native.seekHole(badFd, 0)],
    ['preadNowait', 'preadv2', () => native.preadNowait(badFd, buffer, 0)],
    ['pwriteNowait', 'pwritev2', () => native.pwriteNowait(badFd, buffer, 0)],
    ['pwrite', 'pwritev2', () => native.pwrite(badFd, buffer, 0)],
    ['fadvise', 'posix_fadvise', () => native.fadvise(badFd, 0, 0, native.constants.POSIX_FADV_WILLNEED)],
    ['cachestat', 'cachestat', () => native.cachestat(badFd, 0, 0)],
  ];
  for (const [name, syscall, call] of synchronous) {
    let caught: unknown;
    try {
      call();
    } catch (error) {
      caught = error;
    }
    t.ok(caught !== undefined, `${name} throws`);
    expectErrno(t, caught, 'EBADF', syscall, /not open/);
    t.equal((caught as { errno?: number }).errno, -9, `${name}: errno is -EBADF`);
  }
  const asynchronous: Array<[string, string, () => Promise<unknown>]> = [
    ['fallocateAsync', 'fallocate', () => native.fallocateAsync(badFd, modes.punchHole, 0, 1)],
    ['preadAsync', 'preadv2', () => native.preadAsync(badFd, buffer, 0)],
    ['pwriteAsync', 'pwritev2', () => native.pwriteAsync(badFd, buffer, 0, true)],
    ['syncMany (metadata)', 'fsync', () => native.syncMany([], [badFd])],
  ];
  for (const [name, syscall, call] of asynchronous) {
    let caught: unknown;
    try {
      await call();
    } catch (error) {
      caught = error;
    }
    t.ok(caught !== undefined, `${name} rejects`);
    expectErrno(t, caught, 'EBADF', syscall);
  }
});

void t.test('other errnos carry their own explanation', async (t) => {
  const nullFd = fs.openSync('/dev/null', 'r+');
  t.teardown(() => fs.closeSync(nullFd));
  t.throws(() => native.fallocate(nullFd, modes.allocate, 0, 4096),
    { code: 'ENODEV', syscall: 'fallocate', message: /not refer to a regular file/ });
  const directoryFd = fs.openSync(os.tmpdir(), 'r');
  t.teardown(() => fs.closeSync(directoryFd));
  t.throws(() => native.pwrite(directoryFd, Buffer.alloc(1), 0),
    { code: 'EBADF', syscall: 'pwritev2', message: /not open for this kind of access/ });
});

const badArguments: Array<[string, (binding: NativeBinding) => unknown]> = [
  ['no arguments', (b) => (b.fallocate as unknown as () => void)()],
  ['a negative fd', (b) => b.seekData(-1, 0)],
  ['a fractional fd', (b) => b.seekData(1.5, 0)],
  ['a string fd', (b) => b.seekData('3' as unknown as number, 0)],
  ['a NaN fd', (b) => b.seekHole(Number.NaN, 0)],
  ['an fd past 2^31', (b) => b.seekHole(2 ** 31, 0)],
  ['a BigInt offset', (b) => b.seekData(0, 1n as unknown as number)],
  ['a negative offset', (b) => b.fallocate(0, 3, -1, 1)],
  ['an offset past 2^53', (b) => b.fallocate(0, 3, 2 ** 53, 1)],
  ['an infinite length', (b) => b.fallocate(0, 3, 0, Number.POSITIVE_INFINITY)],
  ['a zero fallocate length', (b) => b.fallocate(0, 3, 0, 0)],
  ['an unknown fallocate mode', (b) => b.fallocate(0, 4, 0, 1)],
  ['a fractional mode', (b) => b.fallocateAsync(0, 0.5, 0, 1)],
  ['a string target', (b) => b.preadNowait(0, 'text' as unknown as Uint8Array, 0)],
  ['a Uint16Array target', (b) => b.preadNowait(0, new Uint16Array(4) as unknown as Uint8Array, 0)],
  ['an ArrayBuffer source', (b) => b.pwrite(0, new ArrayBuffer(8) as unknown as Uint8Array, 0)],
  ['a missing position', (b) => (b.preadAsync as unknown as (fd: number, target: Uint8Array) => unknown)(0, Buffer.alloc(1))],
  ['a non-boolean dsync', (b) => b.pwriteAsync(0, Buffer.alloc(1), 0, 1 as unknown as boolean)],
  ['a non-array fd list', (b) => b.syncMany(3 as unknown as number[], [])],
  ['an fd list with a negative fd', (b) => b.syncMany([], [-1])],
  ['an fd list with a string', (b) => b.syncMany(['1'] as unknown as number[], [])],
  ['an unknown advice', (b) => b.fadvise(0, 0, 0, 99)],
  ['a negative cachestat length', (b) => b.cachestat(0, 0, -1)],
];

void t.test('bad arguments throw TypeError from the validating binding, before any system call', async (t) => {
  for (const [name, call] of badArguments) t.throws(() => call(native), TypeError, name);
});

void t.test('bad arguments throw TypeError from the raw addon too, never crash it', async (t) => {
  const raw = rawAddon();
  for (const [name, call] of badArguments) t.throws(() => call(raw), TypeError, name);
  const detached = new ArrayBuffer(16);
  const view = new Uint8Array(detached);
  structuredClone(detached, { transfer: [detached] });
  t.equal(raw.preadNowait(0, view, 0), 0, 'a detached buffer is an empty view');
  t.throws(() => raw.syncMany(new Array(65537).fill(0) as number[], []), TypeError, 'too many descriptors');
  t.throws(() => raw.seekData({ valueOf: () => 1 } as unknown as number, 0), TypeError, 'objects are not numbers');
});

void t.test('checkedBinding forwards to the addon it wraps', async (t) => {
  const calls: string[] = [];
  const raw = rawAddon();
  const spy = checkedBinding({
    ...raw,
    constants: raw.constants,
    seekData: (fd, offset) => {
      calls.push(`seekData ${fd} ${offset}`);
      return 42;
    },
  });
  t.equal(spy.seekData(5, 7), 42);
  t.same(calls, ['seekData 5 7']);
});
