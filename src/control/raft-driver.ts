/**
 * RaftDriver: runs one RawNode for a real process — the loop that turns the pure core into a
 * replicated state machine. It owns the tick timer, the bounded inbox of peer messages, the
 * proposals waiting to be applied, the linearizable reads waiting for their read index, the
 * snapshot/compaction schedule and the lifecycle; the core, the store (RaftLogStore), the state
 * machine and the transport are given to it.
 *
 * One pass of the loop:
 *   1. ticks that came due, inbox messages (stepped), unreachable reports, one batched ReadIndex;
 *   2. if the core has a Ready: apply its snapshot and committed entries to the state machine in
 *      memory, then write Raft state (entries, hard state, snapshot) AND the state machine's
 *      operations in ONE batch, fsynced when Ready.mustSync — BEFORE any message leaves, with
 *      one exception: a leader whose term and vote are durable sends first (thesis §10.2.1);
 *   3. send the Ready's messages; resolve the proposals and reads the Ready completed;
 *   4. advance; then, every `snapshotEntries` applied entries, snapshot the state machine and
 *      compact the log behind it (a second batch, no fsync needed: it only drops what the
 *      snapshot covers, atomically with writing it).
 * Applying before the write is safe: committed entries are committed on a quorum, and the
 * effects become durable atomically with the entries (a crash loses both or neither). A proposal
 * resolves before the Ready's write only when its entry was written by an earlier Ready (then it
 * is durable on a quorum, this node included, and a restart applies it again from the log); a
 * read is served only after the write.
 *
 * Latency at one client (measured, see bench/raft.ts): the critical path of a write is the
 * leader's append → a follower's fsync → its ack → the answer. So the loop writes nothing for a
 * Ready that only moves the commit index (the commit index is not needed for safety; it is
 * written with the next write — see handleReady), answers straight from the loop through
 * `proposeWith` callbacks before any later write is submitted, and flushes a Ready's messages
 * (the transport corks them into one writev per peer) before submitting its own write.
 *
 * Restart: the core restarts at the snapshot's index with the snapshot's configuration and the
 * driver replays the committed entries after it (up to the commit index on disk, which may lag:
 * the rest is applied once the leader tells it again); configuration entries are applied to the core
 * again, normal entries at or below the state machine's applied index are skipped (the state
 * machine kept them durably with its applied index). A state machine that persists nothing on
 * its own (`operations` empty) is restored from the snapshot and replays — etcd's consistent-index
 * scheme.
 *
 * Proposals resolve when the entry at their (index, term) is applied, with the state machine's
 * result. They reject with RaftRequestError:
 * - CAIRN_NOT_LEADER (retryable, `leaderId` names the known leader) when this node does not lead:
 *   nothing was appended (`outcomeUnknown` false);
 * - CAIRN_NOT_LEADER with `outcomeUnknown` true when leadership was lost after the entry was
 *   appended: it may still commit under the next leader, so retry with the same request id;
 * - CAIRN_UNAVAILABLE (retryable) when the core dropped it (transfer, uncommitted limit), too many
 *   are pending, or another entry took its index (certainly not applied);
 * - CAIRN_SHUTTING_DOWN / CAIRN_IO on stop or a failed write (outcome unknown).
 * Reads (`read(fn)`) call `fn` once the state machine applied up to a read index confirmed by a
 * heartbeat quorum (thesis §6.4); every read queued during one pass shares one ReadIndex.
 *
 * Bounds: inbox messages and bytes, pending proposals, pending reads, ticks caught up per pass —
 * all in src/limits.ts. Lifecycle: created → running (start) → stopped (stop) | failed (a write
 * failed: everything pending rejects with CAIRN_IO and `onFatal` is told; restart the process).
 */
