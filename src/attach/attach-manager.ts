/**
 * AttachManager: attaches volumes to this node's kernel as /dev/nbdX, the way rbd-nbd does — no
 * nbd-client, no handshake: for each connection a socketpair, one end served in-process by the
 * NBD server's transmission path (simple replies, each on the socket its request came on), the
 * other handed to the kernel by netlink CONNECT (or the ioctl fallback).
 *
 * Owns: the live attachments of this node, their records (AttachmentStore), reattachment after a
 * daemon restart, replacement of sockets the kernel lost, detach, and growing attached devices.
 *
 * Lifecycle of one attachment: attaching → attached ⇄ reconnecting → detaching → (gone); any
 * state may end in failed (the kernel dropped the device), which detach or a new attach clears.
 * The manager: new → running (start) → stopped (stop). Stopping leaves netlink devices attached:
 * the kernel queues their I/O for the dead-connection timeout until the next cairnd hands them
 * fresh sockets (RECONFIGURE), so a restart is a pause, not an I/O error. Ioctl devices cannot
 * survive their process; stop flushes and detaches them, and start attaches them again.
 *
 * Invariants:
 * - At most one attachment per volume on this node; operations on one volume never overlap
 *   (a second one fails with CAIRN_OPERATION_PENDING).
 * - An attachment holds an "anchor" export handle from attach to detach, so the volume counts as
 *   in use (and cannot be deleted) even while its sockets are being replaced.
 * - A record is saved before the kernel is asked to connect and removed only after the device is
 *   gone; a failed attach leaves no record, no device, no socket and no open handle behind.
 * - Re-connection attempts are bounded (`reconnectAttemptsMax`, back-off `reconnectDelayMs`).
 * - Kernel calls that may wait for I/O run off the event loop (the binding's promises), because
 *   that I/O is served by this very event loop.
 */
import { randomBytes } from 'node:crypto';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { AttachmentView, AttachRequest, DetachRequest, DetachResult } from '../api/types';
import { CairnError } from '../errors/cairn-error';
import type { KernelBinding, NativeError } from '../native/binding';
import type { NbdConnection, NbdExportHandle, NbdLogger } from '../nbd';
import { serveTransmission } from '../nbd';
import type { Logger } from '../observe/logger';
import { assert, AssertionError } from '../util/assert';
import {
  attachErrorOf, backendIdFor, connectAttemptsMax, detachCloseWaitMs, ioctlStartWaitMs, isBusyError, isMissingNetlinkFamily,
  isPermissionError, noNbdDriverMessage, planAttach, reconnectAttemptsMax, reconnectDelayMs, reconnectStableMs, satisfies, stopDrainMs,
} from './attach-policy';
import { AttachMethod, AttachmentRecord, AttachmentStore, attachmentsMax } from './attachment-store';
import { kernelExportHandle } from './kernel-export';
import type { NbdSysfs } from './nbd-sysfs';

/** A volume as the manager needs it. */
export interface AttachableVolume {
  readonly id: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
}

/** Where volumes come from: the metadata (ready volumes only) and the export resolver. */
export interface AttachVolumeSource {
  byName(name: string): AttachableVolume | undefined;
  byId(id: string): AttachableVolume | undefined;
  /** An export handle for one connection to the volume; the caller releases it exactly once. */
  open(name: string): Promise<NbdExportHandle | undefined>;
  /** A handle that keeps the volume open between connections (not counted as one); released once. */
  anchor(name: string): Promise<NbdExportHandle | undefined>;
}

export interface AttachManagerOptions {
  readonly kernel: KernelBinding;
  readonly sysfs: NbdSysfs;
  readonly store: AttachmentStore;
  readonly volumes: AttachVolumeSource;
  readonly logger: Logger;
  readonly cpuCount: number;
  readonly nowMs?: () => number;
  /** Re-connection bounds (tests shorten them). */
  readonly reconnect?: { readonly attemptsMax: number; readonly delayMs: (attempt: number) => number };
}

export type AttachmentState = 'attaching' | 'attached' | 'reconnecting' | 'detaching' | 'failed' | 'stopped';


