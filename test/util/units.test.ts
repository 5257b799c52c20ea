// Goal: byte sizes parse and print the way an operator types and reads them.
// Method: table of inputs with expected results, including every rejection.
import t from 'tap';
import { formatBytes, GiB, isPowerOfTwo, KiB, MiB, parseBytes, TiB } from '../../src/util/units';

t.test('parseBytes accepts integers with binary units, case-insensitively', async (t) => {
  const cases: Array<[string, number]> = [
    ['4096', 4096], ['10GiB', 10 * GiB], ['10G', 10 * GiB], ['10gb', 10 * GiB], ['512MiB', 512 * MiB],
    ['1.5 TiB', 1.5 * TiB], [' 64k ', 64 * KiB], ['0', 0],
  ];
  for (const [text, bytes] of cases) t.equal(parseBytes(text), bytes, text);
});

t.test('parseBytes rejects negatives, unknown units, fractions of a byte and unsafe integers', async (t) => {
  for (const text of ['-1', '10XB', '', 'GiB', '1.5', '0.1KiB', '99999999999PiB', '1e3', '10 G i B']) {
    t.equal(parseBytes(text), undefined, JSON.stringify(text));
  }
});

t.test('formatBytes picks the largest unit and keeps precision readable', async (t) => {
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(1023), '1023 B');
  t.equal(formatBytes(GiB), '1 GiB');
  t.equal(formatBytes(1.5 * MiB), '1.50 MiB');
  t.equal(formatBytes(10 * TiB), '10 TiB');
});

t.test('isPowerOfTwo is exact for every power up to 2^52 and rejects neighbours', async (t) => {
  for (let shift = 0; shift <= 52; shift++) {
    t.ok(isPowerOfTwo(2 ** shift), `2^${shift}`);
    if (shift > 1) t.notOk(isPowerOfTwo(2 ** shift + 1), `2^${shift}+1`);
  }
  for (const value of [0, -2, 3, 1.5, NaN, Infinity]) t.notOk(isPowerOfTwo(value), String(value));
});
