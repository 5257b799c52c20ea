/**
 * StoredVolume: one volume's segment files on one drive (extent-layout.ts), addressed by its
 * callers as (extent index, offset in extent) and mapped here to (segment, offset in its file).
 * Owns the volume's open-file map, the set of segment files that exist, the directory
 * descriptor and the volume's lifecycle; its durability bookkeeping lives in
 * volume-durability.ts. The store (extent-store.ts) owns the descriptor budget and the drive's
 * features; this file does the volume's I/O.
 *
 * Durability contract (NBD semantics):
 * - `write` without fua lands in the page cache and marks its file dirty when it completes.
 * - `flush` snapshots the dirty set at the call, clears it, and fdatasyncs those files in up to
 *   four concurrent thread-pool calls (parallelSync; a write completing during the flush marks its file dirty again, for the
 *   next flush); it also waits for every sync already in flight (an earlier flush, an eviction
 *   writeback) and fsyncs the volume directory if extent files were created since the last
 *   directory sync. It resolves only when all of that is durable.
 * - `write` with fua is one pwritev2(RWF_DSYNC) hop, plus a directory fsync when the file is new.
 * - A failed fdatasync/fsync is sticky: the kernel may have dropped the dirty pages, so every
 *   later flush of this volume (and a fua write that needs a directory fsync) fails with the
 *   first error; reopen the volume to clear it.
 *
 * Engines, chosen by measurement (2 vCPU VM, ext4, 4 KiB, CPU per op): a page-cache read costs
 * ≈ 1.5–2 µs with preadv2(RWF_NOWAIT) on the main thread against 30–40 µs through the libuv pool
 * at QD1 (4–7 µs at QD32; ≈ 7 µs with UV_USE_IO_URING=1), a page-cache write ≈ 5 µs with pwrite
 * on the main thread against 25–65 µs through the pool (ext4 has no RWF_NOWAIT for buffered
 * writes; io_uring sends them to kernel workers at ≈ 30 µs). So a request up to
 * `inlineIoBytesMax` runs on the main thread — RWF_NOWAIT reads falling back to the pool on a
 * miss, plain writes (RWF_NOWAIT writes where the filesystem has them) — and larger requests,
 * misses and FUA writes use the pool. The price: an inline write can block the event loop while
 * the kernel throttles dirty pages.
 *
 * Invariants: an fd with I/O in flight (`inflight > 0`) is never closed; a segment file is never
 * longer than segmentBytes, and is lengthened to its part of the volume when opened and when the
 * volume grows; a missing segment file, and any byte past a file's end, reads as zeroes; a file
 * is created on the first write to its span.
 */
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import type { DirectWrite, Extent, FlushNotice } from '../block/block-device';
import { extentError, isUnsupportedError } from './extent-errors';
import {
  checkVolumeBytes, extentCount, extentUsableBytes, FileLayout, isDataFileName, segmentFileBytes, segmentFileName, VolumeLayout,
} from './extent-layout';
import type { OpenSegment, VolumeServices } from './extent-types';
import { VolumeDurability } from './volume-durability';

const openFile = promisify(fs.open);
const fstatFile = promisify(fs.fstat);
const truncateFile = promisify(fs.ftruncate);
const closeFile = promisify(fs.close);
const statPath = promisify(fs.stat);
const readDirectory = promisify(fs.readdir);

type VolumeState = 'open' | 'closing' | 'closed';

/** When the creation map holds this many files, entries already durable are dropped. */
const creationsPruneAt = 256;

export class StoredVolume {
  readonly volumeId: string;
  readonly extentBytes: number;
  /** Volume bytes per file on this drive (extent-layout.ts). */
  readonly segmentBytes: number;
  readonly directory: string;
  private readonly fileLayout: FileLayout;
  private readonly extentsPerSegment: number;
  private currentSizeBytes: number;
  private state: VolumeState = 'open';
  /** Segment files present on the drive (loaded at open, then maintained: this store is the only writer). */
  private readonly existing: Set<number>;
  /** Open entries by segment; the store's cache owns their lifetime. */
  readonly openSegments = new Map<number, OpenSegment>();
  /** Opens in progress, so concurrent requests for one segment share one open. */
  readonly opening = new Map<number, Promise<OpenSegment | undefined>>();
  private readonly durability: VolumeDurability;
  /**
   * Creation numbers of files whose directory entry may not be durable yet, by segment: a file
   * evicted from the descriptor cache and opened again must still make a FUA write wait for it.
   */
  private readonly creations = new Map<number, number>();
  private activeOperations = 0;
  private drained: (() => void) | undefined;
  private shutdownPromise: Promise<void> | undefined;

