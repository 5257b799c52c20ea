/**
 * The daemon's ControlService: what the control API (and through it the CLI and the CSI driver)
 * can do on this node. Changes go through the MetaLog (proposals with a fresh request id and the
 * proposer's clock); reads come from the applied map. Turns map records into API views.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { statfs } from 'node:fs/promises';
import type {
  ApiEvent, AttachmentView, AttachRequest, BusyPollView, ControlService, CreateProfileRequest, CreateVolumeRequest, DetachRequest, DetachResult, NodeView,
  ProfileView, StatusView, VolumeView,
} from '../api/types';
import type { AttachManager } from '../attach';
import { CairnError } from '../errors/cairn-error';
import type { ExtentStore } from '../extent/extent-store';
import type { MetaLog } from '../meta/meta-log';
import type { LoopPollStats } from '../native/binding';
import { defaultProfile } from '../meta/cluster-map';
import { outcomeOf, profileOf, volumeOf } from '../meta/results';
import type { CommandBody, ProfileRecord, VolumeRecord } from '../meta/types';
import type { Logger } from '../observe/logger';
import type { VolumeRegistry } from './volume-registry';
import { extentVolumeId } from './identity';

export interface ControlServiceDeps {
  readonly meta: MetaLog & { readonly appliedIndex: number };
  readonly registry: VolumeRegistry;
  readonly stores: ReadonlyMap<string, ExtentStore>;
  readonly nodeId: string;
  readonly nodeName: string;
  readonly version: string;
  readonly startedAtMs: number;
  readonly nbdTcp: () => readonly string[];
  readonly nbdSocket: string | null;
  readonly logger: Logger;
  /** Kernel attach (absent when the native addon lacks it: attach then fails with CAIRN_PLATFORM). */
  readonly attachments?: AttachManager;
  /** The event loop's busy-poll counters (undefined before the daemon has set it up). */
  readonly busyPoll?: () => LoopPollStats | undefined;
}

export class DaemonControlService implements ControlService {
  private readonly events = new EventEmitter();

  constructor(private readonly deps: ControlServiceDeps) {
    this.events.setMaxListeners(1000);
  }

  emit(event: ApiEvent): void {
    this.events.emit('event', event);
  }