import { CairnError, type ErrorCode } from '../errors/cairn-error';
import {
  raftCompactionLagEntries, raftElectionTicks, raftEntryBytesMax, raftHeartbeatTicks, raftInboxBytesMax, raftInboxMessagesMax,
  raftMessageBytesMax, raftProposalsPendingMax, raftReadsPendingMax, raftSnapshotChunkBytes, raftSnapshotEntries, raftTickMs,
} from '../limits';
import { type Logger, silentLogger } from '../observe/logger';
import {
  type ConfState, type Entry, type HardState, type Message, type RaftConfigInput, type RaftStatus, type Ready, type Snapshot, ConfChangeError,
  NotLeaderError, ProposalDroppedError, RaftError, RawNode, decodeConfChange,
} from '../raft';
import type { KvOperation } from '../store/kv-store';
import type { RaftLogStore } from '../store/raft-log-store';
import { assert } from '../util/assert';
import type { Random } from '../util/random';
import { raftMessageBytesEstimate } from '../wire/raft-codec';

/**
 * What the driver applies committed entries to. The cluster map and the KV state machine
 * implement it. Contract:
 * - `apply` gets committed normal entries with data, in index order, all above `appliedIndex`;
 *   it changes memory at once and returns one result per entry plus the KvOperations that persist
 *   the change TOGETHER WITH the new applied index — the driver writes them in the same batch as
 *   the Raft state, so the state and its applied index are never apart. A machine that persists
 *   only through snapshots returns no operations and is restored from the latest snapshot on start;
 * - `snapshot` is the whole state at `appliedIndex`; `restore` replaces the state with a
 *   snapshot's and returns the operations that persist it.
 */
export interface RaftStateMachine<Result> {
  readonly appliedIndex: number;
  apply(entries: readonly Entry[]): { readonly results: readonly Result[]; readonly operations: readonly KvOperation[] };
  snapshot(): Uint8Array;
  restore(snapshot: Snapshot): readonly KvOperation[];
}

/**
 * Where the driver's messages go. `send` must never block; it may drop (then report unreachable).
 * It may hold messages back to send several in one syscall; `flush`, called once a Ready's
 * messages are all queued, sends them at once.
 */
export interface RaftTransport {
  send(message: Message): void;
  flush?(): void;
}

/**
 * How a proposal's outcome is delivered when not as a promise (`proposeWith`): exactly one of the
 * two is called, once, synchronously from the driver's loop — so an answer can leave before the
 * loop goes on to its next disk write. Neither may throw.
 */
export interface ProposalHandlers<Result> {
  readonly resolve: (result: Result) => void;
  readonly reject: (error: unknown) => void;
}