  constructor(
    private readonly services: VolumeServices,
    layout: VolumeLayout & FileLayout,
    directory: string,
    private readonly directoryFd: number,
    existing: Set<number>,
  ) {
    this.volumeId = layout.volumeId;
    this.extentBytes = layout.extentBytes;
    this.segmentBytes = layout.segmentBytes;
    this.fileLayout = { extentBytes: layout.extentBytes, segmentBytes: layout.segmentBytes };
    this.extentsPerSegment = layout.segmentBytes / layout.extentBytes;
    this.currentSizeBytes = layout.sizeBytes;
    this.directory = directory;
    this.existing = existing;
    this.durability = new VolumeDurability(services.sync, { fd: directoryFd, path: directory });
  }

  get sizeBytes(): number {
    return this.currentSizeBytes;
  }

  get extentCount(): number {
    return extentCount(this.currentSizeBytes, this.extentBytes);
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Whether the segment holding extent `index` has a file on the drive (else the extent reads as zeroes). */
  hasFileFor(index: number): boolean {
    return this.existing.has(this.segmentOf(index));
  }

  /** Whether segment `segment` has a file on the drive. */
  hasSegmentFile(segment: number): boolean {
    return this.existing.has(segment);
  }

  /** Number of segment files on the drive. */
  get fileCount(): number {
    return this.existing.size;
  }

  /** The path of segment `segment`'s file. */
  segmentPath(segment: number): string {
    return path.join(this.directory, segmentFileName(this.fileLayout, segment));
  }

  /** The segment that holds extent `index`. */
  segmentOf(index: number): number {
    return this.extentsPerSegment === 1 ? index : Math.floor(index / this.extentsPerSegment);
  }

  /** Where byte `offsetInExtent` of extent `index` lies in its segment's file. */
  private positionOf(segment: number, index: number, offsetInExtent: number): number {
    return (index - segment * this.extentsPerSegment) * this.extentBytes + offsetInExtent;
  }

  /** Fills `target` from the extent; missing files and holes read as zeroes. */
  async read(index: number, offsetInExtent: number, target: Buffer): Promise<void> {
    this.checkRange(index, offsetInExtent, target.length);
    if (target.length === 0) return;
    this.enter();
    const segment = this.segmentOf(index);
    const position = this.positionOf(segment, index, offsetInExtent);
    let entry: OpenSegment | undefined;
    try {
      entry = this.pinCached(segment) ?? (this.existing.has(segment) ? await this.pin(segment, false) : undefined);
      if (entry === undefined) {
        target.fill(0);
        return;
      }
      let done = 0;
      if (target.length <= this.services.inlineIoBytesMax && this.services.features.nowaitRead) {
        done = this.readInline(entry, position, target);
        if (done === target.length) return;
      }
      await this.readPool(entry, position + done, target.subarray(done));
    } finally {
      this.unpin(entry);
      this.leave();
    }
  }

  /** Writes `source` into the extent, creating its file if needed; with fua it is durable on resolve. */
  async write(index: number, offsetInExtent: number, source: Buffer, fua: boolean): Promise<void> {
    this.checkRange(index, offsetInExtent, source.length);
    if (source.length === 0) return;
    this.enter();
    const segment = this.segmentOf(index);
    const position = this.positionOf(segment, index, offsetInExtent);
    let entry: OpenSegment | undefined;
    try {
      entry = this.pinCached(segment) ?? await this.pin(segment, true);
      assert(entry !== undefined, 'acquire with create returns an entry');
      if (fua) {
        await this.writePool(entry, position, source, true);
        await this.durability.makeCreationDurable(entry.createdSeq);
        return;
      }
      if (source.length <= this.services.inlineIoBytesMax && this.writeInline(entry, position, source)) {
        this.durability.markDirty(entry);
        return;
      }
      await this.writePool(entry, position, source, false);
      this.durability.markDirty(entry);
    } finally {
      this.unpin(entry);
      this.leave();
    }
  }

  /**
   * The range as an open file for a caller that writes it itself (DirectWrite): only when the
   * segment's file is open now (no await, nothing to create). The entry stays pinned and the
   * volume busy until finish(); a write that may have reached the file marks it dirty, as write()
   * does when it completes.
   */
  beginDirectWrite(index: number, offsetInExtent: number, length: number): DirectWrite | undefined {
    if (!this.isOpen || length <= 0) return undefined;
    this.checkRange(index, offsetInExtent, length);
    const segment = this.segmentOf(index);
    const entry = this.pinCached(segment);
    if (entry === undefined) return undefined;
    this.enter();
    let finished = false;
    return {
      fd: entry.fd,
      position: this.positionOf(segment, index, offsetInExtent),
      finish: (wrote, error) => {
        assert(!finished, 'a direct write finishes once');
        finished = true;
        if (wrote) this.durability.markDirty(entry);
        this.unpin(entry);
        this.leave();
        return error === undefined ? undefined : extentError(error, 'write', entry.path);
      },
    };
  }

  /**
   * Frees the range (punch hole): it reads as zeroes and `stat` blocks drop. Where the drive
   * cannot punch holes, writes zeroes instead (reported once). Not durable until a flush.
   */
  async trim(index: number, offsetInExtent: number, length: number): Promise<void> {
    this.checkRange(index, offsetInExtent, length);
    const segment = this.segmentOf(index);
    if (length === 0 || !this.existing.has(segment)) return;
    this.enter();
    let entry: OpenSegment | undefined;
    try {
      entry = await this.pin(segment, false);
      if (entry === undefined) return;
      await this.clear(entry, this.positionOf(segment, index, offsetInExtent), length, 'punch', false);
    } finally {
      this.unpin(entry);
      this.leave();
    }
  }

  /**
   * Makes the range read as zeroes. Without noHole the range is punched (freed); with noHole it
   * stays allocated (FALLOC_FL_ZERO_RANGE, or written zeroes). With fast, a drive that could
   * only write zeroes fails with CAIRN_NOT_SUPPORTED instead. Not durable until a flush.
   */
  async zero(index: number, offsetInExtent: number, length: number,
    flags: { readonly noHole: boolean; readonly fast: boolean }): Promise<void> {
    this.checkRange(index, offsetInExtent, length);
    if (length === 0) return;
    const segment = this.segmentOf(index);
    if (!flags.noHole && !this.existing.has(segment)) return; // already reads as zeroes, unallocated
    this.enter();
    let entry: OpenSegment | undefined;
    try {
      entry = await this.pin(segment, flags.noHole);
      if (entry === undefined) return;
      await this.clear(entry, this.positionOf(segment, index, offsetInExtent), length, flags.noHole ? 'zeroRange' : 'punch', flags.fast);
    } finally {
      this.unpin(entry);
      this.leave();
    }
  }

  /**
   * Allocation of the `length` bytes from `offsetInExtent` of extent `index`, which may run on
   * through the following extents up to the end of its segment (one file, one lseek walk):
   * contiguous descriptors from the start, at most `descriptorsMax` (the last one then ends
   * early). Data is {hole: false, zero: false}; holes (SEEK_HOLE), bytes past the file's end and
   * missing files are {hole: true, zero: true}.
   */
  async allocation(index: number, offsetInExtent: number, length: number, descriptorsMax: number): Promise<Extent[]> {
    this.checkRange(index, offsetInExtent, 0);
    const runEnd = Math.min(this.currentSizeBytes, (this.segmentOf(index) + 1) * this.segmentBytes);
    if (!Number.isSafeInteger(length) || length < 0 || index * this.extentBytes + offsetInExtent + length > runEnd) {
      throw new CairnError('CAIRN_OUT_OF_RANGE',
        `extent ${index} range ${offsetInExtent}+${length} runs past its segment or volume ${this.volumeId} (${this.currentSizeBytes} bytes)`);
    }
    assert(Number.isSafeInteger(descriptorsMax) && descriptorsMax > 0, 'descriptorsMax is a positive integer');
    if (length === 0) return [];
    this.enter();
    const segment = this.segmentOf(index);
    let entry: OpenSegment | undefined;
    try {
      entry = await this.pin(segment, false);
      if (entry === undefined) return [{ length, hole: true, zero: true }];
      return this.seekAllocation(entry, this.positionOf(segment, index, offsetInExtent), length, descriptorsMax);
    } finally {
      this.unpin(entry);
      this.leave();
    }
  }

  /** Starts reading the range into the page cache (NBD CACHE); never waits for the disk. */
  async prefetch(index: number, offsetInExtent: number, length: number): Promise<void> {
    this.checkRange(index, offsetInExtent, length);
    const segment = this.segmentOf(index);
    if (length === 0 || !this.existing.has(segment)) return;
    this.enter();
    let entry: OpenSegment | undefined;
    try {
      entry = await this.pin(segment, false);
      if (entry === undefined) return;
      try {
        this.services.native.fadvise(entry.fd, this.positionOf(segment, index, offsetInExtent), length, this.services.native.constants.POSIX_FADV_WILLNEED);
      } catch (error) {
        throw extentError(error, 'prefetch', entry.path);
      }
    } finally {
      this.unpin(entry);
      this.leave();
    }
  }

  /** Makes every write that completed before this call durable; see the module contract. */
  async flush(notice?: FlushNotice): Promise<void> {
    this.enter();
    try {
      await this.durability.flush(notice);
    } finally {
      this.leave();
    }
  }

  /** Grows the volume; new extents read as zeroes until written. Shrinking is refused. */
  resize(sizeBytes: number): void {
    checkVolumeBytes(sizeBytes);
    this.checkOpen();
    if (sizeBytes < this.currentSizeBytes) {
      throw new CairnError('CAIRN_SHRINK_REFUSED',
        `volume ${this.volumeId} is ${this.currentSizeBytes} bytes; shrinking to ${sizeBytes} would destroy data`);
    }
    this.currentSizeBytes = sizeBytes;
    for (const entry of this.openSegments.values()) lengthenOpenFile(entry.fd, segmentFileBytes(this.fileLayout, entry.segment, sizeBytes));
  }

  /** Bytes the drive has allocated for this volume: the sum of st_blocks × 512 of its segment files. */
  async allocatedBytes(): Promise<number> {
    this.enter();
    try {
      return await allocatedBytesOf(this.directory, [...this.existing].map((segment) => segmentFileName(this.fileLayout, segment)));
    } finally {
      this.leave();
    }
  }

  /**
   * Stops the volume: new calls fail with CAIRN_CLOSED, calls in progress finish, then (with
   * flush) everything written is made durable, and every descriptor is closed. Idempotent.
   */
  shutdown(options: { readonly flush: boolean }): Promise<void> {
    if (this.shutdownPromise === undefined) this.shutdownPromise = this.runShutdown(options.flush);
    return this.shutdownPromise;
  }

  // --- internals used by the store --------------------------------------------------------------

  /**
   * Opens (creating if asked) the file of segment `segment`; a file shorter than the segment's
   * part of the volume (new, grown since, or cut short by a crash between create and truncate)
   * is lengthened to it.
   */
  async openFile(segment: number, create: boolean): Promise<OpenSegment | undefined> {
    const filePath = this.segmentPath(segment);
    const isNew = !this.existing.has(segment);
    if (isNew && !create) return undefined;
    const flags = fs.constants.O_RDWR | (create ? fs.constants.O_CREAT : 0);
    let fd: number;
    try {
      fd = await openFile(filePath, flags, 0o600);
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT' && !create) {
        this.existing.delete(segment);
        return undefined;
      }
      throw extentError(error, 'open', filePath);
    }
    try {
      const stats = await fstatFile(fd);
      if (stats.size > this.segmentBytes) {
        throw new CairnError('CAIRN_CORRUPT',
          `${filePath} is ${stats.size} bytes, longer than the volume's segment size on this drive (${this.segmentBytes} bytes)`);
      }
      const wanted = segmentFileBytes(this.fileLayout, segment, this.currentSizeBytes);
      if (stats.size < wanted) await truncateFile(fd, wanted);
    } catch (error) {
      await closeFile(fd).catch(() => undefined);
      throw extentError(error, 'size', filePath);
    }
    let createdSeq = 0;
    if (isNew) {
      this.existing.add(segment);
      createdSeq = this.durability.noteCreated();
      this.noteCreation(segment, createdSeq);
    } else {
      const seq = this.creations.get(segment);
      if (seq !== undefined && seq > this.durability.directoryDurableUpTo) createdSeq = seq;
      else this.creations.delete(segment);
    }
    return {
      volume: this, segment, fd, path: filePath, inflight: 0, dirty: false, evicting: false,
      writebackFailed: false, closed: false, createdSeq, previous: null, next: null, listed: false,
    };
  }

