/**
 * Goal: the attach manager's policy holds on every path — attach over netlink or ioctls, the
 * refusal on a kernel without nbd that changes nothing, cleanup after every failed kernel call,
 * detach that flushes first, replacement of sockets the kernel drops, reattachment by backend
 * identifier after a restart, and resize.
 *
 * Method: a FakeKernel (src/attach/fake-kernel.ts) stands in for nbd.ko on real socketpairs and
 * speaks the transmission phase as the driver does, so reads and writes travel through the real
 * NBD server path into in-memory volumes. Every test checks that export handles, records and
 * sockets are left as they should be (opens == releases once nothing is attached).
 */
import t, { Test } from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCairnError } from '../../src/errors/cairn-error';
import { TransmissionFlag } from '../../src/nbd';
import { harness, pattern, waitFor } from './fixtures';

const MiB = 1024 * 1024;

/** Each expected entry (string or pattern) appears in `lines`, in this order. */
function hasCalls(t: Test, lines: readonly string[], expected: ReadonlyArray<string | RegExp>): void {
  let from = 0;
  for (const entry of expected) {
    const at = lines.findIndex((line, index) => index >= from && (typeof entry === 'string' ? line === entry : entry.test(line)));
    t.ok(at >= 0, `${String(entry)} in ${JSON.stringify(lines.slice(from))}`);
    if (at >= 0) from = at + 1;
  }
}
const noDriver = 'this kernel has no nbd driver: load it with `modprobe nbd`';

void t.test('attach hands the kernel one socket per connection over netlink and serves I/O through them', async (t) => {
  const h = harness(t);
  const device = h.volumes.add('a', 8 * MiB);
  await h.manager.start();
  const { attachment, created } = await h.manager.attach('a', { connections: 2 });
  t.ok(created);
  t.equal(attachment.device, '/dev/nbd0');
  t.equal(attachment.method, 'netlink');
  t.equal(attachment.state, 'attached');
  const kernel = h.kernel.describe(0);
  t.equal(kernel.method, 'netlink');
  t.equal(kernel.liveSockets, 2, 'two sockets handed over');
  t.equal(kernel.sizeBytes, 8 * MiB);
  t.equal(kernel.ioTimeoutSeconds, 30, 'netlink default I/O timeout');
  t.equal(kernel.deadConnTimeoutSeconds, 120, 'default dead-connection timeout');
  t.ok(kernel.serverFlags & TransmissionFlag.CAN_MULTI_CONN, 'multi-conn advertised');
  t.ok(kernel.serverFlags & TransmissionFlag.SEND_FLUSH, 'flush advertised');
  t.ok(kernel.serverFlags & TransmissionFlag.SEND_FUA, 'FUA advertised');
  t.ok(kernel.serverFlags & TransmissionFlag.SEND_TRIM, 'trim advertised');
  t.match(kernel.backendId, /^cairn:vol-a:[0-9a-f]{16}$/);

  const data = pattern(256 * 1024, 1);
  await Promise.all([h.kernel.write(0, 4096, data), h.kernel.write(0, 2 * MiB, data, { fua: true })]);
  t.same(device.bytes(4096, data.length), data, 'the write reached the volume');
  t.same(await h.kernel.read(0, 2 * MiB, data.length), data, 'read back through the device');
  await h.kernel.flush(0);
  t.ok(device.flushes > 0, 'FLUSH reached the volume');
  await h.kernel.trim(0, 4096, 4096);
  t.same(device.bytes(4096, 4096), Buffer.alloc(4096), 'trim reached the volume');

  const records = JSON.parse(readFileSync(join(h.dataDir, 'attachments.json'), 'utf8')) as { attachments: Array<{ state: string; index: number }> };
  t.same(records.attachments.map((record) => [record.state, record.index]), [['attached', 0]], 'the attachment is recorded');
  t.equal(h.volumes.outstanding, 3, 'the anchor and one handle per socket are open');
  t.equal(h.volumes.anchorsHeld, 1, 'one of them is the anchor, taken as an anchor (not counted as a connection)');
  t.same(h.manager.viewsOf('vol-a').map((view) => view.device), ['/dev/nbd0']);
  t.equal(h.manager.deviceOf('vol-a'), '/dev/nbd0');
});

