/**
 * Goal: the pure extent arithmetic — ids, sizes, file names and splitting a range at extent
 * boundaries — accepts exactly what it should and never loses or duplicates a byte.
 *
 * Method: table tests for the checks and names; splits checked against their definition
 * (contiguous, inside one extent each, covering the range) over many ranges from a seeded PRNG.
 */
import t from 'tap';
import {
  checkExtentBytes, checkFileLayout, checkVolumeBytes, checkVolumeId, extentCount, extentFileName, extentUsableBytes,
  parseExtentFileName, parseSegmentFileName, segmentFileBytes, segmentFileName, splitAtExtents,
} from '../../src/extent/extent-layout';
import { throwsCode } from '../helpers/assertions';

const MiB = 1024 * 1024;

void t.test('volume ids are safe directory names', async (t) => {
  for (const good of ['a', 'vol-1', 'Vol_2.x', '0123456789abcdef0123456789abcdef', 'x'.repeat(63)]) {
    t.doesNotThrow(() => checkVolumeId(good), good);
  }
  for (const bad of ['', '.', '..', '.x', '-x', '_x', 'a/b', 'a\\b', 'a b', 'é', 'x'.repeat(64), 7, null]) {
    throwsCode(t, () => checkVolumeId(bad), 'CAIRN_INVALID_ARGUMENT');
  }
});

void t.test('extent sizes are powers of two within the limits, volume sizes are safe integers', async (t) => {
  t.doesNotThrow(() => checkExtentBytes(MiB));
  t.doesNotThrow(() => checkExtentBytes(1024 * MiB));
  for (const bad of [0, MiB / 2, 3 * MiB, 2048 * MiB, 1.5, Number.NaN, '1']) {
    throwsCode(t, () => checkExtentBytes(bad), 'CAIRN_INVALID_ARGUMENT');
  }
  t.doesNotThrow(() => checkVolumeBytes(0));
  for (const bad of [-1, 0.5, 2 ** 53, 2 ** 60, Number.POSITIVE_INFINITY]) throwsCode(t, () => checkVolumeBytes(bad), 'CAIRN_INVALID_ARGUMENT');
});

void t.test('extent counts and usable bytes account for a partial last extent', async (t) => {
  t.equal(extentCount(0, MiB), 0);
  t.equal(extentCount(1, MiB), 1);
  t.equal(extentCount(MiB, MiB), 1);
  t.equal(extentCount(MiB + 1, MiB), 2);
  t.equal(extentUsableBytes(0, MiB + 1, MiB), MiB);
  t.equal(extentUsableBytes(1, MiB + 1, MiB), 1);
  t.throws(() => extentUsableBytes(2, MiB + 1, MiB));
});

void t.test('extent file names round-trip and nothing else parses', async (t) => {
  for (const index of [0, 1, 42, 16383, 2 ** 40]) t.equal(parseExtentFileName(extentFileName(index)), index);
  for (const other of ['layout.json', '01.extent', '-1.extent', '1.extent.tmp', '.extent', 'a.extent', '1e3.extent', '12345678901234567.extent']) {
    t.equal(parseExtentFileName(other), undefined, other);
  }
  t.throws(() => extentFileName(-1));
});

void t.test('segment files: names by layout, lengths in whole extents up to the span, sizes checked', async (t) => {
  const segments = { extentBytes: MiB, segmentBytes: 4 * MiB };
  const perExtent = { extentBytes: MiB, segmentBytes: MiB };
  t.equal(segmentFileName(segments, 3), '3.segment');
  t.equal(segmentFileName(perExtent, 3), '3.extent', 'one extent per file keeps the original name');
  for (const index of [0, 7, 2 ** 40]) {
    t.equal(parseSegmentFileName(segments, segmentFileName(segments, index)), index);
    t.equal(parseSegmentFileName(perExtent, segmentFileName(perExtent, index)), index);
  }
  for (const other of ['3.extent', '03.segment', '3.segment.tmp', 'layout.json', '.segment']) t.equal(parseSegmentFileName(segments, other), undefined, other);
  t.equal(parseSegmentFileName(perExtent, '3.segment'), undefined);
  t.equal(segmentFileBytes(segments, 0, 10 * MiB), 4 * MiB, 'a full span');
  t.equal(segmentFileBytes(segments, 2, 10 * MiB), 2 * MiB, 'the last span: its part of the volume');
  t.equal(segmentFileBytes(segments, 2, 9 * MiB + 1), 2 * MiB, 'rounded up to whole extents');
  t.equal(segmentFileBytes(perExtent, 9, 9 * MiB + 1), MiB, 'a one-extent file is always a whole extent');
  t.throws(() => segmentFileBytes(segments, 3, 12 * MiB), 'a segment past the volume');
  t.doesNotThrow(() => checkFileLayout(segments));
  t.doesNotThrow(() => checkFileLayout({ extentBytes: MiB, segmentBytes: 2 ** 50 }));
  for (const segmentBytes of [MiB / 2, 3 * MiB, 2 ** 51, Number.NaN]) {
    throwsCode(t, () => checkFileLayout({ extentBytes: MiB, segmentBytes }), 'CAIRN_INVALID_ARGUMENT');
  }
});

void t.test('a split covers the range contiguously with pieces inside one extent each', async (t) => {
  t.same(splitAtExtents(MiB - 10, 20, MiB), [
    { index: 0, offsetInExtent: MiB - 10, length: 10, rangeOffset: 0 },
    { index: 1, offsetInExtent: 0, length: 10, rangeOffset: 10 },
  ]);
  t.same(splitAtExtents(5, 0, MiB), []);
  let state = 12345;
  const next = (bound: number): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % bound;
  };
  for (let round = 0; round < 500; round++) {
    const extentBytes = MiB << next(3);
    const offset = next(64 * MiB);
    const length = next(8 * MiB);
    const pieces = splitAtExtents(offset, length, extentBytes);
    let covered = 0;
    for (const piece of pieces) {
      if (piece.rangeOffset !== covered) t.fail('pieces are contiguous');
      if (piece.index * extentBytes + piece.offsetInExtent !== offset + covered) t.fail('pieces sit where the bytes are');
      if (piece.offsetInExtent + piece.length > extentBytes || piece.length <= 0) t.fail('pieces stay inside one extent');
      covered += piece.length;
    }
    if (covered !== length) t.fail(`the split of ${offset}+${length} covers the range`);
  }
  t.pass('500 random splits checked');
});