  /** Remembers a new file's creation number; forgets those whose directory entry is durable once many pile up. */
  private noteCreation(segment: number, seq: number): void {
    if (this.creations.size >= creationsPruneAt) {
      const durable = this.durability.directoryDurableUpTo;
      for (const [other, otherSeq] of this.creations) if (otherSeq <= durable) this.creations.delete(other);
    }
    this.creations.set(segment, seq);
  }

  /** Syncs one dirty entry so the store can close it; never rejects (failures are sticky). */
  writeback(entry: OpenSegment): Promise<void> {
    return this.durability.writeback(entry);
  }

  // --- pins ---------------------------------------------------------------------------------------

  /** The cached entry, pinned; no await, so the hot path stays synchronous. */
  private pinCached(segment: number): OpenSegment | undefined {
    const entry = this.services.lookup(this, segment);
    if (entry !== undefined) entry.inflight++;
    return entry;
  }

  /** The entry, pinned, opening or creating its file; undefined if it has none and !create. */
  private async pin(segment: number, create: boolean): Promise<OpenSegment | undefined> {
    if (!create && !this.existing.has(segment)) return undefined;
    return this.pinCached(segment) ?? await this.services.acquire(this, segment, create);
  }

  private unpin(entry: OpenSegment | undefined): void {
    if (entry === undefined) return;
    entry.inflight--;
    assert(entry.inflight >= 0, 'pins are balanced');
  }

