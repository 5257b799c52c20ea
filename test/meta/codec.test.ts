// Goal: every record, command, result and snapshot survives encode → decode unchanged; encoding
// refuses values protobuf would round; decoding refuses every malformed input as CAIRN_CORRUPT
// naming the context, never with another error type.
// Method: round-trip the records of a map built by the shared workload and one command of every
// kind; hand-craft malformed messages (raw varints, merged oneofs, unknown enum values, garbage).
import t from 'tap';
import { ClusterMap } from '../../src/meta/cluster-map';
import {
  commandFromMessage,
  decodeCommand,
  decodeResult,
  decodeSnapshot,
  encodeCommand,
  encodeResult,
  encodeSnapshot,
  recordCodecs,
  snapshotFormatVersion,
} from '../../src/meta/codec';
import type { Command, CommandBody, CommandResult } from '../../src/meta/types';
import { pb } from '../../src/wire/messages';
import { CairnError } from '../../src/errors/cairn-error';
import { SeededRandom } from '../../src/util/random';
import { GiB, MiB } from '../../src/util/units';
import { throwsCode } from './helpers/errors';
import { workloadCommand } from './helpers/workload';

/** Protobuf varint of a non-negative bigint. */
function varint(value: bigint): number[] {
  const bytes: number[] = [];
  let rest = value;
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0n);
  return bytes;
}

/** A varint field: tag (field << 3 | 0) then the value. */
function varintField(field: number, value: bigint): number[] {
  return [...varint(BigInt(field << 3)), ...varint(value)];
}

function builtMap(): ClusterMap {
  const map = ClusterMap.empty();
  for (let i = 1; i <= 300; i++) map.apply(i, workloadCommand(5, i));
  return map;
}

const bodies: CommandBody[] = [
  { kind: 'noOp' },
  { kind: 'registerNode', nodeId: 'n1', name: 'host', addresses: ['a:1', 'b:2'], labels: [{ key: 'k', value: 'v' }], failureDomain: 'rack' },
  { kind: 'addDrive', driveId: 'd1', nodeId: 'n1', path: '/srv/ü', capacityBytes: 2 ** 53 - 1 },
  { kind: 'createProfile', name: 'p', replicas: 3, extentBytes: 16 * MiB, iopsMax: 7, bandwidthBytesPerSecondMax: 9, placement: 'spread-nodes', filesystem: '', description: 'd' },
  { kind: 'deleteProfile', name: 'p' },
  { kind: 'createVolume', name: 'db', sizeBytes: 10 * GiB, profile: 'p', readOnly: true, placementSeed: 2 ** 32 - 1 },
  { kind: 'resizeVolume', volume: 'vol:3', sizeBytes: 20 * GiB, placementSeed: 0 },
  { kind: 'deleteVolume', volume: 'db' },
];

void t.test('records of a real map round-trip through their codecs', async (t) => {
  const state = builtMap().state();
  t.ok(state.volumes.length > 0 && state.placements.length > 0 && state.requests.length > 0, 'the map has every kind of record');
  for (const node of state.nodes) t.same(recordCodecs.node.decode(recordCodecs.node.encode(node), 'n'), node);
  for (const drive of state.drives) t.same(recordCodecs.drive.decode(recordCodecs.drive.encode(drive), 'd'), drive);
  for (const profile of state.profiles) t.same(recordCodecs.profile.decode(recordCodecs.profile.encode(profile), 'p'), profile);
  for (const volume of state.volumes) t.same(recordCodecs.volume.decode(recordCodecs.volume.encode(volume), 'v'), volume);
  for (const run of state.placements) {
    const decoded = recordCodecs.placements.decode(recordCodecs.placements.encode(run), 'x');
    t.same({ ...decoded, extentSets: Array.from(decoded.extentSets) }, { ...run, extentSets: Array.from(run.extentSets) });
  }
  const extent = { volumeId: 'vol:3', index: 7, replicas: [{ nodeId: 'n1', driveId: 'd1' }, { nodeId: 'n2', driveId: 'd2' }], inSyncDriveIds: ['d2'] };
  t.same(recordCodecs.extent.decode(recordCodecs.extent.encode(extent), 'e'), extent);
  for (const request of state.requests) t.same(recordCodecs.request.decode(recordCodecs.request.encode(request), 'r'), request);
  t.equal(recordCodecs.applied.decode(recordCodecs.applied.encode(2 ** 53 - 1), 'a'), 2 ** 53 - 1);
  const plain = (value: typeof state): unknown => ({ ...value, placements: value.placements.map((run) => ({ ...run, extentSets: Array.from(run.extentSets) })) });
  t.same(plain(decodeSnapshot(encodeSnapshot(state))), plain(state));
});

