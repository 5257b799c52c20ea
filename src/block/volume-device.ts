/**
 * VolumeDevice: a BlockDevice over one volume of the local extent store (src/extent), on one drive
 * or spread over several drives of this node (each extent routed to its drive). Every
 * request is cut at extent boundaries and each piece goes to the segment file holding its
 * extent; pieces of one request run concurrently.
 *
 * Capabilities: writable unless opened read-only; flush, trim, zero, cache and extents always;
 * fast zero where the drive punches holes (zeroing is then a metadata operation); multi-conn,
 * because flush covers every write of the volume whichever connection issued it; FUA native
 * (pwritev2 RWF_DSYNC, one thread-pool hop).
 *
 * `extents` is bounded: one call describes at most `extentsDescriptorsMax` descriptors, spends
 * about `extentsScanSeeksMax` lseek calls (a walk over a piece costs at most two per descriptor
 * it returns) and visits at most `extentsScanExtentsMax` pieces (an extent, or on one drive the
 * rest of a segment), so a query over a huge volume returns a prefix quickly and the caller asks
 * again. On one drive a walk runs through a whole segment, so a 1 TiB volume in its one segment
 * file is described in one call; spread over drives, an extent with no data costs one lseek.
 * Adjacent descriptors of the same kind are merged, across extents too.
 */
import { extentBytesDefault, nbdBlockStatusDescriptorsMax } from '../limits';
import { assert } from '../util/assert';
import type { StoredVolume } from '../extent/stored-volume';
import type { ExtentStore } from '../extent/extent-store';
import { BlockCapabilities, BlockDeviceBase, DirectWrite, Extent, FlushNotice } from './block-device';

export const extentsDescriptorsMax = nbdBlockStatusDescriptorsMax;
export const extentsScanSeeksMax = 4096;
export const extentsScanExtentsMax = 4096;

export interface VolumeDeviceOpenOptions {
  readonly store: ExtentStore;
  readonly volumeId: string;
  readonly sizeBytes: number;
  /** Default: limits.extentBytesDefault. */
  readonly extentBytes?: number;
  readonly readOnly?: boolean;
}

export interface VolumeDeviceOptions {
  readonly readOnly?: boolean;
  /**
   * For a volume spread over several drives of this node: which of `volumes` holds extent
   * `index` (from the map's placement). Omitted: everything is in the first.
   */
  readonly routeExtent?: (index: number) => number;
}

export class VolumeDevice extends BlockDeviceBase {
  private readonly readOnly: boolean;
  /** Invariant: non-empty; all have the same id, size and extent size. */
  private readonly volumes: readonly StoredVolume[];
  private readonly routeExtent: ((index: number) => number) | undefined;

  /**
   * @param volume an open volume of the store, or the same volume open on each drive that holds
   *   some of its extents (routed with options.routeExtent)
   * @param driveCanPunch whether the drives currently punch holes (store.driveFeatures.punchHole)
   */
  constructor(
    volume: StoredVolume | readonly StoredVolume[],
    private readonly driveCanPunch: () => boolean,
    options: VolumeDeviceOptions = {},
  ) {
    super();
    this.volumes = Array.isArray(volume) ? volume : [volume as StoredVolume];
    assert(this.volumes.length > 0, 'a device needs at least one stored volume');
    for (const other of this.volumes) {
      assert(other.extentBytes === this.volume.extentBytes, 'stored volumes of one device share the extent size');
      assert(other.sizeBytes === this.volume.sizeBytes, 'stored volumes of one device share the size');
    }
    this.readOnly = options.readOnly === true;
    this.routeExtent = options.routeExtent;
  }

  /** The first (for a single drive: the only) stored volume. */
  get volume(): StoredVolume {
    const first = this.volumes[0];
    assert(first !== undefined, 'a device has a stored volume');
    return first;
  }

  /** The stored volume holding extent `index`. */
  private at(index: number): StoredVolume {
    if (this.routeExtent === undefined) return this.volume;
    const volume = this.volumes[this.routeExtent(index)];
    assert(volume !== undefined, `extent ${index} routes to no drive of this device`);
    return volume;
  }

  /** Grows the volume on every drive (the map has already recorded the new size). */
  resize(sizeBytes: number): void {
    for (const volume of this.volumes) volume.resize(sizeBytes);
  }

  /** Opens (creating on first use) the volume in the store and wraps it. */
  static async open(options: VolumeDeviceOpenOptions): Promise<VolumeDevice> {
    const volume = await options.store.openVolume({
      volumeId: options.volumeId,
      sizeBytes: options.sizeBytes,
      extentBytes: options.extentBytes ?? extentBytesDefault,
    });
    const store = options.store;
    return new VolumeDevice(volume, () => store.driveFeatures.punchHole,
      options.readOnly === undefined ? {} : { readOnly: options.readOnly });
  }

  /**
   * Opens the volume on each of `stores` (the drives of this node that hold its extents) and
   * routes every extent to its drive.
   */
  static async openPlaced(options: Omit<VolumeDeviceOpenOptions, 'store'> & {
    readonly stores: readonly ExtentStore[];
    readonly routeExtent: (index: number) => number;
  }): Promise<VolumeDevice> {
    assert(options.stores.length > 0, 'at least one drive');
    const layout = { volumeId: options.volumeId, sizeBytes: options.sizeBytes, extentBytes: options.extentBytes ?? extentBytesDefault };
    const volumes = await Promise.all(options.stores.map((store) => store.openVolume(layout)));
    const stores = options.stores;
    return new VolumeDevice(volumes, () => stores.every((store) => store.driveFeatures.punchHole), {
      // One drive: no per-request routing call on the hot path.
      ...(volumes.length > 1 ? { routeExtent: options.routeExtent } : {}),
      ...(options.readOnly === undefined ? {} : { readOnly: options.readOnly }),
    });
  }

