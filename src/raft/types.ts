/**
 * Raft data types as plain objects: log entries, hard/soft state, configuration state, snapshots,
 * messages and the Ready batch. The wire and disk encodings live elsewhere (src/wire, src/store);
 * every field here is a safe integer, a boolean, a string literal or a Uint8Array so an encoder is
 * a field-by-field copy.
 *
 * Invariants: node ids are positive safe integers and 0 (`noNode`) means "none"; terms and indexes
 * are non-negative safe integers; index 0 / term 0 is the empty log position before the first entry.
 */

/** Node id 0: no node (no leader known, no vote cast). */
export const noNode = 0;

export type EntryType = 'normal' | 'confChange';

/** One log entry. `confChange` entries carry an encoded ConfChange (see conf-change-codec.ts). */
export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** A (term, index) position in the log. */
export interface EntryId {
  readonly term: number;
  readonly index: number;
}

/** What must be durable: the current term, the vote cast in it, and the commit index. */
export interface HardState {
  readonly term: number;
  readonly vote: number;
  readonly commit: number;
}

export const emptyHardState: HardState = { term: 0, vote: 0, commit: 0 };

export type RaftRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Volatile state worth reporting (never persisted). */
export interface SoftState {
  readonly lead: number;
  readonly role: RaftRole;
}

/**
 * A membership configuration, as persisted in snapshots and returned by applyConfChange.
 * Joint configurations have a non-empty `votersOutgoing`; `learnersNext` are outgoing voters that
 * become learners when the joint configuration is left.
 */
export interface ConfState {
  readonly voters: readonly number[];
  readonly votersOutgoing: readonly number[];
  readonly learners: readonly number[];
  readonly learnersNext: readonly number[];
  readonly autoLeave: boolean;
}

export const emptyConfState: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

/** A state machine snapshot: everything up to `metadata.index`; `data` is opaque to Raft. */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

/**
 * One piece of a snapshot in flight (MsgSnap) or an acknowledgement of the bytes received so far
 * (MsgSnapResp, where `data` is empty and `offset` is the next byte the receiver expects).
 * Invariant on MsgSnap: offset + data.length <= totalBytes; the chunk with offset + data.length
 * === totalBytes is the last one.
 */
export interface SnapshotChunk {
  readonly metadata: SnapshotMetadata;
  readonly totalBytes: number;
  readonly offset: number;
  readonly data: Uint8Array;
}

export type ConfChangeType = 'addNode' | 'addLearner' | 'removeNode';

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: number;
}

/**
 * How a configuration change is carried out:
 * - `auto`: a change of at most one voter is applied directly; anything else goes through a joint
 *   configuration that the leader leaves automatically;
 * - `implicit`: always joint, left automatically;
 * - `explicit`: always joint, left only by proposing an empty ConfChange.
 */
export type ConfChangeTransition = 'auto' | 'implicit' | 'explicit';

/** A membership change. An empty `changes` list means "leave the joint configuration". */
export interface ConfChange {
  readonly transition: ConfChangeTransition;
  readonly changes: readonly ConfChangeSingle[];
  /** Opaque to Raft; handed back to the application when the entry is applied. */
  readonly context: Uint8Array;
}

export type MessageType =
  // local only: never sent over the network
  | 'MsgHup' // start an election
  | 'MsgBeat' // leader: send heartbeats
  | 'MsgCheckQuorum' // leader: step down without quorum contact
  | 'MsgUnreachable' // the transport could not reach `from`
  // network
  | 'MsgProp' // proposal forwarded by a follower
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap'
  | 'MsgSnapResp'
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTransferLeader'
  | 'MsgTimeoutNow'
  | 'MsgReadIndex'
  | 'MsgReadIndexResp';

