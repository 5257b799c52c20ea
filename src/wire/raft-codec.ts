/**
 * Raft types ↔ protobuf bytes (the Raft section of src/wire/cairn.proto): peer messages, the
 * records the Raft log store keeps (entries, hard state, snapshots, identity) and the peer hello.
 *
 * Decoding treats its input as hostile: protobuf errors, 64-bit numbers past 2^53, unknown enum
 * values, missing required sub-messages and shapes the Raft core would assert on (a MsgApp whose
 * entries are not contiguous after its index, a local-only message type) all throw
 * WireDecodeError, never anything else, so a caller can drop the connection or report corruption.
 * Encoding takes values the core produced and asserts them (a bad value there is a bug).
 *
 * Pure: no I/O.
 */
import {
  type ConfState, type Entry, type EntryType, type HardState, type Message, type MessageType, type Snapshot, type SnapshotChunk,
  type SnapshotMetadata, makeMessage,
} from '../raft';
import { assert } from '../util/assert';
import { pb, type Uint64 } from './messages';

/** Input bytes that are not a valid encoding of what the caller expected. */
export class WireDecodeError extends Error {
  override readonly name = 'WireDecodeError';
}

const entryTypes: Record<EntryType, number> = {
  normal: pb.RaftEntryType.RAFT_ENTRY_TYPE_NORMAL,
  confChange: pb.RaftEntryType.RAFT_ENTRY_TYPE_CONF_CHANGE,
};

