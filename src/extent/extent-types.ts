/**
 * Types shared by the extent store, its volumes and their durability tracker: what an open
 * segment file is, what a volume needs from its store, what a drive supports, how files are
 * synced. No code.
 */
import type { Buffer } from 'node:buffer';
import type { FlushNotice } from '../block/block-device';
import type { FallocateModes, NativeBinding } from '../native/binding';
import type { ListNode } from './open-extent-list';
import type { StoredVolume } from './stored-volume';

/** A file to make durable, by descriptor, with its path for diagnostics and tests. */
export interface SyncTarget {
  readonly fd: number;
  readonly path: string;
}

/**
 * Makes files durable: fdatasync every `data` target, fsync every `metadata` target
 * (directories). Injectable so tests can observe exactly what is synced.
 */
/** Syncs the files, then the directories; may send the notice's bytes once all succeeded (FlushNotice). */
export type SyncFunction = (data: readonly SyncTarget[], metadata: readonly SyncTarget[], notice?: FlushNotice) => Promise<void>;

/** What the drive's filesystem supports; probed when the store opens, turned off on EOPNOTSUPP. */
export interface DriveFeatures {
  punchHole: boolean;
  zeroRange: boolean;
  nowaitRead: boolean;
  nowaitWrite: boolean;
}

/** One open segment file (extent-layout.ts): an entry of the store's descriptor cache. */
export interface OpenSegment extends ListNode<OpenSegment> {
  readonly volume: StoredVolume;
  readonly segment: number;
  readonly fd: number;
  readonly path: string;
  /**
   * Pins: operations holding this entry across an await (a request from lookup/acquire until it
   * ends, a sync). The fd is never closed while > 0.
   */
  inflight: number;
  /** Written since its last sync began. Invariant: dirty ⇔ member of its volume's dirty set (volume-durability.ts). */
  dirty: boolean;
  /** An eviction writeback is running for this entry. */
  evicting: boolean;
  /** The last writeback of this entry failed; eviction skips it (the failure is sticky anyway). */
  writebackFailed: boolean;
  closed: boolean;
  /** Creation number of the file (0 = existed when the volume opened); see VolumeDurability. */
  readonly createdSeq: number;
}

/** What a volume needs from its store. */
export interface VolumeServices {
  readonly native: NativeBinding;
  readonly modes: FallocateModes;
  readonly sync: SyncFunction;
  readonly features: Readonly<DriveFeatures>;
  readonly inlineIoBytesMax: number;
  /**
   * The open entry for the segment, PINNED (inflight already counts the caller, who must unpin),
   * opening — with `create`, creating — its file; undefined when it has no file and !create.
   */
  acquire(volume: StoredVolume, segment: number, create: boolean): Promise<OpenSegment | undefined>;
  /** The cached entry, marked most recently used, or undefined; not pinned, no I/O. */
  lookup(volume: StoredVolume, segment: number): OpenSegment | undefined;
  /** Removes the entry from the cache and closes its fd (no-op if already closed). */
  closeEntry(entry: OpenSegment): Promise<void>;
  disableFeature(feature: keyof DriveFeatures, message: string): void;
  /** A shared, never-written buffer of zeroes. */
  zeroes(): Buffer;
}
