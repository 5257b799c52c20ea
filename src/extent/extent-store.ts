/**
 * ExtentStore: the local extent store on one drive (a directory). The extents a volume keeps on
 * this drive live in sparse segment files under `<drive>/volumes/<volumeId>/`, each covering
 * segmentBytes of the volume (extent-layout.ts), created on the first write to their span; a
 * missing file reads as zeroes. See stored-volume.ts for the per-volume I/O and durability
 * contract.
 *
 * Segment size: a volume first stored on this drive gets max(its extent size, the store's
 * segmentBytes), recorded in its layout.json. The store's default is 1 TiB, so a volume of up to
 * 1 TiB is one file and its FLUSH one fdatasync (per drive), as for a disk image; it is halved
 * at open until the drive's filesystem accepts a file that long (ext2/ext3 with 1 KiB blocks stop
 * at 16 GiB; a filesystem without sparse files ends at one file per extent). Volumes recorded
 * without a segment size are the one-file-per-extent layout and keep it.
 *
 * Owns: the drive's directory tree, the probe of what its filesystem supports, the bounded LRU
 * cache of open segment descriptors shared by all volumes of the drive, and the open volumes.
 *
 * Invariants:
 * - At most `openFilesMax` descriptors are cached, except while every cached one has I/O in
 *   flight (then the overshoot is bounded by the I/O in flight). An fd with I/O in flight is
 *   never closed; a dirty fd is fdatasync'ed before it is closed (so no write error is lost).
 * - Every directory this store creates is fsync'ed into its parent before the call that made it
 *   returns; extent files are made durable in their directory by flush / fua (stored-volume.ts).
 * - Each volume directory records its extent and segment sizes (layout.json); opening it with
 *   another extent size is refused, so bytes are never read from the wrong place.
 */
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CairnError } from '../errors/cairn-error';
import { extentOpenFilesMax } from '../limits';
import { assert } from '../util/assert';
import { isPowerOfTwo, MiB, TiB } from '../util/units';
import { fallocateModes, FallocateModes, loadNativeBinding, NativeBinding } from '../native/binding';
import { extentError, isUnsupportedError } from './extent-errors';
import {
  checkFileLayout, checkLayout, checkVolumeId, FileLayout, layoutFileName, parseSegmentFileName,
  segmentBytesMax, VolumeLayout, volumesDirectoryName,
} from './extent-layout';
import { OpenExtentList } from './open-extent-list';
import { allocatedBytesOf, listDataFiles, listSegmentFiles, StoredVolume } from './stored-volume';
import type { DriveFeatures, OpenSegment, SyncFunction, VolumeServices } from './extent-types';

export type { DriveFeatures, SyncFunction, SyncTarget } from './extent-types';
export { StoredVolume } from './stored-volume';

const openFile = promisify(fs.open);
const closeFile = promisify(fs.close);
const makeDirectory = promisify(fs.mkdir);
const statPath = promisify(fs.stat);
const readTextFile = promisify(fs.readFile);
const writeTextFile = promisify(fs.writeFile);
const renamePath = promisify(fs.rename);
const removePath = promisify(fs.rm);
const readDirectory = promisify(fs.readdir);
const fsyncFile = promisify(fs.fsync);
const truncateFile = promisify(fs.ftruncate);

/** Default largest request served on the main thread (see stored-volume.ts, "Engines"). */
export const inlineIoBytesMaxDefault = 128 * 1024;
const zeroBufferBytes = 1 * MiB;
const probeFileName = '.cairn-feature-probe';
/** Segment size of volumes first stored on a drive, unless its filesystem caps files lower. */
export const segmentBytesDefault = 1 * TiB;
/** The smallest segment the probe falls back to; below it, files hold one extent each. */
const segmentBytesProbeMin = 1 * MiB;

