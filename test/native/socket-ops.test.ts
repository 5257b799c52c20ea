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
import os from 'node:os';
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

t.test('a receive also takes, without waiting, what has arrived after its target', async (t) => {
  const [a, b] = pair(t);
  const payload = filled(2 * MiB, 4);
  const following = filled(100, 5);
  // The payload is larger than the socket buffer, so it is still arriving when the receive
  // starts; its last bytes and the 100 after them go out in one sendmsg, so most of them are in
  // by the time the target is full.
  const sending = sockets.sendAsync(a, [payload, following], 1000);
  const target = Buffer.alloc(payload.length);
  const ahead = Buffer.alloc(64);
  const first = await sockets.recvAheadAsync(b, target, ahead, 1000);
  await sending;
  t.equal(first.received, payload.length, 'the whole target');
  t.ok(target.equals(payload), 'the target holds the payload, byte for byte');
  t.ok(first.ahead > 0 && first.ahead <= ahead.length, `some of what followed came ahead (${first.ahead} bytes)`);
  t.ok(ahead.subarray(0, first.ahead).equals(following.subarray(0, first.ahead)), 'ahead holds the bytes right after the payload');
  const rest = Buffer.alloc(following.length - first.ahead);
  t.equal(await sockets.recvAsync(b, rest, 1000), rest.length, 'the rest is still in the socket, not lost');
  t.ok(rest.equals(following.subarray(first.ahead)), 'and follows in order');

  // Nothing after the target: the receive does not wait for more.
  await sockets.sendAsync(a, [filled(1000, 6)], 1000);
  const started = Date.now();
  const alone = await sockets.recvAheadAsync(b, Buffer.alloc(1000), Buffer.alloc(64), 5000);
  t.same(alone, { received: 1000, ahead: 0 }, 'nothing ahead');
  t.ok(Date.now() - started < 2500, 'and no wait for it (idleMs was 5 s)');

  // A target that does not fill (the peer goes quiet): nothing is taken ahead.
  await sockets.sendAsync(a, [filled(300, 7)], 1000);
  const short = await sockets.recvAheadAsync(b, Buffer.alloc(1000), Buffer.alloc(64), 30);
  t.same(short, { received: 300, ahead: 0 }, 'a short target: no ahead read');
});

t.test('a receive-and-write stores the whole payload, then takes what follows ahead', async (t) => {
  const [a, b] = pair(t);
  const directory = fs.mkdtempSync(`${os.tmpdir()}/cairn-recv-write-`);
  const file = fs.openSync(`${directory}/data`, 'w+');
  t.teardown(() => {
    fs.closeSync(file);
    fs.rmSync(directory, { recursive: true, force: true });
  });
  // Small enough to sit in the socket whole before the call: the 28 bytes after it must come ahead.
  const payload = filled(64 * 1024, 8);
  const head = 4096; // already in the buffer, as the first read of a payload leaves it
  const buffer = Buffer.alloc(payload.length);
  payload.copy(buffer, 0, 0, head);
  t.equal(await sockets.sendAsync(a, [payload.subarray(head), filled(28, 9)], 1000), payload.length - head + 28, 'everything sent');
  const ahead = Buffer.alloc(4096);
  const result = await sockets.recvWriteAsync(b, buffer, head, 1000, file, 8192, ahead);
  t.same(result, { received: payload.length, written: payload.length, ahead: 28 }, 'the whole payload received and written, then 28 bytes ahead');
  const stored = Buffer.alloc(payload.length);
  fs.readSync(file, stored, 0, stored.length, 8192);
  t.ok(stored.equals(payload), 'the file holds the whole payload at its position');
  t.ok(ahead.subarray(0, 28).equals(filled(28, 9)), 'ahead holds the next bytes');
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
    t.throws(() => binding.recvAheadAsync(3, Buffer.alloc(1), 'x' as unknown as Buffer, 10), TypeError);
    t.throws(() => binding.recvWriteAsync(3, Buffer.alloc(1), 0, 10, 4, 0, 'x' as unknown as Buffer), TypeError);
  }
  const shared = Buffer.alloc(8192);
  t.throws(() => checked.recvAheadAsync(3, shared.subarray(0, 4096), shared.subarray(4000), 10), /must not overlap/, 'ahead may not overlap the target');
  t.throws(() => checked.recvWriteAsync(3, shared.subarray(4096), 0, 10, 4, 0, shared.subarray(0, 4097)), /must not overlap/, 'nor the buffer of a receive-and-write');
});