interface LiveAttachment {
  record: AttachmentRecord;
  state: AttachmentState;
  anchor: NbdExportHandle | undefined;
  readonly connections: Set<NbdConnection>;
  message: string | undefined;
  reconnectAttempts: number;
  reconnectTimer: NodeJS.Timeout | undefined;
  lastHandoverMs: number;
  /** Ioctl devices: resolves with NBD_DO_IT's result when the device thread ends. */
  ioctlExit: Promise<NativeError | null> | undefined;
  /** A replacement of lost sockets in progress (detach and stop wait for it). */
  replenishing: Promise<void> | undefined;
}

type ManagerStatus = 'new' | 'running' | 'stopping' | 'stopped';

export class AttachManager {
  private status: ManagerStatus = 'new';
  private readonly live = new Map<string, LiveAttachment>();
  /** Volumes with an attach or detach in progress (reserved before the first await). */
  private readonly busy = new Set<string>();
  private readonly kernel: KernelBinding;
  private readonly sysfs: NbdSysfs;
  private readonly store: AttachmentStore;
  private readonly volumes: AttachVolumeSource;
  private readonly logger: Logger;
  private readonly nbdLogger: NbdLogger;
  private readonly cpuCount: number;
  private readonly nowMs: () => number;
  private readonly reconnectAttemptsMax: number;
  private readonly reconnectDelayMs: (attempt: number) => number;
  private nextConnectionId = 1;

  constructor(options: AttachManagerOptions) {
    this.kernel = options.kernel;
    this.sysfs = options.sysfs;
    this.store = options.store;
    this.volumes = options.volumes;
    this.logger = options.logger;
    this.nbdLogger = options.logger.child('nbd');
    this.cpuCount = Math.max(1, options.cpuCount);
    this.nowMs = options.nowMs ?? Date.now;
    this.reconnectAttemptsMax = options.reconnect?.attemptsMax ?? reconnectAttemptsMax;
    this.reconnectDelayMs = options.reconnect?.delayMs ?? reconnectDelayMs;
  }

  /** Loads the records and reattaches every device; failures stay visible as 'failed'. */
  async start(): Promise<void> {
    assert(this.status === 'new', `start from ${this.status}`);
    this.status = 'running';
    const { records, problem } = this.store.load(this.nowMs());
    if (problem !== undefined) this.logger.error('attachment records unreadable; starting without them', { problem });
    for (const record of records) {
      const live = this.track(record, record.state === 'detaching' ? 'detaching' : 'attaching');
      try {
        await this.restore(live);
      } catch (error) {
        if (error instanceof AssertionError) throw error;
        this.fail(live, `reattach failed: ${(error as Error).message}`);
      }
    }
    if (records.length > 0) await this.save();
  }

