/**
 * FakeKernel: a stand-in for the kernel NBD driver that implements both `KernelBinding` and
 * `NbdSysfs`, so the attach manager's policy runs in unit tests on a host without nbd.ko.
 *
 * It keeps the driver's observable rules, the ones the manager depends on:
 * - CONNECT/RECONFIGURE/ioctl setup consume the socket descriptors (closed on failure, kept as
 *   the "kernel" ends on success); devices are picked first-free; multi-socket needs CAN_MULTI_CONN.
 * - A socket whose peer closes is dead; its requests are resent once a live socket exists (the
 *   driver's timeout requeue, without the wait). With no live socket, I/O waits up to the
 *   dead-connection timeout for RECONFIGURE, then fails (netlink) — or, for an ioctl device,
 *   the device ends (NBD_DO_IT returns).
 * - RECONFIGURE needs a netlink device and its backend identifier (EINVAL otherwise) and puts
 *   each socket into a dead slot, silently dropping sockets when no slot is dead.
 * - DISCONNECT sends NBD_CMD_DISC on every live socket and shuts them down.
 * It also speaks NBD's transmission phase as the driver does (simple replies, cookies), so tests
 * can read and write through the "device". Real socketpairs come from `socketPair` (the addon's
 * call, which needs no NBD driver).
 *
 * Failures are injected per call with `failNext(call, code)`: the next call of that name rejects
 * (or throws) a NativeError-shaped error, after consuming descriptors as the real call would.
 */
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type {
  KernelBinding, NativeError, NbdDeviceStatus, NbdIoctlConnectOptions, NbdNetlinkConnectOptions, NbdNetlinkReconfigureOptions,
} from '../native/binding';
import { assert } from '../util/assert';
import type { NbdSysfs } from './nbd-sysfs';

export type FakeKernelCall = Exclude<keyof KernelBinding, 'nbdSocketPair'> | 'nbdSocketPair';

const requestMagic = 0x25609513;
const replyMagic = 0x67446698;
const commandRead = 0;
const commandWrite = 1;
const commandDisconnect = 2;
const commandFlush = 3;
const commandTrim = 4;
const flagFua = 1;
const multiConnFlag = 0x0100;

interface PendingRequest {
  readonly type: number;
  readonly flags: number;
  readonly offset: number;
  readonly length: number;
  readonly payload: Buffer | undefined;
  readonly resolve: (data: Buffer) => void;
  readonly reject: (error: Error) => void;
  cookie: bigint;
}

/** The "kernel" end of one socketpair: writes requests, parses simple replies. */
class KernelSocket {
  dead = false;
  readonly inflight = new Map<bigint, PendingRequest>();
  private buffered: Buffer = Buffer.alloc(0);

  constructor(readonly socket: Socket, private readonly died: (socket: KernelSocket) => void) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.markDead());
    socket.on('close', () => this.markDead());
    socket.on('end', () => {
      // The server closed its side: the connection is over (and the descriptor must go).
      socket.destroy();
      this.markDead();
    });
  }

  send(request: PendingRequest, cookie: bigint): void {
    request.cookie = cookie;
    this.inflight.set(cookie, request);
    const header = Buffer.alloc(28);
    header.writeUInt32BE(requestMagic, 0);
    header.writeUInt16BE(request.flags, 4);
    header.writeUInt16BE(request.type, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(request.offset), 16);
    header.writeUInt32BE(request.length, 24);
    this.socket.write(request.payload === undefined ? header : Buffer.concat([header, request.payload]));
  }

  disconnect(): void {
    if (this.dead) return;
    const header = Buffer.alloc(28);
    header.writeUInt32BE(requestMagic, 0);
    header.writeUInt16BE(commandDisconnect, 6);
    this.socket.end(header);
    this.markDead();
  }

  /** Closes the kernel end (the driver shutting a socket down after a timeout). */
  kill(): void {
    this.socket.destroy();
    this.markDead();
  }

  markDead(): void {
    if (this.dead) return;
    this.dead = true;
    this.died(this);
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    for (;;) {
      if (this.buffered.length < 16) return;
      if (this.buffered.readUInt32BE(0) !== replyMagic) {
        // The driver kills a connection on a bad magic.
        this.kill();
        return;
      }
      const error = this.buffered.readUInt32BE(4);
      const cookie = this.buffered.readBigUInt64BE(8);
      const request = this.inflight.get(cookie);
      if (request === undefined) {
        this.kill();
        return;
      }
      const dataBytes = request.type === commandRead && error === 0 ? request.length : 0;
      if (this.buffered.length < 16 + dataBytes) return;
      const data = Buffer.from(this.buffered.subarray(16, 16 + dataBytes));
      this.buffered = this.buffered.subarray(16 + dataBytes);
      this.inflight.delete(cookie);
      if (error === 0) request.resolve(data);
      else request.reject(Object.assign(new Error(`I/O error (NBD error ${error})`), { nbdError: error }));
    }
  }
}

