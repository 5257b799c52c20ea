/**
 * Extent layout: the pure arithmetic of how a volume is cut into extents and named on a drive.
 * No I/O. The extent store and the volume device both use it, so the two never disagree about
 * where a byte lives.
 *
 * A volume of `sizeBytes` is split into ceil(sizeBytes / extentBytes) extents; extent i holds
 * volume bytes [i * extentBytes, (i + 1) * extentBytes) and lives in the file
 * `<drive>/volumes/<volumeId>/<i>.extent`. Every extent file is `extentBytes` long (sparse), the
 * last one too, so growing a volume never touches existing files.
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

export const volumesDirectoryName = 'volumes';
export const layoutFileName = 'layout.json';
const extentFilePattern = /^(0|[1-9][0-9]{0,15})\.extent$/;
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

export function extentFileName(index: number): string {
  assert(Number.isSafeInteger(index) && index >= 0, 'extent index is a non-negative integer');
  return `${index}.extent`;
}

/** The extent index a file name encodes, or undefined for any other name. */
export function parseExtentFileName(name: string): number | undefined {
  const match = extentFilePattern.exec(name);
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
