/**
 * NBD data-path benchmark: Cairn against nbdkit (file plugin) and qemu-nbd serving an equal-sized
 * file from the same disk, all with the same cache semantics (writeback page cache, flush =
 * fdatasync). The same fio jobs (ioengine=nbd, one connection per fio job) run against each server
 * in turn, job by job (who goes first rotates per job, and each run starts after `sync`), so drift
 * in the machine and the writeback of earlier runs affect all three alike. Prints IOPS, MB/s, p50/p99
 * latency, the server's CPU time per I/O (every thread and child process of it, from /proc) and
 * the ratio Cairn/nbdkit per job, and writes the table as JSON. Every image is written
 * in full once before the first job, so each job sees allocated blocks.
 *
 * With --floor, a fourth server runs too: the Node floor (nbd-floor-server.ts), the least a Node
 * NBD server can do per request. The table then adds floor/nbdkit: on latency-bound jobs it is
 * the best ratio any Node server reaches on this machine.
 *
 * With --extent-size SIZE, Cairn's volume is made on a profile with that extent size (default: the
 * 64 MiB of the built-in profile). Cairn keeps the volume in one segment file per drive, as
 * nbdkit and qemu-nbd keep theirs in one image; --per-extent adds a second Cairn, `cairn-pe`,
 * started with `--segment-size` equal to the extent size (one file per extent, the original
 * layout; it runs whatever --only says), so the table shows in the same run what the layout
 * costs on flush-bound jobs.
 *
 * With --rounds N, every job runs N times on every server (the order rotating each round); the
 * table shows each server's median run (of an even count, the lower middle one), and each ratio
 * is the median of the N ratios measured
 * in the same round (the runs of one round are minutes apart, not tens of minutes), with their
 * range: on a machine whose disk speed drifts, that pairing is what keeps a ratio meaningful.
 *
 *   npm run bench -- nbd [--runtime 10] [--size 1GiB] [--out bench/results/nbd.json] [--only cairn,nbdkit] [--floor] [--per-extent] [--rounds 3] [--jobs a,b] [--extent-size 1GiB]
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ApiClient } from '../src/api/client';
import { GiB, parseBytes } from '../src/util/units';
import { extentBytesDefault } from '../src/limits';
import { clockTicksPerSecond, run, Server, startServer, treeCpuSeconds, waitForSocket } from './processes';

interface Job { readonly name: string; readonly rw: string; readonly bs: string; readonly iodepth: number; readonly fsync?: boolean; readonly connections: number }
/** cpuUsPerIo: the server's CPU time (all its threads and processes) per I/O over the fio run. */
interface Result { job: string; server: string; round: number; iops: number; mbps: number; p50us: number; p99us: number; cpuUsPerIo: number }

/** fio's warm-up before it starts counting, in seconds. */
const rampSeconds = 1;

const baseJobs: Array<Omit<Job, 'connections' | 'name'> & { label: string }> = [
  { label: 'seq-write-1M-qd8', rw: 'write', bs: '1M', iodepth: 8 },
  { label: 'seq-read-1M-qd8', rw: 'read', bs: '1M', iodepth: 8 },
  { label: 'rand-read-4k-qd32', rw: 'randread', bs: '4k', iodepth: 32 },
  { label: 'rand-write-4k-qd32', rw: 'randwrite', bs: '4k', iodepth: 32 },
  { label: 'write-4k-qd1-flush', rw: 'randwrite', bs: '4k', iodepth: 1, fsync: true },
];

const connectionCounts = [1, 4];

function option(argv: string[], name: string): string | undefined {
  const index = argv.indexOf(`--${name}`);
  return index >= 0 ? argv[index + 1] : undefined;
}

