/**
 * Extent layout: the pure arithmetic of how a volume is cut into extents and where they live in
 * files on a drive. No I/O. The extent store and the volume device both use it, so the two never
 * disagree about where a byte lives.
 *
 * A volume of `sizeBytes` is split into ceil(sizeBytes / extentBytes) extents; extent i holds
 * volume bytes [i * extentBytes, (i + 1) * extentBytes). The extent is the unit of placement,
 * replication and rebuild; on one drive, the extents a volume keeps there are stored in segment
 * files: segment s holds the volume's bytes [s * segmentBytes, (s + 1) * segmentBytes) at their
 * offset from the segment's start, so extent i is the range at (i mod extentsPerSegment) *
 * extentBytes of segment floor(i / extentsPerSegment). segmentBytes is a power of two and a
 * multiple of extentBytes, fixed per volume and drive when the volume is first stored there.
 *
 * - Segments larger than an extent (new volumes: 1 TiB, see extent-store.ts) are named
 *   `<s>.segment`. A FLUSH then syncs one file per drive, not one per written extent: every
 *   fdatasync ends with a cache flush of the disk, and on ext4 without a journal it also writes
 *   the inode whose timestamps the write changed, which one file shares between the writes of
 *   a clock tick (measured on a 2-vCPU VM: 4 KiB write + fdatasync at QD1 took 107-120 µs in one
 *   file, 140-160 µs spread over 16).
 * - A segment of exactly one extent is the original layout, one file per extent, named
 *   `<i>.extent`; volumes stored that way keep it.
 *
 * A segment file is never longer than its span; it is created as long as the part of its span
 * inside the volume, in whole extents, and may be shorter after the volume grew (bytes past its
 * end read as zeroes, a write there extends it).
 */
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import { isPowerOfTwo } from '../util/units';
import { extentBytesMax, extentBytesMin, nameBytesMax, volumeBytesMax } from '../limits';

export interface VolumeLayout {
  readonly volumeId: string;
  readonly sizeBytes: number;
  /** A power of two in [extentBytesMin, extentBytesMax]. */
  readonly extentBytes: number;
}

/** One slice of a volume range that falls inside one extent. */
export interface ExtentPiece {
  readonly index: number;
  readonly offsetInExtent: number;
  readonly length: number;
  /** Where the piece starts within the caller's range (and buffer). */
  readonly rangeOffset: number;
}

/** How a volume's extents are laid out in files on one drive (recorded in its layout.json). */
export interface FileLayout {
  readonly extentBytes: number;
  /** Volume bytes per file: a power of two, a multiple of extentBytes, at most segmentBytesMax. */
  readonly segmentBytes: number;
}