void t.test('commands of every kind round-trip', async (t) => {
  for (const body of bodies) {
    const command: Command = { timestampMs: 1_700_000_000_123, requestId: `id-${body.kind}`, body };
    t.same(decodeCommand(encodeCommand(command)), command, body.kind);
  }
});

void t.test('results of every outcome round-trip', async (t) => {
  const state = builtMap().state();
  const outcomes: CommandResult['outcome'][] = [
    { kind: 'none' },
    { kind: 'error', error: { code: 'CAIRN_NO_SPACE', message: 'full', retryable: true } },
    { kind: 'node', node: state.nodes[0]! },
    { kind: 'drive', drive: state.drives[0]! },
    { kind: 'profile', profile: state.profiles[0]! },
    { kind: 'volume', volume: state.volumes[0]! },
  ];
  for (const outcome of outcomes) {
    const result: CommandResult = { index: 12, changed: true, deduplicated: true, outcome };
    t.same(decodeResult(encodeResult(result)), result, outcome.kind);
  }
});

void t.test('encoding refuses numbers protobuf would round, and unknown enum values', async (t) => {
  const volume = (sizeBytes: number, placementSeed = 1): Command => ({
    timestampMs: 0, requestId: 'r', body: { kind: 'createVolume', name: 'v', sizeBytes, profile: '', readOnly: false, placementSeed },
  });
  throwsCode(t, () => encodeCommand(volume(1.5)), 'CAIRN_INVALID_ARGUMENT', 'sizeBytes must be a whole number from 0 to 2^53 - 1, not 1.5');
  throwsCode(t, () => encodeCommand(volume(-4096)), 'CAIRN_INVALID_ARGUMENT', /not -4096/);
  throwsCode(t, () => encodeCommand(volume(2 ** 53)), 'CAIRN_INVALID_ARGUMENT', /sizeBytes must be a whole number/);
  throwsCode(t, () => encodeCommand(volume(4096, 2 ** 32)), 'CAIRN_INVALID_ARGUMENT', `placementSeed must be a whole number from 0 to 2^32 - 1, not ${2 ** 32}`);
  throwsCode(t, () => encodeCommand({ timestampMs: Number.NaN, requestId: 'r', body: { kind: 'noOp' } }), 'CAIRN_INVALID_ARGUMENT', /timestampMs/);
  const profile = bodies[3] as Extract<CommandBody, { kind: 'createProfile' }>;
  throwsCode(t, () => encodeCommand({ timestampMs: 0, requestId: 'r', body: { ...profile, placement: 'anywhere' as 'spread-nodes' } }), 'CAIRN_INVALID_ARGUMENT', 'placement policy has unknown value anywhere');
  throwsCode(t, () => encodeCommand({ timestampMs: 0, requestId: 'r', body: { ...profile, filesystem: 'ntfs' as '' } }), 'CAIRN_INVALID_ARGUMENT', /^filesystem 'ntfs' is not one of/);
});

