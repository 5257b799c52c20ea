/**
 * SimNode: one simulated server — the real RawNode driven through the Ready loop on a SimDisk,
 * with the replicated KvStateMachine, serving client requests.
 *
 * The loop, as the driver will run it: take a Ready; write its hard state, entries and snapshot
 * as ONE disk batch; when `mustSync`, wait for the simulated sync (the node keeps ticking and
 * stepping meanwhile, but takes no new Ready); only then send its messages; apply its snapshot and
 * committed entries (configuration entries through applyConfChange); serve reads whose read index
 * is applied; advance. A crash forgets everything not on the disk: the RawNode, the state machine,
 * pending requests. A restart rebuilds the RawNode from what the disk recovered and the state
 * machine from the durable snapshot; committed entries after it are applied again.
 *
 * Client requests: a proposal is registered under (client id, seq) and answered by whichever
 * applied entry carries that pair (the dedupe table answers retries); a refusal by the Raft core
 * is answered at once (`notLeader` / `dropped`: certainly not appended). A read asks ReadIndex and
 * is answered from the local state machine once the applied index reaches the read index.
 * Pending requests are bounded; the oldest is forgotten first (its client times out).
 *
 * Deliberate bugs for checker tests (`NodeBug`): 'local-reads' answers reads from local state at
 * once, without ReadIndex — stale reads; 'lossy-apply' makes node 1's state machine skip every
 * fifth command it is given — a broken apply that diverges one replica.
 */
import { type KvApplyOutcome, type KvCommand, type KvLimits, KvStateMachine, encodeKvCommand } from '../control/kv-state-machine';
import { decodeConfChange } from '../raft/conf-change-codec';
import type { RaftConfigInput } from '../raft/config';
import { ConfChangeError, NotLeaderError, ProposalDroppedError, StepError } from '../raft/errors';
import { RawNode } from '../raft/raw-node';
import type { ConfChange, ConfState, Entry, Message, Ready, Snapshot } from '../raft/types';
import { assert } from '../util/assert';
import type { SeededRandom } from '../util/random';
import type { CrashReport, SimDisk } from './sim-disk';
import type { ClientRequest, NodeReply, SimPayload } from './sim-messages';

export type NodeBug = 'none' | 'local-reads' | 'lossy-apply';

/** Requests (proposals, reads) a node keeps waiting for an answer; older ones are forgotten. */
export const nodePendingRequestsMax = 256;

export interface SimNodeObserver {
  /** A Ready was taken (before it is written). */
  onReady(node: SimNode, ready: Ready): void;
  /** The Ready's batch was written to the disk (visible, not yet durable). */
  onWritten(node: SimNode, ready: Ready): void;
  onApply(node: SimNode, entry: Entry, outcome: KvApplyOutcome | undefined): void;
  onSnapshotRestored(node: SimNode, snapshot: Snapshot): void;
  onKvSnapshot(node: SimNode, index: number, data: Uint8Array): void;
}

export type RaftSettings = Omit<RaftConfigInput, 'id' | 'applied'>;

export interface SimNodeOptions {
  readonly id: number;
  readonly raft: RaftSettings;
  readonly disk: SimDisk;
  /** Source of each incarnation's RawNode randomness (election timeouts). */
  readonly random: SeededRandom;
  readonly send: (to: number, payload: SimPayload) => void;
  readonly observer: SimNodeObserver;
  readonly bug?: NodeBug;
  readonly kvLimits?: Partial<KvLimits>;
}

interface PendingProposal {
  readonly endpoint: number;
  readonly clientId: number;
  readonly opId: number;
  readonly attempt: number;
}

interface PendingRead {
  readonly endpoint: number;
  readonly clientId: number;
  readonly opId: number;
  readonly attempt: number;
  readonly key: string;
  /** Set when the ReadState arrived. */
  readIndex: number | undefined;
}