export const volumesDirectoryName = 'volumes';
export const layoutFileName = 'layout.json';
/** Largest segment: 2^50 bytes keeps every file offset a safe integer with room to spare. */
export const segmentBytesMax = 2 ** 50;
const extentFilePattern = /^(0|[1-9][0-9]{0,15})\.extent$/;
const segmentFilePattern = /^(0|[1-9][0-9]{0,15})\.segment$/;
const volumeIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Volume ids become directory names: letters, digits, '.', '_', '-', not starting with '.' or '-'. */
export function checkVolumeId(volumeId: unknown): asserts volumeId is string {
  if (typeof volumeId !== 'string' || volumeId.length === 0 || volumeId.length > nameBytesMax ||
    !volumeIdPattern.test(volumeId)) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT',
      `volume id ${JSON.stringify(volumeId)} must be 1-${nameBytesMax} characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

export function checkExtentBytes(extentBytes: unknown): asserts extentBytes is number {
  if (typeof extentBytes !== 'number' || !isPowerOfTwo(extentBytes) || extentBytes < extentBytesMin ||
    extentBytes > extentBytesMax) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT',
      `extentBytes must be a power of two in [${extentBytesMin}, ${extentBytesMax}], got ${String(extentBytes)}`);
  }
}

export function checkVolumeBytes(sizeBytes: unknown): asserts sizeBytes is number {
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > volumeBytesMax) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT',
      `sizeBytes must be an integer in [0, ${volumeBytesMax}], got ${String(sizeBytes)}`);
  }
}

export function checkLayout(layout: VolumeLayout): void {
  checkVolumeId(layout.volumeId);
  checkVolumeBytes(layout.sizeBytes);
  checkExtentBytes(layout.extentBytes);
}

export function checkFileLayout(layout: FileLayout): void {
  checkExtentBytes(layout.extentBytes);
  const { segmentBytes, extentBytes } = layout;
  if (typeof segmentBytes !== 'number' || !isPowerOfTwo(segmentBytes) || segmentBytes < extentBytes || segmentBytes > segmentBytesMax) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT',
      `segmentBytes must be a power of two in [extentBytes (${extentBytes}), ${segmentBytesMax}], got ${String(segmentBytes)}`);
  }
}

/** The file of segment `segment` (see the module comment for the two names). */
export function segmentFileName(layout: FileLayout, segment: number): string {
  return layout.segmentBytes === layout.extentBytes ? extentFileName(segment) : `${checkedIndex(segment)}.segment`;
}

/** The segment a file name encodes under this layout, or undefined for any other name. */
export function parseSegmentFileName(layout: FileLayout, name: string): number | undefined {
  if (layout.segmentBytes === layout.extentBytes) return parseExtentFileName(name);
  return parseIndex(segmentFilePattern.exec(name));
}

/**
 * How long a segment file is made: the part of its span inside a volume of `sizeBytes`, rounded
 * up to whole extents (so a one-extent segment is always extentBytes long).
 */
export function segmentFileBytes(layout: FileLayout, segment: number, sizeBytes: number): number {
  const start = segment * layout.segmentBytes;
  assert(start < sizeBytes, 'segment lies inside the volume');
  return Math.min(layout.segmentBytes, Math.ceil((sizeBytes - start) / layout.extentBytes) * layout.extentBytes);
}

export function extentCount(sizeBytes: number, extentBytes: number): number {
  assert(extentBytes > 0);
  return Math.ceil(sizeBytes / extentBytes);
}

/** Bytes of extent `index` that lie inside a volume of `sizeBytes` (the last extent may be partial). */
export function extentUsableBytes(index: number, sizeBytes: number, extentBytes: number): number {
  const start = index * extentBytes;
  assert(start < sizeBytes, 'extent index lies inside the volume');
  return Math.min(extentBytes, sizeBytes - start);
}

/** Whether `name` is a data file of either layout (a segment or a one-extent file). */
export function isDataFileName(name: string): boolean {
  return extentFilePattern.test(name) || segmentFilePattern.test(name);
}

/** The file of extent `index` in the one-extent-per-file layout. */
export function extentFileName(index: number): string {
  return `${checkedIndex(index)}.extent`;
}

/** The extent index a one-extent file name encodes, or undefined for any other name. */
export function parseExtentFileName(name: string): number | undefined {
  return parseIndex(extentFilePattern.exec(name));
}

function checkedIndex(index: number): number {
  assert(Number.isSafeInteger(index) && index >= 0, 'file index is a non-negative integer');
  return index;
}

function parseIndex(match: RegExpExecArray | null): number | undefined {
  if (match === null) return undefined;
  const index = Number(match[1]);
  return Number.isSafeInteger(index) ? index : undefined;
}

/** Cuts [offset, offset + length) at extent boundaries, in order. */
export function splitAtExtents(offset: number, length: number, extentBytes: number): ExtentPiece[] {
  assert(Number.isSafeInteger(offset) && offset >= 0, 'offset is a non-negative integer');
  assert(Number.isSafeInteger(length) && length >= 0, 'length is a non-negative integer');
  const pieces: ExtentPiece[] = [];
  let done = 0;
  while (done < length) {
    const position = offset + done;
    const index = Math.floor(position / extentBytes);
    const offsetInExtent = position - index * extentBytes;
    const pieceLength = Math.min(extentBytes - offsetInExtent, length - done);
    assert(pieceLength > 0, 'every piece makes progress');
    pieces.push({ index, offsetInExtent, length: pieceLength, rangeOffset: done });
    done += pieceLength;
  }
  return pieces;
}
