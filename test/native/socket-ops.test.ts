/**
 * Goal: the addon's socket calls (socket-ops.cc) move exactly the bytes asked for, in order,
 * end early — never hang — when the peer stays silent, ends its side or the socket is shut
 * down, report socket errors as errno-shaped errors, and refuse bad arguments with TypeError
 * both through the validating binding and on the raw addon.
 *
 * Method: real Unix stream socketpairs from the addon (nbdSocketPair); one end is driven by
 * the call under test, the other directly with the same calls; descriptors are closed at the
 * end of each test.
 */
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import { checkedSocketBinding, isNativeError, loadKernelBinding, loadSocketBinding, nativeAddonPath, SocketBinding } from '../../src/native/binding';

const sockets = loadSocketBinding();
const MiB = 1024 * 1024;

function pair(t: Test): [number, number] {
  const [a, b] = loadKernelBinding().nbdSocketPair();
  t.teardown(() => {
    for (const fd of [a, b]) {
      try { sockets.socketClose(fd); } catch { /* closed by the test */ }
    }
  });
  return [a, b];
}

function filled(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

t.test('gathered buffers arrive in order and whole, larger than the socket buffer', async (t) => {
  const [a, b] = pair(t);
  const parts = [filled(3 * MiB, 1), filled(16, 2), filled(MiB + 7, 3)];
  const expected = Buffer.concat(parts);
  const target = Buffer.alloc(expected.length);
  const [sent, received] = await Promise.all([sockets.sendAsync(a, parts, 1000), sockets.recvAsync(b, target, 1000)]);
  t.equal(sent, expected.length, 'everything sent');
  t.equal(received, expected.length, 'everything received');
  t.ok(target.equals(expected), 'in order, byte for byte');
});

t.test('transfers end early instead of hanging: silence, the peer ending, a shutdown', async (t) => {
  const [a, b] = pair(t);
  t.equal(await sockets.recvAsync(b, Buffer.alloc(64), 30), 0, 'a silent peer: nothing received after idleMs');
  t.equal(await sockets.sendAsync(a, [Buffer.alloc(8 * MiB)], 30) < 8 * MiB, true, 'a peer that does not read: a short send');
  const [c, d] = pair(t);
  const receiving = sockets.recvAsync(d, Buffer.alloc(1024), 10_000);
  await sockets.sendAsync(c, [filled(100, 9)], 1000);
  sockets.socketShutdown(c);
  t.equal(await receiving, 100, 'the peer ended its side: the bytes it sent, then the end');
  const [e, f] = pair(t);
  const waiting = sockets.recvAsync(f, Buffer.alloc(1024), 10_000);
  sockets.socketShutdown(f);
  t.equal(await waiting, 0, 'socketShutdown wakes a waiting receive');
  void e;
});

t.test('socket errors reject with errno-shaped errors; socketDup refuses what is not a stream socket', async (t) => {
  const [a, b] = pair(t);
  sockets.socketClose(b);
  const failure = await sockets.sendAsync(a, [Buffer.alloc(1024)], 1000).then(() => undefined, (error: unknown) => error);
  t.ok(isNativeError(failure), 'an errno-shaped error');
  t.match((failure as Error).message, /peer closed the connection/);
  const copy = sockets.socketDup(a);
  t.not(copy, a, 'a new descriptor');
  sockets.socketClose(copy);
  t.throws(() => sockets.socketDup(0x7fff0000), { code: 'EBADF' }, 'a closed descriptor');
  const file = fs.openSync(__filename, 'r');
  t.throws(() => sockets.socketDup(file), { code: 'ENOTSOCK' }, 'a regular file');
  fs.closeSync(file);
});

t.test('bad arguments are TypeErrors, through the binding and on the raw addon', async (t) => {
  const holder = { exports: {} as unknown };
  process.dlopen(holder, nativeAddonPath());
  const raw = holder.exports as SocketBinding;
  const checked = checkedSocketBinding(raw);
  for (const binding of [checked, raw]) {
    t.throws(() => binding.sendAsync(-1, [Buffer.alloc(1)], 10), TypeError);
    t.throws(() => binding.sendAsync(3, [], 10), TypeError);
    t.throws(() => binding.sendAsync(3, ['text' as unknown as Buffer], 10), TypeError);
    t.throws(() => binding.sendAsync(3, Array.from({ length: 65 }, () => Buffer.alloc(1)), 10), TypeError);
    t.throws(() => binding.recvAsync(3, Buffer.alloc(1), 0), TypeError);
    t.throws(() => binding.recvAsync(3, Buffer.alloc(1), 60_001), TypeError);
    t.throws(() => binding.recvAsync(3, 'x' as unknown as Buffer, 10), TypeError);
    t.throws(() => binding.socketDup(1.5), TypeError);
  }
});
