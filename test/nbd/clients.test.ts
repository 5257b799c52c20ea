// Goal: stock NBD clients (libnbd's nbdinfo/nbdsh/nbdcopy, qemu-io/qemu-img, fio) negotiate
// with the server and get correct answers and correct data. Method: an in-process NbdServer
// serving MemoryDevice exports on a Unix socket in a temp dir; each tool runs as an async child
// process with a timeout (never spawnSync: the server lives on this event loop), and results are
// checked both in the tool's output and directly on the device.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { MemoryDevice } from '../../src/block/memory-device';
import { NbdServer } from '../../src/nbd/server';
import { TestResolver } from './helpers/exports';

const MiB = 1024 * 1024;
const diskBytes = 64 * MiB;

interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a tool asynchronously; resolves with its exit code and output (never throws on exit codes). */
function run(command: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, {
      timeout: timeoutMs,
      maxBuffer: 64 * MiB,
      // Debian's python3 has `import nbd`; a pyenv/venv python3 earlier on PATH does not.
      env: { ...process.env, PATH: `/usr/bin:${process.env['PATH'] ?? ''}` },
    }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(new Error(`${command} failed to run: ${error.message}\n${stderr}`));
        return;
      }
      resolve({ code: typeof error?.code === 'number' ? error.code : 0, stdout, stderr });
    });
  });
}

const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-nbd-clients-'));
const socketPath = path.join(directory, 'nbd.sock');
const disk = new MemoryDevice({ sizeBytes: diskBytes });
const scratch = new MemoryDevice({ sizeBytes: diskBytes });
const resolver = new TestResolver(new Map([
  ['disk', { device: disk, description: 'Cairn test disk' }],
  ['scratch', { device: scratch }],
  ['ro', { device: disk, readOnly: true }],
]), 'disk');
const server = new NbdServer({ resolver });
const uri = (name: string): string => `nbd+unix:///${name}?socket=${socketPath}`;

t.before(async () => {
  await server.listenUnix(socketPath);
});
t.teardown(async () => {
  await server.close();
  fs.rmSync(directory, { recursive: true, force: true });
});

void t.test('nbdinfo --json reports size, capabilities, block sizes and base:allocation', async (t) => {
  const result = await run('nbdinfo', ['--json', uri('disk')]);
  t.equal(result.code, 0, result.stderr);
  const info = JSON.parse(result.stdout) as { protocol: string; structured: boolean; exports: Array<Record<string, unknown>> };
  t.equal(info.protocol, 'newstyle-fixed');
  t.equal(info.structured, true);
  const entry = info.exports[0]!;
  t.match(entry, {
    'export-name': 'disk',
    description: 'Cairn test disk',
    'export-size': diskBytes,
    contexts: ['base:allocation'],
    is_read_only: false,
    is_rotational: false,
    can_cache: true, can_df: true, can_fast_zero: true, can_flush: true, can_fua: true, can_multi_conn: true,
    can_trim: true, can_zero: true,
    block_size_minimum: 512, block_size_preferred: 4096, block_size_maximum: 32 * MiB,
  });
});

