/**
 * The typed boundary to Cairn's Node-API addon (build/Release/cairn_native.node, built from
 * src/native/*.cc by node-gyp during `npm install`).
 *
 * Owns: the `NativeBinding` interface (the only way TypeScript reaches the addon), the loader
 * that finds the addon from both `src/` (tap, ts-node) and `dist/src/` (compiled), and argument
 * validation in front of every call.
 *
 * Invariants:
 * - Every argument is checked here (TypeError for a wrong type or range) before the addon sees
 *   it; the addon checks again, so no JavaScript value can crash the process.
 * - A failing system call throws (or rejects with) a `NativeError`: `code` is the errno name,
 *   `errno` the negative errno value (as in Node's fs errors), `syscall` the call, and the
 *   message explains what it means ("this filesystem does not support punching holes …").
 * - The sentinel results are plain numbers so the hot path allocates nothing: `wouldBlock` from
 *   the *Nowait calls, `notFound` from seekData / seekHole.
 */
import path from 'node:path';
import fs from 'node:fs';
import { CairnError } from '../errors/cairn-error';

/** Numbers the addon accepts or returns; read from the addon so they match its headers. */
export interface NativeConstants {
  readonly FALLOC_FL_KEEP_SIZE: number;
  readonly FALLOC_FL_PUNCH_HOLE: number;
  readonly FALLOC_FL_ZERO_RANGE: number;
  readonly POSIX_FADV_WILLNEED: number;
  readonly POSIX_FADV_DONTNEED: number;
  /** Returned by preadNowait / pwriteNowait when the call would have to wait for the disk. */
  readonly WOULD_BLOCK: -1;
  /** Returned by seekData / seekHole when nothing of that kind lies at or past the offset. */
  readonly NOT_FOUND: -1;
}

/** Page-cache state of a file range, in pages (cachestat(2), Linux 6.5+). */
export interface CacheStat {
  readonly cachedPages: number;
  readonly dirtyPages: number;
  readonly writebackPages: number;
  readonly evictedPages: number;
  readonly recentlyEvictedPages: number;
}

export interface NativeBinding {
  readonly constants: NativeConstants;
  /** fallocate(2) with one of `fallocateModes`; blocks the calling thread. */
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  /** fallocate(2) on the libuv thread pool. */
  fallocateAsync(fd: number, mode: number, offset: number, length: number): Promise<void>;
  /** lseek(SEEK_DATA): first data offset ≥ offset, or NOT_FOUND when only a hole follows. */
  seekData(fd: number, offset: number): number;
  /** lseek(SEEK_HOLE): first hole offset ≥ offset (end of file counts), or NOT_FOUND past the end. */
  seekHole(fd: number, offset: number): number;
  /** preadv2(RWF_NOWAIT): bytes read from the page cache (short when only part is cached), or WOULD_BLOCK. */
  preadNowait(fd: number, target: Uint8Array, position: number): number;
  /** pwritev2(RWF_NOWAIT): bytes written, or WOULD_BLOCK; throws EOPNOTSUPP where the filesystem lacks it. */
  pwriteNowait(fd: number, source: Uint8Array, position: number): number;
  /** pwritev2 on the calling thread (a page-cache write): bytes written (may be short). */
  pwrite(fd: number, source: Uint8Array, position: number): number;
  /** Reads on the thread pool until target is full or end of file: bytes read. */
  preadAsync(fd: number, target: Uint8Array, position: number): Promise<number>;
  /** Writes all of source on the thread pool; with dsync the data is durable on resolve (RWF_DSYNC). */
  pwriteAsync(fd: number, source: Uint8Array, position: number, dsync: boolean): Promise<number>;
  /**
   * One thread-pool hop: start writeback of every data fd, fdatasync each, then fsync each
   * metadata fd (directories). Every fd is synced even after a failure; the first failure
   * rejects, with the failing descriptor in `fd`.
   */
  syncMany(dataFds: readonly number[], metadataFds: readonly number[]): Promise<void>;
  /** posix_fadvise(2) with POSIX_FADV_WILLNEED or POSIX_FADV_DONTNEED; length 0 = to end of file. */
  fadvise(fd: number, offset: number, length: number, advice: number): void;
  /** cachestat(2) of [offset, offset+length); length 0 = to end of file. */
  cachestat(fd: number, offset: number, length: number): CacheStat;
}

