// Goal: the simulated disk's record format round-trips every record kind, and recovery detects any
// torn or damaged tail (short header, short payload, checksum, undecodable payload), keeping exactly
// the intact frames before it.
// Method: encode records, then read back every truncation and seeded random corruptions of the tail.
import t from 'tap';
import type { Entry } from '../../src/raft/types';
import { type WalRecord, crc32, encodeWalRecord, readWal } from '../../src/sim/sim-wal';
import { SeededRandom } from '../../src/util/random';

const confState = { voters: [1, 2, 3], votersOutgoing: [4], learners: [5], learnersNext: [], autoLeave: true };
const entry = (index: number, term: number, text: string, type: Entry['type'] = 'normal'): Entry => ({ index, term, type, data: new TextEncoder().encode(text) });

const records: WalRecord[] = [
  { kind: 'ready', hardState: { term: 3, vote: 2, commit: 7 }, entries: [entry(8, 3, 'a'), entry(9, 3, '', 'confChange')] },
  { kind: 'ready', snapshot: { metadata: { index: 20, term: 4, confState }, data: Uint8Array.of(1, 2, 3) }, entries: [] },
  { kind: 'ready', entries: [entry(21, 2 ** 40, 'x'.repeat(300))] },
  { kind: 'compact', snapshot: { metadata: { index: 21, term: 2 ** 40, confState }, data: new Uint8Array(0) }, compactIndex: 19 },
];

function concat(parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((part) => [...part]));
}

void t.test('crc32 is the IEEE checksum zlib computes', async (t) => {
  t.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  t.equal(crc32(new Uint8Array(0)), 0);
});

void t.test('every record kind round-trips', async (t) => {
  const read = readWal(concat(records.map(encodeWalRecord)));
  t.equal(read.tail, undefined);
  t.same(read.records, records);
});

void t.test('every truncation keeps the intact frames and reports the torn tail', async (t) => {
  const frames = records.map(encodeWalRecord);
  const bytes = concat(frames);
  const boundaries = new Set<number>([0]);
  let offset = 0;
  for (const frame of frames) boundaries.add((offset += frame.length));
  const wrong: string[] = [];
  for (let length = 0; length <= bytes.length; length++) {
    const read = readWal(bytes.subarray(0, length));
    const intact = [...boundaries].filter((boundary) => boundary <= length).length - 1;
    if (read.records.length !== intact) wrong.push(`${length}: ${read.records.length} records, expected ${intact}`);
    if (boundaries.has(length) !== (read.tail === undefined)) wrong.push(`${length}: tail ${String(read.tail)}`);
  }
  t.same(wrong, []);
});

void t.test('random damage in the last frame is always detected', async (t) => {
  const random = new SeededRandom(99);
  const intact = concat(records.slice(0, 3).map(encodeWalRecord));
  const last = encodeWalRecord(records[3] as WalRecord);
  let undetected = 0;
  for (let i = 0; i < 2000; i++) {
    const damaged = last.slice();
    for (let flips = 1 + random.int(4); flips > 0; flips--) {
      const at = random.int(damaged.length);
      damaged[at] = (damaged[at] as number) ^ (1 + random.int(255));
    }
    if (damaged.every((value, at) => value === last[at])) continue; // two flips cancelled out
    const read = readWal(concat([intact, damaged]));
    if (read.records.length !== 3) undetected++;
    if (read.tail === undefined) undetected++;
  }
  t.equal(undetected, 0);
});