export async function runNbdBench(argv: string[]): Promise<void> {
  const runtimeSeconds = Number(option(argv, 'runtime') ?? '8');
  const sizeBytes = parseBytes(option(argv, 'size') ?? '1GiB') ?? GiB;
  const out = resolve(option(argv, 'out') ?? join('bench', 'results', 'nbd.json'));
  const only = option(argv, 'only')?.split(',');
  const rounds = Number(option(argv, 'rounds') ?? '1');
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`--rounds: expected a positive integer, got ${option(argv, 'rounds')}`);
  const root = mkdtempSync(join(process.env['CAIRN_BENCH_DIR'] ?? tmpdir(), 'cairn-bench-'));
  const servers: Array<{ server: Server; uri: string }> = [];
  const cleanup = async (): Promise<void> => {
    for (const { server } of servers) await server.stop();
    rmSync(root, { recursive: true, force: true });
  };
  process.once('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  try {
    const want = (name: string): boolean => !only || only.includes(name);
    const extentSize = option(argv, 'extent-size');
    const extentBytes = extentSize === undefined ? undefined : parseBytes(extentSize);
    if (extentSize !== undefined && extentBytes === undefined) throw new Error(`--extent-size '${extentSize}' is not a size; use e.g. 1GiB`);
    if (want('cairn')) servers.push(await startCairn(root, 'cairn', sizeBytes, extentBytes));
    if (argv.includes('--per-extent')) servers.push(await startCairn(root, 'cairn-pe', sizeBytes, extentBytes, extentBytes ?? extentBytesDefault));
    if (want('nbdkit')) servers.push(await startNbdkit(root, sizeBytes));
    if (want('qemu-nbd')) servers.push(await startQemuNbd(root, sizeBytes));
    if (argv.includes('--floor')) servers.push(await startFloor(root, sizeBytes));

    const jobs: Job[] = [];
    const onlyJobs = option(argv, 'jobs')?.split(',');
    for (const connections of connectionCounts) for (const base of baseJobs) jobs.push({ ...base, name: `${base.label}-c${connections}`, connections });
    if (onlyJobs) {
      const unknown = onlyJobs.filter((name) => !jobs.some((job) => job.name === name));
      if (unknown.length > 0) throw new Error(`unknown job(s) ${unknown.join(', ')}; jobs are ${jobs.map((job) => job.name).join(', ')}`);
      jobs.splice(0, jobs.length, ...jobs.filter((job) => onlyJobs.includes(job.name)));
    }
    // Every server starts from a fully written image, as a disk in use is: otherwise the first
    // job pays for block allocation and a --jobs subset measures something else than a full run.
    for (const { server, uri } of servers) await fillImage(root, server.name, uri, sizeBytes);
    const ticksPerSecond = await clockTicksPerSecond();
    const results: Result[] = [];
    for (const [jobIndex, job] of jobs.entries()) {
      for (let round = 0; round < rounds; round++) {
        // Rotate who goes first, and start every run with no dirty pages: otherwise a server pays
        // for the writeback of the previous run's data (a flush job right after a random-write job
        // waits behind hundreds of MB of someone else's writeback).
        const order = servers.map((_, index) => servers[(index + jobIndex + round) % servers.length]!);
        for (const { server, uri } of order) {
          await run('sync', [], { timeoutMs: 120_000 });
          const result = { ...await runFio(root, job, server, uri, sizeBytes, runtimeSeconds, ticksPerSecond), round };
          results.push(result);
          process.stderr.write(`${job.name.padEnd(28)} ${server.name.padEnd(9)} ${result.iops.toFixed(0).padStart(8)} IOPS ${result.mbps.toFixed(1).padStart(8)} MB/s  p50 ${result.p50us.toFixed(0)} us  p99 ${result.p99us.toFixed(0)} us  CPU ${result.cpuUsPerIo.toFixed(1)} us/IO${rounds > 1 ? `  (round ${round + 1})` : ''}\n`);
        }
      }
    }
    const table = formatResults(jobs, results);
    process.stdout.write(table + '\n');
    // What cairnd's busy poll cost over the whole run (time spent spinning bounds its CPU cost).
    const cairnBusyPoll = want('cairn') ? (await cairnApi(root, 'cairn').status()).nbd.busyPoll : null;
    if (cairnBusyPoll) {
      const share = cairnBusyPoll.spins === 0 ? 0 : (100 * cairnBusyPoll.hits) / cairnBusyPoll.spins;
      process.stdout.write(`cairnd busy poll: ${cairnBusyPoll.spins} spins, ${share.toFixed(0)}% caught the next event, ${cairnBusyPoll.contended} stopped for a busy CPU, ${cairnBusyPoll.spinSeconds.toFixed(1)} s spent spinning\n`);
    }
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), runtimeSeconds, rounds, sizeBytes, cairnExtentBytes: extentBytes ?? null, cairnBusyPoll, results }, null, 2) + '\n');
    process.stdout.write(`saved ${out}\n`);
  } finally {
    await cleanup();
  }
}

