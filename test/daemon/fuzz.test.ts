// Goal: no client input can crash cairnd or disturb stored data. Method: from one seed
// (CAIRN_FUZZ_SEED replays it), a thousand and more connections over the daemon's Unix socket and
// loopback TCP send random bytes, plausible handshakes and mutated requests against real volumes,
// in random chunks, then end, vanish or stop reading. Meanwhile a well-behaved client writes,
// trims, flushes and verifies its own volume against a shadow copy. Afterwards the daemon is still
// running, every fuzz connection is gone, and the good volume reads back exactly, both live and
// after a restart.
import t from 'tap';
import * as net from 'node:net';
import { SeededRandom } from '../../src/util/random';
import { startDaemon } from '../helpers/daemon';
import { fuzzInput, FuzzTargets } from '../nbd/helpers/fuzz-input';
import { goodClientLoop } from '../nbd/helpers/good-client';
import { RawClient } from '../nbd/helpers/raw-client';

const seed = Number(process.env['CAIRN_FUZZ_SEED'] ?? 0xca1d2026);
const fuzzConnections = Number(process.env['CAIRN_FUZZ_CONNECTIONS'] ?? 1500);
const concurrency = 12;
const KiB = 1024;
const goodBytes = 4 * 1024 * KiB;
const goodName = 'good-6c0ffee5a1';

async function connectRaw(path: string): Promise<RawClient> {
  const socket = net.connect({ path });
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  return new RawClient(socket);
}

async function fuzzOnce(random: SeededRandom, connect: () => net.Socket, targets: FuzzTargets): Promise<boolean> {
  const stream = connect();
  const closed = new Promise<void>((resolve) => stream.on('close', () => resolve()));
  stream.on('error', () => {});
  stream.on('data', () => {});
  const input = fuzzInput(random, targets);
  const ending = random.int(10);
  if (ending === 0) stream.pause();
  let at = 0;
  for (let chunks = 1 + random.int(3); chunks > 0 && at < input.length; chunks--) {
    const end = chunks === 1 ? input.length : at + random.int(input.length - at + 1);
    stream.write(input.subarray(at, end));
    at = end;
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (ending <= 1) {
    await new Promise((resolve) => setTimeout(resolve, random.int(5)));
    stream.destroy();
    await closed;
    return true;
  }
  stream.end();
  const closedByServer = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
  if (!closedByServer) stream.destroy();
  await closed;
  return closedByServer;
}

t.test('cairnd survives thousands of malformed sessions and keeps every byte of a good client', async (t) => {
  t.comment(`fuzz seed ${seed} (replay with CAIRN_FUZZ_SEED=${seed})`);
  const daemon = await startDaemon(t, { tcp: true });
  await daemon.api.createVolume({ name: goodName, sizeBytes: goodBytes });
  await daemon.api.createVolume({ name: 'scratch', sizeBytes: goodBytes });
  await daemon.api.createVolume({ name: 'ro', sizeBytes: goodBytes, readOnly: true });
  const targets: FuzzTargets = {
    names: ['', 'ro', 'scratch', 'missing', 'scr\u00e4tch', 'x'.repeat(300), 'vol:1'],
    finalNames: ['ro', 'scratch', ''],
    exportBytes: goodBytes,
  };

  const random = new SeededRandom(seed);
  const good = await connectRaw(daemon.nbdSocket);
  await good.negotiate({ name: goodName, structured: false });
  const shadow = Buffer.alloc(goodBytes);
  let fuzzDone = false;
  const goodRandom = random.fork();
  const goodRun = goodClientLoop(good, shadow, goodRandom, () => fuzzDone);

  let next = 0;
  let hung = 0;
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < fuzzConnections) {
      const index = next++;
      const connectionRandom = new SeededRandom(seed * 65536 + index);
      const connect = index % 5 === 0
        ? () => net.connect({ host: '127.0.0.1', port: daemon.tcpPort })
        : () => net.connect({ path: daemon.nbdSocket });
      if (!(await fuzzOnce(connectionRandom, connect, targets))) {
        hung++;
        t.comment(`connection ${index} was not closed by the daemon after its client ended`);
      }
    }
  }));
  fuzzDone = true;
  const goodOperations = await goodRun;
  t.comment(`${fuzzConnections} fuzz connections and ${goodOperations} good operations in ${Date.now() - started} ms`);

  t.equal(daemon.process?.exitCode, null, 'the daemon is still running');
  t.equal(hung, 0, 'every connection that ended its side was closed by the daemon');
  t.ok(goodOperations > 50, 'the good client kept being served');
  const onWire = Buffer.alloc(goodBytes);
  for (let offset = 0; offset < goodBytes; offset += 1024 * KiB) {
    (await good.readSimple(BigInt(offset + 1), offset, 1024 * KiB)).copy(onWire, offset);
  }
  t.ok(onWire.equals(shadow), 'the good volume reads back exactly what the good client wrote');
  good.sendRequest({ type: 3, cookie: 99n });
  t.equal((await good.simpleReply()).error, 0);
  good.stream.destroy();
  const status = await daemon.api.status();
  t.ok(status.nbd.connections <= 1, `fuzz connections are gone (${status.nbd.connections} left)`);
  t.notMatch(daemon.log, /AssertionError|unhandled|uncaught/i, 'no assertion or unhandled error in the daemon log');

  await daemon.restart();
  const again = await connectRaw(daemon.nbdSocket);
  await again.negotiate({ name: goodName, structured: false });
  const afterRestart = Buffer.alloc(goodBytes);
  for (let offset = 0; offset < goodBytes; offset += 1024 * KiB) {
    (await again.readSimple(BigInt(offset + 1), offset, 1024 * KiB)).copy(afterRestart, offset);
  }
  t.ok(afterRestart.equals(shadow), 'and again after a graceful restart');
  again.stream.destroy();
});