export interface ExtentStoreOptions {
  /** The drive: an existing directory. */
  readonly drivePath: string;
  /** Cached open segment descriptors (default limits.extentOpenFilesMax). */
  readonly openFilesMax?: number;
  /**
   * Segment size for volumes first stored on this drive: a power of two in [1 MiB, 2^50]; a
   * volume uses max(this, its extent size). Default segmentBytesDefault, or the largest file the
   * filesystem takes. A value the filesystem cannot hold is refused (CAIRN_CONFIG).
   */
  readonly segmentBytes?: number;
  /** Largest request tried on the main thread; larger ones always use the thread pool. */
  readonly inlineIoBytesMax?: number;
  /** The addon (default: the real one); tests pass a spy or a double. */
  readonly native?: NativeBinding;
  /** How files are made durable (default: native.syncMany); tests observe it. */
  readonly sync?: SyncFunction;
  /** Called once per degraded feature (default: process.emitWarning). */
  readonly onWarning?: (message: string) => void;
}

export class ExtentStore {
  readonly drivePath: string;
  readonly volumesPath: string;
  readonly openFilesMax: number;
  /** Segment size for volumes first stored here (each uses at least its extent size). */
  readonly segmentBytes: number;
  private readonly features: DriveFeatures;
  private readonly services: VolumeServices;
  private readonly openList = new OpenExtentList<OpenSegment>();
  private readonly volumes = new Map<string, StoredVolume>();
  private readonly volumesOpening = new Map<string, Promise<StoredVolume>>();
  private closed = false;
  private readonly warn: (message: string) => void;