  // --- I/O engines --------------------------------------------------------------------------------

  /** preadv2(RWF_NOWAIT) on the main thread: the bytes the page cache could serve. */
  private readInline(entry: OpenSegment, position: number, target: Buffer): number {
    const native = this.services.native;
    let done = 0;
    try {
      while (done < target.length) {
        const count = native.preadNowait(entry.fd, done === 0 ? target : target.subarray(done), position + done);
        if (count <= 0) break; // would block (or end of file: the pool read zero-fills)
        done += count;
      }
    } catch (error) {
      if (!isUnsupportedError(error)) throw extentError(error, 'read', entry.path);
      this.services.disableFeature('nowaitRead',
        `the filesystem of ${this.directory} does not support non-blocking reads (RWF_NOWAIT): every read uses the thread pool`);
    }
    return done;
  }

  private async readPool(entry: OpenSegment, position: number, target: Buffer): Promise<void> {
    try {
      const count = await this.services.native.preadAsync(entry.fd, target, position);
      if (count < target.length) target.fill(0, count); // past end of file reads as zeroes
    } catch (error) {
      throw extentError(error, 'read', entry.path);
    }
  }

  /**
   * Writes on the main thread when the drive allows it: pwritev2(RWF_NOWAIT) where supported,
   * else a plain page-cache pwrite. Returns false when the caller must use the pool instead.
   */
  private writeInline(entry: OpenSegment, position: number, source: Buffer): boolean {
    const native = this.services.native;
    const features = this.services.features;
    try {
      if (features.nowaitWrite) {
        const count = native.pwriteNowait(entry.fd, source, position);
        if (count === source.length) return true;
        if (count > 0) this.durability.markDirty(entry); // part is written; the pool rewrites the whole range
        return false;
      }
      let done = 0;
      while (done < source.length) {
        const count = native.pwrite(entry.fd, done === 0 ? source : source.subarray(done), position + done);
        assert(count > 0, 'a regular-file write makes progress or throws');
        done += count;
      }
      return true;
    } catch (error) {
      if (features.nowaitWrite && isUnsupportedError(error)) {
        this.services.disableFeature('nowaitWrite',
          `the filesystem of ${this.directory} does not support non-blocking writes (RWF_NOWAIT): small writes block the main thread briefly`);
        return this.writeInline(entry, position, source);
      }
      throw extentError(error, 'write', entry.path);
    }
  }

