/**
 * Goal: the addon's kernel calls are a tiny, typed boundary — every bad argument is a TypeError
 * (in the TypeScript wrapper and again in C++), every failure a NativeError with code, errno,
 * syscall and a plain explanation, socket descriptors handed to a kernel call are consumed
 * whatever the outcome — and sd_notify really delivers a datagram.
 *
 * Method: the real addon on this host. Its kernel has no nbd driver, so the netlink calls must
 * fail with the "no nbd family" error (a host with nbd.ko loaded checks the success shape
 * instead); ioctls go to /dev/null (ENOTTY: not an nbd device); sd_notify goes to a Unix
 * datagram socket bound by Debian's python3. Attach through the real driver is proven by
 * `npm run test:kernel` in a qemu guest.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, fstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkedKernelBinding, isNativeError, KernelBinding, loadKernelBinding, nativeAddonPath } from '../../src/native/binding';

const kernel = loadKernelBinding();
const nbdLoaded = existsSync('/sys/module/nbd');

function rawAddon(): KernelBinding {
  const holder = { exports: {} as unknown };
  process.dlopen(holder, nativeAddonPath());
  return holder.exports as KernelBinding;
}

function isClosed(fd: number): boolean {
  try {
    fstatSync(fd);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EBADF';
  }
}

const connectOptions = { sizeBytes: 1 << 20, blockBytes: 4096, serverFlags: 1, clientFlags: 0, ioTimeoutSeconds: 0, deadConnTimeoutSeconds: 0, backendId: 'cairn:test' };

void t.test('nbdSocketPair returns two connected close-on-exec stream sockets', async (t) => {
  const [a, b] = kernel.nbdSocketPair();
  t.not(a, b);
  const left = new Socket({ fd: a, readable: true, writable: true });
  const right = new Socket({ fd: b, readable: true, writable: true });
  const received = new Promise<string>((resolve) => right.once('data', (chunk: Buffer) => resolve(chunk.toString())));
  left.write('ping');
  t.equal(await received, 'ping');
  left.destroy();
  right.destroy();
});

void t.test('the netlink calls report the missing nbd family (or work where nbd.ko is loaded)', async (t) => {
  if (nbdLoaded) {
    const devices = await kernel.nbdNetlinkStatus();
    t.ok(Array.isArray(devices), 'STATUS lists devices');
    return;
  }
  for (const call of [() => kernel.nbdNetlinkStatus(), () => kernel.nbdNetlinkDisconnect(0), () => kernel.nbdNetlinkStatus(3)]) {
    const error = await call().then(() => undefined, (caught: unknown) => caught);
    t.ok(isNativeError(error), 'a NativeError');
    t.match(error, { code: 'ENOENT', errno: -2, syscall: 'genl CTRL_CMD_GETFAMILY nbd', message: /no generic-netlink family "nbd"/ });
  }
});

void t.test('CONNECT and RECONFIGURE consume their socket descriptors even when they fail', async (t) => {
  const [a, b] = kernel.nbdSocketPair();
  if (!nbdLoaded) {
    // (Where nbd.ko is loaded this CONNECT would really attach a device: not here.)
    const connect = await kernel.nbdNetlinkConnect({ ...connectOptions, socketFds: [b] }).then(() => undefined, (error: unknown) => error);
    t.match(connect, { code: 'ENOENT' });
    // Checked at once: the addon closes the descriptor before it settles the promise.
    t.ok(isClosed(b), 'the kernel end was closed by CONNECT');
  }
  const [c, d] = kernel.nbdSocketPair();
  const reconfigure = await kernel.nbdNetlinkReconfigure({ index: 0x7ffffff0, backendId: 'cairn:test', socketFds: [d] })
    .then(() => undefined, (error: unknown) => error);
  t.ok(isNativeError(reconfigure), 'RECONFIGURE of a device that does not exist fails');
  t.ok(isClosed(d), 'the kernel end was closed by RECONFIGURE');
  for (const fd of [a, c]) new Socket({ fd }).destroy();
  if (nbdLoaded) new Socket({ fd: b }).destroy();
});

void t.test('the ioctl calls explain a node that is not an nbd device, or missing', async (t) => {
  const [a, b] = kernel.nbdSocketPair();
  let exited = false;
  const connect = await kernel.nbdIoctlConnect({
    devicePath: '/dev/null', socketFds: [b], sizeBytes: 1 << 20, blockBytes: 4096, serverFlags: 1, ioTimeoutSeconds: 0,
  }, () => { exited = true; }).then(() => undefined, (error: unknown) => error);
  t.match(connect, { code: 'ENOTTY', syscall: 'ioctl NBD_SET_BLKSIZE', message: /not an nbd device/ });
  t.ok(isClosed(b), 'the socket was consumed');
  t.notOk(exited, 'a failed setup never reports an exit');
  new Socket({ fd: a }).destroy();
  await t.rejects(kernel.nbdIoctlDisconnect('/dev/null'), { code: 'ENOTTY', syscall: 'ioctl NBD_DISCONNECT' });
  await t.rejects(kernel.nbdIoctlSetSize('/dev/null', 1 << 20), { code: 'ENOTTY', syscall: 'ioctl NBD_SET_SIZE' });
  if (!existsSync('/dev/nbd0')) {
    await t.rejects(kernel.nbdFlushDevice('/dev/nbd0', true), { code: 'ENOENT', syscall: 'open', message: /modprobe nbd/ });
  }
});

void t.test('nbdFlushDevice opens and fsyncs (a regular file stands in for a device)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-flush-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'disk');
  writeFileSync(file, Buffer.alloc(4096, 1));
  await kernel.nbdFlushDevice(file, false);
  await kernel.nbdFlushDevice(file, true);
  await t.rejects(kernel.nbdFlushDevice(join(dir, 'missing'), false), { code: 'ENOENT', syscall: 'open' });
});

void t.test('sd_notify delivers one datagram to a path or an abstract socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const address of [join(dir, 'notify.sock'), `@cairn-test-${process.pid}`]) {
    const receiver = receiveOneDatagram(address);
    await receiver.ready;
    kernel.sdNotify(address, 'READY=1\nSTATUS=testing');
    t.equal(await receiver.message, 'READY=1\nSTATUS=testing', `received on ${address}`);
  }
  t.throws(() => kernel.sdNotify(join(dir, 'gone.sock'), 'READY=1'), { code: 'ENOENT', syscall: 'sendto', message: /notify socket is gone/ });
});

void t.test('setIoFlusher marks the thread or reports why not', async (t) => {
  try {
    kernel.setIoFlusher();
    t.pass('PR_SET_IO_FLUSHER set');
  } catch (error) {
    t.match(error, { syscall: 'prctl PR_SET_IO_FLUSHER' });
  }
});

const fd = 0x7fffffff;
const badCalls: Array<[string, (binding: KernelBinding) => unknown]> = [
  ['no socket', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [] })],
  ['65 sockets', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: new Array(65).fill(fd) as number[] })],
  ['a negative fd', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [-1] })],
  ['a block size not a power of two', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], blockBytes: 3000 })],
  ['a tiny block size', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], blockBytes: 256 })],
  ['size 0', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], sizeBytes: 0 })],
  ['flags past u16', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], serverFlags: 0x10000 })],
  ['unknown client flags', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], clientFlags: 4 })],
  ['an empty backend id', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], backendId: '' })],
  ['a 256-byte backend id', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], backendId: 'x'.repeat(256) })],
  ['a NUL in the backend id', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], backendId: 'a\0b' })],
  ['a negative timeout', (b) => b.nbdNetlinkConnect({ ...connectOptions, socketFds: [fd], ioTimeoutSeconds: -1 })],
  ['a negative index', (b) => b.nbdNetlinkReconfigure({ index: -1, backendId: 'x', socketFds: [] })],
  ['a NaN size', (b) => b.nbdNetlinkReconfigure({ index: 0, backendId: 'x', socketFds: [], sizeBytes: Number.NaN })],
  ['a string index', (b) => b.nbdNetlinkDisconnect('0' as unknown as number)],
  ['a relative device path', (b) => b.nbdIoctlDisconnect('nbd0')],
  ['an empty device path', (b) => b.nbdFlushDevice('', true)],
  ['exclusive not a boolean', (b) => b.nbdFlushDevice('/dev/nbd0', 1 as unknown as boolean)],
  ['a fractional size', (b) => b.nbdIoctlSetSize('/dev/nbd0', 1.5)],
  ['no onExit callback', (b) => b.nbdIoctlConnect({ devicePath: '/dev/nbd0', socketFds: [fd], sizeBytes: 4096, blockBytes: 4096, serverFlags: 1, ioTimeoutSeconds: 0 },
    undefined as unknown as () => void)],
  ['a size below one block', (b) => b.nbdIoctlConnect({ devicePath: '/dev/nbd0', socketFds: [fd], sizeBytes: 512, blockBytes: 4096, serverFlags: 1, ioTimeoutSeconds: 0 }, () => {})],
  ['a relative notify socket', (b) => b.sdNotify('notify.sock', 'READY=1')],
  ['an empty notify message', (b) => b.sdNotify('/run/notify', '')],
  ['a notify socket path too long', (b) => b.sdNotify(`/${'x'.repeat(120)}`, 'READY=1')],
];

void t.test('bad arguments are TypeErrors in the wrapper, before the addon is reached', async (t) => {
  const reached: string[] = [];
  const spy = new Proxy({} as KernelBinding, {
    get: (_target, name: string) => () => { reached.push(name); },
  });
  const checked = checkedKernelBinding(spy);
  for (const [what, call] of badCalls) t.throws(() => call(checked), TypeError, what);
  t.same(reached, [], 'nothing reached the addon');
});

void t.test('the raw addon refuses the same bad arguments with TypeErrors of its own', async (t) => {
  const raw = rawAddon();
  // The wrapper's block-size and size relations are TypeScript policy; the addon checks ranges and types.
  const addonChecked = badCalls.filter(([what]) => !['a block size not a power of two', 'a size below one block', 'a notify socket path too long'].includes(what));
  for (const [what, call] of addonChecked) {
    t.throws(() => call(raw), TypeError, what);
  }
  t.throws(() => (raw.nbdNetlinkConnect as unknown as (value: unknown) => unknown)(null), TypeError, 'no options object');
  t.throws(() => (raw.nbdNetlinkStatus as unknown as () => unknown)(), TypeError, 'no index');
});

/** Binds a Unix datagram socket with Debian's python3 and resolves with the first datagram. */
function receiveOneDatagram(address: string): { ready: Promise<void>; message: Promise<string> } {
  const script = [
    'import socket, sys',
    'a = sys.argv[1]',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind("\\0" + a[1:] if a.startswith("@") else a)',
    's.settimeout(20)',
    'print("ready", flush=True)',
    'sys.stdout.write(s.recv(4096).decode())',
  ].join('\n');
  const child = spawn('/usr/bin/python3', ['-c', script, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  let readyResolve: () => void = () => {};
  const ready = new Promise<void>((resolve) => { readyResolve = resolve; });
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (output.startsWith('ready\n')) readyResolve();
  });
  const message = new Promise<string>((resolve) => child.on('close', () => resolve(output.replace(/^ready\n/, ''))));
  return { ready, message };
}
