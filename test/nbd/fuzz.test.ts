// Goal: no input can crash the server, wedge it, leak a connection or an export handle, or
// disturb another connection's data. Method: from one seed (CAIRN_FUZZ_SEED overrides), thousands
// of connections send random bytes or valid handshakes and requests with random mutations (bit
// flips, overwrites, truncation, insertion, duplication), in random chunks, then end, vanish or
// stop reading. Meanwhile a well-behaved client writes and verifies its own export against a
// shadow copy. Afterwards: the good client never saw an error, its data is intact on the wire and
// on the device, every fuzz connection was closed and every handle released.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { MemoryDevice } from '../../src/block/memory-device';
import { NbdServer } from '../../src/nbd/server';
import { SeededRandom } from '../../src/util/random';
import { duplexPair } from './helpers/duplex-pair';
import { TestResolver } from './helpers/exports';
import { infoData, metaContextData, NBD_OPT_MAGIC, RawClient, REQUEST_MAGIC } from './helpers/raw-client';
import { eventually } from './helpers/session';

const seed = Number(process.env['CAIRN_FUZZ_SEED'] ?? 0x5eed2024);
const fuzzConnections = Number(process.env['CAIRN_FUZZ_CONNECTIONS'] ?? 3000);
const concurrency = 16;
const KiB = 1024;
const goodBytes = 4 * 1024 * KiB;
/** Long and random, so no mutation of a fuzz export name can ever reach the good client's export. */
const goodName = 'good-export-6d1f4c2a9b8e7035';
const fuzzNames = ['', 'ro', 'scratch', 'missing', 'scr\u00e4tch', 'x'.repeat(300)];

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

function pick<T>(random: SeededRandom, items: readonly T[]): T {
  return items[random.int(items.length)]!;
}

function randomBytes(random: SeededRandom, length: number): Buffer {
  return random.fill(Buffer.alloc(length));
}

/** A plausible handshake: client flags, some options, usually ending in GO or EXPORT_NAME. */
function handshake(random: SeededRandom): Buffer[] {
  const parts: Buffer[] = [u32(random.int(12) === 0 ? random.next32() : pick(random, [3, 3, 3, 3, 3, 1, 0]))];
  const name = (): string => pick(random, fuzzNames);
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
      default: parts.push(optionBytes(8, Buffer.alloc(0)), optionBytes(10, metaContextData('scratch', ['base:allocation'])));
    }
  }
  const finalName = random.int(5) === 0 ? name() : pick(random, ['', 'ro', 'scratch']);
  switch (random.int(8)) {
    case 0: parts.push(optionBytes(1, Buffer.from(finalName))); break;
    case 1: parts.push(optionBytes(2, Buffer.alloc(0))); break;
    case 2: break;
    default: parts.push(optionBytes(7, infoData(finalName, random.int(2) === 0 ? [] : [3])));
  }
  return parts;
}

/** Transmission requests, mostly near-valid, against a 4 MiB export. */
function requests(random: SeededRandom): Buffer[] {
  const parts: Buffer[] = [];
  for (let count = random.int(24); count > 0; count--) {
    const type = random.int(10) === 0 ? random.int(0x10000) : random.int(8);
    const flags = random.int(4) === 0 ? random.int(0x10000) : pick(random, [0, 0, 1, 2, 4, 8, 16, 3, 18]);
    const offset = random.int(8) === 0 ? BigInt(random.next32()) * 2n ** 32n + BigInt(random.next32())
      : BigInt(random.int(goodBytes + 8192));
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

function fuzzInput(random: SeededRandom): Buffer {
  switch (random.int(5)) {
    case 0: return randomBytes(random, random.int(300));
    case 1: return mutate(random, Buffer.concat(handshake(random)));
    case 2: return Buffer.concat([...handshake(random), ...requests(random)]);
    default: return Buffer.concat([Buffer.concat(handshake(random)), mutate(random, Buffer.concat(requests(random)))]);
  }
}

interface FuzzOutcome {
  readonly closedByServer: boolean;
}

/** One fuzz connection; resolves once it is closed. */
async function fuzzOnce(server: NbdServer, random: SeededRandom, socketPath: string | undefined): Promise<FuzzOutcome> {
  let stream: net.Socket | ReturnType<typeof duplexPair>[1];
  if (socketPath === undefined) {
    const [serverSide, clientSide] = duplexPair(16 * KiB);
    server.serve(serverSide);
    stream = clientSide;
  } else {
    stream = net.connect({ path: socketPath });
  }
  const closed = new Promise<void>((resolve) => stream.on('close', () => resolve()));
  stream.on('error', () => {});
  stream.on('data', () => {});
  const input = fuzzInput(random);
  const ending = random.int(10);
  if (ending === 0) stream.pause(); // a client that never reads its replies
  let at = 0;
  for (let chunks = 1 + random.int(3); chunks > 0 && at < input.length; chunks--) {
    const end = chunks === 1 ? input.length : at + random.int(input.length - at + 1);
    stream.write(input.subarray(at, end));
    at = end;
    await new Promise((resolve) => setImmediate(resolve));
  }
  let closedByServer = false;
  if (ending === 0 || ending === 1) {
    await new Promise((resolve) => setTimeout(resolve, random.int(5)));
    stream.destroy();
  } else {
    stream.end();
    // A client that ended its side must be closed by the server: nothing may hang.
    closedByServer = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3000))]);
    if (!closedByServer) stream.destroy();
  }
  await closed;
  return { closedByServer: closedByServer || ending <= 1 };
}