/** An error from a failed system call in the addon. */
export interface NativeError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  /** syncMany only: the descriptor whose sync failed first. */
  readonly fd?: number;
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error &&
    typeof (error as Partial<NativeError>).code === 'string' &&
    typeof (error as Partial<NativeError>).errno === 'number' &&
    typeof (error as Partial<NativeError>).syscall === 'string';
}

/** The fallocate modes the addon accepts, by purpose. */
export interface FallocateModes {
  /** Allocate blocks (mode 0); extends the file when the range ends past its size. */
  readonly allocate: number;
  /** Free the blocks of the range; it reads as zeroes; the size never changes. */
  readonly punchHole: number;
  /** Make the range read as zeroes while keeping it allocated; the size never changes. */
  readonly zeroRange: number;
}

export function fallocateModes(constants: NativeConstants): FallocateModes {
  return {
    allocate: 0,
    punchHole: constants.FALLOC_FL_PUNCH_HOLE | constants.FALLOC_FL_KEEP_SIZE,
    zeroRange: constants.FALLOC_FL_ZERO_RANGE | constants.FALLOC_FL_KEEP_SIZE,
  };
}

const addonFileName = 'cairn_native.node';
/** The largest transfer one read/write system call makes on Linux. */
export const nativeIoBytesMax = 0x7ffff000;
/** The most descriptors one syncMany list may hold (the addon's bound). */
export const nativeSyncFdsMax = 65536;

/**
 * Finds the package root (the directory whose package.json names "cairn") from this file's
 * directory upwards: src/native under ts-node, dist/src/native after tsc.
 */
export function findPackageRoot(startDirectory: string = __dirname): string {
  let directory = startDirectory;
  for (;;) {
    const manifest = path.join(directory, 'package.json');
    if (fs.existsSync(manifest)) {
      const parsed = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: unknown };
      if (parsed.name === 'cairn') return directory;
    }
    const parent = path.dirname(directory);
    if (parent === directory) {
      throw new CairnError('CAIRN_PLATFORM', `cannot find Cairn's package.json above ${startDirectory}`);
    }
    directory = parent;
  }
}

export function nativeAddonPath(packageRoot: string = findPackageRoot()): string {
  return path.join(packageRoot, 'build', 'Release', addonFileName);
}

let loaded: NativeBinding | undefined;

/** Loads the addon once per process and returns the validating binding over it. */
export function loadNativeBinding(): NativeBinding {
  if (loaded !== undefined) return loaded;
  const addonPath = nativeAddonPath();
  if (!fs.existsSync(addonPath)) {
    throw new CairnError('CAIRN_PLATFORM',
      `the native addon ${addonPath} is missing: run npm install to build the native addon (needs node-gyp, make and a C++17 compiler)`);
  }
  const holder = { exports: {} as unknown };
  try {
    process.dlopen(holder, addonPath);
  } catch (error) {
    throw new CairnError('CAIRN_PLATFORM',
      `the native addon ${addonPath} failed to load (${(error as Error).message}): run npm install to rebuild the native addon`,
      { cause: error });
  }
  loaded = checkedBinding(holder.exports as NativeBinding);
  return loaded;
}

function checkFd(fd: unknown): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
    throw new TypeError(`fd must be a file descriptor (an integer in [0, 2^31 - 1]), got ${String(fd)}`);
  }
}

function checkInteger(name: string, value: unknown, minimum: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum) {
    throw new TypeError(`${name} must be an integer in [${minimum}, 2^53 - 1], got ${String(value)}`);
  }
}

