/**
 * Simulation: a whole Raft cluster in one thread — SimNodes on SimDisks, SimClients, one
 * SimNetwork, one SimClock — driven by one seed, with the invariant checker looking at every step.
 *
 * A run (`run()`) has four phases:
 * 1. faulty (`ticksMax` ticks): clients run the KV workload while the nemesis crashes and
 *    restarts nodes (losing unsynced writes, tearing the last one), cuts the network (symmetric,
 *    asymmetric, single links), stalls disks, changes membership (add learner, promote, remove —
 *    the leader included — and joint replace), transfers leadership and compacts logs;
 * 2. heal: the network and disks recover, every down member restarts, removed nodes are shut down;
 * 3. liveness: within `recoveryTicksMax` ticks a leader must commit a new entry that every member
 *    applies;
 * 4. drain: clients stop, finish or abandon what they were doing, members catch up; then the
 *    replicas must agree and the client history must be linearizable (src/check).
 * The scenario controls (crash, restart, partition, isolate, heal, stallDisk, compact, addLearner,
 * promote, remove, replace, transferLeader, runFor, runUntil) are public so tests can script
 * named scenarios with the same machinery.
 *
 * Determinism: all randomness comes from SeededRandom streams forked from the seed in a fixed
 * order; all time from the SimClock; Map/Set iteration is insertion-ordered. Every event is mixed
 * into a TraceHash, so two runs of one seed can be compared exactly.
 */
import { checkHistory, formatHistoryVerdict } from '../check/check-history';
import type { HistoryOperation } from '../check/history';
import { HistoryRecorder } from '../check/history-recorder';
import { type KvApplyOutcome, KvStateMachine, encodeKvCommand } from '../control/kv-state-machine';
import type { ConfChange, ConfState, Entry, Ready, Snapshot } from '../raft/types';
import { assert } from '../util/assert';
import { SeededRandom } from '../util/random';
import { InvariantChecker } from './invariants';
import { Nemesis } from './nemesis';
import { SimClient } from './sim-client';
import { SimClock } from './sim-clock';
import { type CrashReport, SimDisk } from './sim-disk';
import { type SimPayload, clientEndpointBase } from './sim-messages';
import { type LinkDirection, SimNetwork } from './sim-network';
import { SimNode, type SimNodeObserver } from './sim-node';
import { type SimOptions, electionTicks, tickNs } from './sim-options';
import { TraceHash } from './trace-hash';

/** Client id of the liveness probe's commands (above every workload client). */
export const livenessClientId = 1_000_000;
/** Search budget per key for the final linearizability check. */
export const linearizabilityStepsMax = 1_000_000;

export interface SimCounters {
  crashes: number;
  restarts: number;
  partitions: number;
  asymmetricPartitions: number;
  stalls: number;
  confChangesProposed: number;
  transfers: number;
  nemesisCompactions: number;
  leaderRemovals: number;
  /** Changes of several members at once (through a joint configuration). */
  jointChanges: number;
  /** Distinct configuration entries (bootstrap excluded) applied by some node. */
  confChangesCommitted: number;
  /** Nodes outside the configuration when faults stopped (removed, or never added), shut down. */
  decommissioned: number;
  /** Raft messages to a down or cut-off peer, reported unreachable to the sender. */
  unreachableReports: number;
  livenessTicks: number;
}

/** What a run exercised, summed over nodes and clients (for coverage reports). */
export interface SimStats extends SimCounters {
  leadersElected: number;
  maxCommit: number;
  snapshotsInstalled: number;
  /** Configuration entries applied, counted once per node that applied them. */
  confChangesApplied: number;
  /** Leaders that applied a configuration without themselves as voter (and stepped down). */
  leadersRemovedWhileLeading: number;
  compactions: number;
  writesLost: number;
  writesSurvivedUnsynced: number;
  tornTails: number;
  readsServed: number;
  operations: number;
  operationsOk: number;
  operationsFailed: number;
  operationsUnknown: number;
  messagesSent: number;
  messagesDropped: number;
  messagesDuplicated: number;
}

export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violations: readonly string[];
  readonly traceHash: string;
  readonly events: number;
  readonly simulatedNs: number;
  /** One line of what happened, for reports. */
  readonly summary: string;
  readonly stats: SimStats;
  readonly history: readonly HistoryOperation[];
  /** The last traced events (when tracing lines were asked for). */
  readonly recentEvents: readonly string[];
}