/** The well-behaved client: random writes, trims, zeroes, flushes and verifying reads. */
async function goodClientLoop(client: RawClient, shadow: Buffer, random: SeededRandom, stop: () => boolean): Promise<number> {
  let operations = 0;
  let cookie = 1n;
  while (!stop()) {
    const length = 512 * (1 + random.int(128));
    const offset = 512 * random.int((goodBytes - length) / 512 + 1);
    const choice = random.int(10);
    if (choice < 4) {
      const payload = randomBytes(random, length);
      const error = await client.writeSimple(cookie++, offset, payload, random.int(4) === 0 ? 1 : 0);
      if (error !== 0) throw new Error(`good WRITE failed with ${error}`);
      payload.copy(shadow, offset);
    } else if (choice < 5) {
      const type = random.int(2) === 0 ? 4 : 6; // TRIM or WRITE_ZEROES
      client.sendRequest({ type, cookie, offset, length, flags: type === 6 && random.int(2) === 0 ? 2 : 0 });
      const reply = await client.simpleReply();
      if (reply.error !== 0 || reply.cookie !== cookie) throw new Error(`good ${type} failed with ${reply.error}`);
      cookie++;
      shadow.fill(0, offset, offset + length); // MemoryDevice trims to zeroes
    } else if (choice < 6) {
      client.sendRequest({ type: 3, cookie });
      const reply = await client.simpleReply();
      if (reply.error !== 0) throw new Error(`good FLUSH failed with ${reply.error}`);
      cookie++;
    } else {
      const data = await client.readSimple(cookie++, offset, length);
      if (!data.equals(shadow.subarray(offset, offset + length))) throw new Error(`good READ at ${offset} returned wrong data`);
    }
    operations++;
    // In-memory streams deliver on process.nextTick: without a macrotask yield this loop would
    // starve the fuzz connections (and timers) for as long as it runs.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return operations;
}

void t.test('thousands of random and mutated sessions never disturb the server or another client', async (t) => {
  t.comment(`fuzz seed ${seed} (replay with CAIRN_FUZZ_SEED=${seed})`);
  const random = new SeededRandom(seed);
  const goodDevice = new MemoryDevice({ sizeBytes: goodBytes });
  const scratch = new MemoryDevice({ sizeBytes: goodBytes });
  const resolver = new TestResolver(new Map([
    [goodName, { device: goodDevice }],
    ['scratch', { device: scratch }],
    ['ro', { device: goodDevice, readOnly: true }],
  ]), 'ro');
  // Counts what the server did, to prove the fuzz reaches deep states and not only the greeting.
  const seen = new Map<string, number>();
  const count = (message: string): void => {
    seen.set(message, (seen.get(message) ?? 0) + 1);
  };
  const server = new NbdServer({ resolver, logger: { debug: count, info: count, warn: count, error: count } });
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-nbd-fuzz-'));
  const socketPath = path.join(directory, 'nbd.sock');
  await server.listenUnix(socketPath);
  t.teardown(async () => {
    await server.close();
    fs.rmSync(directory, { recursive: true, force: true });
  });

  const [serverSide, clientSide] = duplexPair();
  server.serve(serverSide);
  const good = new RawClient(clientSide);
  await good.negotiate({ name: goodName, structured: false });
  const shadow = Buffer.alloc(goodBytes);
  let fuzzDone = false;
  const goodRun = goodClientLoop(good, shadow, random.fork(), () => fuzzDone);

  const started = Date.now();
  let next = 0;
  let hung = 0;
  const workers = Array.from({ length: concurrency }, async () => {
    while (next < fuzzConnections) {
      const index = next++;
      // Each connection's input depends only on (seed, index), whatever the interleaving.
      const connectionRandom = new SeededRandom(seed * 65536 + index);
      const viaSocket = index % 25 === 0 ? socketPath : undefined;
      const outcome = await fuzzOnce(server, connectionRandom, viaSocket);
      if (!outcome.closedByServer) hung++;
    }
  });
  await Promise.all(workers);
  fuzzDone = true;
  const goodOperations = await goodRun;
  t.comment(`${fuzzConnections} fuzz connections and ${goodOperations} good operations in ${Date.now() - started} ms`);

  t.comment(JSON.stringify(Object.fromEntries(seen)));
  t.ok((seen.get('nbd transmission') ?? 0) > fuzzConnections / 10, 'many fuzz sessions reached the transmission phase');
  t.ok((seen.get('nbd request refused') ?? 0) > fuzzConnections, 'many invalid requests were answered');
  t.ok((seen.get('nbd option refused') ?? 0) > fuzzConnections / 10, 'many options were refused');
  t.equal(seen.get('nbd export open failed'), undefined, 'the resolver never threw');
  t.equal(hung, 0, 'every connection that ended its side was closed by the server');
  t.ok(goodOperations > 100, 'the good client kept being served');
  const onWire = Buffer.alloc(goodBytes);
  for (let offset = 0; offset < goodBytes; offset += 1024 * KiB) {
    (await good.readSimple(BigInt(offset + 1), offset, 1024 * KiB)).copy(onWire, offset);
  }
  t.ok(onWire.equals(shadow), 'the good export reads back exactly what the good client wrote');
  const onDevice = Buffer.alloc(goodBytes);
  await goodDevice.read(0, onDevice);
  t.ok(onDevice.equals(shadow), 'the device holds exactly that too');
  await eventually(() => server.connectionCount === 1, 5000, 'fuzz connections closed');
  t.equal(resolver.opens - resolver.releases, 1, 'only the good client still holds a handle');
});