void t.test('decoding refuses malformed input as CAIRN_CORRUPT naming the context', async (t) => {
  // 64-bit values past 2^53 (joinedAtMs is field 7 of NodeRecord; state 1 = up).
  const nodeBytes = (joinedAtMs: bigint): Uint8Array => Uint8Array.from([...varintField(6, 1n), ...varintField(7, joinedAtMs)]);
  t.equal(recordCodecs.node.decode(nodeBytes(2n ** 53n - 1n), 'k').joinedAtMs, 2 ** 53 - 1);
  throwsCode(t, () => recordCodecs.node.decode(nodeBytes(2n ** 53n), "map key 'x'"), 'CAIRN_CORRUPT', "map key 'x': joinedAtMs is past 2^53");
  throwsCode(t, () => recordCodecs.node.decode(nodeBytes(2n ** 64n - 1n), 'k'), 'CAIRN_CORRUPT', /past 2\^53/);
  // Enum values: 0 (unspecified) and unknown ones.
  throwsCode(t, () => recordCodecs.node.decode(Uint8Array.from(varintField(6, 0n)), 'k'), 'CAIRN_CORRUPT', 'k: state has unknown value 0');
  throwsCode(t, () => recordCodecs.volume.decode(Uint8Array.from(varintField(7, 9n)), 'k'), 'CAIRN_CORRUPT', 'k: state has unknown value 9');
  throwsCode(t, () => recordCodecs.profile.decode(pb.ProfileRecord.encode({ placement: 1, filesystem: 'zfs' }).finish(), 'k'), 'CAIRN_CORRUPT', /^k: filesystem 'zfs' is not one of/);
  // Oneofs with no member, or two (two encodings concatenated merge into one message).
  throwsCode(t, () => decodeCommand(pb.Command.encode({ requestId: 'r' }).finish(), 'entry 4'), 'CAIRN_CORRUPT', 'entry 4: command has no kind');
  // On the wire the last member of a oneof wins (protobuf's rule); two members set in memory are refused.
  const merged = Uint8Array.from([...pb.Command.encode({ noOp: {} }).finish(), ...pb.Command.encode({ deleteVolume: { volume: 'x' } }).finish()]);
  t.same(decodeCommand(merged).body, { kind: 'deleteVolume', volume: 'x' });
  throwsCode(t, () => commandFromMessage(pb.Command.create({ noOp: {}, deleteVolume: { volume: 'x' } }), 'entry 5'), 'CAIRN_CORRUPT', 'entry 5: command has several kinds (noOp, deleteVolume)');
  throwsCode(t, () => decodeResult(pb.CommandResult.encode({ error: { code: 'CAIRN_NOPE' } }).finish()), 'CAIRN_CORRUPT', "command result: result has unknown error code 'CAIRN_NOPE'");
  throwsCode(t, () => recordCodecs.request.decode(pb.RememberedRequest.encode({ requestId: 'r', kind: 'explode', result: {} }).finish(), 'k'), 'CAIRN_CORRUPT', "k: remembered request has unknown command kind 'explode'");
  throwsCode(t, () => recordCodecs.request.decode(pb.RememberedRequest.encode({ requestId: 'r', kind: 'noOp' }).finish(), 'k'), 'CAIRN_CORRUPT', 'k: remembered request has no result');
  throwsCode(t, () => decodeSnapshot(pb.MapSnapshot.encode({ formatVersion: snapshotFormatVersion + 1 }).finish()), 'CAIRN_CORRUPT', `map snapshot: snapshot format ${snapshotFormatVersion + 1}; this build reads format ${snapshotFormatVersion}`);
  throwsCode(t, () => recordCodecs.extent.decode(Uint8Array.from([0x0a, 0x05, 0x61]), 'k'), 'CAIRN_CORRUPT', /^k: not a valid ExtentRecord message/);
  throwsCode(t, () => recordCodecs.placements.decode(pb.ExtentPlacements.encode({ volumeId: 'vol:1', sets: [{}], extentSets: [0, 1] }).finish(), 'k'), 'CAIRN_CORRUPT',
    'k: extent 1 of the run names set 1, but there are 1');
  throwsCode(t, () => recordCodecs.placements.decode(pb.ExtentPlacements.encode({ volumeId: 'vol:1', sets: [{}] }).finish(), 'k'), 'CAIRN_CORRUPT', 'k: placement run has no extents');
});

void t.test('random garbage never decodes into anything but a value or CAIRN_CORRUPT', async (t) => {
  const random = new SeededRandom(99);
  const decoders: Array<(bytes: Uint8Array) => unknown> = [
    (bytes) => decodeCommand(bytes),
    (bytes) => decodeResult(bytes),
    (bytes) => decodeSnapshot(bytes),
    (bytes) => recordCodecs.node.decode(bytes, 'k'),
    (bytes) => recordCodecs.volume.decode(bytes, 'k'),
    (bytes) => recordCodecs.extent.decode(bytes, 'k'),
    (bytes) => recordCodecs.placements.decode(bytes, 'k'),
    (bytes) => recordCodecs.request.decode(bytes, 'k'),
    (bytes) => recordCodecs.applied.decode(bytes, 'k'),
  ];
  const valid = encodeCommand({ timestampMs: 5, requestId: 'r', body: bodies[5]! });
  let corrupt = 0;
  let other = 0;
  for (let round = 0; round < 3000; round++) {
    // Half pure noise, half a valid message with a few bytes flipped or cut short.
    const bytes = round % 2 === 0
      ? random.fill(Buffer.alloc(random.int(64)))
      : Buffer.from(valid).subarray(0, 1 + random.int(valid.length));
    if (round % 2 === 1) for (let flips = random.int(3); flips > 0; flips--) bytes[random.int(bytes.length)] = random.int(256);
    for (const decode of decoders) {
      try {
        decode(bytes);
      } catch (error) {
        if (error instanceof CairnError && error.code === 'CAIRN_CORRUPT') corrupt++;
        else other++;
      }
    }
  }
  t.equal(other, 0, 'no other error type escaped');
  t.ok(corrupt > 1000, `garbage was refused (${corrupt} times)`);
});