void t.test('connections default to one per CPU up to 8, and to one for a volume without multi-conn', async (t) => {
  const h = harness(t, { cpuCount: 32 });
  h.volumes.add('many', MiB);
  h.volumes.add('single', MiB, { multiConn: false });
  await h.manager.start();
  t.equal((await h.manager.attach('many', {})).attachment.connections, 8);
  t.equal((await h.manager.attach('single', {})).attachment.connections, 1);
  t.notOk(h.kernel.describe(1).serverFlags & TransmissionFlag.CAN_MULTI_CONN, 'no multi-conn flag');
  await t.rejects(h.manager.detach('single', {}).then(() => h.manager.attach('single', { connections: 2 })),
    { code: 'CAIRN_INVALID_ARGUMENT', message: /no multi-conn/ });
  t.equal(h.manager.viewsOf('vol-single').length, 0, 'the refused attach left nothing');
});

void t.test('a repeated attach with the same options returns the device; different options are refused', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  const first = await h.manager.attach('a', { connections: 1 });
  const again = await h.manager.attach('a', { connections: 1, method: 'auto' });
  t.notOk(again.created);
  t.equal(again.attachment.device, first.attachment.device);
  await t.rejects(h.manager.attach('a', { connections: 2 }), { code: 'CAIRN_VOLUME_IN_USE', message: /already attached as \/dev\/nbd0/ });
  await t.rejects(h.manager.attach('a', { method: 'ioctl' }), { code: 'CAIRN_VOLUME_IN_USE' });
  await t.rejects(h.manager.attach('nope', {}), { code: 'CAIRN_VOLUME_NOT_FOUND' });
  t.equal(h.kernel.calls.filter((call) => call.startsWith('nbdNetlinkConnect')).length, 1, 'connected once');
});

void t.test('on a kernel without nbd, attach fails with the modprobe message and changes nothing', async (t) => {
  const h = harness(t, { devices: 0 });
  h.volumes.add('a', MiB);
  await h.manager.start();
  for (const method of ['auto', 'netlink', 'ioctl'] as const) {
    const error = await h.manager.attach('a', { method }).then(() => undefined, (caught: unknown) => caught);
    t.ok(isCairnError(error, 'CAIRN_PLATFORM'), `${method}: CAIRN_PLATFORM`);
    t.ok((error as Error).message.startsWith(noDriver), `${method}: ${(error as Error).message}`);
  }
  t.notOk(existsSync(join(h.dataDir, 'attachments.json')), 'no record file written');
  t.equal(h.volumes.opens, 0, 'the volume was never opened');
  t.notOk(h.kernel.calls.some((call) => call === 'nbdSocketPair'), 'no socketpair created');
  t.same(h.manager.viewsOf('vol-a'), []);
});

void t.test('without the netlink family attach falls back to ioctls; asking for netlink says why not', async (t) => {
  const h = harness(t, { netlink: false });
  const device = h.volumes.add('a', MiB);
  await h.manager.start();
  await t.rejects(h.manager.attach('a', { method: 'netlink' }), { code: 'CAIRN_PLATFORM', message: /no netlink interface; attach with --method ioctl/ });
  await t.rejects(h.manager.attach('a', { deadConnTimeoutSeconds: 60 }), { code: 'CAIRN_INVALID_ARGUMENT', message: /ioctl path has no dead-connection timeout/ });
  const { attachment } = await h.manager.attach('a', {});
  t.equal(attachment.method, 'ioctl');
  t.equal(attachment.ioTimeoutSeconds, 0, 'ioctl devices wait instead of timing out');
  t.equal(attachment.deadConnTimeoutSeconds, 0);
  hasCalls(t, h.kernel.calls, [/nbdIoctlConnect \/dev\/nbd0 sockets=2 timeout=0/]);
  await h.kernel.write(0, 0, pattern(4096, 2));
  t.same(device.bytes(0, 4096), pattern(4096, 2));
  const result = await h.manager.detach('a', {});
  t.same(result, { detached: true, device: '/dev/nbd0' });
  hasCalls(t, h.kernel.calls, ['nbdFlushDevice /dev/nbd0 exclusive=true', 'nbdIoctlDisconnect /dev/nbd0']);
  t.equal(h.volumes.outstanding, 0, 'every handle released');
});