/** A refused or failed proposal or read, with what a client needs to retry it. */
export class RaftRequestError extends CairnError {
  constructor(
    code: ErrorCode,
    message: string,
    /** The leader this node knows (0: none). */
    readonly leaderId: number,
    /** The request may still take effect (it reached the log). */
    readonly outcomeUnknown: boolean,
    options: { retryable: boolean; cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export interface RaftDriverOptions<Result> {
  readonly nodeId: number;
  readonly store: RaftLogStore;
  readonly stateMachine: RaftStateMachine<Result>;
  readonly transport: RaftTransport;
  readonly random: Random;
  /** Voters of a brand-new cluster: bootstraps when the store is empty. Omit to join an existing one. */
  readonly bootstrapVoters?: readonly number[];
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Applied entries between snapshots. */
  readonly snapshotEntries?: number;
  /** Entries kept behind a snapshot. */
  readonly compactionLagEntries?: number;
  /** fsync Readys that need it (default true). Only tests that never crash may turn it off. */
  readonly sync?: boolean;
  /** Extra core settings (pre-vote, check-quorum, ...); ids and ticks come from above. */
  readonly raft?: Omit<Partial<RaftConfigInput>, 'id' | 'applied' | 'electionTicks' | 'heartbeatTicks'>;
  readonly logger?: Logger;
  /** Called once when the driver fails (a write failed or an invariant broke): restart the process. */
  readonly onFatal?: (error: unknown) => void;
}

interface PendingProposal<Result> extends ProposalHandlers<Result> {
  readonly term: number;
}

interface PendingRead {
  readonly serve: () => void;
  readonly reject: (error: unknown) => void;
}

interface ReadBatch {
  /** Set when the ReadState arrived: serve once applied reaches it. */
  index: number | undefined;
  readonly issuedTick: number;
  readonly reads: PendingRead[];
}

type DriverStatus = 'created' | 'running' | 'stopped' | 'failed';

const emptyResults: readonly never[] = [];

export class RaftDriver<Result> {
  readonly nodeId: number;
  readonly raw: RawNode;
  private readonly store: RaftLogStore;
  private readonly stateMachine: RaftStateMachine<Result>;
  private readonly transport: RaftTransport;
  private readonly logger: Logger;
  private readonly tickMs: number;
  private readonly electionTicks: number;
  private readonly snapshotEntries: number;
  private readonly compactionLagEntries: number;
  private readonly sync: boolean;
  private readonly onFatal: (error: unknown) => void;
  private status: DriverStatus = 'created';
  private failure: CairnError | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticksDue = 0;
  /** Ticks since start; read batches time out after readTimeoutTicks of them. */
  private tickCount = 0;
  private readonly readTimeoutTicks: number;
  /** Invariant: inbox.length <= raftInboxMessagesMax and inboxBytes <= raftInboxBytesMax. */
  private inbox: Message[] = [];
  private inboxBytes = 0;
  private readonly unreachable = new Set<number>();
  /** Invariant: size <= raftProposalsPendingMax; keys are log indexes. */
  private readonly proposals = new Map<number, PendingProposal<Result>>();
  /** Reads waiting for the next ReadIndex; with `readBatches`, at most raftReadsPendingMax reads. */
  private readQueue: PendingRead[] = [];
  private readonly readBatches = new Map<string, ReadBatch>();
  private readsPending = 0;
  private readContextCounter = 0;
  /** Index of the last entry handed to the application (the snapshot's after an install). */
  private appliedIndex: number;
  private confState: ConfState;
  /**
   * The newest hard state whose only change since the last written one is the commit index: not
   * written on its own (see handleReady), it rides along with the next write.
   */
  private unwrittenHardState: HardState | undefined;
  private leaderId = 0;
  private isLeader = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  /** Counters for status and tests. */
  readonly counters = { inboxDropped: 0, stepErrors: 0, readies: 0, syncedWrites: 0, snapshotsTaken: 0, snapshotsInstalled: 0 };

  constructor(options: RaftDriverOptions<Result>) {
    this.nodeId = options.nodeId;
    this.store = options.store;
    this.stateMachine = options.stateMachine;
    this.transport = options.transport;
    this.logger = options.logger ?? silentLogger;
    this.tickMs = options.tickMs ?? raftTickMs;
    this.electionTicks = options.electionTicks ?? raftElectionTicks;
    this.snapshotEntries = options.snapshotEntries ?? raftSnapshotEntries;
    this.compactionLagEntries = options.compactionLagEntries ?? raftCompactionLagEntries;
    this.sync = options.sync ?? true;
    this.readTimeoutTicks = 2 * this.electionTicks;
    this.onFatal = options.onFatal ?? (() => {});
    assert(Number.isSafeInteger(this.tickMs) && this.tickMs > 0, 'tickMs must be a positive integer');
    assert(Number.isSafeInteger(this.snapshotEntries) && this.snapshotEntries > 0, 'snapshotEntries must be positive');
    assert(Number.isSafeInteger(this.compactionLagEntries) && this.compactionLagEntries >= 0, 'compactionLagEntries must not be negative');
    const snapshot = this.store.snapshot();
    this.appliedIndex = snapshot.metadata.index;
    this.confState = snapshot.metadata.confState;
    this.raw = new RawNode({
      ...options.raft,
      id: options.nodeId,
      applied: snapshot.metadata.index,
      electionTicks: this.electionTicks,
      heartbeatTicks: options.heartbeatTicks ?? raftHeartbeatTicks,
      messageBytesMax: options.raft?.messageBytesMax ?? raftMessageBytesMax,
      snapshotChunkBytes: options.raft?.snapshotChunkBytes ?? raftSnapshotChunkBytes,
      forwardProposals: false,
    }, this.store, options.random);
    if (this.store.isEmpty && options.bootstrapVoters !== undefined) {
      this.raw.bootstrap(options.bootstrapVoters);
      this.logger.info('bootstrapped a new cluster', { voters: options.bootstrapVoters });
    }
  }

  /**
   * Restores the state machine from the latest snapshot when it is behind it (a machine that
   * persists only through snapshots), then starts the tick timer and the loop.
   */
  async start(): Promise<void> {
    assert(this.status === 'created', `driver start in state ${this.status}`);
    const snapshot = this.store.snapshot();
    if (this.stateMachine.appliedIndex < snapshot.metadata.index) {
      const operations = this.stateMachine.restore(snapshot);
      if (operations.length > 0) await this.store.write({}, { sync: this.sync }, operations);
    }
    this.status = 'running';
    this.timer = setInterval(() => {
      this.ticksDue = Math.min(this.ticksDue + 1, this.electionTicks);
      this.poke();
    }, this.tickMs);
    this.loop = this.run().catch((error: unknown) => this.fail(error));
    this.logger.info('raft driver started', {
      node: this.nodeId, term: this.store.hardState().term, commit: this.store.hardState().commit,
      snapshot: snapshot.metadata.index, first: this.store.firstIndex(), last: this.store.lastIndex(),
    });
  }

  /** Stops the loop after the pass in progress; everything pending rejects with CAIRN_SHUTTING_DOWN. */
  async stop(): Promise<void> {
    if (this.status === 'created') this.status = 'stopped';
    if (this.status === 'running') this.status = 'stopped';
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.poke();
    await this.loop;
    await this.writeUnwrittenHardState();
    this.rejectAll(() => new RaftRequestError('CAIRN_SHUTTING_DOWN', 'the raft node is stopping', this.leaderId, true, { retryable: true }));
  }

  // ---- inputs ---------------------------------------------------------------------------------

  /** A message from a peer. Dropped when the inbox is full (Raft retransmits). */
  receive(message: Message): void {
    if (this.status !== 'running') return;
    const bytes = raftMessageBytesEstimate(message);
    if (this.inbox.length >= raftInboxMessagesMax || this.inboxBytes + bytes > raftInboxBytesMax) {
      this.counters.inboxDropped++;
      return;
    }
    this.inbox.push(message);
    this.inboxBytes += bytes;
    this.poke();
  }

  /** The transport could not deliver to `peerId`; told to the core on the next pass. */
  reportUnreachable(peerId: number): void {
    if (this.status !== 'running') return;
    this.unreachable.add(peerId);
    this.poke();
  }

  /**
   * Proposes `data` and resolves with the state machine's result once the entry is applied here.
   * Rejects with RaftRequestError (see the module comment).
   */
  propose(data: Uint8Array): Promise<Result> {
    return new Promise<Result>((resolve, reject) => this.proposeWith(data, { resolve, reject }));
  }

  /**
   * `propose` with callbacks instead of a promise: a refusal calls `handlers.reject` at once, the
   * outcome is delivered synchronously from the loop the moment it is known (ProposalHandlers).
   */
  proposeWith(data: Uint8Array, handlers: ProposalHandlers<Result>): void {
    try {
      this.checkRunning();
      if (data.length > raftEntryBytesMax) {
        throw new RaftRequestError('CAIRN_INVALID_ARGUMENT', `proposal of ${data.length} bytes exceeds ${raftEntryBytesMax}`, this.leaderId, false, { retryable: false });
      }
      if (this.proposals.size >= raftProposalsPendingMax) {
        throw new RaftRequestError('CAIRN_UNAVAILABLE', `${this.proposals.size} proposals are pending; retry later`, this.leaderId, false, { retryable: true });
      }
      let id;
      try {
        id = this.raw.propose(data);
      } catch (error) {
        throw this.refusal(error);
      }
      assert(id !== undefined, 'proposal forwarding is off, so a leader returns the entry id');
      assert(!this.proposals.has(id.index), `two proposals at index ${id.index}`);
      this.proposals.set(id.index, { term: id.term, resolve: handlers.resolve, reject: handlers.reject });
      this.poke();
    } catch (error) {
      handlers.reject(error);
    }
  }

  /**
   * A linearizable read: `fn` runs once this node's state machine reached a read index confirmed
   * by the leader's heartbeat quorum; resolves with what `fn` returned.
   */
  read<T>(fn: () => T): Promise<T> {
    try {
      this.checkRunning();
      if (this.readsPending >= raftReadsPendingMax) {
        throw new RaftRequestError('CAIRN_UNAVAILABLE', `${this.readsPending} reads are pending; retry later`, this.leaderId, false, { retryable: true });
      }
      const promise = new Promise<T>((resolve, reject) => {
        this.readQueue.push({
          serve: () => {
            try {
              resolve(fn());
            } catch (error) {
              reject(error);
            }
          },
          reject,
        });
      });
      this.readsPending++;
      this.poke();
      return promise;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The leader this node knows (0: none) and whether it is this node. */
  get leader(): { readonly leaderId: number; readonly isLeader: boolean } {
    return { leaderId: this.leaderId, isLeader: this.isLeader };
  }

  get applied(): number {
    return this.appliedIndex;
  }

  get pendingProposals(): number {
    return this.proposals.size;
  }

  raftStatus(): RaftStatus {
    return this.raw.status();
  }

  /** Asks the leader to hand leadership to `target` (tests, rolling restarts). */
  transferLeadership(target: number): void {
    this.checkRunning();
    this.raw.transferLeadership(target);
    this.poke();
  }

  /** Starts an election now (tests). */
  campaign(): void {
    this.checkRunning();
    this.raw.campaign();
    this.poke();
  }

  // ---- the loop -------------------------------------------------------------------------------

  private poke(): void {
    const wake = this.wake;
    if (wake !== undefined) {
      this.wake = undefined;
      wake();
    }
  }

  private async run(): Promise<void> {
    while (this.status === 'running') {
      this.takeInputs();
      if (this.raw.hasReady()) {
        const ready = this.raw.ready();
        await this.handleReady(ready);
        this.raw.advance(ready);
        await this.maybeSnapshot();
        continue;
      }
      if (this.ticksDue > 0 || this.inbox.length > 0 || this.unreachable.size > 0 || this.readQueue.length > 0) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private takeInputs(): void {
    if (this.ticksDue > 0) {
      while (this.ticksDue > 0) {
        this.ticksDue--;
        this.tickCount++;
        this.raw.tick();
      }
      this.expireReads();
    }
    const inbox = this.inbox;
    this.inbox = [];
    this.inboxBytes = 0;
    for (const message of inbox) {
      try {
        this.raw.step(message);
      } catch (error) {
        if (!(error instanceof RaftError)) throw error;
        this.counters.stepErrors++;
        this.logger.debug('message refused by the core', { type: message.type, from: message.from, error });
      }
    }
    for (const peerId of this.unreachable) this.raw.reportUnreachable(peerId);
    this.unreachable.clear();
    if (this.readQueue.length > 0) this.issueReadIndex();
  }

  private issueReadIndex(): void {
    const reads = this.readQueue;
    this.readQueue = [];
    this.readContextCounter++;
    const context = new Uint8Array(12);
    const view = new DataView(context.buffer);
    view.setUint32(0, this.nodeId >>> 0);
    view.setUint32(4, Math.floor(this.readContextCounter / 2 ** 32));
    view.setUint32(8, this.readContextCounter % 2 ** 32);
    try {
      this.raw.readIndex(context);
    } catch (error) {
      const refusal = this.refusal(error);
      this.readsPending -= reads.length;
      for (const read of reads) read.reject(refusal);
      return;
    }
    this.readBatches.set(Buffer.from(context).toString('hex'), { index: undefined, issuedTick: this.tickCount, reads });
  }

  private async handleReady(ready: Ready): Promise<void> {
    this.counters.readies++;
    const operations: KvOperation[] = [];
    if (ready.snapshot !== undefined) {
      operations.push(...this.stateMachine.restore(ready.snapshot));
      this.confState = ready.snapshot.metadata.confState;
      this.appliedIndex = ready.snapshot.metadata.index;
      this.counters.snapshotsInstalled++;
      this.logger.info('installing a snapshot from the leader', { index: ready.snapshot.metadata.index, bytes: ready.snapshot.data.length });
    }
    const normal: Entry[] = [];
    for (const entry of ready.committedEntries) {
      assert(entry.index === this.appliedIndex + 1, `committed entry ${entry.index} does not follow applied ${this.appliedIndex}`);
      this.appliedIndex = entry.index;
      if (entry.type === 'confChange') {
        try {
          this.confState = this.raw.applyConfChange(decodeConfChange(entry.data));
        } catch (error) {
          if (!(error instanceof ConfChangeError)) throw error;
          this.logger.warn('configuration entry refused; applied as a no-op', { index: entry.index, error });
        }
      } else if (entry.data.length > 0 && entry.index > this.stateMachine.appliedIndex) {
        normal.push(entry);
      }
    }
    const applied = normal.length > 0 ? this.stateMachine.apply(normal) : { results: emptyResults, operations: [] };
    assert(applied.results.length === normal.length, 'the state machine returns one result per entry');
    operations.push(...applied.operations);
    // A hard state that changes only the commit index is not written on its own: it waits for
    // the next write (entries, a term or vote, state machine operations, a snapshot, stop). Raft
    // needs no durable commit index: a restarted node learns it again from the leader, and it is
    // never behind what is durable elsewhere — every write carries the newest hard state, so a
    // snapshot or the state machine's own operations never pass the commit index stored with
    // them. What it saves is a LevelDB write (a thread-pool round trip that would hold this
    // loop) on every node for every commit, on the path of the next request.
    if (ready.hardState !== undefined) this.unwrittenHardState = ready.hardState;
    const durable = this.store.hardState();
    const termOrVoteChanged = this.unwrittenHardState !== undefined
      && (this.unwrittenHardState.term !== durable.term || this.unwrittenHardState.vote !== durable.vote);
    const mustWrite = ready.snapshot !== undefined || ready.entries.length > 0 || termOrVoteChanged || operations.length > 0;
    // A leader whose term and vote are already durable sends before it writes, so its fsync
    // overlaps the followers' (Raft thesis §10.2.1). Safe here because this loop is sequential:
    // the followers' acks are stepped only after this write completed, so nothing commits on
    // the strength of the leader's own unwritten entries, and no reply that depends on this
    // write leaves before it.
    const sendFirst = this.isLeader && this.leaderTermDurable(ready);
    // Entries committed here that an earlier Ready already wrote are durable on a quorum (this
    // node included); replay after a crash re-applies them, so their results may go out before
    // this write (which then only records the commit index and applied state).
    const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1]?.index ?? 0;
    const settleFirst = ready.snapshot === undefined && (ready.entries[0] === undefined || lastCommitted < ready.entries[0].index);
    // Each send and each answer is a syscall that wakes another process, so the order matters:
    // appends carrying new entries first (the followers' fsyncs start sooner), then this node's
    // own write is submitted (its fsync runs on the thread pool meanwhile), then the answers,
    // then the other messages (commit notices, heartbeats).
    const appendsFirst = sendFirst && ready.entries.length > 0;
    if (appendsFirst) this.send(ready.messages);
    let written: Promise<void> | undefined;
    const sync = this.sync && ready.mustSync;
    if (mustWrite) {
      const hardState = this.unwrittenHardState;
      this.unwrittenHardState = undefined;
      written = this.store.write({ snapshot: ready.snapshot, entries: ready.entries, hardState }, { sync }, operations);
    }
    if (settleFirst) this.settleProposals(ready.committedEntries, normal, applied.results);
    if (sendFirst && !appendsFirst) this.send(ready.messages);
    if (written !== undefined) {
      await written;
      if (sync) this.counters.syncedWrites++;
    }
    // Durable: now the messages may leave.
    if (!sendFirst) this.send(ready.messages);
    // Settle what this Ready applied first: a proposal committed here succeeded even if the
    // same Ready also reports the loss of leadership.
    if (!settleFirst) this.settleProposals(ready.committedEntries, normal, applied.results);
    if (ready.softState !== undefined) this.leadershipChanged(ready.softState.lead, ready.softState.role === 'leader');
    for (const state of ready.readStates) {
      const batch = this.readBatches.get(Buffer.from(state.context).toString('hex'));
      if (batch !== undefined) batch.index = state.index;
    }
    this.serveReads();
  }

  private send(messages: readonly Message[]): void {
    if (messages.length === 0) return;
    for (const message of messages) this.transport.send(message);
    this.transport.flush?.();
  }

  /** Writes (unsynced) a commit index still waiting for a write, so a clean restart replays all it applied. */
  private async writeUnwrittenHardState(): Promise<void> {
    const hardState = this.unwrittenHardState;
    if (hardState === undefined || this.status === 'failed') return;
    this.unwrittenHardState = undefined;
    try {
      await this.store.write({ hardState }, { sync: false });
    } catch (error) {
      this.logger.warn('could not record the commit index on stop', { error });
    }
  }

  /**
   * Whether this Ready keeps the node leader with the term and vote already on disk, and carries
   * no snapshot: then its messages (appends, heartbeats) depend on nothing it is about to write.
   */
  private leaderTermDurable(ready: Ready): boolean {
    if (ready.snapshot !== undefined) return false;
    if (ready.softState !== undefined && ready.softState.role !== 'leader') return false;
    if (ready.hardState === undefined) return true;
    const durable = this.store.hardState();
    return ready.hardState.term === durable.term && ready.hardState.vote === durable.vote;
  }

  private settleProposals(committed: readonly Entry[], normal: readonly Entry[], results: readonly Result[]): void {
    if (this.proposals.size === 0) return;
    const resultByIndex = new Map<number, Result>();
    normal.forEach((entry, i) => resultByIndex.set(entry.index, results[i] as Result));
    for (const entry of committed) {
      const pending = this.proposals.get(entry.index);
      if (pending === undefined) continue;
      this.proposals.delete(entry.index);
      if (pending.term === entry.term && resultByIndex.has(entry.index)) {
        pending.resolve(resultByIndex.get(entry.index) as Result);
      } else {
        pending.reject(new RaftRequestError('CAIRN_UNAVAILABLE', `another entry (term ${entry.term}) took index ${entry.index}; the proposal was not applied`, this.leaderId, false, { retryable: true }));
      }
    }
  }

  private leadershipChanged(leaderId: number, isLeader: boolean): void {
    const wasLeader = this.isLeader;
    this.leaderId = leaderId;
    this.isLeader = isLeader;
    this.logger.info(isLeader ? 'became the leader' : 'leader changed', { node: this.nodeId, leader: leaderId, term: this.store.hardState().term });
    if (wasLeader && !isLeader) {
      // Appended entries may still commit under the next leader: the outcome is unknown.
      const error = (): RaftRequestError => new RaftRequestError(
        'CAIRN_NOT_LEADER',
        `node ${this.nodeId} lost the leadership (leader now ${leaderId === 0 ? 'unknown' : leaderId}); the request may still be applied — retry with the same request id`,
        leaderId, true, { retryable: true },
      );
      for (const pending of this.proposals.values()) pending.reject(error());
      this.proposals.clear();
    }
    if (wasLeader && !isLeader) {
      // Reads not yet confirmed by a heartbeat quorum never will be; confirmed ones stay valid.
      this.rejectReads(
        (batch) => batch.index === undefined,
        () => new RaftRequestError('CAIRN_NOT_LEADER', `node ${this.nodeId} lost the leadership while reads were waiting`, leaderId, false, { retryable: true }),
      );
    }
  }

  private serveReads(): void {
    for (const [key, batch] of this.readBatches) {
      if (batch.index === undefined || batch.index > this.appliedIndex) continue;
      this.readBatches.delete(key);
      this.readsPending -= batch.reads.length;
      for (const read of batch.reads) read.serve();
    }
  }

  private rejectReads(which: (batch: ReadBatch) => boolean, error: () => unknown): void {
    for (const [key, batch] of this.readBatches) {
      if (!which(batch)) continue;
      this.readBatches.delete(key);
      this.readsPending -= batch.reads.length;
      for (const read of batch.reads) read.reject(error());
    }
  }

  /** A ReadIndex answered by nobody (lost with a leader, or a partition) fails after its timeout. */
  private expireReads(): void {
    this.rejectReads(
      (batch) => batch.index === undefined && this.tickCount - batch.issuedTick >= this.readTimeoutTicks,
      () => new RaftRequestError('CAIRN_UNAVAILABLE', `no read index within ${this.readTimeoutTicks * this.tickMs} ms; retry`, this.leaderId, false, { retryable: true }),
    );
  }

  private async maybeSnapshot(): Promise<void> {
    const snapshotIndex = this.store.snapshot().metadata.index;
    if (this.appliedIndex - snapshotIndex < this.snapshotEntries) return;
    // While replaying entries a persistent state machine already holds, its state is ahead of
    // the replay point and cannot describe it: snapshot once the replay caught up.
    if (this.stateMachine.appliedIndex > this.appliedIndex) return;
    const index = this.appliedIndex;
    assert(this.stateMachine.appliedIndex <= index, 'a snapshot must describe the state at its index');
    const snapshot: Snapshot = { metadata: { index, term: this.store.term(index), confState: this.confState }, data: this.stateMachine.snapshot() };
    const compactTo = Math.max(this.store.firstIndex() - 1, index - this.compactionLagEntries);
    // The commit index travels with the snapshot: the store refuses a snapshot past its commit.
    const hardState = this.unwrittenHardState;
    this.unwrittenHardState = undefined;
    await this.store.write({ hardState, createdSnapshot: snapshot, compactTo }, { sync: false });
    this.counters.snapshotsTaken++;
    this.logger.debug('snapshot taken', { index, bytes: snapshot.data.length, compactTo });
  }

  // ---- errors and lifecycle ---------------------------------------------------------------------

  private checkRunning(): void {
    if (this.status === 'running') return;
    if (this.status === 'failed') {
      throw new RaftRequestError('CAIRN_IO', `the raft node failed and must restart: ${this.failure?.message ?? 'unknown error'}`, this.leaderId, false, { retryable: true });
    }
    if (this.status === 'created') throw new RaftRequestError('CAIRN_UNAVAILABLE', 'the raft node has not started', 0, false, { retryable: true });
    throw new RaftRequestError('CAIRN_SHUTTING_DOWN', 'the raft node is stopped', this.leaderId, false, { retryable: true });
  }

  /** Maps a refusal by the core to a RaftRequestError (nothing was appended). */
  private refusal(error: unknown): RaftRequestError {
    if (error instanceof NotLeaderError) {
      const leaderId = error.leaderId;
      return new RaftRequestError('CAIRN_NOT_LEADER', `node ${this.nodeId} is not the leader (leader: ${leaderId === 0 ? 'unknown' : leaderId})`, leaderId, false, { retryable: true, cause: error });
    }
    if (error instanceof ProposalDroppedError) {
      return new RaftRequestError('CAIRN_UNAVAILABLE', `the request was dropped (${error.reason}); retry later`, this.leaderId, false, { retryable: true, cause: error });
    }
    throw error;
  }

  private rejectAll(error: () => unknown): void {
    for (const pending of this.proposals.values()) pending.reject(error());
    this.proposals.clear();
    this.rejectReads(() => true, error);
    const queued = this.readQueue;
    this.readQueue = [];
    for (const read of queued) read.reject(error());
    this.readsPending = 0;
  }

  private fail(error: unknown): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.status = 'failed';
    this.failure = error instanceof CairnError ? error : new CairnError('CAIRN_IO', String(error), { cause: error });
    this.logger.error('raft driver failed; the process must restart', { error });
    this.rejectAll(() => new RaftRequestError('CAIRN_IO', `the raft node failed: ${this.failure?.message ?? ''}`, this.leaderId, true, { retryable: true }));
    this.onFatal(error);
  }
}
