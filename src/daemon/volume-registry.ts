/**
 * VolumeRegistry: the volumes this node serves. It opens one VolumeDevice per volume, shared by
 * every NBD connection to it (so a FLUSH on one connection covers writes acknowledged on all of
 * them: CAN_MULTI_CONN), counts the connections, and closes a device when the last one goes.
 * It is the NBD server's ExportResolver. A kernel attachment also holds an anchor: a handle that
 * keeps the device open between its connections but is not itself a connection.
 *
 * Invariants: at most one open device per volume id; a device is closed only with no handle
 * outstanding (connections and anchors); `isInUse` is true from `open` until the handle's
 * release; `connections` counts NBD connections only, never anchors.
 */
import type { BlockDevice } from '../block/block-device';
import { VolumeDevice } from '../block/volume-device';
import { CairnError } from '../errors/cairn-error';
import type { ExtentStore } from '../extent/extent-store';
import type { MetaLog } from '../meta/meta-log';
import type { VolumeRecord } from '../meta/types';
import type { ExportResolver, NbdExportHandle } from '../nbd/export-resolver';
import type { Logger } from '../observe/logger';
import { assert } from '../util/assert';
import { formatBytes } from '../util/units';
import { extentVolumeId } from './identity';

interface OpenVolume {
  readonly volumeId: string;
  readonly device: VolumeDevice;
  /** Every outstanding handle: connections and anchors. */
  handles: number;
  /** Of `handles`, the anchors (see `anchor`). */
  anchors: number;
  /** The route table the device reads (replaced in place when the volume grows). */
  placement: { stores: ExtentStore[]; route: Uint16Array };
}

export class VolumeRegistry implements ExportResolver {
  private readonly open_ = new Map<string, OpenVolume>();
  private readonly opening = new Map<string, Promise<OpenVolume>>();
  private closed = false;

  constructor(
    private readonly meta: MetaLog,
    /** The drives of this node holding the volume's extents, and which of them holds each extent. */
    private readonly placementOf: (volume: VolumeRecord) => { stores: ExtentStore[]; route: Uint16Array },
    private readonly logger: Logger,
    /** Export served for the empty name ('' = none). */
    private readonly defaultExport: () => string,
  ) {}

  list(): Array<{ name: string; description?: string }> {
    return this.meta.map.listVolumes()
      .filter((volume) => volume.state === 'ready')
      .map((volume) => ({ name: volume.name, description: `cairn volume ${volume.name} (${formatBytes(volume.sizeBytes)})` }));
  }

  /** A handle for one NBD connection to the volume (the export resolver's call). */
  open(name: string): Promise<NbdExportHandle | undefined> {
    return this.handleFor(name, false);
  }

  /**
   * A handle that keeps the volume's device open without being a connection: what a kernel
   * attachment holds while its sockets come and go. Not counted by `connections`.
   */
  anchor(name: string): Promise<NbdExportHandle | undefined> {
    return this.handleFor(name, true);
  }

  private async handleFor(name: string, anchor: boolean): Promise<NbdExportHandle | undefined> {
    if (this.closed) throw new CairnError('CAIRN_SHUTTING_DOWN', 'cairnd is shutting down');
    const lookup = name === '' ? this.defaultExport() : name;
    if (lookup === '') return undefined;
    const volume = this.meta.map.getVolume(lookup);
    if (!volume || volume.state !== 'ready' || volume.id === lookup) return undefined;
    const entry = await this.acquire(volume, anchor);
    let released = false;
    return {
      name: volume.name,
      description: `cairn volume ${volume.name}`,
      device: entry.device,
      readOnly: volume.readOnly,
      release: () => {
        assert(!released, 'an export handle is released once');
        released = true;
        if (anchor) entry.anchors -= 1;
        this.releaseEntry(entry);
      },
    };
  }

  /** NBD connections open to the volume on this node. */
  connections(volumeId: string): number {
    const entry = this.open_.get(volumeId);
    return entry === undefined ? 0 : entry.handles - entry.anchors;
  }

  totalConnections(): number {
    let total = 0;
    for (const entry of this.open_.values()) total += entry.handles - entry.anchors;
    return total;
  }

  isInUse(volumeId: string): boolean {
    return (this.open_.get(volumeId)?.handles ?? 0) > 0 || this.opening.has(volumeId);
  }

  /** The open device of a volume, if any connection holds it (resize updates it in place). */
  device(volumeId: string): BlockDevice | undefined {
    return this.open_.get(volumeId)?.device;
  }

  /** Applies a new size to an open device; devices opened later read the size from the map. */
  resized(volume: VolumeRecord): void {
    const entry = this.open_.get(volume.id);
    if (!entry) return;
    const placement = this.placementOf(volume);
    const sameDrives = placement.stores.length === entry.placement.stores.length &&
      placement.stores.every((store, i) => store === entry.placement.stores[i]);
    if (!sameDrives) {
      // New extents landed on a drive the open device does not have: reopen on next use.
      if (entry.handles === 0) this.open_.delete(volume.id);
      else this.logger.warn('grown volume uses a new drive; it applies after its clients reconnect', { volumeId: volume.id });
      return;
    }
    entry.placement.route = placement.route;
    entry.device.resize(volume.sizeBytes);
  }

  /** Flushes every open device: what SIGTERM does after the NBD server drained. */
  async flushAll(): Promise<void> {
    await Promise.all([...this.open_.values()].map((entry) => entry.device.flush()));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.opening.values()]);
    await this.flushAll();
  }

  /** Takes a handle (an anchor when `anchor`) on the volume's open device, opening it if needed. */
  private async acquire(volume: VolumeRecord, anchor: boolean): Promise<OpenVolume> {
    const existing = this.open_.get(volume.id);
    if (existing) {
      existing.handles += 1;
      if (anchor) existing.anchors += 1;
      return existing;
    }
    let pending = this.opening.get(volume.id);
    if (!pending) {
      const placement = this.placementOf(volume);
      pending = VolumeDevice.openPlaced({
        stores: placement.stores, volumeId: extentVolumeId(volume.id), sizeBytes: volume.sizeBytes, extentBytes: volume.extentBytes,
        // `placement` is the entry's own object: resized() swaps its route in place.
        routeExtent: (index) => placement.route[index] ?? 0,
      })
        .then((device) => {
          const entry: OpenVolume = { volumeId: volume.id, device, handles: 0, anchors: 0, placement };
          this.open_.set(volume.id, entry);
          this.logger.debug('volume opened', { volume: volume.name });
          return entry;
        })
        .finally(() => this.opening.delete(volume.id));
      this.opening.set(volume.id, pending);
    }
    const entry = await pending;
    entry.handles += 1;
    if (anchor) entry.anchors += 1;
    return entry;
  }

  private releaseEntry(entry: OpenVolume): void {
    assert(entry.handles > 0, 'release without a handle');
    entry.handles -= 1;
    // The device stays open (its fds are in the store's bounded cache); flush makes the last
    // connection's acknowledged writes durable promptly instead of waiting for the page cache.
    if (entry.handles === 0) {
      entry.device.flush().catch((error: unknown) => this.logger.error('flush after last disconnect failed', { volumeId: entry.volumeId, error }));
    }
  }

  /** Forgets a deleted volume's device (call only when not in use). */
  forget(volumeId: string): void {
    assert(!this.isInUse(volumeId), 'forget a volume in use');
    this.open_.delete(volumeId);
  }
}
