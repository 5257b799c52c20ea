/**
 * A cluster of real KV node processes (src/control/kv-node-main.ts, compiled once per test file by
 * compile-entry.ts) on 127.0.0.1 with temporary data directories and kernel-chosen ports. Every
 * Raft link A→B goes through its own FaultProxy, so a node can be isolated (both directions of
 * all its links blackholed) and healed without touching the nodes. Nodes can be killed with
 * SIGKILL and restarted on the same directory and ports.
 *
 * Teardown (registered on the Test) kills every process, closes every proxy and removes every
 * directory, whatever state the test ended in. The last lines each process printed are kept
 * (bounded) for failure messages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { KvClient, type KvNodeStatus } from '../../../src/control/kv-client';
import type { PeerAddress } from '../../../src/transport/peer-link';
import { FaultProxy } from './fault-proxy';
import { freePort } from '../../helpers/ports';

const host = '127.0.0.1';
const logLinesKept = 2000;


export interface KvClusterOptions {
  readonly size: number;
  /** The compiled kv-node-main.js. */
  readonly script: string;
  readonly tickMs: number;
  readonly snapshotEntries: number;
  readonly compactionLagEntries: number;
}

interface NodeProcess {
  readonly id: number;
  readonly dataDir: string;
  readonly raftPort: number;
  readonly clientPort: number;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  starts: number;
  readonly log: string[];
}

export class KvCluster {
  readonly ids: number[];
  private readonly nodes = new Map<number, NodeProcess>();
  /** "from->to" → the proxy `from` dials to reach `to`. */
  private readonly proxies = new Map<string, FaultProxy>();

  private constructor(private readonly root: string, private readonly options: KvClusterOptions) {
    this.ids = Array.from({ length: options.size }, (_, i) => i + 1);
  }

  static async start(t: Test, options: KvClusterOptions): Promise<KvCluster> {
    const root = await mkdtemp(join(tmpdir(), `cairn-kv-cluster-${options.size}-`));
    const cluster = new KvCluster(root, options);
    t.teardown(() => cluster.destroy());
    for (const id of cluster.ids) {
      cluster.nodes.set(id, {
        id, dataDir: join(root, `node-${id}`), raftPort: await freePort(), clientPort: await freePort(), child: undefined,
        exited: Promise.resolve(), starts: 0, log: [],
      });
    }
    for (const from of cluster.ids) {
      for (const to of cluster.ids) {
        if (from !== to) cluster.proxies.set(`${from}->${to}`, await FaultProxy.start(cluster.node(to).raftPort));
      }
    }
    await Promise.all(cluster.ids.map((id) => cluster.startNode(id)));
    return cluster;
  }

  /** Client endpoints of every node, for KvClient. */
  endpoints(): Map<number, PeerAddress> {
    return new Map(this.ids.map((id) => [id, { host, port: this.node(id).clientPort }]));
  }

  isRunning(id: number): boolean {
    const child = this.node(id).child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  async startNode(id: number): Promise<void> {
    const node = this.node(id);
    if (this.isRunning(id)) throw new Error(`node ${id} is already running`);
    const peers = this.ids.map((other) => `${other}=${host}:${other === id ? node.raftPort : (this.proxies.get(`${id}->${other}`) as FaultProxy).port}`).join(',');
    const child = spawn(process.execPath, [
      this.options.script, '--id', String(id), '--peers', peers, '--data-dir', node.dataDir, '--client-listen', `${host}:${node.clientPort}`,
      '--cluster-id', `kv-test-${this.options.size}`, '--tick-ms', String(this.options.tickMs),
      '--snapshot-entries', String(this.options.snapshotEntries), '--compaction-lag', String(this.options.compactionLagEntries),
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    node.child = child;
    node.starts++;
    node.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let ready = false;
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n')) {
        if (line.length === 0) continue;
        if (line.startsWith('{"event":"ready"')) ready = true;
        node.log.push(`[${node.starts}] ${line}`);
        if (node.log.length > logLinesKept) node.log.shift();
      }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const deadline = Date.now() + 15_000;
    while (!ready) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`node ${id} exited during start:\n${node.log.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`node ${id} did not get ready in 15 s:\n${node.log.join('\n')}`);
      await sleep(20);
    }
  }

  /** SIGKILL, and wait for the process to be gone. */
  async kill(id: number): Promise<void> {
    const node = this.node(id);
    if (this.isRunning(id)) node.child?.kill('SIGKILL');
    await node.exited;
  }

  /** Blackholes every link to and from `id`. */
  isolate(id: number): void {
    for (const [link, proxy] of this.proxies) {
      const [from, to] = link.split('->').map(Number);
      if (from === id || to === id) proxy.setMode('blackhole');
    }
  }

  heal(): void {
    for (const proxy of this.proxies.values()) proxy.setMode('pass');
  }

  /** The statuses of the running nodes that answer (a node busy restarting may not). */
  async statuses(client: KvClient): Promise<KvNodeStatus[]> {
    const answers = await Promise.all(this.ids.filter((id) => this.isRunning(id)).map((id) => client.status(id).catch(() => undefined)));
    return answers.filter((status): status is KvNodeStatus => status !== undefined);
  }

  /** Waits for a node that says it leads (the highest term wins), and returns its id. */
  async leader(client: KvClient, timeoutMs = 15_000, except?: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leaders = (await this.statuses(client)).filter((status) => status.role === 'leader' && status.nodeId !== except);
      leaders.sort((a, b) => b.term - a.term);
      if (leaders[0] !== undefined) return leaders[0].nodeId;
      if (Date.now() > deadline) throw new Error(`no leader within ${timeoutMs} ms\n${this.logs()}`);
      await sleep(50);
    }
  }

  /** Whether node `id` printed a line matching `pattern` (among the last lines kept). */
  logged(id: number, pattern: RegExp): boolean {
    return this.node(id).log.some((line) => pattern.test(line));
  }

  /** The last lines of every node, for failure messages. */
  logs(): string {
    return this.ids.map((id) => `--- node ${id}\n${this.node(id).log.slice(-40).join('\n')}`).join('\n');
  }

  private node(id: number): NodeProcess {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  private async destroy(): Promise<void> {
    for (const id of this.ids) await this.kill(id);
    for (const proxy of this.proxies.values()) await proxy.close();
    await rm(this.root, { recursive: true, force: true });
  }
}
