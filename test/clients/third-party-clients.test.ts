// Goal: stock NBD clients (libnbd's nbdinfo/nbdsh/nbdcopy, qemu-io, qemu-img, fio) work against a
// real cairnd process and see exactly the data they wrote. Method: one daemon on a temp data dir
// serves one volume per subtest over its Unix socket (and loopback TCP); each tool runs as a child
// process and its output is checked for the values it must print. If the server breaks a protocol
// rule these tools fail loudly (qemu-io's pattern check, qemu-img compare, fio's crc32c verify).
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB } from '../../src/util/units';
import { startDaemon } from '../helpers/daemon';
import { mustRun, runTool } from '../helpers/tools';

const md5 = (data: Buffer): string => createHash('md5').update(data).digest('hex');

t.test('third-party NBD clients against cairnd', async (t) => {
  const daemon = await startDaemon(t, { tcp: true });

  t.test('nbdinfo --json reports the size, every capability and the block sizes', async (t) => {
    await daemon.api.createVolume({ name: 'info', sizeBytes: 256 * MiB });
    const { stdout } = await mustRun('nbdinfo', ['--json', daemon.uri('info')]);
    const info = JSON.parse(stdout) as { exports: Array<Record<string, unknown>>; protocol: string };
    const exported = info.exports[0] ?? {};
    t.equal(info.protocol, 'newstyle-fixed');
    t.equal(exported['export-size'], 256 * MiB);
    for (const can of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_fast_zero', 'can_multi_conn', 'can_cache', 'can_df']) {
      t.equal(exported[can], true, can);
    }
    t.equal(exported['is_read_only'], false);
    t.equal(exported['block_size_minimum'], 512);
    t.equal(exported['block_size_preferred'], 4096);
    t.equal(exported['block_size_maximum'], 32 * MiB);
    t.same(exported['contexts'], ['base:allocation']);
    const tcp = JSON.parse((await mustRun('nbdinfo', ['--json', daemon.tcpUri('info')])).stdout) as { exports: Array<Record<string, unknown>> };
    t.equal(tcp.exports[0]?.['export-size'], 256 * MiB, 'the TCP listener serves the same export');
  });

  t.test('nbdinfo --list names every volume', async (t) => {
    await daemon.api.createVolume({ name: 'listed', sizeBytes: 64 * MiB });
    const { stdout } = await mustRun('nbdinfo', ['--list', '--json', daemon.uri('')]);
    const names = (JSON.parse(stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']);
    t.ok(names.includes('listed'));
    t.ok(names.includes('info'));
  });

  t.test('nbdinfo --map shows data after writes and holes after trims', async (t) => {
    await daemon.api.createVolume({ name: 'map', sizeBytes: 64 * MiB });
    const before = (await mustRun('nbdinfo', ['--map', daemon.uri('map')])).stdout;
    t.match(before.trim(), /^0\s+67108864\s+3\s+hole,zero$/);
    await mustRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4M', '-c', 'write -P 0x22 32M 1M', daemon.uri('map')]);
    const written = (await mustRun('nbdinfo', ['--map', daemon.uri('map')])).stdout;
    t.match(written, /^\s*0\s+4194304\s+0\s+data$/m);
    t.match(written, /^\s*33554432\s+1048576\s+0\s+data$/m);
    await mustRun('qemu-io', ['-f', 'raw', '-c', 'discard 0 4M', daemon.uri('map')]);
    const trimmed = (await mustRun('nbdinfo', ['--map', daemon.uri('map')])).stdout;
    t.match(trimmed, /^\s*0\s+33554432\s+3\s+hole,zero$/m, 'the trimmed range became a hole');
    const totals = (await mustRun('nbdinfo', ['--map', '--totals', daemon.uri('map')])).stdout;
    t.match(totals, /^\s*1048576\s+1\.6%\s+0\s+data$/m, "--totals counts the 1 MiB still written");
  });

  t.test('qemu-io: patterns, FUA, zero with and without unmap, fast zero, discard, flush, map', async (t) => {
    await daemon.api.createVolume({ name: 'qemu-io', sizeBytes: 64 * MiB });
    const { stdout } = await mustRun('qemu-io', ['-f', 'raw',
      '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M',
      '-c', 'write -f -P 0xcd 4M 64k', '-c', 'read -P 0xcd 4M 64k',
      '-c', 'write -P 0x5a 1M 2M', '-c', 'write -z -u 1M 1M', '-c', 'write -z -n 2M 1M', '-c', 'read -P 0 1M 2M',
      '-c', 'write -z 5M 512', '-c', 'read -P 0 5M 512', '-c', 'read -P 0xcd 4M 64k',
      '-c', 'write -P 0x77 8M 64k', '-c', 'discard 8M 64k', '-c', 'flush',
      '-c', 'write -P 0x01 777 1000', '-c', 'read -P 0x01 777 1000',
      '-c', 'aio_write -P 0x42 16M 1M', '-c', 'aio_write -P 0x43 17M 1M', '-c', 'aio_flush', '-c', 'read -P 0x42 16M 1M', '-c', 'read -P 0x43 17M 1M',
      '-c', 'map', daemon.uri('qemu-io')]);
    t.notMatch(stdout, /Pattern verification failed|error|failed/i);
    t.equal((stdout.match(/^read /gm) ?? []).length, 8, 'every read ran and verified');
  });

  t.test('qemu-img convert of a 64 MiB random image, then qemu-img compare says identical', async (t) => {
    await daemon.api.createVolume({ name: 'convert', sizeBytes: 64 * MiB });
    const image = join(daemon.root, 'random.img');
    writeFileSync(image, randomBytes(64 * MiB));
    await mustRun('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', image, daemon.uri('convert')]);
    const compare = await mustRun('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', image, daemon.uri('convert')]);
    t.match(compare.stdout, /Images are identical/);
    const info = JSON.parse((await mustRun('qemu-img', ['info', '--output=json', daemon.uri('convert')])).stdout) as { 'virtual-size': number };
    t.equal(info['virtual-size'], 64 * MiB);
  });

  t.test('nbdcopy -C 4 both ways preserves every byte (md5)', async (t) => {
    await daemon.api.createVolume({ name: 'copy', sizeBytes: 48 * MiB });
    const source = join(daemon.root, 'copy-source.img');
    const data = randomBytes(48 * MiB);
    data.fill(0, 8 * MiB, 16 * MiB); // a zero run exercises the zero/sparse path of nbdcopy
    writeFileSync(source, data);
    await mustRun('nbdcopy', ['-C', '4', '--flush', source, daemon.uri('copy')]);
    const target = join(daemon.root, 'copy-target.img');
    await mustRun('nbdcopy', ['-C', '4', '-R', '16', daemon.uri('copy'), target]);
    t.equal(md5(readFileSync(target)), md5(data));
    const streamed = await runTool('sh', ['-c', `nbdcopy -C 4 '${daemon.uri('copy')}' - | md5sum`]);
    t.equal(streamed.stdout.split(' ')[0], md5(data));
  });

  t.test('fio with ioengine=nbd, 4 connections, verify=crc32c', async (t) => {
    await daemon.api.createVolume({ name: 'fio', sizeBytes: 128 * MiB });
    const job = join(daemon.root, 'verify.fio');
    writeFileSync(job, [
      // numjobs=4: four connections, each verifying its own 32 MiB slice (offset_increment).
      '[global]', 'ioengine=nbd', `uri=${daemon.uri('fio')}`, 'size=32M', 'offset_increment=32M', 'iodepth=16', 'numjobs=4', 'bs=4k',
      'rw=randwrite', 'verify=crc32c', 'verify_fatal=1', 'do_verify=1', 'randrepeat=1', 'verify_state_save=0',
      '[verify]', '',
    ].join('\n'));
    const result = await runTool('fio', ['--output-format=json', job], { timeoutMs: 300_000 });
    t.equal(result.code, 0, result.stderr);
    const json = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }> };
    t.ok(json.jobs.length > 0);
    for (const fioJob of json.jobs) {
      t.equal(fioJob.error, 0);
      t.ok(fioJob.read.io_bytes > 0, 'the verify phase read the data back');
    }
  });

  t.test('nbdsh: option-level probes and a strict-mode-off out-of-range read gets EINVAL', async (t) => {
    await daemon.api.createVolume({ name: 'probe', sizeBytes: 16 * MiB });
    const script = `
import nbd, json, errno
h = nbd.NBD()
h.set_opt_mode(True)
h.set_request_structured_replies(True)
h.connect_uri(${JSON.stringify(daemon.uri('probe'))})
names = []
h.opt_list(lambda name, description: names.append(name))
h.set_export_name("probe")
h.set_request_block_size(True)
h.opt_info()
info = {"size": h.get_size(), "min": h.get_block_size(nbd.SIZE_MINIMUM), "pref": h.get_block_size(nbd.SIZE_PREFERRED), "max": h.get_block_size(nbd.SIZE_MAXIMUM)}
contexts = []
h.opt_list_meta_context(lambda name: contexts.append(name))
h.add_meta_context("base:allocation")
h.opt_go()
caps = {k: getattr(h, "can_" + k)() for k in ["flush", "fua", "trim", "zero", "fast_zero", "multi_conn", "cache", "df"]}
buf = b"\\x5a" * 65536
h.pwrite(buf, 0, nbd.CMD_FLAG_FUA)
same = h.pread(65536, 0) == buf
h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE)
h.zero(1048576, 1048576, nbd.CMD_FLAG_FAST_ZERO)
zeroed = h.pread(4096, 8192) == b"\\0" * 4096
h.trim(65536, 8 * 1048576)
h.flush()
entries = []
h.block_status(2097152, 0, lambda meta, off, ents, err: entries.append([meta, list(ents)]) or 0)
h.set_strict_mode(0)
try:
    h.pread(4096, 16 * 1048576)
    oob = "no error"
except nbd.Error as e:
    oob = e.errnum
h.shutdown()
print(json.dumps({"names": names, "info": info, "contexts": contexts, "caps": caps, "same": same, "zeroed": zeroed, "entries": entries, "oob": oob}))
`;
    const result = await mustRun('/usr/bin/python3', ['-c', script]);
    const probe = JSON.parse(result.stdout) as {
      names: string[]; info: Record<string, number>; contexts: string[]; caps: Record<string, boolean>; same: boolean; zeroed: boolean;
      entries: Array<[string, number[]]>; oob: number | string;
    };
    t.ok(probe.names.includes('probe'));
    t.same(probe.info, { size: 16 * MiB, min: 512, pref: 4096, max: 32 * MiB });
    t.same(probe.contexts, ['base:allocation']);
    t.ok(Object.values(probe.caps).every(Boolean), JSON.stringify(probe.caps));
    t.ok(probe.same, 'FUA write read back');
    t.ok(probe.zeroed, 'NO_HOLE zero reads back zeroes');
    t.equal(probe.entries[0]?.[0], 'base:allocation');
    t.equal(probe.entries[0]?.[1][1], 0, 'the first 64 KiB is allocated data');
    t.equal(probe.oob, 22, 'out-of-range read fails with EINVAL');
  });
});
