/**
 * The well-behaved client of the fuzz tests: random writes (some FUA), trims, zeroes, flushes and
 * verifying reads against a shadow copy of its export, until told to stop. Any error, refused
 * request or wrong byte throws. Trimmed ranges must read back as zeroes (every Cairn device and
 * MemoryDevice guarantee that; the NBD spec alone does not).
 */
import { SeededRandom } from '../../../src/util/random';
import { randomBytes } from './fuzz-input';
import { RawClient } from './raw-client';

/** The well-behaved client: random writes, trims, zeroes, flushes and verifying reads. */
export async function goodClientLoop(client: RawClient, shadow: Buffer, random: SeededRandom, stop: () => boolean): Promise<number> {
  let operations = 0;
  let cookie = 1n;
  while (!stop()) {
    const length = 512 * (1 + random.int(128));
    const offset = 512 * random.int((shadow.length - length) / 512 + 1);
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
