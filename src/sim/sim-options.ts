/**
 * The parameters of one simulation run, and how they are drawn from a seed ("swarm testing", as
 * TigerBeetle's VOPR): every seed gets its own cluster size, Raft settings, fault rates and
 * workload, and each fault kind is switched off entirely for some seeds, so that rare
 * combinations (no drops but many crashes, only asymmetric partitions, …) get their turn.
 *
 * Everything is derived from `seed` alone, plus the explicit overrides (node count, run length,
 * deliberate bugs) that the replay command repeats.
 */
import type { KvLimits } from '../control/kv-state-machine';
import { assert } from '../util/assert';
import { SeededRandom } from '../util/random';
import type { DiskBug, DiskFaults } from './sim-disk';
import type { NetworkFaults } from './sim-network';
import type { NodeBug, RaftSettings } from './sim-node';
import type { WorkloadOptions } from './sim-client';

export const nodesMin = 3;
export const nodesMax = 7;
/** One logical tick of every node, before drift. */
export const tickNs = 10_000_000;
export const electionTicks = 10;

export interface NemesisRates {
  /** Time between nemesis decisions. */
  readonly intervalNs: number;
  /** Probabilities per decision. */
  readonly crash: number;
  readonly partition: number;
  readonly membership: number;
  readonly transfer: number;
  readonly compact: number;
  readonly stall: number;
  /** A crash targets the leader with this probability (else a random live node). */
  readonly crashLeader: number;
  /** Down time of a crashed node, uniform in [1, restartTicksMax] ticks. */
  readonly restartTicksMax: number;
  /** Life of a partition, uniform in [1, partitionTicksMax] ticks. */
  readonly partitionTicksMax: number;
  readonly stallTicksMax: number;
  /** Every node compacts once it applied this many entries past its snapshot (0: only the nemesis). */
  readonly compactEveryEntries: number;
  /** Entries kept before the snapshot index when compacting. */
  readonly compactKeepEntriesMax: number;
}

export interface Bugs {
  readonly disk: DiskBug;
  readonly node: NodeBug;
}

export interface SimOptions {
  readonly seed: number;
  readonly nodeCount: number;
  /** Voters at bootstrap (nodes 1..initialVoters); the others start empty, outside the cluster. */
  readonly initialVoters: number;
  /** 'log': bootstrap() writes the membership into the log; 'snapshot': disks start from a snapshot. */
  readonly bootstrap: 'log' | 'snapshot';
  readonly raft: RaftSettings;
  /** Tick period of each node (index = id − 1): tickNs with per-node drift. */
  readonly tickPeriodsNs: readonly number[];
  readonly network: NetworkFaults;
  readonly disk: DiskFaults;
  readonly nemesis: NemesisRates;
  readonly clients: number;
  readonly workload: WorkloadOptions;
  readonly kvLimits: Partial<KvLimits>;
  /** Ticks of the faulty phase. */
  readonly ticksMax: number;
  /** After healing: ticks allowed for a leader to commit a new entry on every member. */
  readonly recoveryTicksMax: number;
  /** Then: ticks allowed for clients to finish and members to catch up. */
  readonly drainTicksMax: number;
  readonly bugs: Bugs;
}

export interface SimOverrides {
  readonly nodeCount?: number;
  readonly ticksMax?: number;
  readonly bugs?: Partial<Bugs>;
}

export const ticksMaxDefault = 400;

