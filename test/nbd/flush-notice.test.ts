/**
 * Goal: a FLUSH that is a connection's only request is answered by the thread that made the
 * data durable (FlushNotice): the reply reaches the client intact, only after the sync
 * succeeded, exactly once; a FLUSH with other requests in flight, or one whose sync fails, is
 * answered on the event loop as before (the failure as EIO, never a success).
 *
 * Method: an in-process NbdServer on a real Unix socket over a VolumeDevice on a real extent
 * store; the exported device is wrapped to record, after each flush, how many reply bytes the
 * syncing thread sent — so the test can tell which path answered. The failing case replaces the
 * addon's syncMany with one that fails with EIO after the real sync.
 */
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { BlockDevice, FlushNotice } from '../../src/block/block-device';
import { VolumeDevice } from '../../src/block/volume-device';
import { NbdServer } from '../../src/nbd/server';
import { loadSocketBinding } from '../../src/native/binding';
import { errnoError, MiB, openStore, spyNative } from '../extent/fixtures/extent-fixtures';
import { TestResolver } from './helpers/exports';
import { encodeRequest, RawClient } from './helpers/raw-client';

const NBD_CMD_WRITE = 1;
const NBD_CMD_FLUSH = 3;
const NBD_EIO = 5;

/** Resolves once `condition` holds (polled); throws after 15 s. */
async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Delegates to a device and records the notice outcome of every flush. A write to offset 0 waits
 * for `holdWriteAtZero` (when given): a request deterministically still in flight.
 */
function recording(device: BlockDevice, holdWriteAtZero?: Promise<void>): { device: BlockDevice; sentByPool: number[] } {
  const sentByPool: number[] = [];
  const wrapper: BlockDevice = {
    sizeBytes: device.sizeBytes,
    capabilities: device.capabilities,
    read: (offset, target) => device.read(offset, target),
    write: async (offset, source, flags) => {
      if (offset === 0 && holdWriteAtZero !== undefined) await holdWriteAtZero;
      return device.write(offset, source, flags);
    },
    flush: async (notice?: FlushNotice) => {
      try {
        await device.flush(notice);
      } finally {
        sentByPool.push(notice === undefined ? -1 : notice.sentBytes); // -1: not offered
      }
    },
    trim: (offset, length, flags) => device.trim(offset, length, flags),
    zero: (offset, length, flags) => device.zero(offset, length, flags),
    cache: (offset, length) => device.cache(offset, length),
    extents: (offset, length) => device.extents(offset, length),
  };
  return { device: wrapper, sentByPool };
}

/** A request header (payload, if any, sent separately). */
function header(type: number, cookie: number, offset: number, length: number): Buffer {
  return encodeRequest({ type, cookie: BigInt(cookie), offset, length });
}

async function serve(t: Test, failSync: boolean, holdWriteAtZero?: Promise<void>): Promise<{ client: RawClient; sentByPool: number[] }> {
  const { native } = spyNative(failSync ? {
    syncMany: async (data, metadata, notice) => {
      await spyNative().native.syncMany(data, metadata); // the real sync, never the notice
      void notice;
      throw errnoError('EIO', 5, 'fdatasync');
    },
  } : {});
  const store = await openStore(t, { native, onWarning: () => undefined });
  const volume = await VolumeDevice.open({ store, volumeId: 'notice', sizeBytes: 8 * MiB, extentBytes: MiB });
  const { device, sentByPool } = recording(volume, holdWriteAtZero);
  const server = new NbdServer({ socketCalls: loadSocketBinding(), resolver: new TestResolver(new Map([['disk', { device }]]), 'disk') });
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-notice-'));
  const socketPath = path.join(directory, 'nbd.sock');
  await server.listenUnix(socketPath);
  const socket = net.createConnection(socketPath);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const client = new RawClient(socket);
  t.teardown(async () => {
    client.destroy();
    await server.close();
    fs.rmSync(directory, { recursive: true, force: true });
  });
  await client.negotiate({});
  return { client, sentByPool };
}

t.test('a lone FLUSH after a write is answered by the syncing thread, once, intact', async (t) => {
  const { client, sentByPool } = await serve(t, false);
  for (let round = 1; round <= 20; round++) {
    client.write(Buffer.concat([header(NBD_CMD_WRITE, round * 2, round * 4096, 4096), Buffer.alloc(4096, round)]));
    const written = await client.simpleReply();
    t.equal(written.error, 0);
    client.write(header(NBD_CMD_FLUSH, round * 2 + 1, 0, 0));
    const flushed = await client.simpleReply();
    t.same([flushed.error, flushed.cookie], [0, BigInt(round * 2 + 1)], `flush ${round} answered with its cookie`);
  }
  // The client can hear before the event loop has seen the flush finish: let it catch up.
  await until('20 flush outcomes', () => sentByPool.length >= 20);
  t.equal(sentByPool[0], 0, 'the first flush also syncs the new extent file\'s directory: answered on the event loop');
  t.same(sentByPool.slice(1), Array.from({ length: 19 }, () => 16), 'every later reply was sent whole by the thread that synced');
  t.equal(client.bufferedBytes, 0, 'and nothing else arrived (no second reply)');
});

t.test('a FLUSH with other requests in flight is answered on the event loop, after them or not, exactly once', async (t) => {
  let release = (): void => undefined;
  const held = new Promise<void>((resolve) => { release = resolve; });
  const { client, sentByPool } = await serve(t, false, held);
  client.write(Buffer.concat([
    header(NBD_CMD_WRITE, 1, 0, 65536), Buffer.alloc(65536, 1),
    header(NBD_CMD_FLUSH, 2, 0, 0),
    header(NBD_CMD_WRITE, 3, 65536, 65536), Buffer.alloc(65536, 3),
  ]));
  // The write at offset 0 is held, so it is in flight whenever the FLUSH arrives.
  await until('the flush outcome', () => sentByPool.length >= 1);
  release();
  const cookies = [];
  for (let i = 0; i < 3; i++) {
    const reply = await client.simpleReply();
    t.equal(reply.error, 0);
    cookies.push(reply.cookie);
  }
  t.same(cookies.sort(), [1n, 2n, 3n], 'one reply per request');
  t.same(sentByPool, [-1], 'the flush was not lent the output');
});

t.test('a FLUSH whose sync fails gets EIO, never a success sent early', async (t) => {
  const { client, sentByPool } = await serve(t, true);
  client.write(Buffer.concat([header(NBD_CMD_WRITE, 1, 0, 4096), Buffer.alloc(4096, 9)]));
  t.equal((await client.simpleReply()).error, 0);
  client.write(header(NBD_CMD_FLUSH, 2, 0, 0));
  const reply = await client.simpleReply();
  t.same([reply.error, reply.cookie], [NBD_EIO, 2n], 'the flush failed with EIO');
  t.same(sentByPool, [0], 'the syncing thread sent nothing');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(client.bufferedBytes, 0, 'no other reply followed');
});