/** Network message types and their numbers; local-only types (MsgHup, MsgBeat, ...) have none. */
const messageTypes = new Map<MessageType, number>([
  ['MsgProp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_PROP],
  ['MsgApp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_APP],
  ['MsgAppResp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_APP_RESP],
  ['MsgVote', pb.RaftMessageType.RAFT_MESSAGE_TYPE_VOTE],
  ['MsgVoteResp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_VOTE_RESP],
  ['MsgPreVote', pb.RaftMessageType.RAFT_MESSAGE_TYPE_PRE_VOTE],
  ['MsgPreVoteResp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_PRE_VOTE_RESP],
  ['MsgSnap', pb.RaftMessageType.RAFT_MESSAGE_TYPE_SNAP],
  ['MsgSnapResp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_SNAP_RESP],
  ['MsgHeartbeat', pb.RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT],
  ['MsgHeartbeatResp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT_RESP],
  ['MsgTransferLeader', pb.RaftMessageType.RAFT_MESSAGE_TYPE_TRANSFER_LEADER],
  ['MsgTimeoutNow', pb.RaftMessageType.RAFT_MESSAGE_TYPE_TIMEOUT_NOW],
  ['MsgReadIndex', pb.RaftMessageType.RAFT_MESSAGE_TYPE_READ_INDEX],
  ['MsgReadIndexResp', pb.RaftMessageType.RAFT_MESSAGE_TYPE_READ_INDEX_RESP],
]);
const messageTypeByNumber = new Map<number, MessageType>([...messageTypes].map(([type, number]) => [number, type]));

/** Whether a message of this type can travel between nodes (has a wire number). */
export function isWireMessageType(type: MessageType): boolean {
  return messageTypes.has(type);
}

// ---- numbers --------------------------------------------------------------------------------

function checkU64(value: number, field: string): number {
  assert(Number.isSafeInteger(value) && value >= 0, `${field} must be a non-negative safe integer, got ${value}`);
  return value;
}

/** A decoded uint64 as a safe integer; anything past 2^53 is refused. */
function readU64(value: Uint64 | null | undefined, field: string): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new WireDecodeError(`${field}: ${value} is not a safe non-negative integer`);
    return value;
  }
  const long = value as unknown as { readonly high: number; readonly low: number };
  const high = long.high >>> 0;
  const low = long.low >>> 0;
  if (high >= 2 ** 21) throw new WireDecodeError(`${field} is past 2^53`);
  return high * 2 ** 32 + low;
}

function readU64List(values: readonly Uint64[] | null | undefined, field: string): number[] {
  return (values ?? []).map((value, i) => readU64(value, `${field}[${i}]`));
}

/**
 * A decoded bytes field as its own copy: protobufjs hands out views of the input, and an entry
 * kept in the log must not pin the whole network chunk it arrived in.
 */
function bytesOf(value: Uint8Array | null | undefined): Uint8Array {
  return value === null || value === undefined || value.length === 0 ? new Uint8Array(0) : new Uint8Array(value);
}

/** Runs a protobuf decode; any failure becomes WireDecodeError naming `what`. */
function decodeWith<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (error instanceof WireDecodeError) throw error;
    throw new WireDecodeError(`${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

// ---- entries, hard state, configuration, snapshots ---------------------------------------------

type EntryFields = ReturnType<typeof pb.RaftEntry.decode>;
interface ConfStateFields {
  readonly voters?: Uint64[] | null;
  readonly votersOutgoing?: Uint64[] | null;
  readonly learners?: Uint64[] | null;
  readonly learnersNext?: Uint64[] | null;
  readonly autoLeave?: boolean | null;
}
interface SnapshotMetadataFields {
  readonly index?: Uint64 | null;
  readonly term?: Uint64 | null;
  readonly confState?: ConfStateFields | null;
}

function entryFields(entry: Entry): { term: number; index: number; type: number; data: Uint8Array } {
  return { term: checkU64(entry.term, 'entry term'), index: checkU64(entry.index, 'entry index'), type: entryTypes[entry.type], data: entry.data };
}

function entryFrom(fields: EntryFields, field: string): Entry {
  let type: EntryType;
  if (fields.type === pb.RaftEntryType.RAFT_ENTRY_TYPE_NORMAL) type = 'normal';
  else if (fields.type === pb.RaftEntryType.RAFT_ENTRY_TYPE_CONF_CHANGE) type = 'confChange';
  else throw new WireDecodeError(`${field}: unknown entry type ${String(fields.type)}`);
  return { term: readU64(fields.term, `${field}.term`), index: readU64(fields.index, `${field}.index`), type, data: bytesOf(fields.data) };
}

function confStateFields(conf: ConfState): { voters: number[]; votersOutgoing: number[]; learners: number[]; learnersNext: number[]; autoLeave: boolean } {
  return {
    voters: [...conf.voters], votersOutgoing: [...conf.votersOutgoing], learners: [...conf.learners],
    learnersNext: [...conf.learnersNext], autoLeave: conf.autoLeave,
  };
}

function confStateFrom(fields: ConfStateFields | null | undefined, field: string): ConfState {
  if (fields === null || fields === undefined) throw new WireDecodeError(`${field} is missing`);
  const ids = (values: readonly Uint64[] | null | undefined, name: string): number[] => {
    const list = readU64List(values, `${field}.${name}`);
    if (list.some((id) => id === 0)) throw new WireDecodeError(`${field}.${name} holds node id 0`);
    return list;
  };
  return {
    voters: ids(fields.voters, 'voters'), votersOutgoing: ids(fields.votersOutgoing, 'votersOutgoing'),
    learners: ids(fields.learners, 'learners'), learnersNext: ids(fields.learnersNext, 'learnersNext'), autoLeave: fields.autoLeave === true,
  };
}

function metadataFields(metadata: SnapshotMetadata): { index: number; term: number; confState: ReturnType<typeof confStateFields> } {
  return { index: checkU64(metadata.index, 'snapshot index'), term: checkU64(metadata.term, 'snapshot term'), confState: confStateFields(metadata.confState) };
}

function metadataFrom(fields: SnapshotMetadataFields | null | undefined, field: string): SnapshotMetadata {
  if (fields === null || fields === undefined) throw new WireDecodeError(`${field} is missing`);
  return { index: readU64(fields.index, `${field}.index`), term: readU64(fields.term, `${field}.term`), confState: confStateFrom(fields.confState, `${field}.confState`) };
}

export function encodeEntry(entry: Entry): Uint8Array {
  return pb.RaftEntry.encode(entryFields(entry)).finish();
}

export function decodeEntry(bytes: Uint8Array): Entry {
  return entryFrom(decodeWith('raft entry', () => pb.RaftEntry.decode(bytes)), 'entry');
}

export function encodeHardState(state: HardState): Uint8Array {
  return pb.RaftHardState.encode({
    term: checkU64(state.term, 'term'), vote: checkU64(state.vote, 'vote'), commit: checkU64(state.commit, 'commit'),
  }).finish();
}

export function decodeHardState(bytes: Uint8Array): HardState {
  const fields = decodeWith('raft hard state', () => pb.RaftHardState.decode(bytes));
  return { term: readU64(fields.term, 'term'), vote: readU64(fields.vote, 'vote'), commit: readU64(fields.commit, 'commit') };
}

export function encodeStoredSnapshot(snapshot: Snapshot): Uint8Array {
  return pb.RaftStoredSnapshot.encode({ metadata: metadataFields(snapshot.metadata), data: snapshot.data }).finish();
}

export function decodeStoredSnapshot(bytes: Uint8Array): Snapshot {
  const fields = decodeWith('raft snapshot', () => pb.RaftStoredSnapshot.decode(bytes));
  return { metadata: metadataFrom(fields.metadata, 'metadata'), data: bytesOf(fields.data) };
}

/** The id (index, term) of the entry the stored log starts after. */
export function encodeLogAnchor(anchor: { index: number; term: number }): Uint8Array {
  return pb.RaftLogAnchor.encode({ index: checkU64(anchor.index, 'anchor index'), term: checkU64(anchor.term, 'anchor term') }).finish();
}

export function decodeLogAnchor(bytes: Uint8Array): { index: number; term: number } {
  const fields = decodeWith('raft log anchor', () => pb.RaftLogAnchor.decode(bytes));
  return { index: readU64(fields.index, 'index'), term: readU64(fields.term, 'term') };
}

export interface StoreIdentity {
  readonly clusterId: string;
  readonly nodeId: number;
  readonly formatVersion: number;
}

export function encodeStoreIdentity(identity: StoreIdentity): Uint8Array {
  return pb.RaftStoreIdentity.encode({ clusterId: identity.clusterId, nodeId: checkU64(identity.nodeId, 'node id'), formatVersion: identity.formatVersion }).finish();
}

export function decodeStoreIdentity(bytes: Uint8Array): StoreIdentity {
  const fields = decodeWith('raft store identity', () => pb.RaftStoreIdentity.decode(bytes));
  return { clusterId: fields.clusterId, nodeId: readU64(fields.nodeId, 'nodeId'), formatVersion: fields.formatVersion };
}

// ---- peer hello -----------------------------------------------------------------------------

export interface PeerHello {
  readonly clusterId: string;
  readonly fromNode: number;
  readonly toNode: number;
  readonly protocolVersion: number;
}

export function encodePeerHello(hello: PeerHello): Uint8Array {
  return pb.PeerHello.encode({
    clusterId: hello.clusterId, fromNode: checkU64(hello.fromNode, 'from node'), toNode: checkU64(hello.toNode, 'to node'),
    protocolVersion: hello.protocolVersion,
  }).finish();
}

export function decodePeerHello(bytes: Uint8Array): PeerHello {
  const fields = decodeWith('peer hello', () => pb.PeerHello.decode(bytes));
  return { clusterId: fields.clusterId, fromNode: readU64(fields.fromNode, 'fromNode'), toNode: readU64(fields.toNode, 'toNode'), protocolVersion: fields.protocolVersion };
}

// ---- messages -------------------------------------------------------------------------------

function chunkFields(chunk: SnapshotChunk): { metadata: ReturnType<typeof metadataFields>; totalBytes: number; offset: number; data: Uint8Array } {
  return { metadata: metadataFields(chunk.metadata), totalBytes: checkU64(chunk.totalBytes, 'total bytes'), offset: checkU64(chunk.offset, 'offset'), data: chunk.data };
}

/** Encodes a message the core produced. Local-only types are a programmer error. */
export function encodeRaftMessage(message: Message): Uint8Array {
  const type = messageTypes.get(message.type);
  assert(type !== undefined, `${message.type} is local to a node and never goes on the wire`);
  return pb.RaftMessage.encode({
    type,
    to: checkU64(message.to, 'to'),
    from: checkU64(message.from, 'from'),
    term: checkU64(message.term, 'term'),
    logTerm: checkU64(message.logTerm, 'logTerm'),
    index: checkU64(message.index, 'index'),
    entries: message.entries.map(entryFields),
    commit: checkU64(message.commit, 'commit'),
    reject: message.reject,
    rejectHint: checkU64(message.rejectHint, 'rejectHint'),
    context: message.context,
    leaderTransfer: message.leaderTransfer,
    target: checkU64(message.target, 'target'),
    ...(message.snapshot === undefined ? {} : { snapshot: chunkFields(message.snapshot) }),
  }).finish();
}

/**
 * Decodes a message from a peer and checks the shapes the core relies on. The caller still checks
 * that `from` is the authenticated peer and `to` is this node.
 */
export function decodeRaftMessage(bytes: Uint8Array): Message {
  const fields = decodeWith('raft message', () => pb.RaftMessage.decode(bytes));
  const type = messageTypeByNumber.get(fields.type);
  if (type === undefined) throw new WireDecodeError(`raft message: unknown type ${String(fields.type)}`);
  const entries = (fields.entries ?? []).map((entry, i) => entryFrom(entry as EntryFields, `entries[${i}]`));
  const index = readU64(fields.index, 'index');
  if (type === 'MsgApp') {
    entries.forEach((entry, i) => {
      if (entry.index !== index + 1 + i) throw new WireDecodeError(`MsgApp: entry ${i} has index ${entry.index}, expected ${index + 1 + i}`);
    });
  } else if (type !== 'MsgProp' && entries.length > 0) {
    throw new WireDecodeError(`${type} must not carry entries`);
  }
  let snapshot: SnapshotChunk | undefined;
  if (fields.snapshot !== null && fields.snapshot !== undefined) {
    const chunk = fields.snapshot;
    snapshot = {
      metadata: metadataFrom(chunk.metadata, 'snapshot.metadata'),
      totalBytes: readU64(chunk.totalBytes, 'snapshot.totalBytes'),
      offset: readU64(chunk.offset, 'snapshot.offset'),
      data: bytesOf(chunk.data),
    };
    if (snapshot.offset + snapshot.data.length > snapshot.totalBytes) throw new WireDecodeError('snapshot chunk extends past its total size');
  }
  if ((type === 'MsgSnap' || type === 'MsgSnapResp') && snapshot === undefined) throw new WireDecodeError(`${type} without a snapshot chunk`);
  return makeMessage({
    type,
    to: readU64(fields.to, 'to'),
    from: readU64(fields.from, 'from'),
    term: readU64(fields.term, 'term'),
    logTerm: readU64(fields.logTerm, 'logTerm'),
    index,
    entries,
    commit: readU64(fields.commit, 'commit'),
    reject: fields.reject === true,
    rejectHint: readU64(fields.rejectHint, 'rejectHint'),
    context: bytesOf(fields.context),
    leaderTransfer: fields.leaderTransfer === true,
    target: readU64(fields.target, 'target'),
    ...(snapshot === undefined ? {} : { snapshot }),
  });
}

/** Approximate encoded size of a message, for queue accounting before it is encoded. */
export function raftMessageBytesEstimate(message: Message): number {
  let bytes = 64 + message.context.length;
  for (const entry of message.entries) bytes += entry.data.length + 24;
  if (message.snapshot !== undefined) bytes += message.snapshot.data.length + 64;
  return bytes;
}