void t.test('ioctl attach skips a busy device, and fails cleanly when the device thread fails', async (t) => {
  const h = harness(t, { netlink: false });
  h.volumes.add('a', MiB);
  await h.manager.start();
  h.kernel.failNext('nbdIoctlConnect', 'EBUSY', 'ioctl NBD_SET_SOCK');
  const { attachment } = await h.manager.attach('a', { connections: 1 });
  t.equal(attachment.device, '/dev/nbd1', 'the busy /dev/nbd0 was skipped');
  await h.manager.detach('a', {});
  h.kernel.failNext('nbdIoctlConnect', 'EINVAL', 'ioctl NBD_SET_BLKSIZE');
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_IO', message: /cannot attach volume 'a': ioctl NBD_SET_BLKSIZE/ });
  t.equal(h.volumes.outstanding, 0, 'nothing left open');
  t.same(h.manager.viewsOf('vol-a'), []);
});

void t.test('a failed CONNECT leaves no record, no open handle and no served socket', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  h.kernel.failNext('nbdNetlinkConnect', 'EINVAL', 'NBD_CMD_CONNECT', 'the kernel refused the configuration');
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_IO', message: /cannot attach volume 'a': NBD_CMD_CONNECT: the kernel refused/ });
  h.kernel.failNext('nbdNetlinkConnect', 'EPERM', 'NBD_CMD_CONNECT', 'needs root');
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_PLATFORM', message: /run cairnd as root/ });
  h.kernel.failNext('nbdNetlinkStatus', 'EACCES', 'NBD_CMD_STATUS');
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_PLATFORM' });
  h.kernel.failNext('nbdSocketPair', 'EMFILE', 'socketpair');
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_IO', message: /socketpair/ });
  h.volumes.openError = new Error('store offline');
  await t.rejects(h.manager.attach('a', {}), { message: /store offline/ });
  h.volumes.openError = undefined;
  t.equal(h.volumes.outstanding, 0, 'every handle released');
  const records = JSON.parse(readFileSync(join(h.dataDir, 'attachments.json'), 'utf8')) as { attachments: unknown[] };
  t.same(records.attachments, [], 'no record left');
  t.equal(h.kernel.describe(0).method, undefined, 'no device configured');
  t.same(h.manager.viewsOf('vol-a'), []);
});

void t.test('CONNECT is retried on EBUSY and gives up after three attempts', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  h.kernel.failNext('nbdNetlinkConnect', 'EBUSY', 'NBD_CMD_CONNECT');
  const { attachment } = await h.manager.attach('a', { connections: 1 });
  t.equal(attachment.state, 'attached', 'the second attempt succeeded');
  await h.manager.detach('a', {});
  for (let i = 0; i < 3; i++) h.kernel.failNext('nbdNetlinkConnect', 'EBUSY', 'NBD_CMD_CONNECT');
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_UNAVAILABLE' });
  t.equal(h.volumes.outstanding, 0);
});

void t.test('detach flushes the device, disconnects it, releases every handle and removes the record', async (t) => {
  const h = harness(t);
  const device = h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 2 });
  await h.kernel.write(0, 0, pattern(8192, 3));
  const flushesBefore = device.flushes;
  const result = await h.manager.detach('a', {});
  t.same(result, { detached: true, device: '/dev/nbd0' });
  t.same(h.kernel.calls.slice(-2), ['nbdFlushDevice /dev/nbd0 exclusive=true', 'nbdNetlinkDisconnect index=0']);
  t.ok(device.flushes >= flushesBefore + 2, 'the kernel FLUSH and the final volume flush both ran');
  t.equal(h.kernel.describe(0).method, undefined, 'the device is gone');
  t.equal(h.volumes.outstanding, 0, 'every handle released');
  const records = JSON.parse(readFileSync(join(h.dataDir, 'attachments.json'), 'utf8')) as { attachments: unknown[] };
  t.same(records.attachments, []);
  t.same(await h.manager.detach('a', {}), { detached: false, device: '' }, 'detaching again is not an error');
  await t.rejects(h.manager.detach('nope', {}), { code: 'CAIRN_VOLUME_NOT_FOUND' });
});

