/**
 * Keys of the applied cluster map in the shared KvStore. All map keys live under `map/`, so the
 * Raft log and replica-local state can use other prefixes in the same database. Keys are UTF-8
 * text; numbers are fixed-width lowercase hex so byte order equals numeric order.
 *
 *   map/applied                          AppliedState    the index of the last applied entry
 *   map/node/<node id>                   NodeRecord
 *   map/drive/<drive id>                 DriveRecord
 *   map/profile/<profile name>           ProfileRecord
 *   map/volume/<volume id>               VolumeRecord
 *   map/extent/<volume id>/<first:8 hex> ExtentPlacements: extents first .. first + 1023 of the volume
 *                                        (first is a multiple of extentsPerChunk; the last chunk
 *                                        of a volume may be shorter)
 *   map/request/<index:16 hex>           RememberedRequest (keyed by the index it was applied at,
 *                                        so key order is the table's oldest-first order)
 *
 * Ids and names never contain '/' (see src/meta/validate.ts), so parsing is unambiguous.
 * `parseMapKey` rejects anything else under `map/` as CAIRN_CORRUPT naming the key.
 */
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import { keyOf, keyText } from './kv-store';

export const mapKeyPrefix = 'map/';

/**
 * Extents per stored chunk. Part of the stored format: changing it needs a migration. 1024 keeps
 * the largest volume (256 Ki extents) at 256 records, and a chunk under about 40 KiB even when
 * most of its extents use distinct replica sets (rewritten whole when one of its extents changes).
 */
export const extentsPerChunk = 1024;

export type MapKey =
  | { readonly kind: 'applied' }
  | { readonly kind: 'node'; readonly id: string }
  | { readonly kind: 'drive'; readonly id: string }
  | { readonly kind: 'profile'; readonly name: string }
  | { readonly kind: 'volume'; readonly id: string }
  /** `firstIndex` is a multiple of extentsPerChunk. */
  | { readonly kind: 'extent'; readonly volumeId: string; readonly firstIndex: number }
  | { readonly kind: 'request'; readonly index: number };

function hex(value: number, digits: number): string {
  assert(Number.isSafeInteger(value) && value >= 0, `key number ${value} must be a safe non-negative integer`);
  const text = value.toString(16);
  assert(text.length <= digits, `key number ${value} does not fit ${digits} hex digits`);
  return text.padStart(digits, '0');
}

function part(text: string): string {
  assert(text.length > 0 && !text.includes('/'), `key part '${text}' must be non-empty and contain no '/'`);
  return text;
}

export function mapKeyText(key: MapKey): string {
  switch (key.kind) {
    case 'applied':
      return `${mapKeyPrefix}applied`;
    case 'node':
      return `${mapKeyPrefix}node/${part(key.id)}`;
    case 'drive':
      return `${mapKeyPrefix}drive/${part(key.id)}`;
    case 'profile':
      return `${mapKeyPrefix}profile/${part(key.name)}`;
    case 'volume':
      return `${mapKeyPrefix}volume/${part(key.id)}`;
    case 'extent':
      assert(key.firstIndex % extentsPerChunk === 0, `extent chunk index ${key.firstIndex} is not a multiple of ${extentsPerChunk}`);
      return `${mapKeyPrefix}extent/${part(key.volumeId)}/${hex(key.firstIndex, 8)}`;
    case 'request':
      return `${mapKeyPrefix}request/${hex(key.index, 16)}`;
  }
}

export function encodeMapKey(key: MapKey): Uint8Array {
  return keyOf(mapKeyText(key));
}

const hex8 = /^[0-9a-f]{8}$/;
const hex16 = /^[0-9a-f]{16}$/;

/** Parses a stored key under `map/`; anything unexpected is CAIRN_CORRUPT naming the key. */
export function parseMapKey(bytes: Uint8Array): MapKey {
  let text: string;
  try {
    text = keyText(bytes);
  } catch (error) {
    throw new CairnError('CAIRN_CORRUPT', `map key ${Buffer.from(bytes).toString('hex')} (hex) is not UTF-8`, { cause: error });
  }
  const bad = (): never => {
    throw new CairnError('CAIRN_CORRUPT', `unexpected key '${text}' in the cluster map`);
  };
  if (!text.startsWith(mapKeyPrefix)) bad();
  const parts = text.slice(mapKeyPrefix.length).split('/');
  const [kind, first, second] = parts;
  if (parts.some((piece) => piece.length === 0)) bad();
  switch (kind) {
    case 'applied':
      if (parts.length !== 1) bad();
      return { kind: 'applied' };
    case 'node':
    case 'drive':
    case 'volume':
      if (parts.length !== 2 || first === undefined) return bad();
      return { kind, id: first };
    case 'profile':
      if (parts.length !== 2 || first === undefined) return bad();
      return { kind, name: first };
    case 'extent':
      if (parts.length !== 3 || first === undefined || second === undefined || !hex8.test(second)) return bad();
      if (parseInt(second, 16) % extentsPerChunk !== 0) return bad();
      return { kind, volumeId: first, firstIndex: parseInt(second, 16) };
    case 'request':
      if (parts.length !== 2 || first === undefined || !hex16.test(first)) return bad();
      if (!Number.isSafeInteger(parseInt(first, 16))) return bad();
      return { kind, index: parseInt(first, 16) };
    default:
      return bad();
  }
}
