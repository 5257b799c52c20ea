/**
 * Raft benchmark: a 3-node Cairn KV group (src/control/kv-node-main: RawNode + LevelDB with real
 * fsync + TCP transport) against a 3-member etcd cluster from Debian's etcd-server, both on
 * loopback, both on the same disk, the same workload in the same run: clients at concurrency 1,
 * 16, 64 and 256 put 64-byte values, then do linearizable reads (Cairn: ReadIndex; etcd: default
 * linearizable Range). Both are driven from this process: Cairn with its KvClient (one pipelined
 * connection per node), etcd over its native gRPC API (@grpc/grpc-js, one HTTP/2 channel to the
 * leader). Prints ops/s and p50/p99 latency per row and the ratio Cairn/etcd.
 *
 *   npm run bench -- raft [--seconds 5] [--out bench/results/raft.json] [--ops write,read] [--concurrency 1,16] [--rounds 1]
 *
 * `--ops` and `--concurrency` run only those rows (for quick checks; the default is the full run).
 * `--rounds N` alternates Cairn and etcd N times within each row (seconds/N each, latencies
 * pooled), so load from elsewhere on a shared machine falls on both alike (default 1).
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import { KvClient } from '../src/control/kv-client';
import { Server, startServer } from './processes';
import { freePort } from './ports';

interface Row { system: string; op: 'write' | 'read'; concurrency: number; opsPerSecond: number; p50ms: number; p99ms: number; errors: number }

const allConcurrencies = [1, 16, 64, 256];
const allOps = ['write', 'read'] as const;
const valueText = 'v'.repeat(64);

function option(argv: string[], name: string): string | undefined {
  const index = argv.indexOf(`--${name}`);
  return index >= 0 ? argv[index + 1] : undefined;
}

/** A comma-separated subset of `all` (all when the flag is absent); throws on an unknown value. */
function subset<T extends string | number>(text: string | undefined, all: readonly T[], flag: string): T[] {
  if (text === undefined) return [...all];
  const chosen = text.split(',').map((part) => all.find((value) => String(value) === part.trim()));
  if (chosen.length === 0 || chosen.some((value) => value === undefined)) throw new Error(`--${flag}: expected a comma-separated subset of ${all.join(',')}, got '${text}'`);
  return all.filter((value) => chosen.includes(value));
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

interface Sample { readonly latencies: number[]; errors: number; seconds: number }

/** Runs `concurrency` loops of `operation` for `seconds`, adding latencies and errors to `sample`. */
async function drive(concurrency: number, seconds: number, operation: (worker: number, i: number) => Promise<void>, sample: Sample): Promise<void> {
  const latencies = sample.latencies;
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, worker) => {
    for (let i = 0; performance.now() < deadline; i++) {
      const started = performance.now();
      try {
        await operation(worker, i);
        latencies.push(performance.now() - started);
      } catch {
        errors++;
      }
    }
  }));
  sample.errors += errors;
  sample.seconds += seconds;
}

function summarize(sample: Sample): { ops: number; p50: number; p99: number; errors: number } {
  const sorted = [...sample.latencies].sort((a, b) => a - b);
  return { ops: sorted.length / sample.seconds, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), errors: sample.errors };
}

async function startCairnGroup(root: string): Promise<{ servers: Server[]; client: KvClient }> {
  const raftPorts = [await freePort(), await freePort(), await freePort()];
  const clientPorts = [await freePort(), await freePort(), await freePort()];
  const peers = raftPorts.map((port, i) => `${i + 1}=127.0.0.1:${port}`).join(',');
  const main = resolve(__dirname, '..', 'src', 'control', 'kv-node-main.js');
  const servers = [0, 1, 2].map((i) => startServer(`cairn-${i + 1}`, process.execPath, [
    main, '--id', String(i + 1), '--peers', peers, '--data-dir', join(root, `cairn-${i + 1}`),
    '--client-listen', `127.0.0.1:${clientPorts[i]}`, '--log-level', 'warn',
  ]));
  const client = new KvClient({ endpoints: new Map(clientPorts.map((port, i) => [i + 1, { host: '127.0.0.1', port }])), operationTimeoutMs: 10_000 });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const leaders = await Promise.all([1, 2, 3].map((id) => client.status(id).then((s) => s.leaderId, () => 0)));
    if (leaders.some((leader) => leader > 0)) break;
    if (Date.now() > deadline) throw new Error('the Cairn KV group elected no leader in 30 s');
    await sleep(100);
  }
  return { servers, client };
}

