// Goal: every Raft message type, entry, hard state, snapshot and hello survives encode → decode
// unchanged, and hostile bytes only ever produce WireDecodeError — never another exception, never a
// message shape the core would assert on.
// Method: round-trip hand-built values of every field; then feed truncated, bit-flipped and random
// buffers (seeded) to every decoder, plus crafted protobufs with numbers past 2^53, unknown enum
// values, MsgApp entries that are not contiguous and snapshot chunks past their total size.
import t from 'tap';
import { makeMessage, type Message, type MessageType } from '../../src/raft';
import { SeededRandom } from '../../src/util/random';
import { pb } from '../../src/wire/messages';
import {
  WireDecodeError, decodeEntry, decodeHardState, decodePeerHello, decodeRaftMessage, decodeStoredSnapshot, encodeEntry, encodeHardState,
  encodePeerHello, encodeRaftMessage, encodeStoredSnapshot, isWireMessageType,
} from '../../src/wire/raft-codec';

const confState = { voters: [1, 2, 3], votersOutgoing: [4], learners: [5], learnersNext: [6], autoLeave: true };
const wireTypes: MessageType[] = [
  'MsgProp', 'MsgApp', 'MsgAppResp', 'MsgVote', 'MsgVoteResp', 'MsgPreVote', 'MsgPreVoteResp', 'MsgSnap', 'MsgSnapResp',
  'MsgHeartbeat', 'MsgHeartbeatResp', 'MsgTransferLeader', 'MsgTimeoutNow', 'MsgReadIndex', 'MsgReadIndexResp',
];

function sample(type: MessageType): Message {
  const big = 2 ** 53 - 1;
  const withEntries = type === 'MsgApp' || type === 'MsgProp';
  const withSnapshot = type === 'MsgSnap' || type === 'MsgSnapResp';
  return makeMessage({
    type, to: 2, from: 1, term: big, logTerm: 7, index: 100, commit: 99, reject: true, rejectHint: 42, context: Uint8Array.of(1, 2, 3),
    leaderTransfer: true, target: 3,
    entries: withEntries ? [
      { term: 7, index: type === 'MsgApp' ? 101 : 0, type: 'normal', data: Uint8Array.of(9, 9) },
      { term: 7, index: type === 'MsgApp' ? 102 : 0, type: 'confChange', data: new Uint8Array(0) },
    ] : [],
    ...(withSnapshot ? { snapshot: { metadata: { index: 50, term: 6, confState }, totalBytes: 10, offset: 4, data: Uint8Array.of(1, 2, 3) } } : {}),
  });
}

function plain(message: Message): unknown {
  return JSON.parse(JSON.stringify(message, (_key, value: unknown) => (value instanceof Uint8Array ? [...value] : value)));
}

void t.test('every network message type round-trips with all its fields', async (t) => {
  for (const type of wireTypes) {
    const message = sample(type);
    t.same(plain(decodeRaftMessage(encodeRaftMessage(message))), plain(message), type);
  }
});

void t.test('local message types never reach the wire', async (t) => {
  for (const type of ['MsgHup', 'MsgBeat', 'MsgCheckQuorum', 'MsgUnreachable'] as const) {
    t.notOk(isWireMessageType(type), `${type} has no wire number`);
    t.throws(() => encodeRaftMessage(makeMessage({ type, to: 2, from: 1 })), { name: 'AssertionError' });
  }
});

void t.test('entries, hard state, stored snapshots and hellos round-trip', async (t) => {
  const entry = { term: 3, index: 2 ** 40, type: 'confChange' as const, data: Uint8Array.of(5, 6, 7) };
  t.same(plain(decodeEntry(encodeEntry(entry)) as unknown as Message), plain(entry as unknown as Message));
  t.same(decodeHardState(encodeHardState({ term: 9, vote: 2, commit: 2 ** 53 - 1 })), { term: 9, vote: 2, commit: 2 ** 53 - 1 });
  const snapshot = decodeStoredSnapshot(encodeStoredSnapshot({ metadata: { index: 8, term: 2, confState }, data: Uint8Array.of(1) }));
  t.same(snapshot.metadata, { index: 8, term: 2, confState });
  t.same([...snapshot.data], [1]);
  t.same(decodePeerHello(encodePeerHello({ clusterId: 'c', fromNode: 1, toNode: 2, protocolVersion: 1 })), { clusterId: 'c', fromNode: 1, toNode: 2, protocolVersion: 1 });
});