export interface SimulationSettings {
  /** Keep this many described events for failure reports (0: only the hash). */
  readonly traceLines?: number;
}

export class Simulation implements SimNodeObserver {
  readonly clock = new SimClock();
  readonly network: SimNetwork<SimPayload>;
  readonly checker: InvariantChecker;
  readonly recorder: HistoryRecorder;
  readonly trace: TraceHash;
  readonly counters: SimCounters = {
    crashes: 0, restarts: 0, partitions: 0, asymmetricPartitions: 0, stalls: 0, confChangesProposed: 0, transfers: 0,
    nemesisCompactions: 0, leaderRemovals: 0, jointChanges: 0, confChangesCommitted: 0, decommissioned: 0, unreachableReports: 0,
    livenessTicks: 0,
  };
  private readonly nodeList: SimNode[] = [];
  private readonly clientList: SimClient[] = [];
  private readonly random: SeededRandom;
  private readonly decommissioned = new Set<number>();
  readonly nemesis: Nemesis;
  /** Index at which the current liveness marker was first applied (by any node). */
  private markerIndex: number | undefined;
  private markerSeq = 0;
  private readonly confChangeIndexes = new Set<number>();

  constructor(readonly options: SimOptions, settings: SimulationSettings = {}) {
    this.random = new SeededRandom(options.seed);
    // Fork every stream up front, in a fixed order: a component's draws never shift another's.
    const networkRandom = this.random.fork();
    const nemesisRandom = this.random.fork();
    const clientRandom = this.random.fork();
    this.trace = new TraceHash(settings.traceLines ?? 0);
    this.checker = new InvariantChecker(() => this.clock.nowNs);
    this.recorder = new HistoryRecorder({ clockNs: () => this.clock.nowNs });
    this.network = new SimNetwork<SimPayload>(this.clock, networkRandom, options.network, (from, to, payload) => this.deliver(from, to, payload));

    const initial = this.initialSnapshot();
    for (let id = 1; id <= options.nodeCount; id++) {
      const isInitialVoter = id <= options.initialVoters;
      const disk = new SimDisk(this.clock, this.random.fork(), options.disk, options.bugs.disk, isInitialVoter ? initial : undefined);
      const node = new SimNode({
        id, raft: options.raft, disk, random: this.random.fork(), observer: this, bug: options.bugs.node, kvLimits: options.kvLimits,
        send: (to, payload) => this.send(id, to, payload),
      });
      this.nodeList.push(node);
    }
    if (options.bootstrap === 'log') {
      const voters = this.nodeList.filter((node) => node.id <= options.initialVoters).map((node) => node.id);
      for (const node of this.nodeList) if (node.id <= options.initialVoters) node.bootstrap(voters);
    }
    const nodeIds = this.nodeList.map((node) => node.id);
    for (let clientId = 1; clientId <= options.clients; clientId++) {
      this.clientList.push(new SimClient(clientId, {
        clock: this.clock, random: clientRandom.fork(), recorder: this.recorder, nodeIds,
        send: (from, to, payload) => this.network.send(from, to, payload),
      }, options.workload));
    }
    for (const node of this.nodeList) this.scheduleTick(node);
    this.nemesis = new Nemesis(this, options.nemesis, nemesisRandom);
  }

  private initialSnapshot(): Snapshot | undefined {
    if (this.options.bootstrap !== 'snapshot') return undefined;
    const voters = Array.from({ length: this.options.initialVoters }, (_, i) => i + 1);
    const confState: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    return { metadata: { index: 1, term: 1, confState }, data: new KvStateMachine(this.options.kvLimits).snapshot() };
  }

  // ---- queries --------------------------------------------------------------------------------

  get nodes(): readonly SimNode[] {
    return this.nodeList;
  }

  get clients(): readonly SimClient[] {
    return this.clientList;
  }

  node(id: number): SimNode {
    const node = this.nodeList[id - 1];
    assert(node !== undefined && node.id === id, `no node ${id}`);
    return node;
  }

