/**
 * The typed boundary to Cairn's Node-API addon (build/Release/cairn_native.node, built from
 * src/native/*.cc by node-gyp during `npm install`).
 *
 * Owns: the `NativeBinding` interface (the only way TypeScript reaches the addon's file calls),
 * the `KernelBinding` interface (its kernel NBD attach and systemd notify calls), the
 * `SocketBinding` interface (bulk NBD socket transfers on the thread pool), the loader
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
import type { SocketCalls } from '../nbd/bulk-channel';

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
   * rejects, with the failing descriptor in `fd`. With a notice, once every sync succeeded the
   * same thread sends `notice.bytes` on the socket `notice.fd` (one non-blocking send); resolves
   * with the bytes that send took (0 without a notice, or when the socket had no room).
   */
  syncMany(dataFds: readonly number[], metadataFds: readonly number[], notice?: { readonly fd: number; readonly bytes: Uint8Array }): Promise<number>;
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
  loaded = checkedBinding(dlopenAddon(addonPath) as NativeBinding);
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

/** Two buffers a call fills at once must not share a byte (one would overwrite the other). */
function checkDisjoint(name: string, a: Uint8Array, otherName: string, b: Uint8Array): void {
  if (a.buffer !== b.buffer) return;
  if (a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length) {
    throw new TypeError(`${name} and ${otherName} must not overlap`);
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
    syncMany(dataFds, metadataFds, notice) {
      checkFdList('dataFds', dataFds); checkFdList('metadataFds', metadataFds);
      if (notice === undefined) return raw.syncMany(dataFds, metadataFds);
      checkFd(notice.fd); checkBytes('notice.bytes', notice.bytes);
      return raw.syncMany(dataFds, metadataFds, notice);
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

// ---- Kernel attach (nbd-kernel.cc) and systemd notify (notify.cc) ----------------------------

/** One device of the kernel NBD driver as NBD_CMD_STATUS lists it. */
export interface NbdDeviceStatus {
  readonly index: number;
  /** The device has a configuration (it was connected and not yet torn down). */
  readonly connected: boolean;
}

export interface NbdNetlinkConnectOptions {
  /** Kernel ends of the socketpairs, one per connection; consumed (closed) by the call. */
  readonly socketFds: readonly number[];
  readonly sizeBytes: number;
  /** A power of two from 512 to 65536 (the kernel accepts up to its page size). */
  readonly blockBytes: number;
  /** NBD transmission flags (u16). */
  readonly serverFlags: number;
  /** NBD_CFLAG_* bits (0..3). */
  readonly clientFlags: number;
  /** Request timeout; 0 = none (the kernel waits forever). */
  readonly ioTimeoutSeconds: number;
  /** How long the kernel queues I/O with no live socket, waiting for RECONFIGURE; 0 = not at all. */
  readonly deadConnTimeoutSeconds: number;
  /** Shown in /sys/block/nbdX/backend; RECONFIGURE must name it again. */
  readonly backendId: string;
  /** Omitted: the kernel picks the first free device. */
  readonly index?: number;
}

export interface NbdNetlinkReconfigureOptions {
  readonly index: number;
  readonly backendId: string;
  /** Replace dead sockets, one each (the kernel ignores a socket when none is dead); consumed. */
  readonly socketFds: readonly number[];
  /** Omitted: unchanged. A larger size grows the device. */
  readonly sizeBytes?: number;
  readonly ioTimeoutSeconds?: number;
  readonly deadConnTimeoutSeconds?: number;
}

export interface NbdIoctlConnectOptions {
  readonly devicePath: string;
  /** Consumed (closed) by the call. */
  readonly socketFds: readonly number[];
  readonly sizeBytes: number;
  readonly blockBytes: number;
  readonly serverFlags: number;
  readonly ioTimeoutSeconds: number;
}

/**
 * The addon's calls into the kernel: NBD attach by netlink or ioctls, and sd_notify. Every
 * asynchronous call runs off the event loop (the kernel may wait for I/O this process serves).
 * Failures carry code / errno / syscall (`NativeError`) and a plain explanation.
 */
export interface KernelBinding {
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected descriptors. */
  nbdSocketPair(): [number, number];
  /** NBD_CMD_CONNECT: resolves with the device index. */
  nbdNetlinkConnect(options: NbdNetlinkConnectOptions): Promise<number>;
  /** NBD_CMD_RECONFIGURE: fresh sockets for dead ones, and/or a new size or timeouts. */
  nbdNetlinkReconfigure(options: NbdNetlinkReconfigureOptions): Promise<void>;
  /** NBD_CMD_DISCONNECT: the kernel sends DISC on every socket and tears the device down. */
  nbdNetlinkDisconnect(index: number): Promise<void>;
  /** NBD_CMD_STATUS of one device, or of every device when index is omitted. */
  nbdNetlinkStatus(index?: number): Promise<NbdDeviceStatus[]>;
  /**
   * The ioctl path on a dedicated thread: resolves once the device is configured and the thread
   * enters NBD_DO_IT; `onExit(error | null)` runs when NBD_DO_IT returns (the device is gone).
   */
  nbdIoctlConnect(options: NbdIoctlConnectOptions, onExit: (error: NativeError | null) => void): Promise<void>;
  /** NBD_DISCONNECT + NBD_CLEAR_SOCK through a second descriptor of the device. */
  nbdIoctlDisconnect(devicePath: string): Promise<void>;
  /** NBD_SET_SIZE on a running ioctl device. */
  nbdIoctlSetSize(devicePath: string, sizeBytes: number): Promise<void>;
  /** open (O_EXCL when exclusive: EBUSY while mounted) + fsync: dirty pages written, FLUSH sent. */
  nbdFlushDevice(devicePath: string, exclusive: boolean): Promise<void>;
  /** prctl(PR_SET_IO_FLUSHER) for the calling thread and threads it starts later. */
  setIoFlusher(): void;
  /** One datagram to systemd's notify socket (a path, or '@name' for an abstract socket). */
  sdNotify(socketPath: string, message: string): void;
}

/** Bounds the addon enforces on the kernel calls (see nbd-kernel.cc). */
export const nbdSocketsMax = 64;
export const nbdBackendIdBytesMax = 255;
export const nbdTimeoutSecondsMax = 365 * 24 * 3600;
const nbdIndexMax = 0x7fffffff;
const devicePathBytesMax = 4096;
const notifyMessageBytesMax = 4096;

let loadedKernel: KernelBinding | undefined;

/** The addon's exports (process.dlopen caches the module, so every loader shares one). */
function dlopenAddon(addonPath: string): unknown {
  const holder = { exports: {} as unknown };
  try {
    process.dlopen(holder, addonPath);
  } catch (error) {
    throw new CairnError('CAIRN_PLATFORM',
      `the native addon ${addonPath} failed to load (${(error as Error).message}): run npm install to rebuild the native addon`,
      { cause: error });
  }
  return holder.exports;
}

/** Loads the addon once per process and returns the validating kernel binding over it. */
export function loadKernelBinding(): KernelBinding {
  return loadedKernel ??= checkedKernelBinding(addonWith<KernelBinding>('kernel attach', ['nbdNetlinkConnect', 'sdNotify']));
}

/** The addon's exports, refused when they lack `calls` (an addon built before `feature`). */
function addonWith<T>(feature: string, calls: ReadonlyArray<keyof T & string>): T {
  const addonPath = nativeAddonPath();
  const raw = dlopenAddon(addonPath) as Record<string, unknown>;
  if (calls.some((call) => typeof raw[call] !== 'function')) {
    throw new CairnError('CAIRN_PLATFORM', `the native addon ${addonPath} predates ${feature}: run npm install to rebuild it`);
  }
  return raw as T;
}

function checkRange(name: string, value: unknown, minimum: number, maximum: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum || value > maximum) {
    throw new TypeError(`${name} must be an integer in [${minimum}, ${maximum}], got ${String(value)}`);
  }
}

function checkSocketFds(value: unknown, minimum: number): asserts value is readonly number[] {
  if (!Array.isArray(value) || value.length < minimum || value.length > nbdSocketsMax) {
    throw new TypeError(`socketFds must be an array of ${minimum} to ${nbdSocketsMax} file descriptors`);
  }
  for (const fd of value) checkFd(fd);
}

function checkText(name: string, value: unknown, bytesMax: number): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0') || Buffer.byteLength(value) > bytesMax) {
    throw new TypeError(`${name} must be a non-empty string of at most ${bytesMax} bytes without NUL`);
  }
}

