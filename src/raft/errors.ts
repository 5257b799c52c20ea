/**
 * Expected conditions of the Raft library, as typed errors with stable codes. Callers branch on
 * `instanceof` or `code`, never on messages. Broken invariants are not here: they throw
 * AssertionError (src/util/assert.ts) and must never be caught.
 *
 * The library does not import the project's CairnError so it can be published on its own; the
 * driver (src/control) maps these codes to CairnError codes (e.g. RAFT_NOT_LEADER →
 * CAIRN_NOT_LEADER).
 */

export type RaftErrorCode =
  | 'RAFT_PROPOSAL_DROPPED'
  | 'RAFT_NOT_LEADER'
  | 'RAFT_COMPACTED'
  | 'RAFT_UNAVAILABLE'
  | 'RAFT_SNAPSHOT_OUT_OF_DATE'
  | 'RAFT_SNAPSHOT_TEMPORARILY_UNAVAILABLE'
  | 'RAFT_STEP_LOCAL_MESSAGE'
  | 'RAFT_STEP_PEER_NOT_FOUND'
  | 'RAFT_CONF_CHANGE_INVALID'
  | 'RAFT_CONFIG_INVALID';

export const raftErrorDescriptions: Record<RaftErrorCode, string> = {
  RAFT_PROPOSAL_DROPPED: 'the proposal or read was not accepted; retry later or elsewhere',
  RAFT_NOT_LEADER: 'this node is not the leader and does not forward; the error names the known leader',
  RAFT_COMPACTED: 'the requested log position was compacted into a snapshot',
  RAFT_UNAVAILABLE: 'the requested log position is beyond the last stored entry',
  RAFT_SNAPSHOT_OUT_OF_DATE: 'the snapshot is older than the one already stored',
  RAFT_SNAPSHOT_TEMPORARILY_UNAVAILABLE: 'the storage cannot produce a snapshot right now; the leader retries',
  RAFT_STEP_LOCAL_MESSAGE: 'a local-only message type arrived from outside the node',
  RAFT_STEP_PEER_NOT_FOUND: 'a response arrived from a node that is not in the configuration',
  RAFT_CONF_CHANGE_INVALID: 'the configuration change does not apply to the current configuration',
  RAFT_CONFIG_INVALID: 'the Raft configuration is invalid',
};

export class RaftError extends Error {
  override readonly name: string = 'RaftError';
  constructor(readonly code: RaftErrorCode, message: string) {
    super(message);
  }
}

export type DropReason =
  | 'not-leader'
  | 'leadership-transfer'
  | 'uncommitted-limit'
  | 'conf-change-pending'
  | 'conf-change-invalid'
  | 'read-queue-full'
  | 'removed';

/** A proposal, conf change or read was refused; nothing was appended. Fail fast and retry. */
export class ProposalDroppedError extends RaftError {
  override readonly name: string = 'ProposalDroppedError';
  constructor(readonly reason: DropReason, message: string, code: RaftErrorCode = 'RAFT_PROPOSAL_DROPPED') {
    super(code, message);
  }
}

/** This node cannot accept the request; `leaderId` is the known leader (0 when none is known). */
export class NotLeaderError extends ProposalDroppedError {
  override readonly name = 'NotLeaderError';
  constructor(readonly leaderId: number, nodeId: number) {
    super('not-leader', `node ${nodeId} is not the leader (known leader: ${leaderId === 0 ? 'none' : leaderId})`, 'RAFT_NOT_LEADER');
  }
}

export class CompactedError extends RaftError {
  override readonly name = 'CompactedError';
  constructor(index: number, firstIndex: number) {
    super('RAFT_COMPACTED', `index ${index} is compacted (first index ${firstIndex})`);
  }
}

export class UnavailableError extends RaftError {
  override readonly name = 'UnavailableError';
  constructor(index: number, lastIndex: number) {
    super('RAFT_UNAVAILABLE', `index ${index} is unavailable (last index ${lastIndex})`);
  }
}

export class SnapshotOutOfDateError extends RaftError {
  override readonly name = 'SnapshotOutOfDateError';
  constructor(index: number, currentIndex: number) {
    super('RAFT_SNAPSHOT_OUT_OF_DATE', `snapshot at ${index} is not newer than the stored one at ${currentIndex}`);
  }
}

export class SnapshotTemporarilyUnavailableError extends RaftError {
  override readonly name = 'SnapshotTemporarilyUnavailableError';
  constructor() {
    super('RAFT_SNAPSHOT_TEMPORARILY_UNAVAILABLE', 'snapshot is temporarily unavailable');
  }
}

export class StepError extends RaftError {
  override readonly name = 'StepError';
}

export class ConfChangeError extends RaftError {
  override readonly name = 'ConfChangeError';
  constructor(message: string) {
    super('RAFT_CONF_CHANGE_INVALID', message);
  }
}

export class RaftConfigError extends RaftError {
  override readonly name = 'RaftConfigError';
  constructor(message: string) {
    super('RAFT_CONFIG_INVALID', message);
  }
}