  private async writePool(entry: OpenSegment, position: number, source: Buffer, dsync: boolean): Promise<void> {
    try {
      const count = await this.services.native.pwriteAsync(entry.fd, source, position, dsync);
      assert(count === source.length, 'pwriteAsync writes everything or throws');
    } catch (error) {
      throw extentError(error, dsync ? 'write (FUA) to' : 'write', entry.path);
    }
  }

  /** Punches or zeroes a range, falling back to written zeroes where the drive lacks the call. */
  private async clear(entry: OpenSegment, position: number, length: number, method: 'punch' | 'zeroRange',
    fast: boolean): Promise<void> {
    const { native, modes, features } = this.services;
    const feature = method === 'punch' ? 'punchHole' : 'zeroRange';
    try {
      if (features[feature]) {
        try {
          await native.fallocateAsync(entry.fd, method === 'punch' ? modes.punchHole : modes.zeroRange, position, length);
          return;
        } catch (error) {
          if (!isUnsupportedError(error)) throw extentError(error, method === 'punch' ? 'punch a hole in' : 'zero a range of', entry.path);
          this.services.disableFeature(feature, `the filesystem of ${this.directory} does not support ${
            method === 'punch' ? 'punching holes' : 'FALLOC_FL_ZERO_RANGE'}: zeroes are written instead (${
            method === 'punch' ? 'trimmed space is not freed' : 'slower'}); put the drive on ext4, xfs or btrfs`);
        }
      }
      if (method === 'zeroRange' && features.punchHole && await this.punchThenAllocate(entry, position, length)) return;
      if (fast) throw new CairnError('CAIRN_NOT_SUPPORTED', `fast zeroing is not supported by the filesystem of ${this.directory}`);
      await this.writeZeroes(entry, position, length);
    } finally {
      this.durability.markDirty(entry);
    }
  }