/**
 * One Raft message. All fields are always present (defaults 0 / false / empty) except `snapshot`.
 * Field use by type:
 * - MsgApp: index/logTerm = the entry preceding `entries`; commit = leader commit.
 * - MsgAppResp: index = last index known to match; on reject, index = the rejected prevLogIndex,
 *   logTerm = the follower's term at that index (0 if its log is shorter) and rejectHint = the
 *   first index of that term in the follower's log (or its last index + 1).
 * - MsgVote/MsgPreVote: index/logTerm = the candidate's last entry; leaderTransfer = campaign
 *   started by a leadership transfer (bypasses the leader lease).
 * - MsgHeartbeat(Resp), MsgReadIndex(Resp): context identifies a read request; MsgReadIndexResp
 *   carries the read index in `index`.
 * - MsgSnap / MsgSnapResp: `snapshot` (see SnapshotChunk); MsgSnapResp.reject = a gap was seen
 *   and the sender should resume at snapshot.offset.
 * - MsgTransferLeader: target = the node that should become leader.
 */
export interface Message {
  readonly type: MessageType;
  readonly to: number;
  readonly from: number;
  readonly term: number;
  readonly logTerm: number;
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly context: Uint8Array;
  readonly leaderTransfer: boolean;
  readonly target: number;
  readonly snapshot?: SnapshotChunk;
}

const emptyBytes = new Uint8Array(0);

/** Builds a message with every unspecified field at its default. */
export function makeMessage(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    to: 0,
    from: 0,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: emptyBytes,
    leaderTransfer: false,
    target: 0,
    ...fields,
  };
}

const localTypes: ReadonlySet<MessageType> = new Set(['MsgHup', 'MsgBeat', 'MsgCheckQuorum', 'MsgUnreachable']);
const responseTypes: ReadonlySet<MessageType> = new Set([
  'MsgAppResp', 'MsgVoteResp', 'MsgPreVoteResp', 'MsgHeartbeatResp', 'MsgSnapResp', 'MsgReadIndexResp', 'MsgUnreachable',
]);

/** Local messages are generated inside a node and must never arrive from the network. */
export function isLocalMessage(type: MessageType): boolean {
  return localTypes.has(type);
}

export function isResponseMessage(type: MessageType): boolean {
  return responseTypes.has(type);
}

export function voteResponseType(type: 'MsgVote' | 'MsgPreVote'): 'MsgVoteResp' | 'MsgPreVoteResp' {
  return type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp';
}

/** A linearizable read point: once applied >= index, reads issued with `context` may be served. */
export interface ReadState {
  readonly index: number;
  readonly context: Uint8Array;
}

/**
 * One batch of work for the application, returned by RawNode.ready().
 *
 * The application handles a Ready in this order, then calls advance(ready):
 * 1. Persist `snapshot` (if any), then `entries` (writing index i discards persisted entries >= i),
 *    and `hardState` (if any) — atomically, in one write, and durably (fsync) when `mustSync`.
 *    All of it must be durable BEFORE any of `messages` is sent: a vote or an append
 *    acknowledgement must never leave the node before the state it promises is on disk.
 *    No message of this Ready may be sent earlier, not even a leader's own appends.
 * 2. Send `messages` (in any order; the transport may drop, delay, reorder or duplicate them).
 * 3. Apply `snapshot` to the state machine if present, then `committedEntries` in order
 *    (configuration entries through RawNode.applyConfChange). Persist the applied index
 *    atomically with the state it produced.
 * 4. Serve reads in `readStates` once the applied index reaches each state's index.
 * 5. Call advance(ready). Only one Ready may be outstanding at a time.
 */
export interface Ready {
  /** Present when leader or role changed since the previous Ready. Informational. */
  readonly softState?: SoftState;
  /** Present when term, vote or commit changed since the previous Ready. */
  readonly hardState?: HardState;
  /** Entries to append to stable storage; may overwrite a suffix of earlier ones. */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader, to persist and then apply. */
  readonly snapshot?: Snapshot;
  /** Entries known committed and not yet handed out; apply after persisting this Ready. */
  readonly committedEntries: readonly Entry[];
  /** Messages to send AFTER everything above is durable. */
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  /** True when term, vote, entries or a snapshot changed: the write must be fsynced. */
  readonly mustSync: boolean;
}