// etcd's v3 API, the few messages this benchmark sends (field numbers from etcd's rpc.proto).
const etcdProto = protobuf.Root.fromJSON({
  nested: {
    ResponseHeader: { fields: { clusterId: { type: 'uint64', id: 1 }, memberId: { type: 'uint64', id: 2 }, revision: { type: 'int64', id: 3 }, raftTerm: { type: 'uint64', id: 4 } } },
    PutRequest: { fields: { key: { type: 'bytes', id: 1 }, value: { type: 'bytes', id: 2 } } },
    PutResponse: { fields: { header: { type: 'ResponseHeader', id: 1 } } },
    KeyValue: { fields: { key: { type: 'bytes', id: 1 }, modRevision: { type: 'int64', id: 3 }, value: { type: 'bytes', id: 5 } } },
    RangeRequest: { fields: { key: { type: 'bytes', id: 1 } } },
    RangeResponse: { fields: { header: { type: 'ResponseHeader', id: 1 }, kvs: { rule: 'repeated', type: 'KeyValue', id: 2 } } },
    StatusRequest: { fields: {} },
    StatusResponse: { fields: { header: { type: 'ResponseHeader', id: 1 }, leader: { type: 'uint64', id: 4 } } },
  },
});

class EtcdClient {
  private readonly client: grpc.Client;
  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }
  unary(method: string, requestType: string, responseType: string, body: object): Promise<Record<string, unknown>> {
    const request = etcdProto.lookupType(requestType);
    const response = etcdProto.lookupType(responseType);
    return new Promise((resolvePromise, reject) => {
      this.client.makeUnaryRequest(method, (value: object) => Buffer.from(request.encode(request.fromObject(value)).finish()),
        (bytes: Buffer) => response.toObject(response.decode(bytes), { longs: String }) as Record<string, unknown>, body,
        (error, value) => (error ? reject(error) : resolvePromise(value ?? {})));
    });
  }
  put(key: string, value: string): Promise<unknown> {
    return this.unary('/etcdserverpb.KV/Put', 'PutRequest', 'PutResponse', { key: Buffer.from(key), value: Buffer.from(value) });
  }
  get(key: string): Promise<unknown> {
    return this.unary('/etcdserverpb.KV/Range', 'RangeRequest', 'RangeResponse', { key: Buffer.from(key) });
  }
  close(): void {
    this.client.close();
  }
}

async function startEtcd(root: string): Promise<{ servers: Server[]; client: EtcdClient }> {
  const peerPorts = [await freePort(), await freePort(), await freePort()];
  const clientPorts = [await freePort(), await freePort(), await freePort()];
  const cluster = peerPorts.map((port, i) => `n${i + 1}=http://127.0.0.1:${port}`).join(',');
  const servers = [0, 1, 2].map((i) => startServer(`etcd-${i + 1}`, 'etcd', [
    '--name', `n${i + 1}`, '--data-dir', join(root, `etcd-${i + 1}`),
    '--listen-client-urls', `http://127.0.0.1:${clientPorts[i]}`, '--advertise-client-urls', `http://127.0.0.1:${clientPorts[i]}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPorts[i]}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPorts[i]}`,
    '--initial-cluster', cluster, '--initial-cluster-token', 'cairn-bench', '--initial-cluster-state', 'new',
    '--logger', 'zap', '--log-level', 'error',
  ]));
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const port of clientPorts) {
      const candidate = new EtcdClient(`127.0.0.1:${port}`);
      try {
        const status = await candidate.unary('/etcdserverpb.Maintenance/Status', 'StatusRequest', 'StatusResponse', {});
        const header = status['header'] as { memberId?: string } | undefined;
        if (status['leader'] !== undefined && status['leader'] !== '0' && header?.memberId === status['leader']) {
          return { servers, client: candidate };
        }
      } catch {
        // not up yet
      }
      candidate.close();
    }
    if (Date.now() > deadline) throw new Error('etcd elected no leader in 30 s');
    await sleep(200);
  }
}