  private constructor(options: ExtentStoreOptions, native: NativeBinding, features: DriveFeatures, segmentBytes: number) {
    this.drivePath = options.drivePath;
    this.volumesPath = path.join(options.drivePath, volumesDirectoryName);
    this.openFilesMax = options.openFilesMax ?? extentOpenFilesMax;
    this.segmentBytes = segmentBytes;
    this.features = features;
    const modes: FallocateModes = fallocateModes(native.constants);
    const sync: SyncFunction = options.sync ?? parallelSync(native);
    const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, { code: 'CAIRN_EXTENT_STORE' }));
    this.warn = warn;
    let zeroes: Buffer | undefined;
    this.services = {
      native, modes, sync, features,
      inlineIoBytesMax: options.inlineIoBytesMax ?? inlineIoBytesMaxDefault,
      acquire: (volume, segment, create) => this.acquire(volume, segment, create),
      lookup: (volume, segment) => {
        const entry = volume.openSegments.get(segment);
        if (entry !== undefined) this.openList.touch(entry);
        return entry;
      },
      closeEntry: (entry) => this.closeEntry(entry),
      disableFeature: (feature, message) => {
        if (!features[feature]) return;
        features[feature] = false;
        warn(message);
      },
      zeroes: () => (zeroes ??= Buffer.alloc(zeroBufferBytes)),
    };
  }

  /**
   * Opens the store on an existing drive directory: creates `volumes/` if needed and probes
   * what the filesystem supports (punch hole, zero range, non-blocking reads and writes, how
   * long a file may be).
   */
  static async open(options: ExtentStoreOptions): Promise<ExtentStore> {
    const openFilesMax = options.openFilesMax ?? extentOpenFilesMax;
    assert(Number.isSafeInteger(openFilesMax) && openFilesMax >= 1, 'openFilesMax is a positive integer');
    const inline = options.inlineIoBytesMax ?? inlineIoBytesMaxDefault;
    assert(Number.isSafeInteger(inline) && inline >= 0, 'inlineIoBytesMax is a non-negative integer');
    const asked = options.segmentBytes;
    if (asked !== undefined && (!isPowerOfTwo(asked) || asked < segmentBytesProbeMin || asked > segmentBytesMax)) {
      throw new CairnError('CAIRN_CONFIG', `segment size ${String(asked)} must be a power of two from 1 MiB to 2^50 bytes`);
    }
    let stats: fs.Stats;
    try {
      stats = await statPath(options.drivePath);
    } catch (error) {
      throw new CairnError('CAIRN_CONFIG', `drive ${options.drivePath} is not usable: ${(error as Error).message}`, { cause: error });
    }
    if (!stats.isDirectory()) throw new CairnError('CAIRN_CONFIG', `drive ${options.drivePath} is not a directory`);
    const native = options.native ?? loadNativeBinding();
    await ensureDirectory(path.join(options.drivePath, volumesDirectoryName));
    const { features, segmentBytes } = await probeDrive(native, options.drivePath, asked);
    const store = new ExtentStore(options, native, features, segmentBytes);
    if (!features.punchHole) {
      store.warn(`the filesystem of ${options.drivePath} does not support punching holes: TRIM and WRITE_ZEROES write zeroes and free no space; put the drive on ext4, xfs or btrfs`);
    }
    if (!features.zeroRange) {
      store.warn(`the filesystem of ${options.drivePath} does not support FALLOC_FL_ZERO_RANGE: WRITE_ZEROES with NO_HOLE writes zeroes`);
    }
    return store;
  }

  /** What the drive's filesystem supports (a feature turns off if it later fails with EOPNOTSUPP). */
  get driveFeatures(): Readonly<DriveFeatures> {
    return this.features;
  }

  /** Descriptors currently cached. */
  get openFileCount(): number {
    return this.openList.size;
  }

  /**
   * Opens a volume's extents on this drive, creating its directory on first use. Opening an
   * open volume returns the same handle (growing it when `sizeBytes` is larger). A different
   * extent size than the one recorded is refused (CAIRN_VOLUME_EXISTS).
   */
  async openVolume(layout: VolumeLayout): Promise<StoredVolume> {
    checkLayout(layout);
    this.checkOpen();
    for (;;) {
      const open = this.volumes.get(layout.volumeId);
      if (open !== undefined) {
        if (open.extentBytes !== layout.extentBytes) throw mismatch(layout, open.extentBytes);
        if (layout.sizeBytes > open.sizeBytes) open.resize(layout.sizeBytes);
        return open;
      }
      const pending = this.volumesOpening.get(layout.volumeId);
      if (pending === undefined) break;
      await pending.catch(() => undefined);
    }
    const opening = this.loadVolume(layout);
    this.volumesOpening.set(layout.volumeId, opening);
    try {
      const volume = await opening;
      this.volumes.set(layout.volumeId, volume);
      return volume;
    } finally {
      this.volumesOpening.delete(layout.volumeId);
    }
  }

  /** The open handle of a volume, if any. */
  volume(volumeId: string): StoredVolume | undefined {
    return this.volumes.get(volumeId);
  }

  /** Ids of every volume with a directory on this drive. */
  async listVolumes(): Promise<string[]> {
    try {
      const names = await readDirectory(this.volumesPath);
      return names.filter((name) => !name.startsWith('.')).sort();
    } catch (error) {
      throw extentError(error, 'list', this.volumesPath);
    }
  }

  /** Bytes allocated on the drive for a volume (open or not): sum of st_blocks × 512 of its segment files. */
  async allocatedBytes(volumeId: string): Promise<number> {
    checkVolumeId(volumeId);
    const open = this.volumes.get(volumeId);
    if (open !== undefined) return open.allocatedBytes();
    const directory = path.join(this.volumesPath, volumeId);
    if (!await pathExists(directory)) return 0;
    // Every data file of either layout counts, without reading the record: a volume whose
    // record is damaged still reports its space (and never fails a listing of all volumes).
    const names = await listDataFiles(directory);
    return allocatedBytesOf(directory, names);
  }

  /** Flushes and closes one volume's handle; its files stay. */
  async closeVolume(volumeId: string): Promise<void> {
    const volume = this.volumes.get(volumeId);
    if (volume === undefined) return;
    try {
      await volume.shutdown({ flush: true });
    } finally {
      this.volumes.delete(volumeId);
    }
  }

  /**
   * Deletes every extent of a volume on this drive (and its directory), durably. Calls in
   * progress on an open handle finish first; later calls fail with CAIRN_CLOSED. Idempotent.
   */
  async deleteVolume(volumeId: string): Promise<void> {
    checkVolumeId(volumeId);
    this.checkOpen();
    await this.volumesOpening.get(volumeId)?.catch(() => undefined);
    const volume = this.volumes.get(volumeId);
    if (volume !== undefined) {
      try {
        await volume.shutdown({ flush: false });
      } finally {
        this.volumes.delete(volumeId);
      }
    }
    const directory = path.join(this.volumesPath, volumeId);
    try {
      await removePath(directory, { recursive: true, force: true });
    } catch (error) {
      throw extentError(error, 'delete', directory);
    }
    await syncDirectoryPath(this.volumesPath);
  }

  /** Flushes every open volume. */
  async flush(): Promise<void> {
    this.checkOpen();
    await Promise.all([...this.volumes.values()].map((volume) => volume.flush()));
  }

  /** Flushes and closes every volume; the store is unusable afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const volumes = [...this.volumes.values()];
    this.volumes.clear();
    const results = await Promise.allSettled(volumes.map((volume) => volume.shutdown({ flush: true })));
    for (const result of results) if (result.status === 'rejected') throw result.reason;
    assert(this.openList.size === 0, 'every descriptor is closed with its volume');
  }

  // --- descriptor cache -----------------------------------------------------------------------

  private async acquire(volume: StoredVolume, segment: number, create: boolean): Promise<OpenSegment | undefined> {
    for (;;) {
      const cached = volume.openSegments.get(segment);
      if (cached !== undefined) {
        this.openList.touch(cached);
        cached.inflight++;
        return cached;
      }
      if (!create && !volume.hasSegmentFile(segment)) return undefined;
      const pending = volume.opening.get(segment);
      if (pending === undefined) break;
      await pending.catch(() => undefined); // then look again: it may have failed or not created
    }
    const opening = this.openInto(volume, segment, create);
    volume.opening.set(segment, opening);
    try {
      return await opening;
    } finally {
      volume.opening.delete(segment);
    }
  }

  private async openInto(volume: StoredVolume, segment: number, create: boolean): Promise<OpenSegment | undefined> {
    await this.makeRoom();
    const entry = await volume.openFile(segment, create);
    if (entry === undefined) return undefined;
    if (!volume.isOpen) {
      // The volume started closing while its file opened; do not leak the descriptor.
      await closeFile(entry.fd).catch(() => undefined);
      throw new CairnError('CAIRN_CLOSED', `volume ${volume.volumeId} is closing`);
    }
    volume.openSegments.set(segment, entry);
    this.openList.append(entry);
    entry.inflight++; // the caller's pin, taken before any other task can pick it for eviction
    return entry;
  }

  /**
   * Closes least recently used idle descriptors until one more fits. A dirty one is written back
   * (fdatasync) first and closed only if nothing touched it meanwhile.
   */
  private async makeRoom(): Promise<void> {
    while (this.openList.size >= this.openFilesMax) {
      const victim = this.pickVictim();
      if (victim === undefined) return; // everything is busy: overshoot by the I/O in flight
      if (!victim.dirty) {
        await this.closeEntry(victim);
        continue;
      }
      victim.evicting = true;
      try {
        await victim.volume.writeback(victim);
      } finally {
        victim.evicting = false;
      }
      if (!victim.closed && victim.inflight === 0 && !victim.dirty) await this.closeEntry(victim);
    }
  }

  private pickVictim(): OpenSegment | undefined {
    for (const entry of this.openList.fromOldest()) {
      if (entry.inflight === 0 && !entry.evicting && !(entry.dirty && entry.writebackFailed)) return entry;
    }
    return undefined;
  }

  private async closeEntry(entry: OpenSegment): Promise<void> {
    if (entry.closed) return;
    assert(entry.inflight === 0, 'never close a descriptor with I/O in flight');
    entry.closed = true;
    this.openList.remove(entry);
    const removed = entry.volume.openSegments.delete(entry.segment);
    assert(removed, 'a cached entry is in its volume map');
    try {
      await closeFile(entry.fd);
    } catch (error) {
      // The descriptor is gone either way; data errors surface through fdatasync, never close.
      this.warn(`closing ${entry.path} failed: ${(error as Error).message}`);
    }
  }

  // --- volumes ------------------------------------------------------------------------------------

  private async loadVolume(layout: VolumeLayout): Promise<StoredVolume> {
    const directory = path.join(this.volumesPath, layout.volumeId);
    await ensureDirectory(directory);
    const fileLayout = await ensureLayoutRecord(directory, layout, Math.max(this.segmentBytes, layout.extentBytes));
    const existing = await listSegmentFiles(directory, (name) => parseSegmentFileName(fileLayout, name));
    let directoryFd: number;
    try {
      directoryFd = await openFile(directory, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch (error) {
      throw extentError(error, 'open', directory);
    }
    return new StoredVolume(this.services, { ...layout, ...fileLayout }, directory, directoryFd, existing);
  }

  private checkOpen(): void {
    if (this.closed) throw new CairnError('CAIRN_CLOSED', `extent store on ${this.drivePath} is closed`);
  }
}

async function pathExists(target: string): Promise<boolean> {
  try {
    await statPath(target);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return false;
    throw extentError(error, 'stat', target);
  }
}

function mismatch(layout: VolumeLayout, recordedExtentBytes: number): CairnError {
  return new CairnError('CAIRN_VOLUME_EXISTS',
    `volume ${layout.volumeId} is stored with extents of ${recordedExtentBytes} bytes, not ${layout.extentBytes}`);
}

/** fsync(2) of a directory, so entries created or removed in it survive a crash. */
async function syncDirectoryPath(directory: string): Promise<void> {
  let fd: number;
  try {
    fd = await openFile(directory, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  } catch (error) {
    throw extentError(error, 'open', directory);
  }
  try {
    await fsyncFile(fd);
  } catch (error) {
    throw extentError(error, 'fsync', directory);
  } finally {
    await closeFile(fd).catch(() => undefined);
  }
}

/** Creates `directory` if missing and makes its entry durable in the parent. */
async function ensureDirectory(directory: string): Promise<void> {
  try {
    await makeDirectory(directory, { mode: 0o700 });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'EEXIST') return;
    throw extentError(error, 'create', directory);
  }
  await syncDirectoryPath(path.dirname(directory));
}

/**
 * The file layout recorded in a volume directory, or undefined when it has no record yet. Two
 * forms: `{"extentBytes": E}` is one file per extent (the original record, which binaries
 * before segments read too); segment layouts are `{"version": 2, "fileLayout": {"extentBytes":
 * E, "segmentBytes": S}}`, which those binaries refuse ("has no extentBytes") instead of
 * reading a segmented volume as zeroes.
 */
async function readLayoutRecord(directory: string): Promise<FileLayout | undefined> {
  const recordPath = path.join(directory, layoutFileName);
  let text: string;
  try {
    text = await readTextFile(recordPath, 'utf8');
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return undefined;
    throw extentError(error, 'read', recordPath);
  }
  if (text.length > 4096) throw new CairnError('CAIRN_CORRUPT', `${recordPath} is too long to be a layout record`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new CairnError('CAIRN_CORRUPT', `${recordPath} is not valid JSON`, { cause: error });
  }
  const corrupt = (what: string): CairnError => new CairnError('CAIRN_CORRUPT', `${recordPath} ${what}`);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw corrupt('is not a layout record');
  const record = parsed as Record<string, unknown>;
  const checkFields = (...known: string[]): void => {
    const unknown = Object.keys(record).filter((key) => !known.includes(key));
    if (unknown.length > 0) throw corrupt(`has unknown fields (${unknown.join(', ')})`);
  };
  let layout: FileLayout;
  if (Object.hasOwn(record, 'version')) {
    if (record['version'] !== 2) {
      throw corrupt(`is a layout record of an unknown version (${JSON.stringify(record['version'])}); this cairnd reads versions 1 and 2`);
    }
    const inner = record['fileLayout'];
    checkFields('version', 'fileLayout');
    if (typeof inner !== 'object' || inner === null) throw corrupt('has no fileLayout');
    const fields = inner as Record<string, unknown>;
    layout = { extentBytes: fields['extentBytes'], segmentBytes: fields['segmentBytes'] } as FileLayout;
  } else {
    if (typeof record['extentBytes'] !== 'number') throw corrupt('has no extentBytes');
    checkFields('extentBytes');
    layout = { extentBytes: record['extentBytes'], segmentBytes: record['extentBytes'] };
  }
  try {
    checkFileLayout(layout);
  } catch (error) {
    throw new CairnError('CAIRN_CORRUPT', `${recordPath}: ${(error as Error).message}`, { cause: error });
  }
  return layout;
}

/** The record's text for a layout: the original form for one file per extent (see readLayoutRecord). */
function layoutRecordText(layout: FileLayout): string {
  const record = layout.segmentBytes === layout.extentBytes
    ? { extentBytes: layout.extentBytes }
    : { version: 2, fileLayout: { extentBytes: layout.extentBytes, segmentBytes: layout.segmentBytes } };
  return `${JSON.stringify(record)}\n`;
}

/**
 * Writes layout.json atomically on first use, with `segmentBytes`; afterwards checks the extent
 * size against it and returns what it records.
 */
async function ensureLayoutRecord(directory: string, layout: VolumeLayout, segmentBytes: number): Promise<FileLayout> {
  const recorded = await readLayoutRecord(directory);
  if (recorded !== undefined) {
    if (recorded.extentBytes !== layout.extentBytes) throw mismatch(layout, recorded.extentBytes);
    return recorded;
  }
  const recordPath = path.join(directory, layoutFileName);
  // Files without a record: which layout they use is unknown, so guessing could read bytes
  // from the wrong place (the record is always written before the first file).
  const orphans = await listDataFiles(directory);
  if (orphans.length > 0) {
    throw new CairnError('CAIRN_CORRUPT',
      `${directory} holds ${orphans.length} data file(s) (${orphans.slice(0, 3).join(', ')}) but no layout record; restore ${layoutFileName} from a backup or move the files away`);
  }
  const fileLayout: FileLayout = { extentBytes: layout.extentBytes, segmentBytes };
  checkFileLayout(fileLayout);
  // Write a temporary file, make it durable, then rename it into place: a crash leaves either
  // no record (written again on the next open) or a complete one, never a torn one.
  const temporaryPath = `${recordPath}.tmp`;
  try {
    const fd = await openFile(temporaryPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
    try {
      await writeTextFile(fd, layoutRecordText(fileLayout));
      await fsyncFile(fd);
    } finally {
      await closeFile(fd);
    }
    await renamePath(temporaryPath, recordPath);
  } catch (error) {
    throw extentError(error, 'write', recordPath);
  }
  await syncDirectoryPath(directory);
  return fileLayout;
}

/**
 * Tries each optional call once on a scratch file in the drive, so capabilities are known before
 * the first request (and NBD can advertise fast zero honestly), and finds the segment size: the
 * asked one, which the filesystem must take, or the largest power of two up to
 * segmentBytesDefault that it takes as a file length (a sparse ftruncate: no space is used).
 */
async function probeDrive(native: NativeBinding, drivePath: string, askedSegmentBytes: number | undefined):
  Promise<{ features: DriveFeatures; segmentBytes: number }> {
  const probePath = path.join(drivePath, probeFileName);
  const modes = fallocateModes(native.constants);
  const features: DriveFeatures = { punchHole: true, zeroRange: true, nowaitRead: true, nowaitWrite: true };
  let segmentBytes = segmentBytesProbeMin;
  let fd: number;
  try {
    fd = await openFile(probePath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
  } catch (error) {
    throw extentError(error, 'create', probePath);
  }
  const unsupported = (attempt: () => void): boolean => {
    try {
      attempt();
      return false;
    } catch (error) {
      if (isUnsupportedError(error)) return true;
      throw extentError(error, 'probe', probePath);
    }
  };
  try {
    const block = Buffer.alloc(4096, 1);
    try {
      native.pwrite(fd, block, 0);
    } catch (error) {
      throw extentError(error, 'write', probePath);
    }
    features.nowaitWrite = !unsupported(() => native.pwriteNowait(fd, block, 4096));
    features.nowaitRead = !unsupported(() => native.preadNowait(fd, block, 0));
    features.punchHole = !unsupported(() => native.fallocate(fd, modes.punchHole, 0, 4096));
    features.zeroRange = !unsupported(() => native.fallocate(fd, modes.zeroRange, 4096, 4096));
    segmentBytes = await probeSegmentBytes(fd, probePath, askedSegmentBytes);
  } finally {
    await closeFile(fd).catch(() => undefined);
    await promisify(fs.unlink)(probePath).catch(() => undefined);
  }
  return { features, segmentBytes };
}

/**
 * See probeDrive. A length the filesystem cannot hold fails with EFBIG (or EINVAL); one it would
 * have to allocate (no sparse files) with ENOSPC or EDQUOT; either way that length does not fit.
 * Anything else (EIO, EROFS) is a real error.
 */
async function probeSegmentBytes(fd: number, probePath: string, asked: number | undefined): Promise<number> {
  const fits = async (bytes: number): Promise<boolean> => {
    try {
      await truncateFile(fd, bytes);
      return true;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === 'EFBIG' || code === 'EINVAL' || code === 'ENOSPC' || code === 'EDQUOT') return false;
      throw extentError(error, 'size', probePath);
    }
  };
  if (asked !== undefined) {
    if (await fits(asked)) return asked;
    throw new CairnError('CAIRN_CONFIG',
      `the filesystem of ${path.dirname(probePath)} cannot hold a file of ${asked} bytes; choose a smaller segment size`);
  }
  let bytes = segmentBytesDefault;
  while (bytes > segmentBytesProbeMin && !await fits(bytes)) bytes /= 2;
  return bytes;
}

/** Most thread-pool calls one flush spreads its fdatasyncs over. */
export const syncParallelismMax = 4;

/**
 * The default SyncFunction: the files' fdatasyncs (and the directories' fsyncs) spread over up
 * to syncParallelismMax thread-pool calls that run at once. Each fdatasync ends with a cache
 * flush of the disk; issued together, the block layer merges them into one or two, where one
 * call syncing file after file pays one per file (4 files dirtied by 4 connections between two
 * flushes cost ≈ 4 × 0.15 ms here). Settles only when every call has settled — a descriptor
 * must not be unpinned (and possibly closed) while another call still syncs it — and then
 * rejects with the first failure. A notice is sent only by a single call (count ≤ 1); spread
 * over several calls, the flush is done when the last settles, on the event loop.
 */
export function parallelSync(native: NativeBinding): SyncFunction {
  return async (data, metadata, notice) => {
    const count = data.length + metadata.length;
    if (count <= 1) {
      const sentBytes = await native.syncMany(data.map((target) => target.fd), metadata.map((target) => target.fd),
        notice === undefined ? undefined : { fd: notice.fd, bytes: notice.bytes });
      if (notice !== undefined) notice.sentBytes = sentBytes;
      return;
    }
    const groups = Math.min(syncParallelismMax, count);
    const dataFds: number[][] = Array.from({ length: groups }, () => []);
    const metadataFds: number[][] = Array.from({ length: groups }, () => []);
    data.forEach((target, index) => dataFds[index % groups]?.push(target.fd));
    metadata.forEach((target, index) => metadataFds[(data.length + index) % groups]?.push(target.fd));
    const results = await Promise.allSettled(dataFds.map((fds, group) => native.syncMany(fds, metadataFds[group] ?? [])));
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  };
}