interface FakeDeviceState {
  readonly index: number;
  method: 'netlink' | 'ioctl' | undefined;
  backendId: string | undefined;
  sizeBytes: number;
  blockBytes: number;
  serverFlags: number;
  ioTimeoutSeconds: number;
  deadConnTimeoutSeconds: number;
  sockets: KernelSocket[];
  /** Requests waiting for a live socket. */
  waiting: PendingRequest[];
  deadTimer: NodeJS.Timeout | undefined;
  onExit: ((error: NativeError | null) => void) | undefined;
  nextSocket: number;
}

export interface FakeKernelOptions {
  /** Devices the driver has (nbds_max); 0 = no driver at all. Default 4. */
  readonly devices?: number;
  /** Whether the netlink family exists. Default: whenever there are devices. */
  readonly netlink?: boolean;
  readonly socketPair: () => [number, number];
  readonly devRoot?: string;
}

export function fakeNativeError(code: string, syscall: string, message: string, errno = 1): NativeError {
  return Object.assign(new Error(`${syscall}: ${message} (${code})`), { code, errno: -Math.abs(errno), syscall });
}

export class FakeKernel implements KernelBinding, NbdSysfs {
  /** Every call, in order: "name arg…". */
  readonly calls: string[] = [];
  readonly notifications: Array<{ socketPath: string; message: string }> = [];
  /** Device paths treated as mounted: an exclusive flush fails with EBUSY. */
  readonly busyPaths = new Set<string>();
  private readonly failures = new Map<FakeKernelCall, NativeError[]>();
  private readonly devices: FakeDeviceState[];
  private readonly netlink: boolean;
  private readonly socketPairImpl: () => [number, number];
  private readonly devRoot: string;
  private nextCookie = 1n;

  constructor(options: FakeKernelOptions) {
    const count = options.devices ?? 4;
    this.devices = Array.from({ length: count }, (_, index) => emptyDevice(index));
    this.netlink = options.netlink ?? count > 0;
    this.socketPairImpl = options.socketPair;
    this.devRoot = options.devRoot ?? '/dev';
  }

  /** The next call of that name fails with this errno code (after consuming its descriptors). */
  failNext(call: FakeKernelCall, code: string, syscall: string = call, message = 'injected failure'): void {
    const queue = this.failures.get(call) ?? [];
    queue.push(fakeNativeError(code, syscall, message));
    this.failures.set(call, queue);
  }

  // ---- KernelBinding ----

  nbdSocketPair(): [number, number] {
    this.calls.push('nbdSocketPair');
    this.maybeThrow('nbdSocketPair');
    return this.socketPairImpl();
  }

  async nbdNetlinkConnect(options: NbdNetlinkConnectOptions): Promise<number> {
    this.calls.push(`nbdNetlinkConnect sockets=${options.socketFds.length} size=${options.sizeBytes} flags=${options.serverFlags} timeout=${options.ioTimeoutSeconds} dead=${options.deadConnTimeoutSeconds}`);
    const fds = [...options.socketFds];
    try {
      this.requireNetlink('NBD_CMD_CONNECT');
      this.maybeThrow('nbdNetlinkConnect');
      if (fds.length > 1 && (options.serverFlags & multiConnFlag) === 0) throw fakeNativeError('EINVAL', 'NBD_CMD_CONNECT', 'several connections need multi-conn', 22);
      const device = options.index === undefined ? this.devices.find((candidate) => candidate.method === undefined) : this.devices[options.index];
      if (device === undefined) throw fakeNativeError('EINVAL', 'NBD_CMD_CONNECT', 'no free device', 22);
      if (device.method !== undefined) throw fakeNativeError('EBUSY', 'NBD_CMD_CONNECT', 'device busy', 16);
      Object.assign(device, {
        method: 'netlink', backendId: options.backendId, sizeBytes: options.sizeBytes, blockBytes: options.blockBytes,
        serverFlags: options.serverFlags, ioTimeoutSeconds: options.ioTimeoutSeconds, deadConnTimeoutSeconds: options.deadConnTimeoutSeconds,
      });
      device.sockets = fds.map((fd) => this.adopt(device, fd));
      return device.index;
    } catch (error) {
      for (const fd of fds) closeSync(fd);
      throw error;
    }
  }