export async function runRaftBench(argv: string[]): Promise<void> {
  const seconds = Number(option(argv, 'seconds') ?? '5');
  const rounds = Number(option(argv, 'rounds') ?? '1');
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`--rounds: expected a positive integer, got ${rounds}`);
  const ops = subset(option(argv, 'ops'), allOps, 'ops');
  const concurrencies = subset(option(argv, 'concurrency'), allConcurrencies, 'concurrency');
  // A partial run does not overwrite the saved full results unless asked to.
  const partial = ops.length < allOps.length || concurrencies.length < allConcurrencies.length;
  const outOption = option(argv, 'out') ?? (partial ? undefined : join('bench', 'results', 'raft.json'));
  const out = outOption === undefined ? undefined : resolve(outOption);
  const root = mkdtempSync(join(process.env['CAIRN_BENCH_DIR'] ?? tmpdir(), 'cairn-raft-bench-'));
  const servers: Server[] = [];
  const rows: Row[] = [];
  try {
    const cairn = await startCairnGroup(root);
    servers.push(...cairn.servers);
    const etcd = await startEtcd(root);
    servers.push(...etcd.servers);
    const sessions = await Promise.all(Array.from({ length: Math.max(...concurrencies) }, () => cairn.client.openSession()));
    for (const op of ops) {
      for (const concurrency of concurrencies) {
        const key = (worker: number, i: number): string => `key-${worker}-${i % 64}`;
        const cairnSample: Sample = { latencies: [], errors: 0, seconds: 0 };
        const etcdSample: Sample = { latencies: [], errors: 0, seconds: 0 };
        for (let round = 0; round < rounds; round++) {
          await drive(concurrency, seconds / rounds, (worker, i) =>
            op === 'write' ? sessions[worker]!.put(key(worker, i), valueText) : sessions[worker]!.get(key(worker, i)).then(() => undefined), cairnSample);
          await drive(concurrency, seconds / rounds, (worker, i) =>
            (op === 'write' ? etcd.client.put(key(worker, i), valueText) : etcd.client.get(key(worker, i))).then(() => undefined), etcdSample);
        }
        const cairnRun = summarize(cairnSample);
        const etcdRun = summarize(etcdSample);
        for (const [system, run] of [['cairn', cairnRun], ['etcd', etcdRun]] as const) {
          rows.push({ system, op, concurrency, opsPerSecond: run.ops, p50ms: run.p50, p99ms: run.p99, errors: run.errors });
        }
        process.stderr.write(`${op} c${concurrency}: cairn ${cairnRun.ops.toFixed(0)} ops/s (p50 ${cairnRun.p50.toFixed(2)} ms), etcd ${etcdRun.ops.toFixed(0)} ops/s (p50 ${etcdRun.p50.toFixed(2)} ms)\n`);
      }
    }
    cairn.client.close();
    etcd.client.close();
    process.stdout.write(formatRows(rows) + '\n');
    if (out !== undefined) {
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), seconds, valueBytes: valueText.length, rows }, null, 2) + '\n');
      process.stdout.write(`saved ${out}\n`);
    }
  } finally {
    for (const server of servers) await server.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

function formatRows(rows: readonly Row[]): string {
  const concurrencies = [...new Set(rows.map((row) => row.concurrency))].sort((a, b) => a - b);
  const header = ['op', 'clients', 'cairn ops/s', 'cairn p50/p99 ms', 'etcd ops/s', 'etcd p50/p99 ms', 'cairn/etcd'];
  const lines: string[][] = [];
  for (const op of allOps) {
    for (const concurrency of concurrencies) {
      const cairn = rows.find((r) => r.system === 'cairn' && r.op === op && r.concurrency === concurrency);
      const etcd = rows.find((r) => r.system === 'etcd' && r.op === op && r.concurrency === concurrency);
      if (!cairn || !etcd) continue;
      lines.push([op, String(concurrency), cairn.opsPerSecond.toFixed(0), `${cairn.p50ms.toFixed(2)}/${cairn.p99ms.toFixed(2)}`,
        etcd.opsPerSecond.toFixed(0), `${etcd.p50ms.toFixed(2)}/${etcd.p99ms.toFixed(2)}`, (cairn.opsPerSecond / Math.max(etcd.opsPerSecond, 1e-9)).toFixed(2)]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(line)].join('\n');
}
