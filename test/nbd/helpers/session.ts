/**
 * A server over MemoryDevice exports plus in-memory connections to it, torn down with the test.
 * Exports: 'disk' (default, read-write, with a description), 'ro' (the same device, read-only),
 * and whatever the test adds.
 */
import { MemoryDevice } from '../../../src/block/memory-device';
import type { BlockDevice } from '../../../src/block/block-device';
import { NbdServer, NbdServerOptions } from '../../../src/nbd/server';
import { duplexPair } from './duplex-pair';
import { TestExport, TestResolver } from './exports';
import { RawClient } from './raw-client';

export const diskBytes = 1024 * 1024;

export interface Session {
  readonly server: NbdServer;
  readonly resolver: TestResolver;
  readonly device: MemoryDevice;
  readonly connect: () => RawClient;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export function session(t: Teardown, options: { extra?: Record<string, TestExport>; device?: BlockDevice } & Partial<Omit<NbdServerOptions, 'resolver'>> = {}): Session {
  const device = new MemoryDevice({ sizeBytes: diskBytes });
  const entries = new Map<string, TestExport>([
    ['disk', { device: options.device ?? device, description: 'the test disk' }],
    ['ro', { device, readOnly: true }],
  ]);
  for (const [name, entry] of Object.entries(options.extra ?? {})) entries.set(name, entry);
  const resolver = new TestResolver(entries, 'disk');
  const server = new NbdServer({ ...options, resolver });
  const clients: RawClient[] = [];
  t.teardown(async () => {
    for (const client of clients) client.destroy();
    await server.close();
  });
  return {
    server,
    resolver,
    device,
    connect: (): RawClient => {
      const [serverSide, clientSide] = duplexPair();
      server.serve(serverSide);
      const client = new RawClient(clientSide);
      clients.push(client);
      return client;
    },
  };
}

/** Waits until `condition` holds (polling), or fails after the timeout. */
export async function eventually(condition: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