  async nbdNetlinkReconfigure(options: NbdNetlinkReconfigureOptions): Promise<void> {
    this.calls.push(`nbdNetlinkReconfigure index=${options.index} sockets=${options.socketFds.length}${options.sizeBytes === undefined ? '' : ` size=${options.sizeBytes}`}`);
    const fds = [...options.socketFds];
    try {
      this.requireNetlink('NBD_CMD_RECONFIGURE');
      this.maybeThrow('nbdNetlinkReconfigure');
      const device = this.devices[options.index];
      if (device?.method !== 'netlink' || device.backendId !== options.backendId) {
        throw fakeNativeError('EINVAL', 'NBD_CMD_RECONFIGURE', 'not a netlink device with that backend', 22);
      }
      if (options.sizeBytes !== undefined) device.sizeBytes = options.sizeBytes;
      for (const fd of fds.splice(0)) {
        const slot = device.sockets.findIndex((socket) => socket.dead);
        if (slot < 0) {
          closeSync(fd); // no dead slot: the driver drops the socket
          continue;
        }
        device.sockets[slot] = this.adopt(device, fd);
      }
      this.pump(device);
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  }

  async nbdNetlinkDisconnect(index: number): Promise<void> {
    this.calls.push(`nbdNetlinkDisconnect index=${index}`);
    this.requireNetlink('NBD_CMD_DISCONNECT');
    this.maybeThrow('nbdNetlinkDisconnect');
    const device = this.devices[index];
    if (device?.method === undefined) throw fakeNativeError('EINVAL', 'NBD_CMD_DISCONNECT', 'not connected', 22);
    this.teardown(device, fakeNativeError('EIO', 'fake', 'device disconnected', 5));
  }

  async nbdNetlinkStatus(index?: number): Promise<NbdDeviceStatus[]> {
    this.calls.push(`nbdNetlinkStatus${index === undefined ? '' : ` index=${index}`}`);
    this.requireNetlink('genl CTRL_CMD_GETFAMILY nbd');
    this.maybeThrow('nbdNetlinkStatus');
    return this.devices.filter((device) => index === undefined || device.index === index)
      .map((device) => ({ index: device.index, connected: device.method !== undefined }));
  }

  async nbdIoctlConnect(options: NbdIoctlConnectOptions, onExit: (error: NativeError | null) => void): Promise<void> {
    this.calls.push(`nbdIoctlConnect ${options.devicePath} sockets=${options.socketFds.length} timeout=${options.ioTimeoutSeconds}`);
    const fds = [...options.socketFds];
    try {
      this.maybeThrow('nbdIoctlConnect');
      const device = this.byPath(options.devicePath);
      if (device.method !== undefined) throw fakeNativeError('EBUSY', 'ioctl NBD_SET_SOCK', 'device busy', 16);
      if (fds.length > 1 && (options.serverFlags & multiConnFlag) === 0) throw fakeNativeError('EINVAL', 'ioctl NBD_DO_IT', 'several connections need multi-conn', 22);
      Object.assign(device, {
        method: 'ioctl', backendId: undefined, sizeBytes: options.sizeBytes, blockBytes: options.blockBytes,
        serverFlags: options.serverFlags, ioTimeoutSeconds: options.ioTimeoutSeconds, deadConnTimeoutSeconds: 0, onExit,
      });
      device.sockets = fds.map((fd) => this.adopt(device, fd));
    } catch (error) {
      for (const fd of fds) closeSync(fd);
      throw error;
    }
  }

  async nbdIoctlDisconnect(devicePath: string): Promise<void> {
    this.calls.push(`nbdIoctlDisconnect ${devicePath}`);
    this.maybeThrow('nbdIoctlDisconnect');
    const device = this.byPath(devicePath);
    if (device.method !== 'ioctl') throw fakeNativeError('EINVAL', 'ioctl NBD_DISCONNECT', 'not an ioctl device', 22);
    // NBD_DO_IT returns 0 after a requested disconnect.
    this.teardown(device, fakeNativeError('EIO', 'fake', 'device disconnected', 5))?.(null);
  }

  async nbdIoctlSetSize(devicePath: string, sizeBytes: number): Promise<void> {
    this.calls.push(`nbdIoctlSetSize ${devicePath} ${sizeBytes}`);
    this.maybeThrow('nbdIoctlSetSize');
    const device = this.byPath(devicePath);
    if (device.method !== 'ioctl') throw fakeNativeError('EINVAL', 'ioctl NBD_SET_SIZE', 'not running', 22);
    device.sizeBytes = sizeBytes;
  }

  async nbdFlushDevice(devicePath: string, exclusive: boolean): Promise<void> {
    this.calls.push(`nbdFlushDevice ${devicePath} exclusive=${exclusive}`);
    this.maybeThrow('nbdFlushDevice');
    if (exclusive && this.busyPaths.has(devicePath)) throw fakeNativeError('EBUSY', 'open', 'the device is mounted', 16);
    const device = this.byPath(devicePath);
    if (device.method !== undefined) await this.submit(device, commandFlush, 0, 0, 0, undefined);
  }

  setIoFlusher(): void {
    this.calls.push('setIoFlusher');
    this.maybeThrow('setIoFlusher');
  }

  sdNotify(socketPath: string, message: string): void {
    this.calls.push(`sdNotify ${message.replace(/\n/g, '|')}`);
    this.maybeThrow('sdNotify');
    this.notifications.push({ socketPath, message });
  }

  // ---- NbdSysfs ----

  deviceIndices(): number[] {
    return this.devices.map((device) => device.index);
  }

  backendOf(index: number): string | undefined {
    const device = this.devices[index];
    return device?.method === 'netlink' ? device.backendId : undefined;
  }

  isRunning(index: number): boolean {
    return this.devices[index]?.method !== undefined;
  }

  sizeBytesOf(index: number): number {
    const device = this.devices[index];
    return device?.method === undefined ? 0 : device.sizeBytes;
  }

  devicePath(index: number): string {
    return `${this.devRoot}/nbd${index}`;
  }

  // ---- the "block device" side, for tests ----

  /** What the driver knows about a device. */
  describe(index: number): { method: string | undefined; backendId: string | undefined; sizeBytes: number; serverFlags: number;
    ioTimeoutSeconds: number; deadConnTimeoutSeconds: number; liveSockets: number; sockets: number } {
    const device = this.device(index);
    return {
      method: device.method, backendId: device.backendId, sizeBytes: device.sizeBytes, serverFlags: device.serverFlags,
      ioTimeoutSeconds: device.ioTimeoutSeconds, deadConnTimeoutSeconds: device.deadConnTimeoutSeconds,
      liveSockets: device.sockets.filter((socket) => !socket.dead).length, sockets: device.sockets.length,
    };
  }

  read(index: number, offset: number, length: number): Promise<Buffer> {
    return this.submit(this.device(index), commandRead, 0, offset, length, undefined);
  }

  async write(index: number, offset: number, data: Buffer, options: { fua?: boolean } = {}): Promise<void> {
    await this.submit(this.device(index), commandWrite, options.fua === true ? flagFua : 0, offset, data.length, data);
  }

  async flush(index: number): Promise<void> {
    await this.submit(this.device(index), commandFlush, 0, 0, 0, undefined);
  }

  async trim(index: number, offset: number, length: number): Promise<void> {
    await this.submit(this.device(index), commandTrim, 0, offset, length, undefined);
  }

  /** Shuts one socket down from the kernel side, as the driver does after a request timeout. */
  killSocket(index: number, slot: number): void {
    const socket = this.device(index).sockets[slot];
    assert(socket !== undefined, `device ${index} has no socket ${slot}`);
    socket.kill();
  }

  /** Drops every device and socket (the end of a test). */
  destroy(): void {
    for (const device of this.devices) this.teardown(device, fakeNativeError('EIO', 'fake', 'fake kernel destroyed', 5))?.(null);
  }

  // ---- internals ----

  private device(index: number): FakeDeviceState {
    const device = this.devices[index];
    assert(device !== undefined, `no fake device ${index}`);
    return device;
  }

  private byPath(devicePath: string): FakeDeviceState {
    const match = new RegExp(`^${this.devRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/nbd(\\d+)$`).exec(devicePath);
    const device = match === null ? undefined : this.devices[Number(match[1])];
    if (device === undefined) throw fakeNativeError('ENOENT', 'open', 'no such nbd device', 2);
    return device;
  }

  private requireNetlink(step: string): void {
    if (!this.netlink) throw fakeNativeError('ENOENT', 'genl CTRL_CMD_GETFAMILY nbd', `the kernel has no generic-netlink family "nbd" (${step})`, 2);
  }

  private maybeThrow(call: FakeKernelCall): void {
    const error = this.failures.get(call)?.shift();
    if (error !== undefined) throw error;
  }

  private adopt(device: FakeDeviceState, fd: number): KernelSocket {
    const socket = new KernelSocket(new Socket({ fd, readable: true, writable: true, allowHalfOpen: true }),
      (dead) => this.socketDied(device, dead));
    return socket;
  }

  private socketDied(device: FakeDeviceState, dead: KernelSocket): void {
    if (!device.sockets.includes(dead)) return;
    // Requests in flight on a dead socket are resent on a live one (the driver's requeue).
    const orphans = [...dead.inflight.values()];
    dead.inflight.clear();
    device.waiting.push(...orphans);
    if (device.sockets.every((socket) => socket.dead)) {
      if (device.method === 'ioctl') {
        // No dead-connection wait for ioctl devices: NBD_DO_IT returns and the device ends.
        this.teardown(device, fakeNativeError('EIO', 'fake', 'ioctl device lost its server', 5))?.(null);
        return;
      }
      if (device.method === 'netlink' && device.deadTimer === undefined) {
        device.deadTimer = setTimeout(() => {
          device.deadTimer = undefined;
          if (device.sockets.some((socket) => !socket.dead)) return;
          this.teardown(device, fakeNativeError('EIO', 'fake', 'dead-connection timeout', 5));
        }, device.deadConnTimeoutSeconds * 1000);
      }
      return;
    }
    this.pump(device);
  }

  private submit(device: FakeDeviceState, type: number, flags: number, offset: number, length: number, payload: Buffer | undefined): Promise<Buffer> {
    if (device.method === undefined) return Promise.reject(fakeNativeError('EIO', 'fake', `nbd${device.index} is not connected`, 5));
    return new Promise<Buffer>((resolve, reject) => {
      device.waiting.push({ type, flags, offset, length, payload, resolve, reject, cookie: 0n });
      this.pump(device);
    });
  }

  private pump(device: FakeDeviceState): void {
    const live = device.sockets.filter((socket) => !socket.dead);
    if (live.length === 0) return;
    if (device.deadTimer !== undefined) clearTimeout(device.deadTimer);
    device.deadTimer = undefined;
    for (const request of device.waiting.splice(0)) {
      const socket = live[device.nextSocket++ % live.length];
      assert(socket !== undefined, 'a live socket exists');
      socket.send(request, this.nextCookie++);
    }
  }

  /** Ends a device: pending I/O fails with `error`; returns the ioctl thread's exit callback, if any. */
  private teardown(device: FakeDeviceState, error: NativeError): ((error: NativeError | null) => void) | undefined {
    if (device.deadTimer !== undefined) clearTimeout(device.deadTimer);
    const sockets = device.sockets;
    const onExit = device.onExit;
    const pending = [...device.waiting, ...sockets.flatMap((socket) => [...socket.inflight.values()])];
    Object.assign(device, emptyDevice(device.index));
    for (const socket of sockets) {
      socket.inflight.clear();
      socket.disconnect();
    }
    for (const request of pending) request.reject(error);
    return onExit;
  }
}

function emptyDevice(index: number): FakeDeviceState {
  return {
    index, method: undefined, backendId: undefined, sizeBytes: 0, blockBytes: 0, serverFlags: 0, ioTimeoutSeconds: 0,
    deadConnTimeoutSeconds: 0, sockets: [], waiting: [], deadTimer: undefined, onExit: undefined, nextSocket: 0,
  };
}
