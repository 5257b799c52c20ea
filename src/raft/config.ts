/**
 * Raft configuration: tick counts, flow-control bounds and feature switches, with defaults and
 * validation. Units are in the names (ticks, bytes, messages); every queue the core keeps is
 * bounded by one of these numbers.
 */
import { RaftConfigError } from './errors';

export interface RaftConfig {
  /** This node's id; a positive safe integer. */
  readonly id: number;
  /** Followers start an election after a random timeout in [electionTicks, 2 × electionTicks). */
  readonly electionTicks: number;
  /** The leader sends heartbeats every heartbeatTicks; must be < electionTicks. */
  readonly heartbeatTicks: number;
  /** Index the application has already applied (and persisted) before this start. */
  readonly applied: number;
  /** Largest MsgApp payload; a single larger entry is still sent alone. */
  readonly messageBytesMax: number;
  /** Appends in flight per follower (replicate state). */
  readonly inflightMessagesMax: number;
  /** Bytes of entries in flight per follower; also bounds snapshot chunks in flight. */
  readonly inflightBytesMax: number;
  /** Payload bytes appended by this leader but not yet committed; proposals beyond are dropped. */
  readonly uncommittedBytesMax: number;
  /** Payload bytes of committed entries handed out per Ready (at least one entry). */
  readonly committedBytesPerReadyMax: number;
  /** Size of one InstallSnapshot chunk. */
  readonly snapshotChunkBytes: number;
  /** Read requests waiting for the leader's first commit or for a heartbeat quorum. */
  readonly pendingReadsMax: number;
  /** Ask "would I win?" before raising the term (thesis §9.6). */
  readonly preVote: boolean;
  /** Leader steps down without quorum contact for an election timeout; followers honour a lease. */
  readonly checkQuorum: boolean;
  /** Followers forward proposals to the leader instead of throwing NotLeaderError. */
  readonly forwardProposals: boolean;
  /**
   * The leader sends no append whose only news is a higher commit index: followers learn it from
   * the next append or heartbeat (at most heartbeatTicks later). Saves a message and its answer
   * per follower per commit — on a small machine a large part of a write's cost — at the price
   * of followers applying later when writes pause. Safety does not depend on it (a follower's
   * commit index is advisory); reads stay linearizable (a ReadIndex round carries the commit).
   */
  readonly lazyCommitNotices: boolean;
}

export type RaftConfigInput = Partial<RaftConfig> & Pick<RaftConfig, 'id'>;

export const raftConfigDefaults: Omit<RaftConfig, 'id'> = {
  electionTicks: 10,
  heartbeatTicks: 1,
  applied: 0,
  messageBytesMax: 1024 * 1024,
  inflightMessagesMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  committedBytesPerReadyMax: 8 * 1024 * 1024,
  snapshotChunkBytes: 1024 * 1024,
  pendingReadsMax: 4096,
  preVote: true,
  checkQuorum: true,
  forwardProposals: false,
  lazyCommitNotices: false,
};

/** Fills defaults and rejects contradictions. Throws RaftConfigError. */
export function resolveRaftConfig(input: RaftConfigInput): RaftConfig {
  const config: RaftConfig = { ...raftConfigDefaults, ...input };
  const positive: (keyof RaftConfig)[] = [
    'id', 'electionTicks', 'heartbeatTicks', 'messageBytesMax', 'inflightMessagesMax', 'inflightBytesMax',
    'uncommittedBytesMax', 'committedBytesPerReadyMax', 'snapshotChunkBytes', 'pendingReadsMax',
  ];
  for (const key of positive) {
    const value = config[key];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new RaftConfigError(`${key} must be a positive safe integer, got ${String(value)}`);
    }
  }
  if (!Number.isSafeInteger(config.applied) || config.applied < 0) {
    throw new RaftConfigError(`applied must be a non-negative safe integer, got ${config.applied}`);
  }
  if (config.heartbeatTicks >= config.electionTicks) {
    throw new RaftConfigError(`heartbeatTicks (${config.heartbeatTicks}) must be less than electionTicks (${config.electionTicks})`);
  }
  return config;
}