function checkBytes(name: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Buffer or Uint8Array`);
  if (value.length > nativeIoBytesMax) {
    throw new TypeError(`${name} is longer than one system call transfers (${nativeIoBytesMax} bytes)`);
  }
}

function checkFdList(name: string, value: unknown): asserts value is readonly number[] {
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array of file descriptors`);
  if (value.length > nativeSyncFdsMax) throw new TypeError(`${name} holds more than ${nativeSyncFdsMax} descriptors`);
  for (const fd of value) checkFd(fd);
}

/**
 * Wraps a raw addon (or any object with its shape, such as a test double) so that every call
 * validates its arguments first. Exposed for tests that wrap the real addon with spies.
 */
export function checkedBinding(raw: NativeBinding): NativeBinding {
  const constants = raw.constants;
  const modes = fallocateModes(constants);
  const allowedModes = new Set([modes.allocate, modes.punchHole, modes.zeroRange,
    constants.FALLOC_FL_KEEP_SIZE, constants.FALLOC_FL_ZERO_RANGE]);
  const checkMode = (mode: unknown): void => {
    if (typeof mode !== 'number' || !allowedModes.has(mode)) {
      throw new TypeError(`mode must be one of the fallocate modes (fallocateModes), got ${String(mode)}`);
    }
  };
  const checkAdvice = (advice: unknown): void => {
    if (advice !== constants.POSIX_FADV_WILLNEED && advice !== constants.POSIX_FADV_DONTNEED) {
      throw new TypeError(`advice must be POSIX_FADV_WILLNEED or POSIX_FADV_DONTNEED, got ${String(advice)}`);
    }
  };
  return {
    constants,
    fallocate(fd, mode, offset, length) {
      checkFd(fd); checkMode(mode); checkInteger('offset', offset, 0); checkInteger('length', length, 1);
      raw.fallocate(fd, mode, offset, length);
    },
    fallocateAsync(fd, mode, offset, length) {
      checkFd(fd); checkMode(mode); checkInteger('offset', offset, 0); checkInteger('length', length, 1);
      return raw.fallocateAsync(fd, mode, offset, length);
    },
    seekData(fd, offset) {
      checkFd(fd); checkInteger('offset', offset, 0);
      return raw.seekData(fd, offset);
    },
    seekHole(fd, offset) {
      checkFd(fd); checkInteger('offset', offset, 0);
      return raw.seekHole(fd, offset);
    },
    preadNowait(fd, target, position) {
      checkFd(fd); checkBytes('target', target); checkInteger('position', position, 0);
      return raw.preadNowait(fd, target, position);
    },
    pwriteNowait(fd, source, position) {
      checkFd(fd); checkBytes('source', source); checkInteger('position', position, 0);
      return raw.pwriteNowait(fd, source, position);
    },
    pwrite(fd, source, position) {
      checkFd(fd); checkBytes('source', source); checkInteger('position', position, 0);
      return raw.pwrite(fd, source, position);
    },
    preadAsync(fd, target, position) {
      checkFd(fd); checkBytes('target', target); checkInteger('position', position, 0);
      return raw.preadAsync(fd, target, position);
    },
    pwriteAsync(fd, source, position, dsync) {
      checkFd(fd); checkBytes('source', source); checkInteger('position', position, 0);
      if (typeof dsync !== 'boolean') throw new TypeError('dsync must be a boolean');
      return raw.pwriteAsync(fd, source, position, dsync);
    },
    syncMany(dataFds, metadataFds) {
      checkFdList('dataFds', dataFds); checkFdList('metadataFds', metadataFds);
      return raw.syncMany(dataFds, metadataFds);
    },
    fadvise(fd, offset, length, advice) {
      checkFd(fd); checkInteger('offset', offset, 0); checkInteger('length', length, 0); checkAdvice(advice);
      raw.fadvise(fd, offset, length, advice);
    },
    cachestat(fd, offset, length) {
      checkFd(fd); checkInteger('offset', offset, 0); checkInteger('length', length, 0);
      return raw.cachestat(fd, offset, length);
    },
  };
}
