/**
 * Daemon: the composition root. Builds every component from the config, starts them in order and
 * stops them in reverse:
 *
 *   start: data dir → metadata (LevelDB; its LOCK refuses a second daemon) → node + drive
 *          registration → extent stores → orphan sweep → demo volume → NBD listeners →
 *          the event loop's busy poll (config nbd.busyPollMicros) → kernel reattach (fresh
 *          sockets for the devices a previous cairnd attached) → API → systemd READY=1
 *          (+ watchdog keep-alives)
 *   stop:  systemd STOPPING=1 → API → kernel attachments (their devices stay, waiting for the
 *          next cairnd) → NBD server (drain in-flight, then close) → busy poll off → flush every
 *          open volume → extent stores → metadata log → LevelDB
 *
 * Only this module wires real I/O implementations together.
 */
import { mkdirSync, rmSync, statfsSync, writeFileSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ApiServer } from '../api/server';
import { AttachManager, AttachmentStore, AttachVolumeSource, LinuxNbdSysfs } from '../attach';
import type { DaemonConfig } from '../config/config';
import { SingleNodeLog } from '../control/single-node-log';
import { CairnError } from '../errors/cairn-error';
import { ExtentStore } from '../extent/extent-store';
import type { CommandBody, VolumeRecord } from '../meta/types';
import { outcomeOf } from '../meta/results';
import { NbdServer } from '../nbd/server';
import type { Logger } from '../observe/logger';
import { LevelKvStore } from '../store/level-kv-store';
import { KernelBinding, loadKernelBinding, loadLoopPollBinding, loadSocketBinding, LoopPollBinding } from '../native/binding';
import { assert } from '../util/assert';
import { DaemonControlService } from './control-service';
import { driveIdPath, extentVolumeId, loadOrCreateId, nodeIdPath } from './identity';
import { SystemdNotifier } from './systemd-notify';
import { VolumeRegistry } from './volume-registry';