void t.test('a decoded payload is a copy that does not pin the input buffer', async (t) => {
  const bytes = Buffer.from(encodeRaftMessage(sample('MsgApp')));
  const decoded = decodeRaftMessage(bytes);
  const data = decoded.entries[0]?.data;
  t.ok(data !== undefined && data.buffer !== bytes.buffer, 'entry data has its own memory');
});

void t.test('crafted hostile messages are refused with WireDecodeError', async (t) => {
  const base = { type: pb.RaftMessageType.RAFT_MESSAGE_TYPE_APP, to: 2, from: 1, term: 1, index: 5 };
  const cases: Array<[string, Uint8Array]> = [
    ['a term past 2^53', pb.RaftMessage.encode({ ...base, term: '18014398509481984' as unknown as number }).finish()],
    ['an unknown message type', pb.RaftMessage.encode({ ...base, type: 99 as never }).finish()],
    ['the unspecified message type', pb.RaftMessage.encode({ ...base, type: 0 }).finish()],
    ['an unknown entry type', pb.RaftMessage.encode({ ...base, entries: [{ term: 1, index: 6, type: 7 as never }] }).finish()],
    ['MsgApp entries that skip an index', pb.RaftMessage.encode({ ...base, entries: [{ term: 1, index: 7, type: 1 }] }).finish()],
    ['entries on a heartbeat', pb.RaftMessage.encode({ ...base, type: pb.RaftMessageType.RAFT_MESSAGE_TYPE_HEARTBEAT, entries: [{ term: 1, index: 6, type: 1 }] }).finish()],
    ['MsgSnap without a chunk', pb.RaftMessage.encode({ ...base, type: pb.RaftMessageType.RAFT_MESSAGE_TYPE_SNAP }).finish()],
    ['a chunk past its total size', pb.RaftMessage.encode({
      ...base, type: pb.RaftMessageType.RAFT_MESSAGE_TYPE_SNAP,
      snapshot: { metadata: { index: 3, term: 1, confState: { voters: [1] } }, totalBytes: 2, offset: 1, data: Uint8Array.of(1, 2) },
    }).finish()],
    ['a chunk without metadata', pb.RaftMessage.encode({ ...base, type: pb.RaftMessageType.RAFT_MESSAGE_TYPE_SNAP, snapshot: { totalBytes: 0 } }).finish()],
    ['a voter with id 0', pb.RaftMessage.encode({
      ...base, type: pb.RaftMessageType.RAFT_MESSAGE_TYPE_SNAP, snapshot: { metadata: { index: 3, term: 1, confState: { voters: [0] } }, totalBytes: 0 },
    }).finish()],
  ];
  for (const [name, bytes] of cases) t.throws(() => decodeRaftMessage(bytes), WireDecodeError, name);
});

void t.test('random, truncated and bit-flipped bytes only ever throw WireDecodeError', async (t) => {
  const random = new SeededRandom(20240);
  const valid = wireTypes.map((type) => Buffer.from(encodeRaftMessage(sample(type))));
  const decoders: Array<(bytes: Uint8Array) => unknown> = [decodeRaftMessage, decodeEntry, decodeHardState, decodeStoredSnapshot, decodePeerHello];
  let refused = 0;
  let accepted = 0;
  for (let round = 0; round < 3000; round++) {
    let bytes: Buffer;
    const source = valid[random.int(valid.length)] as Buffer;
    switch (random.int(3)) {
      case 0:
        bytes = random.fill(Buffer.alloc(random.int(64)));
        break;
      case 1:
        bytes = source.subarray(0, random.int(source.length));
        break;
      default:
        bytes = Buffer.from(source);
        for (let flips = 1 + random.int(4); flips > 0; flips--) {
          const at = random.int(bytes.length);
          bytes[at] = (bytes[at] as number) ^ (1 << random.int(8));
        }
    }
    for (const decode of decoders) {
      try {
        decode(bytes);
        accepted++;
      } catch (error) {
        if (!(error instanceof WireDecodeError)) {
          t.fail(`a decoder threw ${String(error)} for ${bytes.toString('hex')}`);
          return;
        }
        refused++;
      }
    }
  }
  t.ok(refused > 1000, `most garbage is refused (${refused} refused, ${accepted} happened to decode)`);
});