const cairnApiPath = (root: string, name: string): string => join(root, `${name}-api.sock`);
const cairnApi = (root: string, name: string): ApiClient => new ApiClient({ endpoint: { kind: 'unix', path: cairnApiPath(root, name) } });

/** A cairnd named `name` (its files under root/name) serving the volume `bench`; with segmentBytes, passed as --segment-size. */
async function startCairn(root: string, name: string, sizeBytes: number, extentBytes: number | undefined,
  segmentBytes?: number): Promise<{ server: Server; uri: string }> {
  const dataDir = join(root, name);
  const socket = join(root, `${name}-nbd.sock`);
  const api = cairnApiPath(root, name);
  const server = startServer(name, process.execPath, [
    resolve(__dirname, '..', '..', 'bin', 'cairnd'), '--data-dir', dataDir, '--nbd-listen', 'none', '--nbd-socket', socket,
    '--api', `unix:${api}`, '--node-name', 'bench', '--log-level', 'warn',
    ...(segmentBytes === undefined ? [] : ['--segment-size', String(segmentBytes)]),
  ], { ...process.env, UV_THREADPOOL_SIZE: process.env['UV_THREADPOOL_SIZE'] ?? '16' });
  await waitForSocket(api);
  const client = cairnApi(root, name);
  if (extentBytes !== undefined) await client.createProfile({ name: 'bench', extentBytes });
  await client.createVolume({ name: 'bench', sizeBytes, ...(extentBytes === undefined ? {} : { profile: 'bench' }) });
  return { server, uri: `nbd+unix:///bench?socket=${socket}` };
}

function makeImage(root: string, name: string, sizeBytes: number): string {
  const path = join(root, name);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, sizeBytes);
  closeSync(fd);
  return path;
}

async function startNbdkit(root: string, sizeBytes: number): Promise<{ server: Server; uri: string }> {
  const image = makeImage(root, 'nbdkit.img', sizeBytes);
  const socket = join(root, 'nbdkit.sock');
  // file plugin defaults: page cache (writeback), flush = fdatasync; multi-threaded.
  const server = startServer('nbdkit', 'nbdkit', ['-f', '-U', socket, 'file', `file=${image}`]);
  await waitForSocket(socket);
  return { server, uri: `nbd+unix:///?socket=${socket}` };
}

async function startFloor(root: string, sizeBytes: number): Promise<{ server: Server; uri: string }> {
  const image = makeImage(root, 'floor.img', sizeBytes);
  const socket = join(root, 'floor.sock');
  // One process per connection of the largest job, so several connections are served in parallel.
  const processes = Math.max(...connectionCounts);
  const server = startServer('floor', process.execPath, [join(__dirname, 'nbd-floor-server.js'), socket, image, String(processes)]);
  await waitForSocket(socket);
  return { server, uri: `nbd+unix:///?socket=${socket}` };
}

async function startQemuNbd(root: string, sizeBytes: number): Promise<{ server: Server; uri: string }> {
  const image = makeImage(root, 'qemu.img', sizeBytes);
  const socket = join(root, 'qemu-nbd.sock');
  const server = startServer('qemu-nbd', 'qemu-nbd', ['-f', 'raw', '--cache=writeback', '--aio=threads', '--discard=unmap', '-e', '8', '-t', '-k', socket, image]);
  await waitForSocket(socket);
  return { server, uri: `nbd+unix:///?socket=${socket}` };
}

async function fillImage(root: string, serverName: string, uri: string, sizeBytes: number): Promise<void> {
  const jobFile = join(root, `fill-${serverName}.fio`);
  writeFileSync(jobFile, ['[fill]', 'ioengine=nbd', `uri=${uri}`, `size=${sizeBytes}`, 'rw=write', 'bs=1M', 'iodepth=8', 'fsync_on_close=1', ''].join('\n'));
  const { code, stderr } = await run('fio', [jobFile], { timeoutMs: 600_000 });
  if (code !== 0) throw new Error(`filling ${serverName}'s image failed (${code}): ${stderr.slice(-2000)}`);
}