  /** The live leader of the highest term, if any. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const node of this.nodeList) {
      if (!node.isLeader) continue;
      if (best === undefined || node.raw.raft.term > best.raw.raft.term) best = node;
    }
    return best;
  }

  /** The configuration applied furthest along by any live node. */
  latestConfState(): ConfState {
    let best: SimNode | undefined;
    for (const node of this.nodeList) {
      if (node.isUp && (best === undefined || node.appliedIndex > best.appliedIndex)) best = node;
    }
    return best?.confState ?? { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  }

  /**
   * Every id in the latest applied configuration (voters, learners, incoming and outgoing), except
   * nodes shut down after their removal (a pending change may still name one as a learner).
   */
  members(): number[] {
    const conf = this.latestConfState();
    const ids = new Set([...conf.voters, ...conf.votersOutgoing, ...conf.learners, ...conf.learnersNext]);
    return [...ids].filter((id) => !this.decommissioned.has(id)).sort((a, b) => a - b);
  }

  // ---- the event loop -------------------------------------------------------------------------

  /** Runs one event and checks the invariants. False when nothing is left to run. */
  step(untilNs = Infinity): boolean {
    const event = this.clock.takeNext(untilNs);
    if (event === undefined) return false;
    event.action();
    this.checker.afterStep(this.nodeList);
    return true;
  }

  /** Runs events for `durationNs` of simulated time, or until a violation. */
  runFor(durationNs: number): void {
    const untilNs = this.clock.nowNs + durationNs;
    while (!this.checker.failed && this.step(untilNs)) { /* one event at a time */ }
    if (!this.checker.failed && this.clock.nowNs < untilNs) this.clock.advanceTo(untilNs);
  }

  /** Runs until `predicate` holds (checked after every event) or `limitNs` passes; returns whether it held. */
  runUntil(predicate: () => boolean, limitNs: number): boolean {
    const untilNs = this.clock.nowNs + limitNs;
    while (!this.checker.failed) {
      if (predicate()) return true;
      if (!this.step(untilNs)) break;
    }
    return !this.checker.failed && predicate();
  }

  private scheduleTick(node: SimNode): void {
    const periodNs = this.options.tickPeriodsNs[node.id - 1] ?? tickNs;
    this.clock.after(periodNs, 'tick', () => {
      this.trace.event(this.clock.nowNs, 'tick', node.id);
      node.tick();
      this.scheduleTick(node);
    });
  }

  /**
   * A node sends. Like a real transport that cannot connect, a Raft message to a peer that is down
   * or behind a cut link is reported unreachable to the sender's Raft (the leader stops pipelining).
   */
  private send(from: number, to: number, payload: SimPayload): void {
    if (payload.kind === 'raft' && to < clientEndpointBase) {
      const sender = this.node(from);
      const target = this.nodeList[to - 1];
      if (sender.isUp && (target === undefined || !target.isUp || this.network.isCut(from, to))) {
        sender.raw.reportUnreachable(to);
        this.counters.unreachableReports++;
      }
    }
    this.network.send(from, to, payload);
  }

  private deliver(from: number, to: number, payload: SimPayload): void {
    const now = this.clock.nowNs;
    if (payload.kind === 'raft') this.trace.event(now, payload.message.type, from * 1024 + to, payload.message.term, payload.message.index);
    else this.trace.event(now, payload.kind, from * 1024 + to, payload.opId, payload.attempt);
    if (to < clientEndpointBase) {
      if (!this.decommissioned.has(to)) this.node(to).receive(from, payload);
      return;
    }
    this.clientList[to - clientEndpointBase - 1]?.receive(from, payload);
  }

  // ---- observer (forwards to the checker, traces, watches the liveness marker) -----------------

  onReady(node: SimNode, ready: Ready): void {
    this.trace.event(this.clock.nowNs, 'ready', node.id, ready.entries.length, ready.committedEntries.length);
    this.checker.onReady(node, ready);
  }

  onWritten(node: SimNode, ready: Ready): void {
    this.checker.onWritten(node, ready);
  }

  onApply(node: SimNode, entry: Entry, outcome: KvApplyOutcome | undefined): void {
    this.trace.event(this.clock.nowNs, 'apply', node.id, entry.index, entry.term);
    this.checker.onApply(node, entry, outcome);
    const bootstrapEntries = this.options.bootstrap === 'log' ? this.options.initialVoters : 1;
    if (entry.type === 'confChange' && entry.index > bootstrapEntries && !this.confChangeIndexes.has(entry.index)) {
      this.confChangeIndexes.add(entry.index);
      this.counters.confChangesCommitted++;
    }
    if (outcome?.command?.clientId === livenessClientId && outcome.command.seq === this.markerSeq) this.markerIndex ??= entry.index;
  }

  onSnapshotRestored(node: SimNode, snapshot: Snapshot): void {
    this.trace.event(this.clock.nowNs, 'restore', node.id, snapshot.metadata.index, snapshot.metadata.term);
    this.checker.onSnapshotRestored(node, snapshot);
  }

  onKvSnapshot(node: SimNode, index: number, data: Uint8Array): void {
    this.checker.onKvSnapshot(node, index, data);
  }

  // ---- controls -------------------------------------------------------------------------------

  /** Power loss on one node; returns what its disk kept (undefined when it was already down). */
  crash(id: number): CrashReport | undefined {
    const node = this.node(id);
    if (!node.isUp) return undefined;
    this.checker.onCrash(node);
    const report = node.crash();
    this.counters.crashes++;
    this.trace.event(this.clock.nowNs, 'crash', id, report.survived, report.lost);
    return report;
  }

  restart(id: number): void {
    const node = this.node(id);
    if (node.isUp || this.decommissioned.has(id)) return;
    node.restart();
    this.counters.restarts++;
    this.trace.event(this.clock.nowNs, 'restart', id, node.appliedIndex);
    this.checker.onRestart(node);
    node.pump();
  }

  /** Cuts the network between groups (both directions); ids left out keep their links. */
  partition(groups: readonly (readonly number[])[]): void {
    this.network.partition(groups);
    this.counters.partitions++;
    this.trace.event(this.clock.nowNs, 'partition', groups.length, groups[0]?.length ?? 0);
  }

  /** 'inbound': the node hears no peer (they hear it); 'outbound': no peer hears it; 'both'. */
  isolate(id: number, direction: LinkDirection): void {
    this.network.isolate(id, this.nodeList.map((node) => node.id), direction);
    this.counters.partitions++;
    if (direction !== 'both') this.counters.asymmetricPartitions++;
    this.trace.event(this.clock.nowNs, `isolate-${direction}`, id);
  }

  cutLink(from: number, to: number): void {
    this.network.cutLink(from, to);
    this.trace.event(this.clock.nowNs, 'cut', from, to);
  }

  heal(): void {
    this.network.heal();
    this.trace.event(this.clock.nowNs, 'heal');
  }

  /** The node's syncs complete no earlier than `durationNs` from now. */
  stallDisk(id: number, durationNs: number): void {
    this.node(id).disk.stallUntil(this.clock.nowNs + durationNs);
    this.counters.stalls++;
    this.trace.event(this.clock.nowNs, 'stall', id, durationNs);
  }

  compact(id: number, keepEntries = 0): boolean {
    const done = this.node(id).compact(keepEntries);
    if (done) this.trace.event(this.clock.nowNs, 'compact', id, this.node(id).appliedIndex);
    return done;
  }

  proposeConfChange(change: ConfChange): boolean {
    const leader = this.leader();
    if (leader === undefined) return false;
    const accepted = leader.proposeConfChange(change);
    if (accepted) this.counters.confChangesProposed++;
    if (accepted && change.changes.some((single) => single.type === 'removeNode' && single.nodeId === leader.id)) this.counters.leaderRemovals++;
    if (accepted && change.changes.length > 1) this.counters.jointChanges++;
    this.trace.event(this.clock.nowNs, 'confchange', leader.id, change.changes.length, accepted ? 1 : 0);
    return accepted;
  }

  addLearner(id: number): boolean {
    return this.proposeConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: id }], context: new Uint8Array(0) });
  }

  promote(id: number): boolean {
    return this.proposeConfChange({ transition: 'auto', changes: [{ type: 'addNode', nodeId: id }], context: new Uint8Array(0) });
  }

  remove(id: number): boolean {
    return this.proposeConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: id }], context: new Uint8Array(0) });
  }

  /** Promotes learner `incoming` and removes voter `outgoing` at once (joint consensus, auto leave). */
  replace(incoming: number, outgoing: number): boolean {
    return this.proposeConfChange({
      transition: 'auto', context: new Uint8Array(0),
      changes: [{ type: 'addNode', nodeId: incoming }, { type: 'removeNode', nodeId: outgoing }],
    });
  }

  transferLeader(target: number): boolean {
    const leader = this.leader();
    if (leader === undefined || leader.id === target) return false;
    this.counters.transfers++;
    this.trace.event(this.clock.nowNs, 'transfer', leader.id, target);
    return leader.transferLeadership(target);
  }

  startClients(): void {
    for (const client of this.clientList) client.start();
  }

  stopClients(): void {
    for (const client of this.clientList) client.stop();
  }

  // ---- phases ---------------------------------------------------------------------------------

  /** Phase 2: faults stop; every member comes back; nodes removed from the cluster are shut down. */
  healAll(): void {
    this.nemesis.stop();
    this.heal();
    this.network.setFaults({ ...this.options.network, dropRate: 0, duplicateRate: 0 });
    for (const node of this.nodeList) {
      node.disk.stallUntil(0);
      if (!node.isUp) this.restart(node.id);
    }
    const members = new Set(this.members());
    for (const node of this.nodeList) {
      if (members.has(node.id) || this.decommissioned.has(node.id)) continue;
      // A removed node is shut down by its operator; left running it only tries to campaign.
      if (node.isUp) this.crash(node.id);
      this.decommissioned.add(node.id);
      this.counters.decommissioned++;
    }
  }

  /**
   * Phase 3: a leader commits a fresh entry that every member applies, within the limit.
   * Returns false (and records a violation) when it does not happen.
   */
  awaitLiveness(limitNs: number): boolean {
    const startNs = this.clock.nowNs;
    let proposedAtNs = -Infinity;
    const done = (): boolean => {
      const markerIndex = this.markerIndex;
      const members = this.members();
      // Applied directly or through a snapshot that covers it: either way applied >= its index.
      if (markerIndex !== undefined && members.every((id) => this.node(id).isUp && this.node(id).appliedIndex >= markerIndex)) return true;
      // (Re)propose the marker when there is a leader and no recent attempt that committed.
      const leader = this.leader();
      if (markerIndex === undefined && leader !== undefined && this.clock.nowNs - proposedAtNs > 2 * electionTicks * tickNs) {
        this.markerSeq++;
        if (leader.proposeCommand(encodeKvCommand({ kind: 'open', clientId: livenessClientId, seq: this.markerSeq }))) proposedAtNs = this.clock.nowNs;
      }
      return false;
    };
    const live = this.runUntil(done, limitNs);
    this.counters.livenessTicks = Math.round((this.clock.nowNs - startNs) / tickNs);
    if (!live && !this.checker.failed) {
      const leader = this.leader();
      const leading = leader === undefined ? 'none' : `${leader.id} (term ${leader.raw.raft.term})`;
      const marker = this.markerIndex === undefined ? 'not applied anywhere' : `at ${this.markerIndex}`;
      this.checker.violation(`liveness: no new entry was applied on every member (${this.members().join(',')}) within ` +
        `${Math.round(limitNs / tickNs)} ticks of healing; leader ${leading}, marker ${marker}; ${this.describeNodes()}`);
    }
    return live;
  }

  /** Phase 4: clients stop and finish; members catch up; replicas must agree. */
  drain(limitNs: number): void {
    this.stopClients();
    const caughtUp = (): boolean => {
      if (!this.clientList.every((client) => client.isIdle)) return false;
      const members = this.members().map((id) => this.node(id));
      const commit = Math.max(...members.map((node) => (node.isUp ? node.raw.raft.log.committed : 0)));
      return members.every((node) => node.isUp && node.appliedIndex >= commit && !node.isAwaitingSync);
    };
    this.runUntil(caughtUp, limitNs);
    if (!this.checker.failed) this.checker.checkReplicasAgree(this.members().map((id) => this.node(id)));
  }

  /** The history must be linearizable (an undecided search counts as a failure to prove). */
  checkLinearizable(): void {
    const verdict = checkHistory(this.recorder.operations(), { stepsMaxPerKey: linearizabilityStepsMax });
    if (verdict.verdict === 'linearizable') return;
    const bad = verdict.keys.filter((key) => key.verdict !== 'linearizable');
    const what = verdict.verdict === 'illegal' ? 'NOT linearizable' : 'undecided (search budget exhausted)';
    this.checker.violation(`linearizability: the client history is ${what}\n${formatHistoryVerdict({ verdict: verdict.verdict, keys: bad })}`);
  }

  /** A full run: faulty phase, then finish(). */
  run(): SimResult {
    this.startClients();
    this.nemesis.start();
    this.runFor(this.options.ticksMax * tickNs);
    return this.finish();
  }

  /** Phases 2–4 and the final checks: heal, liveness, drain, replica agreement, linearizability. */
  finish(): SimResult {
    if (!this.checker.failed) {
      this.healAll();
      this.awaitLiveness(this.options.recoveryTicksMax * tickNs);
    }
    if (!this.checker.failed) this.drain(this.options.drainTicksMax * tickNs);
    if (!this.checker.failed) this.checkLinearizable();
    return this.result();
  }

  result(): SimResult {
    // The final state is part of the fingerprint, not only the events that led to it.
    for (const node of this.nodeList) {
      this.trace.mixNumber(node.appliedIndex);
      this.trace.mixNumber(node.isUp ? node.raw.raft.term : 0);
    }
    return {
      seed: this.options.seed,
      ok: !this.checker.failed,
      violations: this.checker.violations.slice(),
      traceHash: this.trace.hex(),
      events: this.trace.eventCount,
      simulatedNs: this.clock.nowNs,
      summary: this.summary(),
      stats: this.stats(),
      history: this.recorder.operations(),
      recentEvents: this.trace.recentLines(),
    };
  }

  describeNodes(): string {
    return this.nodeList.map((node) => {
      if (!node.isUp) return `${node.id}:${this.decommissioned.has(node.id) ? 'removed' : 'down'}`;
      const raft = node.raw.raft;
      return `${node.id}:${raft.role}/t${raft.term}/c${raft.log.committed}/a${node.appliedIndex}`;
    }).join(' ');
  }

  stats(): SimStats {
    const stats: SimStats = {
      ...this.counters, leadersElected: this.checker.stats.leadersElected, maxCommit: this.checker.stats.maxCommit,
      snapshotsInstalled: 0, confChangesApplied: 0, leadersRemovedWhileLeading: 0, compactions: 0, writesLost: 0, writesSurvivedUnsynced: 0, tornTails: 0, readsServed: 0,
      operations: 0, operationsOk: 0, operationsFailed: 0, operationsUnknown: 0,
      messagesSent: this.network.stats.sent, messagesDropped: this.network.stats.dropped, messagesDuplicated: this.network.stats.duplicated,
    };
    for (const node of this.nodeList) {
      stats.snapshotsInstalled += node.stats.snapshotsRestored;
      stats.confChangesApplied += node.stats.confChangesApplied;
      stats.leadersRemovedWhileLeading += node.stats.removedWhileLeading;
      stats.compactions += node.stats.compactions;
      stats.readsServed += node.stats.readsServed;
      stats.writesLost += node.disk.stats.writesLost;
      stats.writesSurvivedUnsynced += node.disk.stats.writesSurvivedUnsynced;
      stats.tornTails += node.disk.stats.tornTails;
    }
    for (const client of this.clientList) {
      stats.operations += client.stats.operations;
      stats.operationsOk += client.stats.ok;
      stats.operationsFailed += client.stats.failed;
      stats.operationsUnknown += client.stats.unknown;
    }
    return stats;
  }

  summary(): string {
    const o = this.options;
    const s = this.stats();
    return `seed ${o.seed}: ${o.nodeCount} nodes (${o.initialVoters} voters, ${o.bootstrap} bootstrap), ${s.leadersElected} leaders, commit ${s.maxCommit}, ` +
      `${s.crashes} crashes (${s.writesLost} writes lost, ${s.tornTails} torn), ${s.partitions} partitions (${s.asymmetricPartitions} asymmetric), ${s.stalls} stalls, ` +
      `${s.confChangesProposed} conf changes (${s.leaderRemovals} removing the leader), ${s.transfers} transfers, ${s.compactions} compactions, ` +
      `${s.snapshotsInstalled} snapshots installed, ${s.operations} client ops (${s.operationsOk} ok, ${s.operationsFailed} fail, ${s.operationsUnknown} unknown), ` +
      `${s.messagesSent} messages (${s.messagesDropped} dropped, ${s.messagesDuplicated} duplicated), liveness in ${s.livenessTicks} ticks, ` +
      `${this.trace.eventCount} events, ${(this.clock.nowNs / 1e9).toFixed(2)} s simulated`;
  }
}
