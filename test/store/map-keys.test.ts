// Goal: map keys follow the documented layout, parse back to what made them, sort numerically
// where they carry numbers, and anything else under map/ is refused as CAIRN_CORRUPT.
// Method: round-trip one key of each kind; compare byte order; parse hand-written bad keys.
import t from 'tap';
import { encodeMapKey, mapKeyText, parseMapKey, type MapKey } from '../../src/store/map-keys';
import { keyOf, prefixUpperBound } from '../../src/store/kv-store';
import { AssertionError } from '../../src/util/assert';
import { throwsCode } from '../meta/helpers/errors';

void t.test('every kind of key has the documented text and parses back', async (t) => {
  const keys: Array<[MapKey, string]> = [
    [{ kind: 'applied' }, 'map/applied'],
    [{ kind: 'node', id: 'n-1' }, 'map/node/n-1'],
    [{ kind: 'drive', id: 'd.1' }, 'map/drive/d.1'],
    [{ kind: 'profile', name: 'fast' }, 'map/profile/fast'],
    [{ kind: 'volume', id: 'vol:42' }, 'map/volume/vol:42'],
    [{ kind: 'extent', volumeId: 'vol:42', firstIndex: 1024 }, 'map/extent/vol:42/00000400'],
    [{ kind: 'request', index: 2 ** 53 - 1 }, 'map/request/001fffffffffffff'],
  ];
  for (const [key, text] of keys) {
    t.equal(mapKeyText(key), text);
    t.same(parseMapKey(encodeMapKey(key)), key, text);
  }
});

void t.test('numbered keys sort numerically', async (t) => {
  const compare = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const extent = (firstIndex: number): Uint8Array => encodeMapKey({ kind: 'extent', volumeId: 'vol:1', firstIndex });
  const request = (index: number): Uint8Array => encodeMapKey({ kind: 'request', index });
  t.equal(compare(extent(0), extent(1024)), -1);
  t.equal(compare(extent(3072), extent(4096)), -1);
  t.equal(compare(request(99), request(100)), -1);
  t.equal(compare(request(2 ** 32), request(2 ** 40)), -1);
});

void t.test('unknown or malformed keys under map/ are CAIRN_CORRUPT naming the key', async (t) => {
  for (const text of ['map/', 'map/nodes/x', 'map/node', 'map/node/', 'map/node/a/b', 'map/applied/x', 'map/extent/vol:1/ff', 'map/extent/vol:1/0000000g', 'map/extent/vol:1/00000001', 'map/extent/vol:1/00000100',
    'map/request/12', 'map/request/ffffffffffffffff', 'other/node/x']) {
    throwsCode(t, () => parseMapKey(keyOf(text)), 'CAIRN_CORRUPT', `unexpected key '${text}' in the cluster map`);
  }
  throwsCode(t, () => parseMapKey(Uint8Array.from([0x6d, 0xff])), 'CAIRN_CORRUPT', 'map key 6dff (hex) is not UTF-8');
});

void t.test('building a key from a part with a slash, or a number out of place, is a programmer error', async (t) => {
  t.throws(() => mapKeyText({ kind: 'node', id: 'a/b' }), AssertionError);
  t.throws(() => mapKeyText({ kind: 'node', id: '' }), AssertionError);
  t.throws(() => mapKeyText({ kind: 'extent', volumeId: 'vol:1', firstIndex: -1024 }), AssertionError);
  t.throws(() => mapKeyText({ kind: 'extent', volumeId: 'vol:1', firstIndex: 2 ** 32 }), AssertionError);
  t.throws(() => mapKeyText({ kind: 'extent', volumeId: 'vol:1', firstIndex: 5 }), AssertionError, 'a chunk starts at a multiple of extentsPerChunk');
  t.throws(() => mapKeyText({ kind: 'request', index: 1.5 }), AssertionError);
});

void t.test('prefixUpperBound is the first key past a prefix', async (t) => {
  t.same([...prefixUpperBound(keyOf('map/'))!], [...keyOf('map0')]);
  t.same([...prefixUpperBound(Uint8Array.of(1, 0xff, 0xff))!], [2]);
  t.equal(prefixUpperBound(Uint8Array.of(0xff, 0xff)), undefined);
  t.throws(() => prefixUpperBound(new Uint8Array(0)), AssertionError);
});
