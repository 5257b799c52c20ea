/**
 * Free loopback TCP ports for servers started by benchmarks and tests, which must name their
 * ports before they listen (a Raft group's members know each other's addresses up front).
 *
 * A port the kernel handed out for `listen(0)` comes from the ephemeral range, and once released
 * the kernel may give it to any outgoing connection on the machine (a client, another test
 * process) before our server binds it: EADDRINUSE at random. So ports come from below the
 * ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), which the kernel never hands out by
 * itself: a random start, then the first port that binds on 127.0.0.1 and was not handed out by
 * this process before. Two processes racing for one port of ~20,000 remains possible but rare.
 * Where the ephemeral range leaves no room below it, falls back to listen(0).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const lowestPort = 10_000;
const handedOut = new Set<number>();

function ephemeralRangeStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 0 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/** Binds 127.0.0.1:port and releases it; resolves the bound port, or 0 when the port is taken. */
function probe(port: number): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(0));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

export async function freePort(): Promise<number> {
  const ceiling = ephemeralRangeStart();
  const span = ceiling - lowestPort;
  if (span >= 1000) {
    const start = Math.floor(Math.random() * span);
    for (let step = 0; step < 200; step++) {
      const port = lowestPort + ((start + step) % span);
      if (handedOut.has(port)) continue;
      if (await probe(port) === port) {
        handedOut.add(port);
        return port;
      }
    }
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await probe(0);
    if (port !== 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free TCP port on 127.0.0.1');
}