function checkDevicePath(value: unknown): asserts value is string {
  checkText('devicePath', value, devicePathBytesMax);
  if (!value.startsWith('/')) throw new TypeError('devicePath must be an absolute path');
}

function checkBlockBytes(value: unknown): asserts value is number {
  checkRange('blockBytes', value, 512, 65536);
  if ((value & (value - 1)) !== 0) throw new TypeError(`blockBytes must be a power of two, got ${value}`);
}

function checkOptional(name: string, value: unknown, minimum: number, maximum: number): void {
  if (value !== undefined) checkRange(name, value, minimum, maximum);
}

/** Wraps a raw addon (or a test double of the same shape) so every call validates first. */
export function checkedKernelBinding(raw: KernelBinding): KernelBinding {
  return {
    nbdSocketPair: () => raw.nbdSocketPair(),
    nbdNetlinkConnect(options) {
      checkSocketFds(options.socketFds, 1);
      checkRange('sizeBytes', options.sizeBytes, 1, Number.MAX_SAFE_INTEGER);
      checkBlockBytes(options.blockBytes);
      checkRange('serverFlags', options.serverFlags, 0, 0xffff);
      checkRange('clientFlags', options.clientFlags, 0, 3);
      checkRange('ioTimeoutSeconds', options.ioTimeoutSeconds, 0, nbdTimeoutSecondsMax);
      checkRange('deadConnTimeoutSeconds', options.deadConnTimeoutSeconds, 0, nbdTimeoutSecondsMax);
      checkText('backendId', options.backendId, nbdBackendIdBytesMax);
      checkOptional('index', options.index, 0, nbdIndexMax);
      return raw.nbdNetlinkConnect(options);
    },
    nbdNetlinkReconfigure(options) {
      checkRange('index', options.index, 0, nbdIndexMax);
      checkText('backendId', options.backendId, nbdBackendIdBytesMax);
      checkSocketFds(options.socketFds, 0);
      checkOptional('sizeBytes', options.sizeBytes, 1, Number.MAX_SAFE_INTEGER);
      checkOptional('ioTimeoutSeconds', options.ioTimeoutSeconds, 1, nbdTimeoutSecondsMax);
      checkOptional('deadConnTimeoutSeconds', options.deadConnTimeoutSeconds, 1, nbdTimeoutSecondsMax);
      return raw.nbdNetlinkReconfigure(options);
    },
    nbdNetlinkDisconnect(index) {
      checkRange('index', index, 0, nbdIndexMax);
      return raw.nbdNetlinkDisconnect(index);
    },
    nbdNetlinkStatus(index) {
      checkOptional('index', index, 0, nbdIndexMax);
      return raw.nbdNetlinkStatus(index ?? -1);
    },
    nbdIoctlConnect(options, onExit) {
      checkDevicePath(options.devicePath);
      checkSocketFds(options.socketFds, 1);
      checkBlockBytes(options.blockBytes);
      checkRange('sizeBytes', options.sizeBytes, options.blockBytes, Number.MAX_SAFE_INTEGER);
      checkRange('serverFlags', options.serverFlags, 0, 0xffff);
      checkRange('ioTimeoutSeconds', options.ioTimeoutSeconds, 0, nbdTimeoutSecondsMax);
      if (typeof onExit !== 'function') throw new TypeError('onExit must be a function');
      return raw.nbdIoctlConnect(options, onExit);
    },
    nbdIoctlDisconnect(devicePath) {
      checkDevicePath(devicePath);
      return raw.nbdIoctlDisconnect(devicePath);
    },
    nbdIoctlSetSize(devicePath, sizeBytes) {
      checkDevicePath(devicePath);
      checkRange('sizeBytes', sizeBytes, 1, Number.MAX_SAFE_INTEGER);
      return raw.nbdIoctlSetSize(devicePath, sizeBytes);
    },
    nbdFlushDevice(devicePath, exclusive) {
      checkDevicePath(devicePath);
      if (typeof exclusive !== 'boolean') throw new TypeError('exclusive must be a boolean');
      return raw.nbdFlushDevice(devicePath, exclusive);
    },
    setIoFlusher: () => raw.setIoFlusher(),
    sdNotify(socketPath, message) {
      checkText('socketPath', socketPath, 107);
      if (!socketPath.startsWith('/') && !socketPath.startsWith('@')) {
        throw new TypeError('socketPath must be an absolute path or an @abstract name');
      }
      checkText('message', message, notifyMessageBytesMax);
      raw.sdNotify(socketPath, message);
    },
  };
}