  /** Follows the volume: a resize of the volume shows here at once. */
  get sizeBytes(): number {
    return this.volume.sizeBytes;
  }

  get capabilities(): BlockCapabilities {
    return {
      canWrite: !this.readOnly, canFlush: true, canTrim: true, canZero: true,
      canFastZero: this.driveCanPunch(), canMultiConn: true, canCache: true, canExtents: true, fua: 'native',
    };
  }

  protected _read(offset: number, target: Buffer): Promise<void> {
    return this.eachPiece(offset, target.length, (index, within, length, done) =>
      this.at(index).read(index, within, length === target.length ? target : target.subarray(done, done + length)));
  }

  protected _write(offset: number, source: Buffer, fua: boolean): Promise<void> {
    return this.eachPiece(offset, source.length, (index, within, length, done) =>
      this.at(index).write(index, within, length === source.length ? source : source.subarray(done, done + length), fua));
  }

  /** A non-empty range inside one extent whose file is open (see DirectWrite); else undefined. */
  directWrite(offset: number, length: number): DirectWrite | undefined {
    if (!this.capabilities.canWrite || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length)
      || offset < 0 || length <= 0 || offset + length > this.sizeBytes) return undefined;
    const extentBytes = this.volume.extentBytes;
    const index = Math.floor(offset / extentBytes);
    const within = offset - index * extentBytes;
    if (within + length > extentBytes) return undefined;
    return this.at(index).beginDirectWrite(index, within, length);
  }

  protected _flush(notice?: FlushNotice): Promise<void> {
    if (this.volumes.length === 1) return this.volume.flush(notice);
    return Promise.all(this.volumes.map((volume) => volume.flush())).then(() => undefined);
  }

  protected _trim(offset: number, length: number): Promise<void> {
    return this.eachPiece(offset, length, (index, within, pieceLength) => this.at(index).trim(index, within, pieceLength));
  }

  protected _zero(offset: number, length: number, flags: { noHole: boolean; fast: boolean }): Promise<void> {
    return this.eachPiece(offset, length, (index, within, pieceLength) =>
      this.at(index).zero(index, within, pieceLength, flags));
  }

  protected override _cache(offset: number, length: number): Promise<void> {
    return this.eachPiece(offset, length, (index, within, pieceLength) => this.at(index).prefetch(index, within, pieceLength));
  }

  protected async _extents(offset: number, length: number): Promise<Extent[]> {
    const extentBytes = this.volume.extentBytes;
    const end = offset + length;
    const merged: Array<{ length: number; hole: boolean; zero: boolean }> = [];
    let position = offset;
    let seeksSpent = 0;
    let extentsVisited = 0;
    while (position < end && merged.length < extentsDescriptorsMax && extentsVisited < extentsScanExtentsMax) {
      const index = Math.floor(position / extentBytes);
      const within = position - index * extentBytes;
      const volume = this.at(index);
      // On one drive, a piece runs on to the end of the extent's segment: one file, one walk
      // over many extents. Spread over drives, neighbouring extents may live elsewhere.
      const pieceEnd = this.routeExtent === undefined
        ? (volume.segmentOf(index) + 1) * volume.segmentBytes : (index + 1) * extentBytes;
      const pieceLength = Math.min(pieceEnd, end) - position;
      let pieces: Extent[];
      if (volume.hasFileFor(index)) {
        if (seeksSpent >= extentsScanSeeksMax) break;
        pieces = await volume.allocation(index, within, pieceLength, extentsDescriptorsMax - merged.length + 1);
        seeksSpent += 2 * pieces.length;
      } else {
        pieces = [{ length: pieceLength, hole: true, zero: true }];
      }
      extentsVisited++;
      let described = 0;
      for (const piece of pieces) {
        const last = merged[merged.length - 1];
        if (last !== undefined && last.hole === piece.hole && last.zero === piece.zero) last.length += piece.length;
        else if (merged.length < extentsDescriptorsMax) merged.push({ ...piece });
        else break;
        described += piece.length;
      }
      assert(described > 0, 'every visited extent describes at least one byte');
      position += described;
      if (described < pieceLength) break; // the descriptor budget ran out inside this extent
    }
    assert(merged.length > 0, 'the first extent is always described');
    return merged;
  }

  /** Runs `visit` for each extent piece of the range, concurrently; the single-piece case allocates nothing. */
  private eachPiece(offset: number, length: number,
    visit: (index: number, within: number, length: number, done: number) => Promise<void>): Promise<void> {
    const extentBytes = this.volume.extentBytes;
    const index = Math.floor(offset / extentBytes);
    const within = offset - index * extentBytes;
    if (within + length <= extentBytes) return visit(index, within, length, 0);
    const pieces: Array<Promise<void>> = [];
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const pieceIndex = Math.floor(position / extentBytes);
      const pieceWithin = position - pieceIndex * extentBytes;
      const pieceLength = Math.min(extentBytes - pieceWithin, length - done);
      pieces.push(visit(pieceIndex, pieceWithin, pieceLength, done));
      done += pieceLength;
    }
    return Promise.all(pieces).then(() => undefined);
  }
}