  /** Zeroes a range and keeps it allocated without FALLOC_FL_ZERO_RANGE; false if unsupported. */
  private async punchThenAllocate(entry: OpenSegment, position: number, length: number): Promise<boolean> {
    const { native, modes } = this.services;
    try {
      await native.fallocateAsync(entry.fd, modes.punchHole, position, length);
      await native.fallocateAsync(entry.fd, modes.allocate, position, length);
      return true;
    } catch (error) {
      if (!isUnsupportedError(error)) throw extentError(error, 'zero a range of', entry.path);
      return false;
    }
  }

  private async writeZeroes(entry: OpenSegment, position: number, length: number): Promise<void> {
    const zeroes = this.services.zeroes();
    let done = 0;
    while (done < length) {
      const count = Math.min(zeroes.length, length - done);
      try {
        await this.services.native.pwriteAsync(entry.fd, zeroes.subarray(0, count), position + done, false);
      } catch (error) {
        throw extentError(error, 'write zeroes to', entry.path);
      }
      done += count;
    }
  }

  private seekAllocation(entry: OpenSegment, start: number, length: number, descriptorsMax: number): Extent[] {
    const native = this.services.native;
    const notFound = native.constants.NOT_FOUND;
    const end = start + length;
    const extents: Extent[] = [];
    let position = start;
    try {
      while (position < end && extents.length < descriptorsMax) {
        const data = native.seekData(entry.fd, position);
        if (data === notFound || data >= end) {
          extents.push({ length: end - position, hole: true, zero: true });
          break;
        }
        assert(data >= position, 'SEEK_DATA never goes backwards');
        if (data > position) {
          extents.push({ length: data - position, hole: true, zero: true });
          position = data;
          if (extents.length === descriptorsMax) break;
        }
        const hole = native.seekHole(entry.fd, position);
        const dataEnd = hole === notFound ? end : Math.min(hole, end);
        assert(dataEnd > position, 'SEEK_HOLE after data lies past it');
        extents.push({ length: dataEnd - position, hole: false, zero: false });
        position = dataEnd;
      }
    } catch (error) {
      throw extentError(error, 'map the allocation of', entry.path);
    }
    return extents;
  }