void t.test('detach refuses a mounted device unless forced, and keeps serving it', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  h.kernel.busyPaths.add('/dev/nbd0');
  await t.rejects(h.manager.detach('a', {}), { code: 'CAIRN_VOLUME_IN_USE', message: /\/dev\/nbd0 is mounted.*--force/ });
  t.equal(h.manager.viewsOf('vol-a')[0]?.state, 'attached', 'still attached');
  await h.kernel.write(0, 0, pattern(4096, 4));
  h.kernel.failNext('nbdFlushDevice', 'EIO', 'fsync');
  await t.rejects(h.manager.detach('a', {}), { code: 'CAIRN_IO', message: /fsync/ });
  t.equal(h.manager.viewsOf('vol-a')[0]?.state, 'attached', 'a failed flush keeps the device');
  const forced = await h.manager.detach('a', { force: true });
  t.ok(forced.detached);
  hasCalls(t, h.kernel.calls, ['nbdFlushDevice /dev/nbd0 exclusive=false']);
  t.equal(h.volumes.outstanding, 0);
});

void t.test('a socket the kernel drops is replaced through RECONFIGURE and I/O in flight completes', async (t) => {
  const h = harness(t);
  const device = h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 2 });
  h.kernel.killSocket(0, 0);
  const write = h.kernel.write(0, 0, pattern(65536, 5));
  await waitFor('a fresh socket', () => h.kernel.describe(0).liveSockets === 2);
  await write;
  t.same(device.bytes(0, 65536), pattern(65536, 5));
  hasCalls(t, h.kernel.calls, [/nbdNetlinkReconfigure index=0 sockets=1/]);
  await waitFor('attached again', () => h.manager.viewsOf('vol-a')[0]?.state === 'attached');
  t.equal(h.volumes.outstanding, 3, 'the dropped socket released its handle; the new one holds one');
  hasCalls(t, h.logger.lines, [/warn kernel socket closed; replacing it/]);
});

void t.test('a device the kernel tore down is marked failed, and a new attach replaces it', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.kernel.nbdNetlinkDisconnect(0); // e.g. `nbd-client -d /dev/nbd0` behind cairn's back
  await waitFor('failed', () => h.manager.viewsOf('vol-a')[0]?.state === 'failed');
  t.match(h.manager.viewsOf('vol-a')[0]?.message, /tore \/dev\/nbd0 down/);
  t.equal(h.volumes.outstanding, 0, 'a failed attachment holds no handle');
  const again = await h.manager.attach('a', { connections: 1 });
  t.ok(again.created);
  t.equal(again.attachment.state, 'attached');
});

void t.test('re-connection is bounded: a kernel that keeps refusing sockets fails the attachment', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  for (let i = 0; i < 10; i++) h.kernel.failNext('nbdNetlinkReconfigure', 'EINVAL', 'NBD_CMD_RECONFIGURE');
  h.kernel.killSocket(0, 0);
  await waitFor('failed', () => h.manager.viewsOf('vol-a')[0]?.state === 'failed');
  t.match(h.manager.viewsOf('vol-a')[0]?.message, /kept refusing fresh sockets \(5 attempts\)/);
  const detached = await h.manager.detach('a', {});
  t.ok(detached.detached, 'a failed attachment can be detached');
  t.equal(h.volumes.outstanding, 0);
});

void t.test('a restarted manager finds its device by backend identifier and hands it fresh sockets', async (t) => {
  const h = harness(t);
  const device = h.volumes.add('a', 4 * MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 2, ioTimeoutSeconds: 5, deadConnTimeoutSeconds: 60 });
  await h.kernel.write(0, 0, pattern(65536, 6));
  await h.manager.stop(0); // the sockets close; the kernel keeps the device and queues I/O
  await waitFor('the kernel to see its sockets close', () => h.kernel.describe(0).liveSockets === 0);
  t.equal(h.kernel.describe(0).method, 'netlink', 'the device survives');
  const pending = h.kernel.write(0, MiB, pattern(65536, 7));
  const next = h.restart();
  await next.start();
  await pending;
  t.same(device.bytes(MiB, 65536), pattern(65536, 7), 'the write queued during the restart landed');
  t.same(await h.kernel.read(0, 0, 65536), pattern(65536, 6), 'data from before the restart reads back');
  const view = next.viewsOf('vol-a')[0];
  t.equal(view?.state, 'attached');
  t.equal(view?.device, '/dev/nbd0', 'the same device');
  t.equal(view?.ioTimeoutSeconds, 5);
  hasCalls(t, h.kernel.calls, [/nbdNetlinkReconfigure index=0 sockets=2/]);
  t.equal(h.kernel.calls.filter((call) => call.startsWith('nbdNetlinkConnect')).length, 1, 'no second CONNECT');
  t.equal(h.kernel.calls.filter((call) => call.startsWith('nbdNetlinkReconfigure')).length, 1, 'one RECONFIGURE was enough');
});