  subscribe(listener: (event: ApiEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  async status(): Promise<StatusView> {
    const map = this.deps.meta.map;
    const volumes = map.listVolumes();
    const pool = map.poolUsage();
    const allocated = await this.allocatedTotal(volumes);
    const free = await this.freeBytes();
    return {
      version: this.deps.version,
      nodeName: this.deps.nodeName,
      uptimeSeconds: Math.round((Date.now() - this.deps.startedAtMs) / 1000),
      volumes: volumes.length,
      provisionedBytes: volumes.reduce((sum, volume) => sum + volume.sizeBytes * volume.replicas, 0),
      allocatedBytes: allocated,
      capacityBytes: pool.capacityBytes,
      freeBytes: free,
      nbd: {
        tcp: this.deps.nbdTcp(), socket: this.deps.nbdSocket, connections: this.deps.registry.totalConnections(),
        busyPoll: busyPollView(this.deps.busyPoll?.()),
      },
      metadata: { appliedIndex: this.deps.meta.appliedIndex, mode: 'single-node' },
    };
  }

  async listVolumes(): Promise<VolumeView[]> {
    return Promise.all(this.deps.meta.map.listVolumes().map((volume) => this.view(volume)));
  }

  async getVolume(name: string): Promise<VolumeView> {
    return this.view(this.find(name));
  }

  async createVolume(request: CreateVolumeRequest): Promise<{ volume: VolumeView; created: boolean }> {
    const result = await this.propose({
      kind: 'createVolume', name: request.name, sizeBytes: request.sizeBytes, profile: request.profile ?? '',
      readOnly: request.readOnly ?? false, placementSeed: Math.floor(Math.random() * 2 ** 32),
    });
    const volume = await this.view(volumeOf(result));
    if (result.changed) {
      this.deps.logger.info('volume created', { volume: volume.name, sizeBytes: volume.sizeBytes });
      this.emit({ type: 'volume.created', volume });
    }
    return { volume, created: result.changed };
  }

  async resizeVolume(name: string, sizeBytes: number): Promise<VolumeView> {
    const current = this.find(name);
    const result = await this.propose({ kind: 'resizeVolume', volume: current.id, sizeBytes, placementSeed: Math.floor(Math.random() * 2 ** 32) });
    const record = volumeOf(result);
    this.deps.registry.resized(record);
    await this.deps.attachments?.resized(record);
    const volume = await this.view(record);
    if (result.changed) {
      this.deps.logger.info('volume resized', { volume: volume.name, from: current.sizeBytes, to: volume.sizeBytes });
      this.emit({ type: 'volume.resized', volume });
    }
    return volume;
  }

  async deleteVolume(name: string): Promise<void> {
    const volume = this.find(name);
    const device = this.deps.attachments?.deviceOf(volume.id);
    if (device !== undefined) {
      throw new CairnError('CAIRN_VOLUME_IN_USE',
        `volume '${volume.name}' is attached${device === '' ? '' : ` as ${device}`}; detach it first: cairn volume detach ${volume.name}`);
    }
    const connections = this.deps.registry.connections(volume.id);
    if (this.deps.registry.isInUse(volume.id)) {
      throw new CairnError('CAIRN_VOLUME_IN_USE',
        `volume '${volume.name}' has ${connections} open NBD connection(s); disconnect its clients first, then delete it`);
    }
    outcomeOf(await this.propose({ kind: 'deleteVolume', volume: volume.id }));
    this.deps.registry.forget(volume.id);
    // The map no longer names the volume; its extent files go now. A crash here leaves files that
    // the start-up sweep (Daemon.removeOrphanVolumes) deletes.
    await Promise.all([...this.deps.stores.values()].map((store) => store.deleteVolume(extentVolumeId(volume.id))));
    this.deps.logger.info('volume deleted', { volume: volume.name });
    this.emit({ type: 'volume.deleted', name: volume.name });
  }

  async attachVolume(name: string, request: AttachRequest): Promise<{ attachment: AttachmentView; created: boolean }> {
    const result = await this.attachManager().attach(name, request);
    if (result.created) this.emit({ type: 'volume.attached', name, attachment: result.attachment });
    return result;
  }

  async detachVolume(name: string, request: DetachRequest): Promise<DetachResult> {
    const result = await this.attachManager().detach(name, request);
    if (result.detached) this.emit({ type: 'volume.detached', name, device: result.device });
    return result;
  }

  private attachManager(): AttachManager {
    const manager = this.deps.attachments;
    if (manager === undefined) {
      throw new CairnError('CAIRN_PLATFORM', 'this cairnd cannot attach kernel block devices (its native addon lacks kernel attach): run npm install to rebuild it');
    }
    return manager;
  }

  async listProfiles(): Promise<ProfileView[]> {
    const map = this.deps.meta.map;
    const users = new Map<string, number>();
    for (const volume of map.listVolumes()) users.set(volume.profile, (users.get(volume.profile) ?? 0) + 1);
    return map.listProfiles().map((profile) => profileView(profile, users.get(profile.name) ?? 0));
  }

  /**
   * Profiles made here take what the API cannot set from the built-in default profile's policy:
   * no IOPS or bandwidth limit (the data path does not enforce QoS yet), the same placement and
   * the same filesystem.
   */
  async createProfile(request: CreateProfileRequest): Promise<{ profile: ProfileView; created: boolean }> {
    const result = await this.propose({
      kind: 'createProfile', name: request.name, replicas: request.replicas ?? defaultProfile.replicas,
      extentBytes: request.extentBytes ?? defaultProfile.extentBytes, iopsMax: 0, bandwidthBytesPerSecondMax: 0,
      placement: defaultProfile.placement, filesystem: defaultProfile.filesystem, description: request.description ?? '',
    });
    const record = profileOf(result);
    const profile = profileView(record, this.volumesUsing(record.name));
    if (result.changed) {
      this.deps.logger.info('profile created', { profile: profile.name, replicas: profile.replicas, extentBytes: profile.extentBytes });
      this.emit({ type: 'profile.created', profile });
    }
    return { profile, created: result.changed };
  }

  async deleteProfile(name: string): Promise<void> {
    // The map refuses 'default', unknown names and profiles still in use, with messages naming the fix.
    profileOf(await this.propose({ kind: 'deleteProfile', name }));
    this.deps.logger.info('profile deleted', { profile: name });
    this.emit({ type: 'profile.deleted', name });
  }

  async listNodes(): Promise<NodeView[]> {
    const map = this.deps.meta.map;
    return Promise.all(map.listNodes().map(async (node) => ({
      id: node.id, name: node.name, state: node.state,
      drives: map.listDrives(node.id).map((drive) => ({
        id: drive.id, path: drive.path, capacityBytes: drive.capacityBytes, usedBytes: map.driveUsage(drive.id)?.provisionedBytes ?? 0,
      })),
    })));
  }

  private volumesUsing(profileName: string): number {
    return this.deps.meta.map.listVolumes().filter((volume) => volume.profile === profileName).length;
  }

  private find(name: string): VolumeRecord {
    const volume = this.deps.meta.map.getVolume(name);
    if (!volume) {
      throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `no volume named '${name}'; list volumes with: cairn volume list`);
    }
    return volume;
  }

  private async propose(body: CommandBody) {
    const result = await this.deps.meta.propose({ timestampMs: Date.now(), requestId: randomUUID(), body });
    outcomeOf(result);
    return result;
  }

  private async view(volume: VolumeRecord): Promise<VolumeView> {
    const uris = [
      ...this.deps.nbdTcp().map((address) => `nbd://${address}/${volume.name}`),
      ...(this.deps.nbdSocket ? [`nbd+unix:///${volume.name}?socket=${this.deps.nbdSocket}`] : []),
    ];
    return {
      id: volume.id, name: volume.name, sizeBytes: volume.sizeBytes, extentBytes: volume.extentBytes, replicas: volume.replicas,
      profile: volume.profile, state: volume.state, readOnly: volume.readOnly, createdAt: new Date(volume.createdAtMs).toISOString(),
      allocatedBytes: await this.allocated(volume), nbdUris: uris, connections: this.deps.registry.connections(volume.id),
      attachments: this.deps.attachments?.viewsOf(volume.id) ?? [],
    };
  }

  private async allocated(volume: VolumeRecord): Promise<number> {
    let total = 0;
    for (const store of this.deps.stores.values()) total += await store.allocatedBytes(extentVolumeId(volume.id));
    return total;
  }

  private async allocatedTotal(volumes: readonly VolumeRecord[]): Promise<number> {
    let total = 0;
    for (const volume of volumes) total += await this.allocated(volume);
    return total;
  }

  private async freeBytes(): Promise<number> {
    let free = 0;
    for (const store of this.deps.stores.values()) {
      const stats = await statfs(store.drivePath);
      free += stats.bavail * stats.bsize;
    }
    return free;
  }
}

function profileView(profile: ProfileRecord, volumes: number): ProfileView {
  return { name: profile.name, replicas: profile.replicas, extentBytes: profile.extentBytes, description: profile.description, volumes };
}

function busyPollView(stats: LoopPollStats | undefined): BusyPollView | null {
  if (stats === undefined) return null;
  return {
    maxMicros: Math.round(stats.maxSpinNs / 1000), windowMicros: Math.round(stats.windowNs / 1000),
    spins: stats.spins, hits: stats.hits, timeouts: stats.timeouts, contended: stats.contended, spinSeconds: stats.spinNs / 1e9,
  };
}