  // --- lifecycle and checks ---------------------------------------------------------------------

  private async runShutdown(flush: boolean): Promise<void> {
    this.checkOpen();
    this.state = 'closing';
    if (this.activeOperations > 0) await new Promise<void>((resolve) => { this.drained = resolve; });
    try {
      if (flush) await this.durability.flush();
      await this.durability.settle();
    } finally {
      await Promise.all([...this.openSegments.values()].map((entry) => this.services.closeEntry(entry)));
      await closeFile(this.directoryFd).catch(() => undefined);
      this.state = 'closed';
    }
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new CairnError('CAIRN_CLOSED', `volume ${this.volumeId} is ${this.state}`);
  }

  private enter(): void {
    this.checkOpen();
    this.activeOperations++;
  }

  private leave(): void {
    this.activeOperations--;
    assert(this.activeOperations >= 0);
    if (this.activeOperations === 0 && this.drained !== undefined) {
      const drained = this.drained;
      this.drained = undefined;
      drained();
    }
  }

  private checkRange(index: number, offsetInExtent: number, length: number): void {
    if (!Number.isSafeInteger(index) || !Number.isSafeInteger(offsetInExtent) || !Number.isSafeInteger(length) ||
      index < 0 || offsetInExtent < 0 || length < 0) {
      throw new CairnError('CAIRN_INVALID_ARGUMENT',
        `invalid extent range index=${index} offset=${offsetInExtent} length=${length}`);
    }
    if (index >= this.extentCount || offsetInExtent + length > extentUsableBytes(index, this.currentSizeBytes, this.extentBytes)) {
      throw new CairnError('CAIRN_OUT_OF_RANGE',
        `extent ${index} range ${offsetInExtent}+${length} lies outside volume ${this.volumeId} (${this.currentSizeBytes} bytes, extents of ${this.extentBytes})`);
    }
  }
}

/**
 * Lengthens an open segment file to `bytes` after the volume grew (a metadata-only ftruncate, on
 * the calling thread). Best effort: a file shorter than its part of the volume still reads as
 * zeroes past its end and is lengthened when it is next opened, so a failure here loses nothing.
 */
function lengthenOpenFile(fd: number, bytes: number): void {
  try {
    if (fs.fstatSync(fd).size < bytes) fs.ftruncateSync(fd, bytes);
  } catch {
    // See above: the open path lengthens it, and reads past the end are zeroes meanwhile.
  }
}

/** Sum of st_blocks × 512 of the named files in `directory`, skipping files that vanished. */
export async function allocatedBytesOf(directory: string, names: readonly string[]): Promise<number> {
  const concurrency = 32;
  let total = 0;
  for (let start = 0; start < names.length; start += concurrency) {
    const sizes = await Promise.all(names.slice(start, start + concurrency).map(async (name) => {
      try {
        return (await statPath(path.join(directory, name))).blocks * 512;
      } catch (error) {
        if ((error as { code?: unknown }).code === 'ENOENT') return 0;
        throw extentError(error, 'stat', path.join(directory, name));
      }
    }));
    for (const size of sizes) total += size;
  }
  return total;
}

/** The names in a volume directory. */
async function listDirectory(directory: string): Promise<string[]> {
  try {
    return await readDirectory(directory);
  } catch (error) {
    throw extentError(error, 'list', directory);
  }
}

/** The data files of either layout in a volume directory (see isDataFileName). */
export async function listDataFiles(directory: string): Promise<string[]> {
  return (await listDirectory(directory)).filter(isDataFileName);
}

/** The segment files in a volume directory, by segment. */
export async function listSegmentFiles(directory: string, parse: (name: string) => number | undefined): Promise<Set<number>> {
  const indexes = new Set<number>();
  const names = await listDirectory(directory);
  for (const name of names) {
    const index = parse(name);
    if (index !== undefined) indexes.add(index);
  }
  return indexes;
}