  async attach(name: string, request: AttachRequest): Promise<{ attachment: AttachmentView; created: boolean }> {
    this.requireRunning();
    const volume = this.volumes.byName(name);
    if (volume === undefined) {
      throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `no volume named '${name}'; list volumes with: cairn volume list`);
    }
    if (this.busy.has(volume.id)) {
      throw new CairnError('CAIRN_OPERATION_PENDING', `volume '${name}' is being attached or detached; try again shortly`);
    }
    this.busy.add(volume.id);
    try {
      return await this.attachReserved(volume, request);
    } finally {
      this.busy.delete(volume.id);
    }
  }

  private async attachReserved(volume: AttachableVolume, request: AttachRequest): Promise<{ attachment: AttachmentView; created: boolean }> {
    const name = volume.name;
    const existing = this.live.get(volume.id);
    if (existing !== undefined) {
      if (existing.state === 'attaching' || existing.state === 'detaching') {
        throw new CairnError('CAIRN_OPERATION_PENDING', `volume '${name}' is being ${existing.state === 'attaching' ? 'attached' : 'detached'}; try again shortly`);
      }
      if (existing.state !== 'failed') {
        if (satisfies(existing.record, request)) return { attachment: this.view(existing), created: false };
        throw new CairnError('CAIRN_VOLUME_IN_USE',
          `volume '${name}' is already attached as ${this.devicePathOf(existing)} (${existing.record.method}, ${existing.record.connections} connection(s)${existing.record.readOnly ? ', read-only' : ''}); detach it first`);
      }
      await this.discard(existing);
    }
    if (this.live.size >= attachmentsMax) {
      throw new CairnError('CAIRN_NO_SPACE', `this node already has ${attachmentsMax} attachments, the most it keeps`);
    }
    // Nothing has changed yet: a kernel without NBD fails here.
    const method = await this.chooseMethod(request.method ?? 'auto');
    const anchor = await this.volumes.anchor(volume.name);
    if (anchor === undefined) throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `volume '${name}' is not ready`);
    let live: LiveAttachment | undefined;
    try {
      const plan = planAttach(request, { method, cpuCount: this.cpuCount, capabilities: anchor.device.capabilities, volumeReadOnly: volume.readOnly || anchor.readOnly });
      live = this.track({
        volumeId: volume.id, volumeName: volume.name, backendId: backendIdFor(volume.id, randomBytes(8).toString('hex')),
        method: plan.method, index: null, connections: plan.connections, readOnly: plan.readOnly,
        ioTimeoutSeconds: plan.ioTimeoutSeconds, deadConnTimeoutSeconds: plan.deadConnTimeoutSeconds, blockBytes: plan.blockBytes,
        serverFlags: plan.serverFlags, sizeBytes: volume.sizeBytes, attachedAtMs: this.nowMs(), state: 'attaching',
      }, 'attaching');
      live.anchor = anchor;
      await this.save();
      await this.connectFresh(live, volume);
      live.state = 'attached';
      this.setRecord(live, { state: 'attached' });
      await this.save();
      this.logger.info('volume attached', { volume: volume.name, device: this.devicePathOf(live), method: live.record.method, connections: live.record.connections });
      return { attachment: this.view(live), created: true };
    } catch (error) {
      if (live === undefined) {
        anchor.release();
      } else {
        await this.abandon(live);
        await this.save().catch((saveError: unknown) => this.logger.error('cannot save attachment records', { error: saveError }));
      }
      if (error instanceof AssertionError) throw error;
      throw attachErrorOf(error, `attach volume '${name}'`);
    }
  }

  async detach(name: string, request: DetachRequest): Promise<DetachResult> {
    this.requireRunning();
    const live = [...this.live.values()].find((candidate) => candidate.record.volumeName === name);
    if (live === undefined) {
      if (this.volumes.byName(name) === undefined) throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `no volume named '${name}'`);
      return { detached: false, device: '' };
    }
    const volumeId = live.record.volumeId;
    if (this.busy.has(volumeId)) {
      throw new CairnError('CAIRN_OPERATION_PENDING', `volume '${name}' is being attached or detached; try again shortly`);
    }
    this.busy.add(volumeId);
    try {
      return await this.detachReserved(live, request);
    } finally {
      this.busy.delete(volumeId);
    }
  }

  private async detachReserved(live: LiveAttachment, request: DetachRequest): Promise<DetachResult> {
    const name = live.record.volumeName;
    if (live.state === 'attaching' || live.state === 'detaching') {
      throw new CairnError('CAIRN_OPERATION_PENDING', `volume '${name}' is being ${live.state === 'attaching' ? 'attached' : 'detached'}; try again shortly`);
    }
    const device = this.devicePathOf(live);
    const previous = live.state;
    live.state = 'detaching';
    await this.cancelReconnect(live);
    try {
      if (previous !== 'failed' && live.record.index !== null) await this.flushDevice(live, request.force === true);
    } catch (error) {
      live.state = previous;
      const missing = live.record.method === 'netlink' && live.connections.size < live.record.connections;
      if (previous === 'reconnecting' || (previous === 'attached' && missing)) {
        live.state = 'reconnecting';
        this.scheduleReconnect(live);
      }
      throw error;
    }
    this.setRecord(live, { state: 'detaching' });
    await this.save();
    if (previous !== 'failed') await this.disconnectKernel(live);
    await this.closeConnections(live, detachCloseWaitMs);
    await this.releaseAnchor(live, true);
    this.live.delete(live.record.volumeId);
    await this.save();
    this.logger.info('volume detached', { volume: name, device });
    return { detached: true, device };
  }

  /** Grows the attached device of a resized volume; a refusal is kept as the attachment's message. */
  async resized(volume: AttachableVolume): Promise<void> {
    const live = this.live.get(volume.id);
    if (live === undefined || (live.state !== 'attached' && live.state !== 'reconnecting')) return;
    if (volume.sizeBytes <= live.record.sizeBytes || live.record.index === null) return;
    const device = this.devicePathOf(live);
    try {
      if (live.record.method === 'netlink') {
        await this.kernel.nbdNetlinkReconfigure({ index: live.record.index, backendId: live.record.backendId, socketFds: [], sizeBytes: volume.sizeBytes });
      } else {
        await this.kernel.nbdIoctlSetSize(device, volume.sizeBytes);
      }
    } catch (error) {
      live.message = `the kernel did not grow ${device} to ${volume.sizeBytes} bytes (${(error as Error).message}); detach and attach again to use the new size`;
      this.logger.warn('attached device not grown', { volume: volume.name, device, error });
      return;
    }
    const shown = this.sysfs.sizeBytesOf(live.record.index);
    if (shown !== volume.sizeBytes) {
      live.message = `the kernel accepted the new size but ${device} shows ${shown} bytes; detach and attach again to use ${volume.sizeBytes} bytes`;
      this.logger.warn('attached device size differs after resize', { volume: volume.name, device, shown, wanted: volume.sizeBytes });
      return;
    }
    live.message = undefined;
    this.setRecord(live, { sizeBytes: volume.sizeBytes });
    await this.save();
    this.logger.info('attached device grown', { volume: volume.name, device, sizeBytes: volume.sizeBytes });
  }

  /** Views of the volume's attachment on this node (zero or one). */
  viewsOf(volumeId: string): AttachmentView[] {
    const live = this.live.get(volumeId);
    return live === undefined ? [] : [this.view(live)];
  }

  /** The device a volume is attached as, if any. */
  deviceOf(volumeId: string): string | undefined {
    const live = this.live.get(volumeId);
    return live === undefined ? undefined : this.devicePathOf(live);
  }

  get size(): number {
    return this.live.size;
  }

  /**
   * Stops serving: netlink devices keep their kernel side (see the module doc), their sockets
   * close once in-flight requests are answered (or at `drainMs`, without answers: the kernel
   * retries those after its I/O timeout); ioctl devices are flushed and detached.
   */
  async stop(drainMs: number = stopDrainMs): Promise<void> {
    if (this.status !== 'running') {
      this.status = 'stopped';
      return;
    }
    this.status = 'stopping';
    await Promise.all([...this.live.values()].map(async (live) => {
      await this.cancelReconnect(live);
      if (live.record.method === 'ioctl' && (live.state === 'attached' || live.state === 'reconnecting')) {
        live.state = 'stopped';
        // Not exclusive: a mounted device is flushed all the same (its filesystem then sees I/O errors).
        await this.flushDevice(live, true);
        await this.disconnectKernel(live);
      }
      live.state = 'stopped';
      await this.closeConnections(live, drainMs);
      await this.releaseAnchor(live, true);
    }));
    await this.save().catch((error: unknown) => this.logger.error('cannot save attachment records', { error }));
    this.status = 'stopped';
  }

  // ---- start-up ----

  private async restore(live: LiveAttachment): Promise<void> {
    const record = live.record;
    const volume = this.volumes.byId(record.volumeId);
    const found = record.method === 'netlink' ? this.findByBackend(record.backendId) : undefined;
    if (volume === undefined) {
      this.logger.error('attached volume no longer exists; disconnecting its device', { volume: record.volumeName, index: found });
      if (found !== undefined) await this.kernel.nbdNetlinkDisconnect(found).catch(() => undefined);
      this.live.delete(record.volumeId);
      return;
    }
    if (record.state === 'detaching') {
      if (found !== undefined) await this.kernel.nbdNetlinkDisconnect(found);
      this.live.delete(record.volumeId);
      this.logger.info('finished an interrupted detach', { volume: record.volumeName });
      return;
    }
    if (record.state === 'attaching' && found === undefined) {
      this.live.delete(record.volumeId);
      this.logger.warn('dropped the record of an attach that never completed', { volume: record.volumeName });
      return;
    }
    const anchor = await this.volumes.anchor(volume.name);
    if (anchor === undefined) throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `volume '${volume.name}' is not ready`);
    live.anchor = anchor;
    if (found !== undefined) {
      this.setRecord(live, { index: found, state: 'attached' });
      await this.reconfigure(live);
      if (live.connections.size === record.connections) {
        live.state = 'attached';
      } else {
        // Some handed-over sockets closed already (the kernel had not yet seen the old ones die).
        live.state = 'reconnecting';
        this.scheduleReconnect(live);
      }
      this.logger.info('reattached device', { volume: volume.name, device: this.devicePathOf(live), connections: live.connections.size });
      return;
    }
    // The kernel no longer has the device (a reboot, an ioctl device, or the dead-connection
    // timeout ran out): the record is the wanted state, so attach again.
    const lost = record.index === null ? '' : this.sysfs.devicePath(record.index);
    const method = record.method === 'netlink' ? 'netlink' : await this.chooseMethod('ioctl');
    // The old index stays in the record until the kernel names the new one, so a failure here
    // leaves a record that the next start tries again.
    this.setRecord(live, { method, backendId: backendIdFor(volume.id, randomBytes(8).toString('hex')), sizeBytes: volume.sizeBytes });
    await this.connectFresh(live, volume);
    live.state = 'attached';
    this.setRecord(live, { state: 'attached' });
    live.message = `${lost === '' ? 'the device' : lost} was gone after the restart; attached again as ${this.devicePathOf(live)}`;
    this.logger.warn('device was gone; attached again', { volume: volume.name, previous: lost, device: this.devicePathOf(live) });
  }

  private findByBackend(backendId: string): number | undefined {
    return this.sysfs.deviceIndices().find((index) => this.sysfs.backendOf(index) === backendId);
  }

  // ---- kernel method ----

  private async chooseMethod(requested: 'auto' | AttachMethod): Promise<AttachMethod> {
    let netlink = true;
    try {
      await this.kernel.nbdNetlinkStatus();
    } catch (error) {
      if (isPermissionError(error)) throw attachErrorOf(error, 'attach a kernel block device');
      if (!isMissingNetlinkFamily(error)) throw attachErrorOf(error, 'query the kernel nbd driver');
      netlink = false;
    }
    const ioctl = this.sysfs.deviceIndices().length > 0;
    if (!netlink && !ioctl) throw new CairnError('CAIRN_PLATFORM', noNbdDriverMessage);
    if (requested === 'netlink' && !netlink) {
      throw new CairnError('CAIRN_PLATFORM', 'this kernel\'s nbd driver has no netlink interface; attach with --method ioctl (or auto)');
    }
    if (requested === 'ioctl' && !ioctl) throw new CairnError('CAIRN_PLATFORM', `${noNbdDriverMessage} (no /dev/nbdX devices for the ioctl path)`);
    if (requested !== 'auto') return requested;
    return netlink ? 'netlink' : 'ioctl';
  }

  // ---- connecting ----

  /** CONNECT (or the ioctl setup) with fresh sockets; sets the record's index. */
  private async connectFresh(live: LiveAttachment, volume: AttachableVolume): Promise<void> {
    const record = live.record;
    if (record.method === 'netlink') {
      for (let attempt = 1; ; attempt++) {
        const kernelFds = await this.openChannels(live, record.connections);
        try {
          const index = await this.kernel.nbdNetlinkConnect({
            socketFds: kernelFds, sizeBytes: volume.sizeBytes, blockBytes: record.blockBytes, serverFlags: record.serverFlags,
            clientFlags: 0, ioTimeoutSeconds: record.ioTimeoutSeconds, deadConnTimeoutSeconds: record.deadConnTimeoutSeconds,
            backendId: record.backendId,
          });
          this.setRecord(live, { index, sizeBytes: volume.sizeBytes });
          live.lastHandoverMs = this.nowMs();
          return;
        } catch (error) {
          await this.dropConnections(live, 'connect failed');
          if (!isBusyError(error) || attempt >= connectAttemptsMax) throw error;
          await delay(200 * attempt);
        }
      }
    }
    const candidates = this.sysfs.deviceIndices().filter((index) => !this.sysfs.isRunning(index));
    if (candidates.length === 0) throw new CairnError('CAIRN_UNAVAILABLE', 'every /dev/nbdX device is in use; load the driver with more devices (modprobe nbd nbds_max=N)', { retryable: true });
    let lastError: unknown;
    for (const index of candidates.slice(0, connectAttemptsMax)) {
      const kernelFds = await this.openChannels(live, record.connections);
      try {
        await this.connectIoctl(live, index, kernelFds, volume.sizeBytes);
        this.setRecord(live, { index, sizeBytes: volume.sizeBytes });
        live.lastHandoverMs = this.nowMs();
        return;
      } catch (error) {
        await this.dropConnections(live, 'connect failed');
        lastError = error;
        if (!isBusyError(error)) throw error;
      }
    }
    throw lastError;
  }

  private async connectIoctl(live: LiveAttachment, index: number, kernelFds: number[], sizeBytes: number): Promise<void> {
    const record = live.record;
    let exited: (error: NativeError | null) => void = () => {};
    const exit = new Promise<NativeError | null>((resolve) => { exited = resolve; });
    const devicePath = this.sysfs.devicePath(index);
    await this.kernel.nbdIoctlConnect({
      devicePath, socketFds: kernelFds, sizeBytes, blockBytes: record.blockBytes, serverFlags: record.serverFlags,
      ioTimeoutSeconds: record.ioTimeoutSeconds,
    }, (error) => exited(error));
    // NBD_DO_IT either starts the device (sysfs shows its pid) or fails at once.
    const deadline = this.nowMs() + ioctlStartWaitMs;
    let early: NativeError | null | undefined;
    void exit.then((error) => { early = error; });
    while (!this.sysfs.isRunning(index)) {
      if (early !== undefined) throw early ?? new CairnError('CAIRN_IO', `${devicePath} stopped while starting`);
      if (this.nowMs() > deadline) throw new CairnError('CAIRN_IO', `${devicePath} did not start within ${ioctlStartWaitMs} ms`);
      await delay(20);
    }
    live.ioctlExit = exit;
    void exit.then((error) => this.ioctlExited(live, index, error));
  }

  private ioctlExited(live: LiveAttachment, index: number, error: NativeError | null): void {
    if (live.record.index !== index || live.state === 'detaching' || live.state === 'stopped') return;
    if (this.live.get(live.record.volumeId) !== live) return;
    this.fail(live, `the kernel stopped ${this.sysfs.devicePath(index)}${error === null ? '' : `: ${error.message}`}`);
  }

  /** Fresh sockets for the connections the attachment is missing, handed over by RECONFIGURE. */
  private async reconfigure(live: LiveAttachment): Promise<void> {
    const record = live.record;
    assert(record.index !== null, 'reconfigure a connected device');
    const missing = record.connections - live.connections.size;
    if (missing <= 0) return;
    const kernelFds = await this.openChannels(live, missing);
    try {
      await this.kernel.nbdNetlinkReconfigure({ index: record.index, backendId: record.backendId, socketFds: kernelFds });
      live.lastHandoverMs = this.nowMs();
    } catch (error) {
      await this.dropConnections(live, 'reconfigure failed');
      throw error;
    }
  }

  /**
   * Opens `count` socketpairs, serves one end of each with a fresh export handle and returns the
   * other ends for the kernel. On failure nothing stays open.
   */
  private async openChannels(live: LiveAttachment, count: number): Promise<number[]> {
    const kernelFds: number[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const handle = await this.volumes.open(live.record.volumeName);
        if (handle === undefined) throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `volume '${live.record.volumeName}' is not ready`);
        let pair: [number, number];
        try {
          pair = this.kernel.nbdSocketPair();
        } catch (error) {
          handle.release();
          throw error;
        }
        const [serverFd, kernelFd] = pair;
        kernelFds.push(kernelFd);
        this.serve(live, serverFd, handle);
      }
      return kernelFds;
    } catch (error) {
      for (const fd of kernelFds) closeSync(fd);
      await this.dropConnections(live, 'opening sockets failed');
      throw error;
    }
  }

  private serve(live: LiveAttachment, serverFd: number, handle: NbdExportHandle): void {
    const socket = new Socket({ fd: serverFd, readable: true, writable: true, allowHalfOpen: true });
    const connection = serveTransmission(socket, kernelExportHandle(handle, live.record.readOnly), {
      transmissionFlags: live.record.serverFlags, logger: this.nbdLogger, id: this.nextConnectionId++,
    });
    live.connections.add(connection);
    void connection.closed.then(() => this.connectionClosed(live, connection));
  }

  private connectionClosed(live: LiveAttachment, connection: NbdConnection): void {
    if (!live.connections.delete(connection)) return;
    if (this.live.get(live.record.volumeId) !== live || this.status !== 'running') return;
    if (live.record.method !== 'netlink' || (live.state !== 'attached' && live.state !== 'reconnecting')) return;
    // The kernel dropped a socket (a request timed out, or it refused a socket we handed over):
    // give it a fresh one.
    if (this.nowMs() - live.lastHandoverMs < reconnectStableMs) live.reconnectAttempts += 1;
    else live.reconnectAttempts = 0;
    this.logger.warn('kernel socket closed; replacing it', { volume: live.record.volumeName, device: this.devicePathOf(live), attempt: live.reconnectAttempts });
    live.state = 'reconnecting';
    this.scheduleReconnect(live);
  }

  private scheduleReconnect(live: LiveAttachment): void {
    if (live.reconnectTimer !== undefined) return;
    if (live.reconnectAttempts >= this.reconnectAttemptsMax) {
      this.fail(live, `the kernel kept refusing fresh sockets (${this.reconnectAttemptsMax} attempts)`);
      return;
    }
    live.reconnectTimer = setTimeout(() => {
      live.reconnectTimer = undefined;
      live.replenishing = this.replenish(live).finally(() => { live.replenishing = undefined; });
    }, this.reconnectDelayMs(live.reconnectAttempts));
  }

  private async replenish(live: LiveAttachment): Promise<void> {
    if (live.state !== 'reconnecting' || this.status !== 'running' || this.live.get(live.record.volumeId) !== live) return;
    const index = live.record.index;
    assert(index !== null, 'a reconnecting attachment has a device');
    if (this.sysfs.backendOf(index) !== live.record.backendId) {
      this.fail(live, `the kernel tore ${this.devicePathOf(live)} down (disconnected outside cairn, or the dead-connection timeout ran out)`);
      return;
    }
    try {
      await this.reconfigure(live);
    } catch (error) {
      live.reconnectAttempts += 1;
      this.logger.warn('handing the kernel fresh sockets failed', { volume: live.record.volumeName, error });
    }
    // The attachment may have failed meanwhile: then the sockets just handed over must go too.
    if ((live.state as AttachmentState) === 'failed') await this.dropConnections(live, 'attachment failed');
    if (live.state !== 'reconnecting') return;
    if (live.connections.size === live.record.connections) live.state = 'attached';
    else this.scheduleReconnect(live);
  }

  /** Stops re-connecting: no new attempt starts, and one in progress has finished on return. */
  private async cancelReconnect(live: LiveAttachment): Promise<void> {
    if (live.reconnectTimer !== undefined) clearTimeout(live.reconnectTimer);
    live.reconnectTimer = undefined;
    await live.replenishing;
  }

  // ---- detaching ----

  /** sync the kernel's page cache of the device and send FLUSH: detach never loses a write. */
  private async flushDevice(live: LiveAttachment, force: boolean): Promise<void> {
    const device = this.devicePathOf(live);
    try {
      await this.kernel.nbdFlushDevice(device, !force);
    } catch (error) {
      if (isBusyError(error) && !force) {
        throw new CairnError('CAIRN_VOLUME_IN_USE', `${device} is mounted or held open exclusively; unmount it first (or detach with --force, which fails its users' I/O)`, { cause: error });
      }
      if (!force) throw attachErrorOf(error, `flush ${device}`);
      this.logger.warn('flush before a forced detach failed', { device, error });
    }
  }

  private async disconnectKernel(live: LiveAttachment): Promise<void> {
    const index = live.record.index;
    if (index === null) return;
    try {
      if (live.record.method === 'netlink') {
        await this.kernel.nbdNetlinkDisconnect(index);
      } else {
        await this.kernel.nbdIoctlDisconnect(this.sysfs.devicePath(index));
        if (live.ioctlExit !== undefined) await withTimeout(live.ioctlExit, detachCloseWaitMs);
      }
    } catch (error) {
      // The device may be gone already (the kernel dropped it); the sockets close either way.
      this.logger.warn('disconnecting the kernel device failed', { device: this.devicePathOf(live), error });
    }
  }

  /** Lets the connections finish (they drain once the kernel disconnects or at `waitMs`), then drops them. */
  private async closeConnections(live: LiveAttachment, waitMs: number): Promise<void> {
    const connections = [...live.connections];
    for (const connection of connections) connection.shutdown(waitMs * 10);
    const closed = Promise.all(connections.map((connection) => connection.closed));
    if (!await withTimeout(closed.then(() => true), waitMs)) {
      for (const connection of connections) connection.destroy('attachment closing');
      await closed;
    }
    live.connections.clear();
  }

  /** Drops the connections now and resolves once each has released its export handle. */
  private async dropConnections(live: LiveAttachment, reason: string): Promise<void> {
    const connections = [...live.connections];
    live.connections.clear();
    for (const connection of connections) connection.destroy(reason);
    await Promise.all(connections.map((connection) => connection.closed));
  }

  private async releaseAnchor(live: LiveAttachment, flush: boolean): Promise<void> {
    const anchor = live.anchor;
    live.anchor = undefined;
    if (anchor === undefined) return;
    try {
      if (flush) await anchor.device.flush();
    } catch (error) {
      this.logger.error('flushing a detached volume failed', { volume: live.record.volumeName, error });
    } finally {
      anchor.release();
    }
  }

  /** Undoes a failed attach: sockets, kernel device (if it got one), handle, record. */
  private async abandon(live: LiveAttachment): Promise<void> {
    if (live.record.index !== null) {
      live.state = 'detaching';
      await this.disconnectKernel(live);
    }
    await this.dropConnections(live, 'attach failed');
    await this.releaseAnchor(live, false);
    this.live.delete(live.record.volumeId);
  }

  /** Clears a failed attachment before a new attach of the same volume. */
  private async discard(live: LiveAttachment): Promise<void> {
    live.state = 'detaching';
    await this.cancelReconnect(live);
    await this.disconnectKernel(live);
    await this.dropConnections(live, 'replaced');
    await this.releaseAnchor(live, true);
    this.live.delete(live.record.volumeId);
    await this.save();
  }

  private fail(live: LiveAttachment, message: string): void {
    if (live.reconnectTimer !== undefined) clearTimeout(live.reconnectTimer);
    live.reconnectTimer = undefined;
    live.state = 'failed';
    live.message = message;
    this.logger.error('attachment failed', { volume: live.record.volumeName, device: this.devicePathOf(live), message });
    void this.dropConnections(live, 'attachment failed').then(() => this.releaseAnchor(live, true));
  }

  // ---- records and views ----

  private track(record: AttachmentRecord, state: AttachmentState): LiveAttachment {
    assert(!this.live.has(record.volumeId), 'one attachment per volume');
    const live: LiveAttachment = {
      record, state, anchor: undefined, connections: new Set(), message: undefined, reconnectAttempts: 0,
      reconnectTimer: undefined, lastHandoverMs: 0, ioctlExit: undefined, replenishing: undefined,
    };
    this.live.set(record.volumeId, live);
    return live;
  }

  private setRecord(live: LiveAttachment, changes: Partial<AttachmentRecord>): void {
    live.record = { ...live.record, ...changes };
  }

  private save(): Promise<void> {
    return this.store.save([...this.live.values()].map((live) => live.record));
  }

  private devicePathOf(live: LiveAttachment): string {
    return live.record.index === null ? '' : this.sysfs.devicePath(live.record.index);
  }

  private view(live: LiveAttachment): AttachmentView {
    const record = live.record;
    return {
      device: this.devicePathOf(live), method: record.method, state: live.state, connections: record.connections,
      readOnly: record.readOnly, ioTimeoutSeconds: record.ioTimeoutSeconds, deadConnTimeoutSeconds: record.deadConnTimeoutSeconds,
      sizeBytes: record.sizeBytes, attachedAt: new Date(record.attachedAtMs).toISOString(),
      ...(live.message === undefined ? {} : { message: live.message }),
    };
  }

  private requireRunning(): void {
    if (this.status !== 'running') throw new CairnError('CAIRN_SHUTTING_DOWN', 'cairnd is shutting down');
  }
}

/** True if `promise` settled within `ms`, false otherwise (the promise keeps running). */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
