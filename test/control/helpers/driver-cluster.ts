/**
 * In-process cluster of RaftDrivers for tests: each node has its own LevelDB directory (real
 * RaftLogStore, fsync on), the KV state machine, and a transport that delivers through the event
 * loop (setImmediate) unless the link is blocked (isolate/heal). Nodes stop and restart on their
 * directories like processes would; everything is stopped and removed in teardown.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { KvRaftStateMachine } from '../../../src/control/kv-node';
import { type KvApplyOutcome, type KvCommand, KvStateMachine, encodeKvCommand } from '../../../src/control/kv-state-machine';
import { RaftDriver, type RaftDriverOptions } from '../../../src/control/raft-driver';
import type { Message } from '../../../src/raft';
import { LevelKvStore } from '../../../src/store/level-kv-store';
import { RaftLogStore } from '../../../src/store/raft-log-store';
import { SeededRandom } from '../../../src/util/random';

export interface ClusterNode {
  readonly id: number;
  driver: RaftDriver<KvApplyOutcome>;
  machine: KvStateMachine;
  kv: LevelKvStore;
  running: boolean;
}

export type DriverTuning = Partial<Pick<RaftDriverOptions<KvApplyOutcome>, 'tickMs' | 'electionTicks' | 'snapshotEntries' | 'compactionLagEntries' | 'sync'>>;

export class DriverCluster {
  readonly nodes = new Map<number, ClusterNode>();
  private readonly blocked = new Set<string>();
  private incarnation = 0;

  private constructor(readonly root: string, readonly ids: readonly number[], private readonly tuning: DriverTuning) {}

  static async start(t: Test, ids: readonly number[], tuning: DriverTuning = {}): Promise<DriverCluster> {
    const root = await mkdtemp(join(tmpdir(), 'cairn-driver-'));
    const cluster = new DriverCluster(root, ids, { tickMs: 10, electionTicks: 10, ...tuning });
    t.teardown(async () => {
      for (const id of ids) await cluster.stop(id);
      await rm(root, { recursive: true, force: true });
    });
    for (const id of ids) await cluster.restart(id);
    return cluster;
  }

  node(id: number): ClusterNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** Starts (or restarts) node `id` on its directory. */
  async restart(id: number): Promise<ClusterNode> {
    const kv = await LevelKvStore.open(join(this.root, `node-${id}`));
    const store = await RaftLogStore.open(kv, { clusterId: 'driver-test', nodeId: id });
    const machine = new KvStateMachine();
    this.incarnation++;
    const driver = new RaftDriver<KvApplyOutcome>({
      nodeId: id, store, stateMachine: new KvRaftStateMachine(machine), random: new SeededRandom(id * 7919 + this.incarnation),
      transport: { send: (message) => this.deliver(message) }, bootstrapVoters: this.ids, ...this.tuning,
    });
    const node: ClusterNode = { id, driver, machine, kv, running: true };
    this.nodes.set(id, node);
    await driver.start();
    return node;
  }

  async stop(id: number): Promise<void> {
    const node = this.nodes.get(id);
    if (node === undefined || !node.running) return;
    node.running = false;
    await node.driver.stop();
    await node.kv.close();
  }

  /** Cuts every link between `id` and the others (both directions). */
  isolate(id: number): void {
    for (const other of this.ids) {
      if (other === id) continue;
      this.blocked.add(`${id}->${other}`);
      this.blocked.add(`${other}->${id}`);
    }
  }

  heal(): void {
    this.blocked.clear();
  }

  private deliver(message: Message): void {
    if (this.blocked.has(`${message.from}->${message.to}`)) return;
    setImmediate(() => {
      const target = this.nodes.get(message.to);
      if (target?.running === true && !this.blocked.has(`${message.from}->${message.to}`)) target.driver.receive(message);
    });
  }

  /** The one running node that leads (and is not cut off), waiting up to `timeoutMs`. */
  async leader(timeoutMs = 15_000, except?: number): Promise<ClusterNode> {
    let found: ClusterNode | undefined;
    await waitFor('a leader', () => {
      const leaders = [...this.nodes.values()].filter((node) => node.running && node.id !== except && node.driver.leader.isLeader);
      found = leaders.length === 1 ? leaders[0] : undefined;
      return found !== undefined;
    }, timeoutMs);
    return found as ClusterNode;
  }

  running(): ClusterNode[] {
    return [...this.nodes.values()].filter((node) => node.running);
  }

  /** Waits until every running node applied at least `index`. */
  async converge(index: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(`every node applying ${index}`, () => this.running().every((node) => node.driver.applied >= index), timeoutMs);
  }
}

export async function waitFor(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A command of client `clientId` as entry bytes. */
export function command(fields: KvCommand): Uint8Array {
  return encodeKvCommand(fields);
}