export interface NodeStats {
  readies: number;
  applied: number;
  snapshotsRestored: number;
  compactions: number;
  restarts: number;
  readsRequested: number;
  readsServed: number;
  confChangesApplied: number;
  /** Configurations applied while leading that left this node out of the voters. */
  removedWhileLeading: number;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export class SimNode {
  readonly id: number;
  readonly disk: SimDisk;
  private node: RawNode | undefined;
  kv: KvStateMachine;
  /** Configuration in effect at appliedIndex. */
  confState: ConfState;
  /** Highest index applied to the state machine (entries or snapshot). */
  appliedIndex: number;
  /** Bumped by every crash; callbacks of an earlier incarnation are ignored. */
  incarnation = 0;
  private awaitingSync: Ready | undefined;
  private readonly proposals = new Map<string, PendingProposal>();
  private readonly reads = new Map<string, PendingRead>();
  private readCounter = 0;
  private lossyCounter = 0;
  readonly stats: NodeStats = {
    readies: 0, applied: 0, snapshotsRestored: 0, compactions: 0, restarts: 0, readsRequested: 0, readsServed: 0, confChangesApplied: 0,
    removedWhileLeading: 0,
  };

  constructor(private readonly options: SimNodeOptions) {
    this.id = options.id;
    this.disk = options.disk;
    this.kv = new KvStateMachine(options.kvLimits);
    this.confState = options.disk.storage.snapshot().metadata.confState;
    this.appliedIndex = 0;
    this.node = undefined;
    this.start();
  }

  /** The RawNode; throws when the node is down. */
  get raw(): RawNode {
    assert(this.node !== undefined, `node ${this.id} is down`);
    return this.node;
  }

  get isUp(): boolean {
    return this.node !== undefined;
  }

  get isLeader(): boolean {
    return this.node !== undefined && this.node.raft.role === 'leader';
  }

  get isAwaitingSync(): boolean {
    return this.awaitingSync !== undefined;
  }

  private start(): void {
    const storage = this.disk.storage;
    const snapshot = storage.snapshot();
    this.kv = new KvStateMachine(this.options.kvLimits);
    if (snapshot.metadata.index > 0 && snapshot.data.length > 0) this.kv.restore(snapshot.data);
    this.confState = snapshot.metadata.confState;
    this.appliedIndex = snapshot.metadata.index;
    this.node = new RawNode({ ...this.options.raft, id: this.id, applied: this.appliedIndex }, storage, this.options.random.fork());
  }

  /** Bootstraps a brand-new cluster member (empty disk) and persists the bootstrap durably at once. */
  bootstrap(voters: readonly number[]): void {
    this.raw.bootstrap(voters);
    assert(this.raw.hasReady(), 'bootstrap produced no Ready');
    const ready = this.raw.ready();
    this.options.observer.onReady(this, ready);
    this.disk.writeReady(ready.hardState, ready.snapshot, ready.entries);
    this.disk.syncNow();
    this.options.observer.onWritten(this, ready);
    this.finish(ready);
  }

  /** One logical clock tick. */
  tick(): void {
    if (this.node === undefined) return;
    this.node.tick();
    this.pump();
  }

  /** A payload arrived from the network. */
  receive(from: number, payload: SimPayload): void {
    if (this.node === undefined) return;
    if (payload.kind === 'raft') this.step(payload.message);
    else if (payload.kind === 'request') this.handleRequest(from, payload.clientId, payload.opId, payload.attempt, payload.request);
    this.pump();
  }

  private step(message: Message): void {
    try {
      this.raw.step(message);
    } catch (error) {
      // A response from a node outside our configuration: a real driver logs and drops it.
      if (error instanceof StepError && error.code === 'RAFT_STEP_PEER_NOT_FOUND') return;
      throw error;
    }
  }

  /** Handles every Ready that is available, stopping at one that waits for its sync. */
  pump(): void {
    const raw = this.node;
    if (raw === undefined) return;
    while (this.awaitingSync === undefined && raw.hasReady()) {
      const ready = raw.ready();
      this.stats.readies++;
      this.options.observer.onReady(this, ready);
      this.disk.writeReady(ready.hardState, ready.snapshot, ready.entries);
      this.options.observer.onWritten(this, ready);
      if (!ready.mustSync) {
        this.finish(ready);
        continue;
      }
      this.awaitingSync = ready;
      const incarnation = this.incarnation;
      this.disk.sync(() => {
        if (incarnation !== this.incarnation) return;
        assert(this.awaitingSync === ready, `node ${this.id}: a sync completed for a Ready that is not outstanding`);
        this.awaitingSync = undefined;
        this.finish(ready);
        this.pump();
      });
    }
  }

  /** After the Ready is durable: send, apply, serve reads, advance. */
  private finish(ready: Ready): void {
    const raw = this.raw;
    for (const message of ready.messages) this.options.send(message.to, { kind: 'raft', message });
    if (ready.snapshot !== undefined) this.restoreSnapshot(ready.snapshot);
    for (const entry of ready.committedEntries) this.applyEntry(entry);
    for (const state of ready.readStates) {
      const read = this.reads.get(textDecoder.decode(state.context));
      if (read !== undefined) read.readIndex = state.index;
    }
    raw.advance(ready);
    this.serveReads();
  }

  private restoreSnapshot(snapshot: Snapshot): void {
    assert(snapshot.metadata.index > this.appliedIndex, `node ${this.id}: snapshot ${snapshot.metadata.index} is not after applied ${this.appliedIndex}`);
    this.kv.restore(snapshot.data);
    this.confState = snapshot.metadata.confState;
    this.appliedIndex = snapshot.metadata.index;
    this.stats.snapshotsRestored++;
    this.options.observer.onSnapshotRestored(this, snapshot);
  }

  private applyEntry(entry: Entry): void {
    assert(entry.index === this.appliedIndex + 1, `node ${this.id}: applying ${entry.index} after ${this.appliedIndex}`);
    let outcome: KvApplyOutcome | undefined;
    if (entry.type === 'confChange') {
      try {
        const wasLeader = this.isLeader;
        this.confState = this.raw.applyConfChange(decodeConfChange(entry.data));
        this.stats.confChangesApplied++;
        if (wasLeader && !this.confState.voters.includes(this.id) && !this.confState.votersOutgoing.includes(this.id)) this.stats.removedWhileLeading++;
      } catch (error) {
        // Every node reaches the same verdict on an invalid change: the entry is a no-op.
        if (!(error instanceof ConfChangeError)) throw error;
      }
    } else if (entry.data.length > 0 && this.options.bug === 'lossy-apply' && this.id === 1 && ++this.lossyCounter % 5 === 0) {
      // Deliberate bug: the command is silently not applied on this replica.
    } else if (entry.data.length > 0) {
      outcome = this.kv.apply(entry.index, entry.data);
      const command = outcome.command;
      if (command !== undefined) {
        const key = proposalKey(command);
        const pending = this.proposals.get(key);
        if (pending !== undefined) {
          this.proposals.delete(key);
          this.reply(pending, { kind: 'result', result: outcome.result });
        }
      }
    }
    this.appliedIndex = entry.index;
    this.stats.applied++;
    this.options.observer.onApply(this, entry, outcome);
  }

  private serveReads(): void {
    for (const [context, read] of this.reads) {
      if (read.readIndex === undefined || read.readIndex > this.appliedIndex) continue;
      this.reads.delete(context);
      this.stats.readsServed++;
      this.reply(read, { kind: 'result', result: { kind: 'get', value: this.kv.read(read.key) } });
    }
  }

  private handleRequest(endpoint: number, clientId: number, opId: number, attempt: number, request: ClientRequest): void {
    const raw = this.raw;
    const pending = { endpoint, clientId, opId, attempt };
    if (request.kind === 'read') {
      this.stats.readsRequested++;
      if (this.options.bug === 'local-reads') {
        this.reply(pending, { kind: 'result', result: { kind: 'get', value: this.kv.read(request.key) } });
        return;
      }
      const context = `${this.id}.${this.incarnation}.${++this.readCounter}`;
      bound(this.reads);
      this.reads.set(context, { ...pending, key: request.key, readIndex: undefined });
      try {
        raw.readIndex(textEncoder.encode(context));
      } catch (error) {
        this.reads.delete(context);
        this.refuse(pending, error);
      }
      return;
    }
    const key = proposalKey(request.command);
    bound(this.proposals);
    this.proposals.set(key, pending);
    try {
      raw.propose(encodeKvCommand(request.command));
    } catch (error) {
      this.proposals.delete(key);
      this.refuse(pending, error);
    }
  }

  private refuse(pending: PendingProposal, error: unknown): void {
    if (error instanceof NotLeaderError) this.reply(pending, { kind: 'notLeader', leaderHint: error.leaderId });
    else if (error instanceof ProposalDroppedError) this.reply(pending, { kind: 'dropped', reason: error.reason });
    else throw error;
  }

  private reply(pending: PendingProposal, reply: NodeReply): void {
    this.options.send(pending.endpoint, { kind: 'reply', clientId: pending.clientId, opId: pending.opId, attempt: pending.attempt, reply });
  }

  // ---- controls (scenarios and the nemesis) ---------------------------------------------------

  /** Power loss: everything not durable is gone. Returns what the disk kept. */
  crash(): CrashReport {
    assert(this.node !== undefined, `node ${this.id} is already down`);
    this.node = undefined;
    this.awaitingSync = undefined;
    this.incarnation++;
    this.proposals.clear();
    this.reads.clear();
    return this.disk.crash();
  }

  restart(): void {
    assert(this.node === undefined, `node ${this.id} is already up`);
    this.stats.restarts++;
    this.start();
  }

  /**
   * Takes a state machine snapshot at the applied index and discards the log up to `keepEntries`
   * entries before it. Returns false when there is nothing new to snapshot.
   */
  compact(keepEntries: number): boolean {
    if (this.node === undefined) return false;
    const storage = this.disk.storage;
    if (this.appliedIndex <= storage.snapshot().metadata.index) return false;
    const data = this.kv.snapshot();
    const compactIndex = Math.max(storage.firstIndex() - 1, this.appliedIndex - keepEntries);
    this.disk.compact(this.appliedIndex, this.confState, data, compactIndex);
    this.stats.compactions++;
    this.options.observer.onKvSnapshot(this, this.appliedIndex, data);
    return true;
  }

  /** Proposes a membership change; false when refused (not leader, one pending, invalid). */
  proposeConfChange(change: ConfChange): boolean {
    if (this.node === undefined) return false;
    try {
      this.node.proposeConfChange(change);
    } catch (error) {
      if (error instanceof ProposalDroppedError) return false;
      throw error;
    }
    this.pump();
    return true;
  }

  /** Proposes raw command bytes (liveness markers); false when refused. */
  proposeCommand(bytes: Uint8Array): boolean {
    if (this.node === undefined) return false;
    try {
      this.node.propose(bytes);
    } catch (error) {
      if (error instanceof ProposalDroppedError) return false;
      throw error;
    }
    this.pump();
    return true;
  }

  transferLeadership(target: number): boolean {
    if (this.node === undefined) return false;
    try {
      this.node.transferLeadership(target);
    } catch (error) {
      if (error instanceof ProposalDroppedError) return false;
      throw error;
    }
    this.pump();
    return true;
  }

  campaign(): void {
    if (this.node === undefined) return;
    this.node.campaign();
    this.pump();
  }
}

/** `open` carries the first seq the session will use, so it is told apart from that request. */
function proposalKey(command: KvCommand): string {
  return `${command.kind === 'open' ? 'open' : 'req'}/${command.clientId}/${command.seq}`;
}

/** Makes room for one more entry in a pending map (insertion order: the oldest goes first). */
function bound<T>(map: Map<string, T>): void {
  while (map.size >= nodePendingRequestsMax) {
    const oldest = map.keys().next();
    if (oldest.done === true) return;
    map.delete(oldest.value);
  }
}