// ---- Bulk socket transfers (socket-ops.cc) ---------------------------------------------------

/**
 * The addon's bulk socket transfers: exactly the calls the NBD layer asks for (`SocketCalls` in
 * src/nbd/bulk-channel.ts, where the contract is documented); the daemon hands this binding in.
 * A failed pwrite in recvWriteAsync comes back as a NativeError in `writeError`.
 */
export type SocketBinding = SocketCalls;

/** The longest a transfer may wait for a silent peer (the addon's bound). */
export const socketIdleMsMax = 60_000;
/** Most buffers one sendAsync gathers (the addon's bound). */
export const socketSendBuffersMax = 64;

let loadedSocket: SocketBinding | undefined;

/** Loads the addon once per process and returns the validating socket binding over it. */
export function loadSocketBinding(): SocketBinding {
  return loadedSocket ??= checkedSocketBinding(addonWith<SocketBinding>('socket transfers', ['sendAsync', 'socketDup']));
}

/** Wraps a raw addon (or a test double of the same shape) so every call validates first. */
export function checkedSocketBinding(raw: SocketBinding): SocketBinding {
  const checkIdle = (idleMs: unknown): void => checkRange('idleMs', idleMs, 1, socketIdleMsMax);
  return {
    socketDup(fd) {
      checkFd(fd);
      return raw.socketDup(fd);
    },
    socketShutdown(fd) {
      checkFd(fd);
      raw.socketShutdown(fd);
    },
    socketClose(fd) {
      checkFd(fd);
      raw.socketClose(fd);
    },
    sendAsync(fd, sources, idleMs) {
      checkFd(fd); checkIdle(idleMs);
      if (!Array.isArray(sources) || sources.length === 0 || sources.length > socketSendBuffersMax) {
        throw new TypeError(`sources must be an array of 1 to ${socketSendBuffersMax} buffers`);
      }
      let total = 0;
      for (const source of sources) {
        checkBytes('sources[i]', source);
        total += source.length;
      }
      if (total > nativeIoBytesMax) throw new TypeError(`sources are longer than one system call transfers (${nativeIoBytesMax} bytes)`);
      return raw.sendAsync(fd, sources, idleMs);
    },
    recvAsync(fd, target, idleMs) {
      checkFd(fd); checkBytes('target', target); checkIdle(idleMs);
      return raw.recvAsync(fd, target, idleMs);
    },
    recvAheadAsync(fd, target, ahead, idleMs) {
      checkFd(fd); checkBytes('target', target); checkBytes('ahead', ahead); checkIdle(idleMs);
      checkDisjoint('target', target, 'ahead', ahead);
      return raw.recvAheadAsync(fd, target, ahead, idleMs);
    },
    recvWriteAsync(fd, buffer, from, idleMs, fileFd, position, ahead) {
      checkFd(fd); checkBytes('buffer', buffer); checkRange('from', from, 0, buffer.length); checkIdle(idleMs);
      checkFd(fileFd); checkInteger('position', position, 0);
      if (ahead !== undefined) {
        checkBytes('ahead', ahead);
        checkDisjoint('buffer', buffer, 'ahead', ahead);
      }
      return raw.recvWriteAsync(fd, buffer, from, idleMs, fileFd, position, ahead);
    },
  };
}

