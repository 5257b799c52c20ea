// Goal: an acknowledged write survives kill -9 of the daemon — whether it was a FUA write, a write
// followed by FLUSH, or a plain write — and TRIM really frees space on the drive. Method: nbdsh
// (libnbd) writes distinct patterns and reports each acknowledgement; the test then SIGKILLs
// cairnd (no graceful flush), restarts it on the same data dir and reads every range back.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { MiB } from '../../src/util/units';
import { startDaemon } from '../helpers/daemon';
import { mustRun } from '../helpers/tools';

function python(uri: string, body: string): string {
  return `import nbd, json\nh = nbd.NBD()\nh.connect_uri(${JSON.stringify(uri)})\n${body}\nh.shutdown()\n`;
}

function duKiB(path: string): number {
  return Number(execFileSync('du', ['-sk', path]).toString().split('\t')[0]);
}

t.test('acknowledged writes survive kill -9 and TRIM frees space', async (t) => {
  const daemon = await startDaemon(t);
  await daemon.api.createVolume({ name: 'durable', sizeBytes: 512 * MiB });
  const uri = daemon.uri('durable');

  await mustRun('/usr/bin/python3', ['-c', python(uri, `
h.pwrite(b"\\xf1" * 1048576, 0, nbd.CMD_FLAG_FUA)            # FUA
h.pwrite(b"\\xf2" * 1048576, 64 * 1048576)                    # write + FLUSH
h.flush()
h.pwrite(b"\\xf3" * 4096, 200 * 1048576 + 512)               # plain write, acknowledged, unaligned
h.zero(1048576, 300 * 1048576, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
`)]);
  await daemon.kill();
  await daemon.start();
  const check = await mustRun('/usr/bin/python3', ['-c', python(uri, `
print(json.dumps([
  h.pread(1048576, 0) == b"\\xf1" * 1048576,
  h.pread(1048576, 64 * 1048576) == b"\\xf2" * 1048576,
  h.pread(4096, 200 * 1048576 + 512) == b"\\xf3" * 4096,
  h.pread(512, 200 * 1048576) == b"\\0" * 512,
  h.pread(1048576, 300 * 1048576) == b"\\0" * 1048576,
]))
`)]);
  t.same(JSON.parse(check.stdout), [true, true, true, true, true], 'FUA, flushed, plain and zeroed ranges all read back after kill -9');

  const drives = join(daemon.dataDir, 'drives');
  await mustRun('/usr/bin/python3', ['-c', python(uri, `
h.pwrite(b"\\x77" * (32 * 1048576), 128 * 1048576)
h.flush()
`)]);
  const before = duKiB(drives);
  await mustRun('/usr/bin/python3', ['-c', python(uri, `
h.trim(32 * 1048576, 128 * 1048576, nbd.CMD_FLAG_FUA)
`)]);
  const after = duKiB(drives);
  t.ok(before - after >= 31 * 1024, `du of the drives dropped by the trimmed 32 MiB (${before} KiB → ${after} KiB)`);
  const zero = await mustRun('/usr/bin/python3', ['-c', python(uri, `print(h.pread(4096, 130 * 1048576) == b"\\0" * 4096)`)]);
  t.equal(zero.stdout.trim(), 'True', 'a trimmed range reads as zeroes');
});