type DaemonStatus = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export const version: string = (() => {
  try {
    return (JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

export class Daemon {
  private status: DaemonStatus = 'new';
  private kv: LevelKvStore | undefined;
  private meta: SingleNodeLog | undefined;
  private readonly stores = new Map<string, ExtentStore>();
  private registry: VolumeRegistry | undefined;
  private nbd: NbdServer | undefined;
  private api: ApiServer | undefined;
  private service: DaemonControlService | undefined;
  private attach: AttachManager | undefined;
  private busyPoll: LoopPollBinding | undefined;
  private notifier: SystemdNotifier | undefined;
  private readonly tcpAddresses: string[] = [];
  private pidFile: string | undefined;
  private nodeId = '';

  constructor(private readonly config: DaemonConfig, private readonly logger: Logger) {}

  nbdTcpAddresses(): readonly string[] {
    return this.tcpAddresses;
  }

  async start(): Promise<void> {
    assert(this.status === 'new', `start from status ${this.status}`);
    this.status = 'starting';
    const config = this.config;
    const kernel = this.loadKernel();
    this.notifier = SystemdNotifier.fromEnvironment(process.env, () => {
      if (!kernel) throw new Error('no kernel binding');
      return kernel;
    }, this.logger.child('systemd'));
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });

    this.kv = await LevelKvStore.open(join(config.dataDir, 'meta'));
    this.pidFile = join(config.dataDir, 'cairnd.pid');
    writeFileSync(this.pidFile, `${process.pid}\n`);
    this.meta = await SingleNodeLog.open(this.kv);
    const meta = this.meta;

    this.nodeId = loadOrCreateId(nodeIdPath(config.dataDir), 'node').id;
    if (!meta.map.getNode(this.nodeId)) {
      await this.propose({ kind: 'registerNode', nodeId: this.nodeId, name: config.nodeName, addresses: [], labels: [], failureDomain: '' });
    }
    for (const drive of config.drives) {
      mkdirSync(drive, { recursive: true, mode: 0o700 });
      const driveId = loadOrCreateId(driveIdPath(drive), 'drive').id;
      if (!meta.map.getDrive(driveId)) {
        const stats = statfsSync(drive);
        await this.propose({ kind: 'addDrive', driveId, nodeId: this.nodeId, path: drive, capacityBytes: stats.blocks * stats.bsize });
      }
      this.stores.set(driveId, await ExtentStore.open({
        drivePath: drive, onWarning: (message) => this.logger.warn(message),
        ...(config.segmentBytes === null ? {} : { segmentBytes: config.segmentBytes }),
      }));
    }
    await this.removeOrphanVolumes();

    this.registry = new VolumeRegistry(meta, (volume) => this.placementOf(volume), this.logger.child('volume'), () => this.defaultExport());
    this.nbd = new NbdServer({ resolver: this.registry, logger: this.logger.child('nbd'), socketCalls: loadSocketBinding() });
    if (kernel) {
      this.attach = new AttachManager({
        kernel, sysfs: new LinuxNbdSysfs(), store: new AttachmentStore(config.dataDir), volumes: this.attachVolumes(this.registry),
        logger: this.logger.child('attach'), cpuCount: availableParallelism(),
      });
    }
    this.service = new DaemonControlService({
      meta, registry: this.registry, stores: this.stores, nodeId: this.nodeId, nodeName: config.nodeName, version,
      startedAtMs: Date.now(), nbdTcp: () => this.tcpAddresses, nbdSocket: config.nbd.socket, logger: this.logger.child('api'),
      ...(this.attach ? { attachments: this.attach } : {}),
      busyPoll: () => this.busyPoll?.loopPollStats(),
    });
    if (config.demoVolume) {
      const existing = meta.map.getVolume(config.demoVolume.name);
      if (!existing) await this.service.createVolume({ name: config.demoVolume.name, sizeBytes: config.demoVolume.sizeBytes });
    }

    for (const listen of config.nbd.listen) {
      const address = await this.nbd.listenTcp(listen.host, listen.port);
      this.tcpAddresses.push(address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`);
    }
    if (config.nbd.socket !== null) {
      mkdirSync(join(config.nbd.socket, '..'), { recursive: true });
      rmSync(config.nbd.socket, { force: true });
      await this.nbd.listenUnix(config.nbd.socket);
    }
    this.busyPoll = loadLoopPollBinding();
    this.busyPoll.loopPollSet(config.nbd.busyPollMicros * 1000);
    // The kernel queues the I/O of devices a previous cairnd attached until they get sockets.
    await this.attach?.start();
    this.api = new ApiServer(this.service, { token: config.api.token, logger: this.logger.child('api') });
    await this.api.listen(config.api.endpoint);
    this.status = 'running';
    this.logger.info('cairnd started', {
      node: config.nodeName, nodeId: this.nodeId, dataDir: config.dataDir, nbd: [...this.tcpAddresses, ...(config.nbd.socket ? [config.nbd.socket] : [])],
      api: config.api.endpoint.kind === 'unix' ? config.api.endpoint.path : `${config.api.endpoint.host}:${config.api.endpoint.port}`,
      volumes: meta.map.listVolumes().length, attached: this.attach?.size ?? 0,
    });
    this.notifier.ready(`serving ${meta.map.listVolumes().length} volume(s), ${this.attach?.size ?? 0} attached`);
  }

  /** Stops everything that started, in reverse order; safe to call after a failed start. */
  async stop(): Promise<void> {
    if (this.status === 'stopped' || this.status === 'stopping') return;
    this.status = 'stopping';
    this.notifier?.stopping();
    this.service?.emit({ type: 'daemon.stopping' });
    const errors: unknown[] = [];
    const attempt = async (what: string, step: () => Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (error) {
        this.logger.error(`stop: ${what} failed`, { error });
        errors.push(error);
      }
    };
    if (this.api) await attempt('api', () => this.api!.close());
    if (this.attach) await attempt('kernel attachments', () => this.attach!.stop());
    if (this.nbd) await attempt('nbd', () => this.nbd!.close());
    this.busyPoll?.loopPollSet(0);
    if (this.config.nbd.socket !== null && this.nbd) rmSync(this.config.nbd.socket, { force: true });
    if (this.registry) await attempt('flush volumes', () => this.registry!.close());
    for (const store of this.stores.values()) await attempt('extent store', () => store.close());
    if (this.meta) await attempt('metadata log', () => this.meta!.close());
    if (this.kv) await attempt('database', () => this.kv!.close());
    if (this.pidFile && this.kv) rmSync(this.pidFile, { force: true });
    this.status = 'stopped';
    if (errors.length > 0) throw errors[0];
  }

  /**
   * The drives of this node that hold the volume's extents, and for each extent the position of
   * its drive among them (from the map's placement: one node, so every replica is local).
   */
  private placementOf(volume: VolumeRecord): { stores: ExtentStore[]; route: Uint16Array } {
    const extents = this.meta!.map.listExtents(volume.id);
    const stores: ExtentStore[] = [];
    const positions = new Map<string, number>();
    const route = new Uint16Array(extents.length);
    for (const extent of extents) {
      const driveId = extent.replicas.find((replica) => replica.nodeId === this.nodeId)?.driveId;
      const store = driveId === undefined ? undefined : this.stores.get(driveId);
      if (driveId === undefined || !store) {
        throw new CairnError('CAIRN_UNAVAILABLE', `extent ${extent.index} of volume '${volume.name}' has no replica on this node's configured drives; is a drive missing from the config?`);
      }
      let position = positions.get(driveId);
      if (position === undefined) {
        position = stores.length;
        positions.set(driveId, position);
        stores.push(store);
      }
      route[extent.index] = position;
    }
    if (stores.length === 0) {
      const first = this.stores.values().next().value;
      assert(first !== undefined, 'a node has at least one drive');
      stores.push(first);
    }
    return { stores, route };
  }

  /** The native kernel calls; without them (an addon too old) attach is off, nothing else is. */
  private loadKernel(): KernelBinding | undefined {
    let kernel: KernelBinding;
    try {
      kernel = loadKernelBinding();
    } catch (error) {
      this.logger.warn('kernel attach and systemd notify are unavailable', { error });
      return undefined;
    }
    try {
      // Memory reclaim must never wait on I/O this process serves (threads started later inherit it).
      kernel.setIoFlusher();
    } catch (error) {
      this.logger.debug('PR_SET_IO_FLUSHER not set', { error });
    }
    return kernel;
  }

  private attachVolumes(registry: VolumeRegistry): AttachVolumeSource {
    const ready = (volume: VolumeRecord | undefined) => (volume?.state === 'ready'
      ? { id: volume.id, name: volume.name, sizeBytes: volume.sizeBytes, readOnly: volume.readOnly } : undefined);
    return {
      byName: (name) => {
        const volume = this.meta!.map.getVolume(name);
        return volume?.name === name ? ready(volume) : undefined;
      },
      byId: (id) => {
        const volume = this.meta!.map.getVolume(id);
        return volume?.id === id ? ready(volume) : undefined;
      },
      open: (name) => registry.open(name),
      anchor: (name) => registry.anchor(name),
    };
  }

  private defaultExport(): string {
    const demo = this.config.demoVolume?.name;
    if (demo !== undefined && this.meta!.map.getVolume(demo)) return demo;
    const volumes = this.meta!.map.listVolumes();
    return volumes.length === 1 && volumes[0] ? volumes[0].name : '';
  }

  /** Deletes extent directories of volumes the map no longer has (a crash during delete). */
  private async removeOrphanVolumes(): Promise<void> {
    const known = new Set(this.meta!.map.listVolumes().map((volume) => extentVolumeId(volume.id)));
    for (const store of this.stores.values()) {
      for (const volumeId of await store.listVolumes()) {
        if (known.has(volumeId)) continue;
        this.logger.warn('removing extents of a deleted volume', { volumeId, drive: store.drivePath });
        await store.deleteVolume(volumeId);
      }
    }
  }

  private async propose(body: CommandBody): Promise<void> {
    outcomeOf(await this.meta!.propose({ timestampMs: Date.now(), requestId: randomUUID(), body }));
  }
}