// ---- Adaptive busy polling of the event loop (loop-poll.cc) ----------------------------------

/** The calling thread's busy-poll settings and counters (see loop-poll.cc for the algorithm). */
export interface LoopPollStats {
  /** The configured longest spin per idle period (0: off). */
  readonly maxSpinNs: number;
  /** The current adaptive window (0 after long idle periods). */
  readonly windowNs: number;
  /**
   * Idle periods that began with a spin, those a ready event ended, those that ran out, and those
   * ended because a yield let another thread run (the CPUs are busy: spinning only takes from it).
   */
  readonly spins: number;
  readonly hits: number;
  readonly timeouts: number;
  readonly contended: number;
  /** Total wall time spent spinning: an upper bound on its CPU cost (other threads run while it yields). */
  readonly spinNs: number;
}

export interface LoopPollBinding {
  /** Sets the longest spin per idle period of this thread's event loop; 0 turns spinning off. */
  loopPollSet(maxSpinNs: number): void;
  loopPollStats(): LoopPollStats;
}

/** The addon's bound on maxSpinNs (10 ms). */
export const loopPollSpinNsMax = 10_000_000;

let loadedLoopPoll: LoopPollBinding | undefined;

/** Loads the addon once per process and returns the validating busy-poll binding over it. */
export function loadLoopPollBinding(): LoopPollBinding {
  return loadedLoopPoll ??= checkedLoopPollBinding(addonWith<LoopPollBinding>('event-loop busy polling', ['loopPollSet', 'loopPollStats']));
}

/** Wraps a raw addon (or a test double of the same shape) so every call validates first. */
export function checkedLoopPollBinding(raw: LoopPollBinding): LoopPollBinding {
  return {
    loopPollSet(maxSpinNs) {
      checkRange('maxSpinNs', maxSpinNs, 0, loopPollSpinNsMax);
      raw.loopPollSet(maxSpinNs);
    },
    loopPollStats: () => raw.loopPollStats(),
  };
}
