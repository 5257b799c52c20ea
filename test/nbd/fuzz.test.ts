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
import { RawClient } from './helpers/raw-client';
import { fuzzInput, FuzzTargets } from './helpers/fuzz-input';
import { goodClientLoop } from './helpers/good-client';
import { eventually } from './helpers/session';

const seed = Number(process.env['CAIRN_FUZZ_SEED'] ?? 0x5eed2024);
const fuzzConnections = Number(process.env['CAIRN_FUZZ_CONNECTIONS'] ?? 3000);
const concurrency = 16;
const KiB = 1024;
const goodBytes = 4 * 1024 * KiB;
/** Long and random, so no mutation of a fuzz export name can ever reach the good client's export. */
const goodName = 'good-export-6d1f4c2a9b8e7035';
const targets: FuzzTargets = {
  names: ['', 'ro', 'scratch', 'missing', 'scr\u00e4tch', 'x'.repeat(300)],
  finalNames: ['', 'ro', 'scratch'],
  exportBytes: goodBytes,
};

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
  const input = fuzzInput(random, targets);
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
  await eventually(() => server.connectionCount === 1, 15_000, 'fuzz connections closed');
  t.equal(resolver.opens - resolver.releases, 1, 'only the good client still holds a handle');
});