void t.test('a restart whose device is gone attaches the volume again and says so', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.manager.stop(0);
  await h.kernel.nbdNetlinkDisconnect(0); // what the dead-connection timeout (or a reboot) leaves
  h.kernel.failNext('nbdNetlinkConnect', 'EBUSY', 'NBD_CMD_CONNECT');
  const next = h.restart();
  await next.start();
  const view = next.viewsOf('vol-a')[0];
  t.equal(view?.state, 'attached');
  t.match(view?.message, /\/dev\/nbd0 was gone after the restart; attached again as \/dev\/nbd0/);
});

void t.test('a failed reattach stays visible as failed and can be detached', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.manager.stop(0);
  await h.kernel.nbdNetlinkDisconnect(0);
  for (let i = 0; i < 3; i++) h.kernel.failNext('nbdNetlinkConnect', 'EINVAL', 'NBD_CMD_CONNECT');
  const next = h.restart();
  await next.start();
  t.equal(next.viewsOf('vol-a')[0]?.state, 'failed');
  t.match(next.viewsOf('vol-a')[0]?.message, /reattach failed/);
  t.ok((await next.detach('a', {})).detached);
  t.equal(h.volumes.outstanding, 0);
});

void t.test('records of an interrupted attach or detach, or of a deleted volume, are settled at start', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  h.volumes.add('b', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.manager.attach('b', { connections: 1 });
  await h.manager.stop(0);
  const path = join(h.dataDir, 'attachments.json');
  const file = JSON.parse(readFileSync(path, 'utf8')) as { version: number; attachments: Array<Record<string, unknown>> };
  const [a, b] = file.attachments;
  const orphan = { ...a, volumeId: 'vol-gone', volumeName: 'gone', backendId: 'cairn:vol-gone:00', index: 3, state: 'attached' };
  const neverConnected = { ...a, volumeId: 'vol-c', volumeName: 'c', backendId: 'cairn:vol-c:00', index: null, state: 'attaching' };
  h.volumes.add('c', MiB);
  writeFileSync(path, JSON.stringify({ version: 1, attachments: [{ ...a, state: 'detaching' }, b, orphan, neverConnected] }));
  const next = h.restart();
  await next.start();
  t.same(next.viewsOf('vol-a'), [], 'the interrupted detach finished');
  t.equal(h.kernel.describe(0).method, undefined, 'its device is gone');
  t.equal(next.viewsOf('vol-b')[0]?.state, 'attached', 'b reattached');
  t.same(next.viewsOf('vol-c'), [], 'an attach that never connected is dropped');
  const saved = JSON.parse(readFileSync(path, 'utf8')) as { attachments: Array<{ volumeName: string }> };
  t.same(saved.attachments.map((record) => record.volumeName), ['b']);
  hasCalls(t, h.logger.lines, [/attached volume no longer exists/]);
});

void t.test('a corrupt records file is moved aside and start goes on without it', async (t) => {
  const h = harness(t);
  const path = join(h.dataDir, 'attachments.json');
  writeFileSync(path, '{"version": 1, "attachments": [{"volumeId": 7}]}');
  await h.manager.start();
  t.notOk(existsSync(path));
  hasCalls(t, h.logger.lines, [/error attachment records unreadable.*moved to/]);
});