/** Draws every parameter of a run from `seed`; overrides win. */
export function drawSimOptions(seed: number, overrides: SimOverrides = {}): SimOptions {
  assert(Number.isSafeInteger(seed) && seed >= 0, `seed must be a non-negative safe integer, got ${seed}`);
  const random = new SeededRandom(seed);
  const between = (low: number, high: number): number => low + random.float() * (high - low);
  const intBetween = (low: number, high: number): number => low + random.int(high - low + 1);
  const sometimes = (probability: number): boolean => random.float() < probability;

  // Drawn even when overridden, so an override changes nothing else about the seed.
  const drawnNodeCount = intBetween(nodesMin, nodesMax);
  const nodeCount = overrides.nodeCount ?? drawnNodeCount;
  assert(Number.isSafeInteger(nodeCount) && nodeCount >= nodesMin && nodeCount <= nodesMax, `nodes must be in [${nodesMin}, ${nodesMax}], got ${nodeCount}`);
  const fiveVoters = sometimes(0.5);
  const initialVoters = nodeCount >= 5 && fiveVoters ? 5 : 3;
  const driftMax = sometimes(0.5) ? between(0, 0.1) : 0;
  const tickPeriodsNs = Array.from({ length: nodesMax }, () => Math.round(tickNs * (1 + between(-driftMax, driftMax)))).slice(0, nodeCount);

  const raft: RaftSettings = {
    electionTicks,
    heartbeatTicks: intBetween(1, 3),
    preVote: sometimes(0.75),
    checkQuorum: sometimes(0.75),
    forwardProposals: sometimes(0.5),
    messageBytesMax: intBetween(128, 4096),
    inflightMessagesMax: intBetween(1, 32),
    inflightBytesMax: intBetween(1024, 64 * 1024),
    uncommittedBytesMax: intBetween(1024, 256 * 1024),
    committedBytesPerReadyMax: intBetween(64, 16 * 1024),
    snapshotChunkBytes: intBetween(16, 1024),
  };

  const latencyNsMin = intBetween(20_000, 1_000_000);
  const network: NetworkFaults = {
    dropRate: sometimes(0.7) ? between(0, 0.15) : 0,
    duplicateRate: sometimes(0.5) ? between(0, 0.08) : 0,
    latencyNsMin,
    latencyNsMax: latencyNsMin + intBetween(0, 5_000_000),
    reorderRate: sometimes(0.5) ? between(0, 0.3) : 0,
    reorderNsMax: intBetween(0, 30_000_000),
  };

  const syncNsMin = intBetween(10_000, 2_000_000);
  const disk: DiskFaults = {
    syncNsMin,
    syncNsMax: syncNsMin + intBetween(0, 8_000_000),
    unsyncedSurvivalRate: sometimes(0.5) ? between(0, 0.7) : 0,
    tornWriteRate: sometimes(0.7) ? between(0.2, 1) : 0,
  };

  const rate = (enabled: number, max: number): number => (sometimes(enabled) ? between(0, max) : 0);
  const nemesis: NemesisRates = {
    intervalNs: tickNs * intBetween(2, 8),
    crash: rate(0.7, 0.2),
    partition: rate(0.6, 0.2),
    membership: rate(0.6, 0.25),
    transfer: rate(0.4, 0.15),
    compact: rate(0.7, 0.4),
    stall: rate(0.3, 0.1),
    crashLeader: between(0, 1),
    restartTicksMax: intBetween(1, 60),
    partitionTicksMax: intBetween(5, 80),
    stallTicksMax: intBetween(1, 30),
    compactEveryEntries: sometimes(0.5) ? intBetween(3, 60) : 0,
    compactKeepEntriesMax: intBetween(0, 10),
  };

  const readFraction = between(0.2, 0.6);
  const casFraction = between(0, 0.3);
  const attemptTimeoutNs = tickNs * intBetween(10, 40);
  const workload: WorkloadOptions = {
    keys: intBetween(1, 4),
    readFraction,
    casFraction,
    deleteFraction: sometimes(0.5) ? between(0, 0.1) : 0,
    logReadFraction: sometimes(0.5) ? between(0, 0.6) : 0,
    spreadReadFraction: between(0, 1),
    thinkNsMax: intBetween(0, 30_000_000),
    attemptTimeoutNs,
    operationTimeoutNs: attemptTimeoutNs * intBetween(2, 4),
  };

  const bootstrap = sometimes(0.5) ? 'log' : 'snapshot';
  // Drawn last so the draws above (and so earlier seeds' other settings) stay as they were.
  const lazyCommitNotices = sometimes(0.5);

  return {
    seed,
    nodeCount,
    initialVoters,
    bootstrap,
    raft: { ...raft, lazyCommitNotices },
    tickPeriodsNs,
    network,
    disk,
    nemesis,
    clients: intBetween(1, 5),
    workload,
    kvLimits: { sessionsMax: 64 },
    ticksMax: overrides.ticksMax ?? ticksMaxDefault,
    recoveryTicksMax: 400,
    drainTicksMax: 200,
    bugs: { disk: overrides.bugs?.disk ?? 'none', node: overrides.bugs?.node ?? 'none' },
  };
}

export interface ScenarioSettings {
  readonly nodeCount?: number;
  readonly initialVoters?: number;
  readonly bootstrap?: 'log' | 'snapshot';
  readonly clients?: number;
  readonly raft?: Partial<RaftSettings>;
  readonly network?: Partial<NetworkFaults>;
  readonly disk?: Partial<DiskFaults>;
  readonly workload?: Partial<WorkloadOptions>;
  readonly bugs?: Partial<Bugs>;
}

/**
 * Options for a scripted scenario: a quiet world (no nemesis, no drops, fast disks, no drift,
 * pre-vote and check-quorum on) where the script injects every fault itself. The seed still
 * drives election timeouts, latencies and the workload.
 */
export function scenarioOptions(seed: number, settings: ScenarioSettings = {}): SimOptions {
  const nodeCount = settings.nodeCount ?? 3;
  const initialVoters = settings.initialVoters ?? Math.min(nodeCount, 3);
  assert(nodeCount >= 1 && nodeCount <= nodesMax, `scenario nodes must be in [1, ${nodesMax}]`);
  assert(initialVoters >= 1 && initialVoters <= nodeCount, 'initial voters must be in [1, nodes]');
  return {
    seed,
    nodeCount,
    initialVoters,
    bootstrap: settings.bootstrap ?? 'log',
    raft: {
      electionTicks, heartbeatTicks: 1, preVote: true, checkQuorum: true, forwardProposals: false, snapshotChunkBytes: 64,
      ...settings.raft,
    },
    tickPeriodsNs: Array.from({ length: nodeCount }, () => tickNs),
    network: { dropRate: 0, duplicateRate: 0, latencyNsMin: 100_000, latencyNsMax: 1_000_000, reorderRate: 0, reorderNsMax: 0, ...settings.network },
    disk: { syncNsMin: 100_000, syncNsMax: 500_000, unsyncedSurvivalRate: 0, tornWriteRate: 0, ...settings.disk },
    nemesis: {
      intervalNs: tickNs, crash: 0, partition: 0, membership: 0, transfer: 0, compact: 0, stall: 0, crashLeader: 0,
      restartTicksMax: 1, partitionTicksMax: 1, stallTicksMax: 1, compactEveryEntries: 0, compactKeepEntriesMax: 0,
    },
    clients: settings.clients ?? 3,
    workload: {
      keys: 2, readFraction: 0.4, casFraction: 0.2, deleteFraction: 0.05, logReadFraction: 0.2, spreadReadFraction: 0.5,
      thinkNsMax: 10_000_000, attemptTimeoutNs: 30 * tickNs, operationTimeoutNs: 90 * tickNs, ...settings.workload,
    },
    kvLimits: { sessionsMax: 64 },
    ticksMax: ticksMaxDefault,
    recoveryTicksMax: 400,
    drainTicksMax: 200,
    bugs: { disk: settings.bugs?.disk ?? 'none', node: settings.bugs?.node ?? 'none' },
  };
}