/**
 * One fio run against one server. The server's CPU time is read before and after the fio
 * process, so it spans the ramp as well as the measured seconds; it is divided by the I/Os of
 * both, taken at the measured rate (a write and its flush count as one I/O in the flush jobs).
 */
async function runFio(root: string, job: Job, server: Server, uri: string, sizeBytes: number, runtimeSeconds: number,
  ticksPerSecond: number): Promise<Omit<Result, 'round'>> {
  const serverName = server.name;
  const pid = server.process.pid;
  if (pid === undefined) throw new Error(`${serverName} has no process id`);
  const jobFile = join(root, `${job.name}-${serverName}.fio`);
  writeFileSync(jobFile, [
    '[global]', 'ioengine=nbd', `uri=${uri}`, `size=${sizeBytes}`, 'time_based=1', `runtime=${runtimeSeconds}`, `ramp_time=${rampSeconds}`,
    'group_reporting=1', `numjobs=${job.connections}`, 'randrepeat=0',
    `[${job.name}]`, `rw=${job.rw}`, `bs=${job.bs}`, `iodepth=${job.iodepth}`, ...(job.fsync ? ['fsync=1'] : []), '',
  ].join('\n'));
  const cpuBefore = treeCpuSeconds(pid, ticksPerSecond);
  const { code, stdout, stderr } = await run('fio', ['--output-format=json', jobFile], { timeoutMs: (runtimeSeconds + 60) * 1000 });
  const cpuSeconds = treeCpuSeconds(pid, ticksPerSecond) - cpuBefore;
  if (code !== 0) throw new Error(`fio ${job.name} against ${serverName} failed (${code}): ${stderr.slice(-2000)}`);
  const json = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<Record<string, { iops: number; bw_bytes: number; clat_ns: { percentile?: Record<string, number> } }>> };
  const stats = json.jobs[0]?.[job.rw.includes('read') ? 'read' : 'write'];
  if (!stats) throw new Error(`fio output for ${job.name} has no stats`);
  const percentile = stats.clat_ns.percentile ?? {};
  return {
    job: job.name, server: serverName, iops: stats.iops, mbps: stats.bw_bytes / 1e6,
    p50us: (percentile['50.000000'] ?? 0) / 1000, p99us: (percentile['99.000000'] ?? 0) / 1000,
    cpuUsPerIo: stats.iops > 0 ? (1e6 * cpuSeconds) / (stats.iops * (runtimeSeconds + rampSeconds)) : 0,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Per job and server: the median run; per ratio: the median (and range) of the per-round ratios. */
function formatResults(jobs: readonly Job[], results: readonly Result[]): string {
  const servers = [...new Set(results.map((r) => r.server))];
  // Ratios to nbdkit for Cairn (always a column) and for the optional second Cairn and floor.
  const ratioServers = ['cairn', ...['cairn-pe', 'floor'].filter((name) => servers.includes(name))];
  const header = ['job', ...servers.flatMap((s) => [`${s} IOPS`, `${s} MB/s`, `${s} p50/p99 us`, `${s} CPU us/IO`]), ...ratioServers.map((s) => `${s}/nbdkit`)];
  const rows = jobs.map((job) => {
    const cells = [job.name];
    for (const server of servers) {
      const runs = results.filter((x) => x.job === job.name && x.server === server).sort((a, b) => a.iops - b.iops);
      const r = runs[Math.floor((runs.length - 1) / 2)];
      cells.push(r ? r.iops.toFixed(0) : '-', r ? r.mbps.toFixed(1) : '-', r ? `${r.p50us.toFixed(0)}/${r.p99us.toFixed(0)}` : '-',
        r ? r.cpuUsPerIo.toFixed(1) : '-');
    }
    const ratio = (server: string): string => {
      const ratios: number[] = [];
      for (const r of results) {
        if (r.job !== job.name || r.server !== server) continue;
        const nbdkit = results.find((x) => x.job === job.name && x.server === 'nbdkit' && x.round === r.round);
        if (nbdkit && nbdkit.iops > 0) ratios.push(r.iops / nbdkit.iops);
      }
      if (ratios.length === 0) return '-';
      const text = median(ratios).toFixed(2);
      return ratios.length === 1 ? text : `${text} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
    };
    cells.push(...ratioServers.map(ratio));
    return cells;
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map(line)].join('\n');
}