void t.test('nbdinfo --list shows every export; --is/--can answer for the read-only export', async (t) => {
  const list = await run('nbdinfo', ['--list', '--json', uri('')]);
  t.equal(list.code, 0, list.stderr);
  const names = (JSON.parse(list.stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((entry) => entry['export-name']);
  t.same(names.sort(), ['disk', 'ro', 'scratch']);
  t.equal((await run('nbdinfo', ['--is', 'read-only', uri('ro')])).code, 0, 'ro is read-only');
  t.equal((await run('nbdinfo', ['--is', 'read-only', uri('disk')])).code, 2, 'disk is not');
  t.equal((await run('nbdinfo', ['--can', 'trim', uri('ro')])).code, 2, 'no trim on ro');
  t.equal((await run('nbdinfo', ['--can', 'multi-conn', uri('ro')])).code, 0);
  t.not((await run('nbdinfo', ['--size', uri('missing')])).code, 0, 'an unknown export fails');
});

void t.test('a qemu-io command set: patterns, FUA, zero with and without unmap, fast zero, discard, flush, map', async (t) => {
  const result = await run('qemu-io', ['-f', 'raw',
    '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M',
    '-c', 'write -f -P 0xcd 4M 64k', '-c', 'read -P 0xcd 4M 64k',
    '-c', 'write -P 0x11 1M 2M',
    '-c', 'write -z -u 1M 1M', '-c', 'write -z -n 2M 1M', '-c', 'read -P 0 1M 2M',
    '-c', 'write -P 0x22 8M 128k', '-c', 'discard 8M 64k', '-c', 'read -P 0x22 8256k 64k',
    '-c', 'flush', '-c', 'map',
    uri('disk')]);
  t.equal(result.code, 0, result.stderr);
  t.notMatch(result.stdout + result.stderr, /fail|error/i);
  t.match(result.stdout, /wrote 65536\/65536 bytes at offset 4194304/);

  const check = Buffer.alloc(MiB);
  await disk.read(0, check);
  t.ok(check.equals(Buffer.alloc(MiB, 0xab)), 'the device holds the pattern');
  await disk.read(4 * MiB, check.subarray(0, 65536));
  t.ok(check.subarray(0, 65536).equals(Buffer.alloc(65536, 0xcd)), 'the FUA write landed');
  await disk.read(MiB, check);
  t.ok(check.equals(Buffer.alloc(MiB)), 'zeroed');

  const map = await run('nbdinfo', ['--map', uri('disk')]);
  t.equal(map.code, 0, map.stderr);
  const rows = map.stdout.trim().split('\n').map((line) => line.trim().split(/\s+/));
  t.same(rows.map((row) => [Number(row[0]), Number(row[1]), row[3]]), [
    [0, MiB, 'data'],
    [MiB, MiB, 'hole,zero'], // write -z -u may unmap
    [2 * MiB, MiB, 'data'], // write -z without -u must not (NO_HOLE)
    [3 * MiB, MiB, 'hole,zero'],
    [4 * MiB, 65536, 'data'],
    [4 * MiB + 65536, 4 * MiB, 'hole,zero'], // includes the discarded 8M..8M+64K
    [8 * MiB + 65536, 65536, 'data'],
    [8 * MiB + 131072, diskBytes - 8 * MiB - 131072, 'hole,zero'],
  ]);
});

void t.test('nbdsh option-level probes: list, info, block sizes, meta contexts, commands, strict mode off', async (t) => {
  const script = path.join(directory, 'probe.py');
  fs.writeFileSync(script, `
import json, sys
import nbd
out = {}
h = nbd.NBD()
h.set_opt_mode(True)
h.set_request_structured_replies(True)
h.connect_uri(sys.argv[1])
names = []
h.opt_list(lambda name, description: names.append([name, description]) or 0)
out['list'] = sorted(names)
h.set_request_block_size(True)
h.set_export_name('scratch')
h.opt_info()
out['info_size'] = h.get_size()
out['block_sizes'] = [h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED), h.get_block_size(nbd.SIZE_MAXIMUM)]
contexts = []
h.opt_list_meta_context(lambda name: contexts.append(name) or 0)
out['contexts'] = contexts
h.add_meta_context('base:allocation')
h.opt_go()
out['can'] = {k: getattr(h, 'can_' + k)() for k in ['flush', 'fua', 'trim', 'zero', 'fast_zero', 'multi_conn', 'cache', 'df']}
out['structured'] = h.get_structured_replies_negotiated()
out['meta'] = h.can_meta_context('base:allocation')
h.pwrite(b'\\x5a' * 65536, 0, nbd.CMD_FLAG_FUA)
h.pwrite(b'\\x6b' * 65536, 65536)
out['pread'] = h.pread(65536, 0) == b'\\x5a' * 65536
h.zero(65536, 65536, nbd.CMD_FLAG_NO_HOLE)
h.zero(65536, 131072, nbd.CMD_FLAG_FAST_ZERO)
h.trim(65536, 196608)
h.flush()
h.cache(65536, 0)
out['zeroed'] = h.pread(65536, 65536) == bytes(65536)
extents = []
h.block_status(262144, 0, lambda meta, offset, entries, err: extents.append([meta, list(entries)]) or 0)
out['extents'] = extents
h.set_strict_mode(0)
try:
    h.pread(512, h.get_size())
    out['out_of_range'] = 'no error'
except nbd.Error as error:
    out['out_of_range'] = error.errno
h.shutdown()
print(json.dumps(out))
`);
  const result = await run('/usr/bin/python3', [script, uri('')]);
  t.equal(result.code, 0, result.stderr);
  const out = JSON.parse(result.stdout) as Record<string, unknown>;
  t.same(out['list'], [['disk', 'Cairn test disk'], ['ro', ''], ['scratch', '']]);
  t.equal(out['info_size'], diskBytes);
  t.same(out['block_sizes'], [512, 4096, 32 * MiB]);
  t.same(out['contexts'], ['base:allocation']);
  t.same(out['can'], { flush: true, fua: true, trim: true, zero: true, fast_zero: true, multi_conn: true, cache: true, df: true });
  t.equal(out['structured'], true);
  t.equal(out['meta'], true);
  t.equal(out['pread'], true);
  t.equal(out['zeroed'], true);
  // 0..64K data; 64K..128K zeroed with NO_HOLE (stays allocated); 128K.. holes.
  t.same(out['extents'], [['base:allocation', [131072, 0, 131072, 3]]]);
  t.ok(out['out_of_range'] === 22 || out['out_of_range'] === 'EINVAL', `out-of-range pread: ${String(out['out_of_range'])}`);
  const check = Buffer.alloc(65536);
  await scratch.read(0, check);
  t.ok(check.equals(Buffer.alloc(65536, 0x5a)), 'the device holds the FUA write');
});

void t.test('nbdcopy over 4 connections (multi-conn) copies in and out byte-exactly', async (t) => {
  const source = path.join(directory, 'source.img');
  const target = path.join(directory, 'target.img');
  const bytes = Buffer.alloc(8 * MiB);
  for (let index = 0; index < bytes.length; index += 4096) bytes.writeUInt32LE(index * 2654435761 >>> 0, index);
  fs.writeFileSync(source, bytes);
  const copyIn = await run('nbdcopy', ['-C', '4', source, uri('scratch'), '--flush']);
  t.equal(copyIn.code, 0, copyIn.stderr);
  const copyOut = await run('nbdcopy', ['-C', '4', '-R', '64', '--request-size=1048576', uri('scratch'), target]);
  t.equal(copyOut.code, 0, copyOut.stderr);
  t.ok(fs.readFileSync(target).subarray(0, 8 * MiB).equals(bytes), 'copied out what was copied in');
  const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', target, uri('scratch')]);
  t.equal(compare.code, 0, compare.stdout + compare.stderr);
  t.match(compare.stdout, /Images are identical/);
});

void t.test('fio with the nbd engine writes at queue depth 32 and verifies every block', async (t) => {
  const job = path.join(directory, 'verify.fio');
  fs.writeFileSync(job, [
    '[verify]', 'ioengine=nbd', `uri=${uri('scratch')}`, 'rw=randwrite', 'bs=4k', 'iodepth=32', 'size=16M',
    'verify=crc32c', 'verify_fatal=1', 'do_verify=1', '',
  ].join('\n'));
  const result = await run('fio', ['--output-format=json', job], 120_000);
  t.equal(result.code, 0, result.stderr);
  const json = result.stdout.slice(result.stdout.indexOf('{'));
  const report = JSON.parse(json) as { jobs: Array<{ error: number; write: { total_ios: number }; read: { total_ios: number } }> };
  const fioJob = report.jobs[0]!;
  t.equal(fioJob.error, 0);
  t.equal(fioJob.write.total_ios, 4096, 'every 4 KiB block written');
  t.equal(fioJob.read.total_ios, 4096, 'and read back for verification');
});

void t.test('nbd-client -l lists exports over TCP (LIST then ABORT, as the kernel-path client does)', async (t) => {
  const address = await server.listenTcp('127.0.0.1', 0);
  const result = await run('nbd-client', ['-l', '127.0.0.1', String(address.port)], 20_000);
  t.equal(result.code, 0, result.stderr);
  t.match(result.stdout, /^disk: Cairn test disk$/m);
  t.match(result.stdout, /^ro$/m);
  t.match(result.stdout, /^scratch$/m);
  const info = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${address.port}/scratch`]);
  t.equal(info.stdout.trim(), String(diskBytes), info.stderr);
});