void t.test('resize grows an attached device; a kernel that refuses says so in the view', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.manager.resized(h.volumes.grow('a', 2 * MiB));
  t.equal(h.kernel.describe(0).sizeBytes, 2 * MiB, 'the kernel was told the new size');
  t.equal(h.manager.viewsOf('vol-a')[0]?.sizeBytes, 2 * MiB);
  await h.kernel.write(0, MiB + 4096, pattern(4096, 8));
  t.same(await h.kernel.read(0, MiB + 4096, 4096), pattern(4096, 8), 'the grown range is served by the existing sockets');
  h.kernel.failNext('nbdNetlinkReconfigure', 'EINVAL', 'NBD_CMD_RECONFIGURE', 'no');
  await h.manager.resized(h.volumes.grow('a', 3 * MiB));
  t.equal(h.manager.viewsOf('vol-a')[0]?.sizeBytes, 2 * MiB, 'still the old size');
  t.match(h.manager.viewsOf('vol-a')[0]?.message, /the kernel did not grow \/dev\/nbd0 to 3145728 bytes.*detach and attach again/);
  await h.manager.resized(h.volumes.grow('a', 4 * MiB));
  t.equal(h.manager.viewsOf('vol-a')[0]?.message, undefined, 'a later successful resize clears the message');
});

void t.test('resize grows an ioctl device with NBD_SET_SIZE', async (t) => {
  const h = harness(t, { netlink: false });
  h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.manager.resized(h.volumes.grow('a', 2 * MiB));
  hasCalls(t, h.kernel.calls, [`nbdIoctlSetSize /dev/nbd0 ${2 * MiB}`]);
  t.equal(h.manager.viewsOf('vol-a')[0]?.sizeBytes, 2 * MiB);
});

void t.test('ioctl devices are detached at stop and attached again at start; one that ends on its own fails', async (t) => {
  const h = harness(t, { netlink: false });
  const device = h.volumes.add('a', MiB);
  await h.manager.start();
  await h.manager.attach('a', { connections: 1 });
  await h.kernel.write(0, 0, pattern(4096, 9));
  await h.manager.stop(0);
  t.equal(h.kernel.describe(0).method, undefined, 'the ioctl device was detached at stop');
  hasCalls(t, h.kernel.calls, ['nbdFlushDevice /dev/nbd0 exclusive=false', 'nbdIoctlDisconnect /dev/nbd0']);
  const next = h.restart();
  await next.start();
  t.equal(next.viewsOf('vol-a')[0]?.state, 'attached', 'attached again at start');
  t.same(await h.kernel.read(0, 0, 4096), pattern(4096, 9));
  h.kernel.killSocket(0, 0); // the driver's DO_IT returns when its only socket dies
  await waitFor('failed', () => next.viewsOf('vol-a')[0]?.state === 'failed');
  t.match(next.viewsOf('vol-a')[0]?.message, /the kernel stopped \/dev\/nbd0/);
  t.same(device.bytes(0, 4096), pattern(4096, 9));
});

void t.test('a read-only attach advertises READ_ONLY and the kernel cannot write', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  const { attachment } = await h.manager.attach('a', { readOnly: true, connections: 1 });
  t.ok(attachment.readOnly);
  const flags = h.kernel.describe(0).serverFlags;
  t.ok(flags & TransmissionFlag.READ_ONLY, 'READ_ONLY told to the kernel');
  t.notOk(flags & TransmissionFlag.SEND_TRIM, 'no trim on a read-only device');
  const refused = await h.kernel.write(0, 0, pattern(4096, 1)).then(() => undefined, (error: unknown) => error);
  t.match(refused, { nbdError: 1 }, 'the server answered EPERM');
});

void t.test('operations on one volume never overlap, and stop refuses new ones', async (t) => {
  const h = harness(t);
  h.volumes.add('a', MiB);
  await h.manager.start();
  const first = h.manager.attach('a', { connections: 1 });
  await t.rejects(h.manager.attach('a', { connections: 1 }), { code: 'CAIRN_OPERATION_PENDING' });
  await first;
  const detaching = h.manager.detach('a', {});
  await t.rejects(h.manager.detach('a', {}), { code: 'CAIRN_OPERATION_PENDING' });
  await detaching;
  await h.manager.stop(0);
  await t.rejects(h.manager.attach('a', {}), { code: 'CAIRN_SHUTTING_DOWN' });
});
