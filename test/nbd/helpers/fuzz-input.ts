/**
 * Seeded NBD fuzz inputs shared by the in-process server fuzz test and the daemon fuzz test: random
 * bytes, plausible handshakes, near-valid transmission requests and their mutations (bit flips,
 * overwrites, truncation, insertion, duplication, boundary integers). Each input depends only on
 * the generator's state, so one seed replays exactly.
 */
import { SeededRandom } from '../../../src/util/random';
import { infoData, metaContextData, NBD_OPT_MAGIC, REQUEST_MAGIC } from './raw-client';

const KiB = 1024;

export interface FuzzTargets {
  /** Export names the fuzz asks for (never the good client's). */
  readonly names: readonly string[];
  /** Names a final GO / EXPORT_NAME usually picks, so sessions reach transmission. */
  readonly finalNames: readonly string[];
  /** Size of the exports, to aim offsets near the end. */
  readonly exportBytes: number;
}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0);
  return bytes;
}

function optionBytes(option: number, data: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD_OPT_MAGIC, 0);
  header.writeUInt32BE(option >>> 0, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

function requestBytes(type: number, flags: number, cookie: number, offset: bigint, length: number, payload?: Buffer): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(REQUEST_MAGIC, 0);
  header.writeUInt16BE(flags & 0xffff, 4);
  header.writeUInt16BE(type & 0xffff, 6);
  header.writeBigUInt64BE(BigInt(cookie), 8);
  header.writeBigUInt64BE(offset, 16);
  header.writeUInt32BE(length >>> 0, 24);
  return payload === undefined ? header : Buffer.concat([header, payload]);
}

export function pick<T>(random: SeededRandom, items: readonly T[]): T {
  return items[random.int(items.length)]!;
}

export function randomBytes(random: SeededRandom, length: number): Buffer {
  return random.fill(Buffer.alloc(length));
}

/** A plausible handshake: client flags, some options, usually ending in GO or EXPORT_NAME. */
function handshake(random: SeededRandom, targets: FuzzTargets): Buffer[] {
  const parts: Buffer[] = [u32(random.int(12) === 0 ? random.next32() : pick(random, [3, 3, 3, 3, 3, 1, 0]))];
  const name = (): string => pick(random, targets.names);
  for (let count = random.int(5); count > 0; count--) {
    switch (random.int(9)) {
      case 0: parts.push(optionBytes(8, Buffer.alloc(0))); break;
      case 1: parts.push(optionBytes(10, metaContextData(name(), pick(random, [['base:allocation'], [], ['base:'], ['x-a:b']])))); break;
      case 2: parts.push(optionBytes(9, metaContextData(name(), []))); break;
      case 3: parts.push(optionBytes(3, Buffer.alloc(0))); break;
      case 4: parts.push(optionBytes(6, infoData(name(), [0, 1, 2, 3]))); break;
      case 5: parts.push(optionBytes(5, Buffer.alloc(0))); break;
      case 6: parts.push(optionBytes(random.next32(), randomBytes(random, random.int(64)))); break;
      case 7: parts.push(optionBytes(pick(random, [6, 7, 9, 10]), randomBytes(random, random.int(40)))); break;
      default: parts.push(optionBytes(8, Buffer.alloc(0)), optionBytes(10, metaContextData(pick(random, targets.finalNames), ['base:allocation'])));
    }
  }
  const finalName = random.int(5) === 0 ? name() : pick(random, targets.finalNames);
  switch (random.int(8)) {
    case 0: parts.push(optionBytes(1, Buffer.from(finalName))); break;
    case 1: parts.push(optionBytes(2, Buffer.alloc(0))); break;
    case 2: break;
    default: parts.push(optionBytes(7, infoData(finalName, random.int(2) === 0 ? [] : [3])));
  }
  return parts;
}

/** Transmission requests, mostly near-valid, against a 4 MiB export. */
function requests(random: SeededRandom, targets: FuzzTargets): Buffer[] {
  const parts: Buffer[] = [];
  for (let count = random.int(24); count > 0; count--) {
    const type = random.int(10) === 0 ? random.int(0x10000) : random.int(8);
    const flags = random.int(4) === 0 ? random.int(0x10000) : pick(random, [0, 0, 1, 2, 4, 8, 16, 3, 18]);
    const offset = random.int(8) === 0 ? BigInt(random.next32()) * 2n ** 32n + BigInt(random.next32())
      : BigInt(random.int(targets.exportBytes + 8192));
    const length = random.int(10) === 0 ? random.next32() : random.int(70 * KiB);
    if (type === 1) {
      const sent = random.int(6) === 0 ? random.int(length + 1) : length; // sometimes a short payload
      parts.push(requestBytes(type, flags, random.next32(), offset, length, randomBytes(random, Math.min(sent, 256 * KiB))));
    } else {
      parts.push(requestBytes(type, flags, random.next32(), offset, length));
    }
  }
  return parts;
}

function mutate(random: SeededRandom, input: Buffer): Buffer {
  let bytes = Buffer.from(input);
  for (let count = random.int(4); count > 0 && bytes.length > 0; count--) {
    const at = random.int(bytes.length);
    switch (random.int(6)) {
      case 0: bytes[at] = (bytes[at] ?? 0) ^ (1 << random.int(8)); break;
      case 1: bytes[at] = random.int(256); break;
      case 2: bytes = bytes.subarray(0, at); break;
      case 3: bytes = Buffer.concat([bytes.subarray(0, at), randomBytes(random, 1 + random.int(32)), bytes.subarray(at)]); break;
      case 4: bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + random.int(64)), bytes.subarray(at)]); break;
      default: if (at + 4 <= bytes.length) bytes.writeUInt32BE(pick(random, [0, 1, 0xffffffff, 0x7fffffff, 65536, 4096]), at);
    }
  }
  return bytes;
}

export function fuzzInput(random: SeededRandom, targets: FuzzTargets): Buffer {
  switch (random.int(5)) {
    case 0: return randomBytes(random, random.int(300));
    case 1: return mutate(random, Buffer.concat(handshake(random, targets)));
    case 2: return Buffer.concat([...handshake(random, targets), ...requests(random, targets)]);
    default: return Buffer.concat([Buffer.concat(handshake(random, targets)), mutate(random, Buffer.concat(requests(random, targets)))]);
  }
}
