// Goal: a real filesystem lives on a Cairn volume: ext4 made by mkfs.ext4 on a kernel block device
// (a loop device over nbdfuse's file, 4 NBD connections with multi-conn), files written, trimmed,
// e2fsck clean, and after a daemon restart the files read back bit for bit. Method: nbdfuse +
// losetup + mkfs + mount as root against a real cairnd; the e2fsck runs on a copy taken with
// nbdcopy. Needs root (loop devices, mount); every mount, loop device and process is undone in
// teardown even when an assertion fails.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MiB } from '../../src/util/units';
import { startDaemon, TestDaemon } from '../helpers/daemon';
import { isRoot, mustRun, runTool, toolEnv } from '../helpers/tools';

const md5 = (data: Buffer): string => createHash('md5').update(data).digest('hex');

interface Mounted { fuse: ChildProcess; loop: string; fuseDir: string; mountDir: string }

async function mountVolume(daemon: TestDaemon, volume: string, readOnly: boolean, cleanups: Array<() => Promise<void>>): Promise<Mounted> {
  const fuseDir = join(daemon.root, `fuse-${readOnly ? 'ro' : 'rw'}`);
  const mountDir = join(daemon.root, `mnt-${readOnly ? 'ro' : 'rw'}`);
  mkdirSync(fuseDir, { recursive: true });
  mkdirSync(mountDir, { recursive: true });
  const fuse = spawn('nbdfuse', [...(readOnly ? ['-r'] : []), '-C', '4', join(fuseDir, 'disk'), daemon.uri(volume)], { env: toolEnv, stdio: 'ignore' });
  cleanups.push(async () => {
    await runTool('fusermount3', ['-u', '-z', fuseDir]);
    if (fuse.exitCode === null) fuse.kill('SIGKILL');
  });
  const deadline = Date.now() + 15_000;
  while (!(existsSync(join(fuseDir, 'disk')) && statSync(join(fuseDir, 'disk')).size > 0)) {
    if (Date.now() > deadline || fuse.exitCode !== null) throw new Error('nbdfuse did not come up');
    await sleep(50);
  }
  const loop = (await mustRun('losetup', ['-f', '--show', '--direct-io=on', ...(readOnly ? ['-r'] : []), join(fuseDir, 'disk')])).stdout.trim();
  cleanups.push(async () => { await runTool('losetup', ['-d', loop]); });
  return { fuse, loop, fuseDir, mountDir };
}

async function unmountVolume(mounted: Mounted): Promise<void> {
  await mustRun('losetup', ['-d', mounted.loop]);
  await mustRun('fusermount3', ['-u', mounted.fuseDir]);
  const exited = mounted.fuse.exitCode !== null ? Promise.resolve() : new Promise<void>((resolve) => mounted.fuse.once('exit', () => resolve()));
  await Promise.race([exited, sleep(10_000)]);
}

t.test('ext4 on a Cairn volume through nbdfuse and a loop device survives a daemon restart', { skip: isRoot ? false : 'needs root for loop devices and mount' }, async (t) => {
  const cleanups: Array<() => Promise<void>> = [];
  t.teardown(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  });
  const daemon = await startDaemon(t);
  await daemon.api.createVolume({ name: 'fs', sizeBytes: 256 * MiB });

  const files = new Map<string, Buffer>([
    ['big.bin', randomBytes(8 * MiB)],
    ['small.txt', Buffer.from('cairn keeps every acknowledged byte\n')],
    ['dir/nested.bin', randomBytes(300 * 1024 + 17)],
  ]);
  const rw = await mountVolume(daemon, 'fs', false, cleanups);
  await mustRun('mkfs.ext4', ['-q', '-F', rw.loop], { timeoutMs: 120_000 });
  await mustRun('mount', [rw.loop, rw.mountDir]);
  cleanups.push(async () => { await runTool('umount', ['-l', rw.mountDir]); });
  mkdirSync(join(rw.mountDir, 'dir'));
  for (const [name, data] of files) writeFileSync(join(rw.mountDir, name), data);
  writeFileSync(join(rw.mountDir, 'doomed.bin'), randomBytes(16 * MiB));
  await mustRun('sync', []);
  const allocatedBeforeTrim = (await daemon.api.getVolume('fs')).allocatedBytes;
  await mustRun('rm', [join(rw.mountDir, 'doomed.bin')]);
  // ext4 frees the blocks only when the journal commits the delete; fstrim skips pinned blocks.
  await mustRun('sync', []);
  const fstrim = await mustRun('fstrim', ['-v', rw.mountDir]);
  t.match(fstrim.stdout, /trimmed/);
  await mustRun('umount', [rw.mountDir]);
  await unmountVolume(rw);
  const allocatedAfterTrim = (await daemon.api.getVolume('fs')).allocatedBytes;
  t.ok(allocatedAfterTrim < allocatedBeforeTrim - 8 * MiB, `fstrim freed space on the drive (${allocatedBeforeTrim} → ${allocatedAfterTrim} bytes)`);

  const image = join(daemon.root, 'fs.img');
  await mustRun('nbdcopy', [daemon.uri('fs'), image]);
  const fsck = await runTool('e2fsck', ['-fn', image]);
  t.equal(fsck.code, 0, `e2fsck -fn is clean: ${fsck.stdout}${fsck.stderr}`);

  t.equal(await daemon.stop(), 0, 'SIGTERM stops the daemon with exit code 0');
  await daemon.start();
  const ro = await mountVolume(daemon, 'fs', true, cleanups);
  await mustRun('mount', ['-o', 'ro', ro.loop, ro.mountDir]);
  cleanups.push(async () => { await runTool('umount', ['-l', ro.mountDir]); });
  for (const [name, data] of files) t.equal(md5(readFileSync(join(ro.mountDir, name))), md5(data), `${name} reads back bit for bit`);
  t.notOk(existsSync(join(ro.mountDir, 'doomed.bin')));
  await mustRun('umount', [ro.mountDir]);
  await unmountVolume(ro);
});
