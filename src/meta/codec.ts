/**
 * Converts the cluster map's records, commands, results and snapshots (types.ts) to and from their
 * protobuf messages (src/wire/cairn.proto). This is the only place that touches protobufjs'
 * representation: 64-bit fields become safe integers, enums become string unions, absent strings
 * become ''.
 *
 * Contract: encoding refuses values protobuf cannot carry exactly (non-integers, negatives, past
 * 2^53 or, for 32-bit fields, 2^32) with CAIRN_INVALID_ARGUMENT, so nothing is silently rounded on
 * its way into the log. Decoding never trusts its input: malformed bytes, an unknown enum value, a
 * 64-bit value past 2^53, a oneof with zero or several members, an unknown error code — all throw
 * CAIRN_CORRUPT naming the context (for the store: the key). Decoded records are frozen. Decoding
 * checks types only; whether records make sense together is ClusterMap.fromState's job.
 */
import { CairnError, errorWire, type ErrorCode } from '../errors/cairn-error';
import {
  pb,
  type CommandMessage,
  type CommandResultFields,
  type CommandResultMessage,
  type DriveRecordFields,
  type ExtentPlacementsFields,
  type ExtentPlacementsMessage,
  type ExtentRecordFields,
  type NodeRecordFields,
  type ProfileRecordFields,
  type RememberedRequestFields,
  type VolumeRecordFields,
  type DriveRecordMessage,
  type ExtentRecordMessage,
  type NodeRecordMessage,
  type ProfileRecordMessage,
  type RememberedRequestMessage,
  type Uint64,
  type VolumeRecordMessage,
} from '../wire/messages';
import {
  commandKinds,
  driveStates,
  filesystems,
  nodeStates,
  placementPolicies,
  volumeStates,
  type Command,
  type CommandBody,
  type CommandKind,
  type CommandOutcome,
  type CommandResult,
  type DriveRecord,
  type ExtentPlacements,
  type ExtentRecord,
  type Filesystem,
  type Label,
  type MapState,
  type NodeRecord,
  type ProfileRecord,
  type RememberedRequest,
  type ReplicaSet,
  type VolumeRecord,
} from './types';

/** Version of the MapSnapshot layout; restore refuses any other. */
export const snapshotFormatVersion = 1;

// ---- scalar conversions ----

function corrupt(context: string, detail: string, cause?: unknown): CairnError {
  return new CairnError('CAIRN_CORRUPT', `${context}: ${detail}`, cause === undefined ? undefined : { cause });
}

interface LongLike {
  readonly low: number;
  readonly high: number;
}

/** A decoded 64-bit field as a safe integer; anything past 2^53 - 1 is corruption. */
function readU64(value: Uint64 | null | undefined, field: string, context: string): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw corrupt(context, `${field} is ${value}, not a safe integer`);
    return value;
  }
  const long = value as LongLike;
  const high = long.high >>> 0;
  const low = long.low >>> 0;
  if (high >= 2 ** 21) throw corrupt(context, `${field} is past 2^53`);
  return high * 2 ** 32 + low;
}

function readU32(value: number | null | undefined, field: string, context: string): number {
  if (value === null || value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 32) throw corrupt(context, `${field} is ${value}, not a uint32`);
  return value;
}

function readString(value: string | null | undefined): string {
  return value ?? '';
}

function writeU64(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', `${field} must be a whole number from 0 to 2^53 - 1, not ${value}`);
  }
  return value;
}

function writeU32(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 32) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', `${field} must be a whole number from 0 to 2^32 - 1, not ${value}`);
  }
  return value;
}

/** Enum tables are 1-based on the wire (0 is UNSPECIFIED and never valid). */
function readEnum<T>(value: number | null | undefined, table: readonly T[], field: string, context: string): T {
  const member = value === null || value === undefined || value < 1 ? undefined : table[value - 1];
  if (member === undefined) throw corrupt(context, `${field} has unknown value ${String(value)}`);
  return member;
}

function writeEnum<T>(value: T, table: readonly T[], field: string): number {
  const position = table.indexOf(value);
  if (position < 0) throw new CairnError('CAIRN_INVALID_ARGUMENT', `${field} has unknown value ${String(value)}`);
  return position + 1;
}

function readFilesystem(value: string | null | undefined, context: string): Filesystem {
  const text = readString(value);
  const member = filesystems.find((filesystem) => filesystem === text);
  if (member === undefined) throw corrupt(context, `filesystem '${text}' is not one of ${filesystems.join(', ')}`);
  return member;
}

function readStrings(values: readonly string[] | null | undefined): readonly string[] {
  return Object.freeze([...(values ?? [])]);
}

function readLabels(values: ReadonlyArray<{ key?: string | null; value?: string | null }> | null | undefined): readonly Label[] {
  return Object.freeze((values ?? []).map((label) => Object.freeze({ key: readString(label.key), value: readString(label.value) })));
}

function decodeWith<T>(decode: (bytes: Uint8Array) => T, bytes: Uint8Array, typeName: string, context: string): T {
  try {
    return decode(bytes);
  } catch (error) {
    throw corrupt(context, `not a valid ${typeName} message (${error instanceof Error ? error.message : String(error)})`, error);
  }
}

// ---- records ----

export function nodeToMessage(node: NodeRecord): NodeRecordMessage {
  return pb.NodeRecord.create({
    id: node.id,
    name: node.name,
    addresses: [...node.addresses],
    labels: node.labels.map((label) => ({ key: label.key, value: label.value })),
    failureDomain: node.failureDomain,
    state: writeEnum(node.state, nodeStates, 'node state'),
    joinedAtMs: writeU64(node.joinedAtMs, 'joinedAtMs'),
  });
}

export function nodeFromMessage(message: NodeRecordFields, context: string): NodeRecord {
  return Object.freeze({
    id: readString(message.id),
    name: readString(message.name),
    addresses: readStrings(message.addresses),
    labels: readLabels(message.labels),
    failureDomain: readString(message.failureDomain),
    state: readEnum(message.state, nodeStates, 'state', context),
    joinedAtMs: readU64(message.joinedAtMs, 'joinedAtMs', context),
  });
}

export function driveToMessage(drive: DriveRecord): DriveRecordMessage {
  return pb.DriveRecord.create({
    id: drive.id,
    nodeId: drive.nodeId,
    path: drive.path,
    capacityBytes: writeU64(drive.capacityBytes, 'capacityBytes'),
    state: writeEnum(drive.state, driveStates, 'drive state'),
    addedAtMs: writeU64(drive.addedAtMs, 'addedAtMs'),
  });
}

export function driveFromMessage(message: DriveRecordFields, context: string): DriveRecord {
  return Object.freeze({
    id: readString(message.id),
    nodeId: readString(message.nodeId),
    path: readString(message.path),
    capacityBytes: readU64(message.capacityBytes, 'capacityBytes', context),
    state: readEnum(message.state, driveStates, 'state', context),
    addedAtMs: readU64(message.addedAtMs, 'addedAtMs', context),
  });
}

export function profileToMessage(profile: ProfileRecord): ProfileRecordMessage {
  return pb.ProfileRecord.create({
    name: profile.name,
    replicas: writeU32(profile.replicas, 'replicas'),
    extentBytes: writeU64(profile.extentBytes, 'extentBytes'),
    iopsMax: writeU64(profile.iopsMax, 'iopsMax'),
    bandwidthBytesPerSecondMax: writeU64(profile.bandwidthBytesPerSecondMax, 'bandwidthBytesPerSecondMax'),
    placement: writeEnum(profile.placement, placementPolicies, 'placement policy'),
    filesystem: profile.filesystem,
    description: profile.description,
    createdAtMs: writeU64(profile.createdAtMs, 'createdAtMs'),
  });
}

export function profileFromMessage(message: ProfileRecordFields, context: string): ProfileRecord {
  return Object.freeze({
    name: readString(message.name),
    replicas: readU32(message.replicas, 'replicas', context),
    extentBytes: readU64(message.extentBytes, 'extentBytes', context),
    iopsMax: readU64(message.iopsMax, 'iopsMax', context),
    bandwidthBytesPerSecondMax: readU64(message.bandwidthBytesPerSecondMax, 'bandwidthBytesPerSecondMax', context),
    placement: readEnum(message.placement, placementPolicies, 'placement', context),
    filesystem: readFilesystem(message.filesystem, context),
    description: readString(message.description),
    createdAtMs: readU64(message.createdAtMs, 'createdAtMs', context),
  });
}

export function volumeToMessage(volume: VolumeRecord): VolumeRecordMessage {
  return pb.VolumeRecord.create({
    id: volume.id,
    name: volume.name,
    sizeBytes: writeU64(volume.sizeBytes, 'sizeBytes'),
    extentBytes: writeU64(volume.extentBytes, 'extentBytes'),
    replicas: writeU32(volume.replicas, 'replicas'),
    profile: volume.profile,
    state: writeEnum(volume.state, volumeStates, 'volume state'),
    createdAtMs: writeU64(volume.createdAtMs, 'createdAtMs'),
    ownerNodeId: volume.ownerNodeId,
    epoch: writeU64(volume.epoch, 'epoch'),
    readOnly: volume.readOnly,
    placement: writeEnum(volume.placement, placementPolicies, 'placement policy'),
  });
}

export function volumeFromMessage(message: VolumeRecordFields, context: string): VolumeRecord {
  return Object.freeze({
    id: readString(message.id),
    name: readString(message.name),
    sizeBytes: readU64(message.sizeBytes, 'sizeBytes', context),
    extentBytes: readU64(message.extentBytes, 'extentBytes', context),
    replicas: readU32(message.replicas, 'replicas', context),
    profile: readString(message.profile),
    state: readEnum(message.state, volumeStates, 'state', context),
    createdAtMs: readU64(message.createdAtMs, 'createdAtMs', context),
    ownerNodeId: readString(message.ownerNodeId),
    epoch: readU64(message.epoch, 'epoch', context),
    readOnly: message.readOnly === true,
    placement: readEnum(message.placement, placementPolicies, 'placement', context),
  });
}

export function extentToMessage(extent: ExtentRecord): ExtentRecordMessage {
  return pb.ExtentRecord.create({
    volumeId: extent.volumeId,
    index: writeU32(extent.index, 'extent index'),
    replicas: extent.replicas.map((replica) => ({ nodeId: replica.nodeId, driveId: replica.driveId })),
    inSyncDriveIds: [...extent.inSyncDriveIds],
  });
}

export function extentFromMessage(message: ExtentRecordFields, context: string): ExtentRecord {
  return Object.freeze({
    volumeId: readString(message.volumeId),
    index: readU32(message.index, 'index', context),
    replicas: Object.freeze(
      (message.replicas ?? []).map((replica) => Object.freeze({ nodeId: readString(replica.nodeId), driveId: readString(replica.driveId) })),
    ),
    inSyncDriveIds: readStrings(message.inSyncDriveIds),
  });
}

export function placementsToMessage(placements: ExtentPlacements): ExtentPlacementsMessage {
  return pb.ExtentPlacements.create({
    volumeId: placements.volumeId,
    firstIndex: writeU32(placements.firstIndex, 'first extent index'),
    sets: placements.sets.map((set) => ({
      replicas: set.replicas.map((replica) => ({ nodeId: replica.nodeId, driveId: replica.driveId })),
      inSyncDriveIds: [...set.inSyncDriveIds],
    })),
    extentSets: Array.from(placements.extentSets, (set) => writeU32(set, 'extent set')),
  });
}

/** Decodes a run of placements; every extent must name an existing set, and the run is never empty. */
export function placementsFromMessage(message: ExtentPlacementsFields, context: string): ExtentPlacements {
  const sets: readonly ReplicaSet[] = Object.freeze(
    (message.sets ?? []).map((set) => Object.freeze({
      replicas: Object.freeze((set.replicas ?? []).map((replica) => Object.freeze({ nodeId: readString(replica.nodeId), driveId: readString(replica.driveId) }))),
      inSyncDriveIds: readStrings(set.inSyncDriveIds),
    })),
  );
  const extentSets = Uint32Array.from(message.extentSets ?? []);
  if (extentSets.length === 0) throw corrupt(context, 'placement run has no extents');
  for (let i = 0; i < extentSets.length; i++) {
    if ((extentSets[i] as number) >= sets.length) throw corrupt(context, `extent ${i} of the run names set ${extentSets[i]}, but there are ${sets.length}`);
  }
  return Object.freeze({
    volumeId: readString(message.volumeId),
    firstIndex: readU32(message.firstIndex, 'firstIndex', context),
    sets,
    extentSets,
  });
}

// ---- commands ----

export function commandToMessage(command: Command): CommandMessage {
  const body = command.body;
  const message = pb.Command.create({
    timestampMs: writeU64(command.timestampMs, 'timestampMs'),
    requestId: command.requestId,
  });
  switch (body.kind) {
    case 'noOp':
      message.noOp = {};
      break;
    case 'registerNode':
      message.registerNode = {
        nodeId: body.nodeId,
        name: body.name,
        addresses: [...body.addresses],
        labels: body.labels.map((label) => ({ key: label.key, value: label.value })),
        failureDomain: body.failureDomain,
      };
      break;
    case 'addDrive':
      message.addDrive = {
        driveId: body.driveId,
        nodeId: body.nodeId,
        path: body.path,
        capacityBytes: writeU64(body.capacityBytes, 'capacityBytes'),
      };
      break;
    case 'createProfile':
      message.createProfile = {
        name: body.name,
        replicas: writeU32(body.replicas, 'replicas'),
        extentBytes: writeU64(body.extentBytes, 'extentBytes'),
        iopsMax: writeU64(body.iopsMax, 'iopsMax'),
        bandwidthBytesPerSecondMax: writeU64(body.bandwidthBytesPerSecondMax, 'bandwidthBytesPerSecondMax'),
        placement: writeEnum(body.placement, placementPolicies, 'placement policy'),
        filesystem: writeFilesystem(body.filesystem),
        description: body.description,
      };
      break;
    case 'deleteProfile':
      message.deleteProfile = { name: body.name };
      break;
    case 'createVolume':
      message.createVolume = {
        name: body.name,
        sizeBytes: writeU64(body.sizeBytes, 'sizeBytes'),
        profile: body.profile,
        readOnly: body.readOnly,
        placementSeed: writeU32(body.placementSeed, 'placementSeed'),
      };
      break;
    case 'resizeVolume':
      message.resizeVolume = {
        volume: body.volume,
        sizeBytes: writeU64(body.sizeBytes, 'sizeBytes'),
        placementSeed: writeU32(body.placementSeed, 'placementSeed'),
      };
      break;
    case 'deleteVolume':
      message.deleteVolume = { volume: body.volume };
      break;
  }
  return message;
}

function writeFilesystem(filesystem: Filesystem): string {
  if (!filesystems.includes(filesystem)) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', `filesystem '${String(filesystem)}' is not one of ${filesystems.map((name) => `'${name}'`).join(', ')}`);
  }
  return filesystem;
}

/** The oneof member that is set, or a corruption error when none or several are. */
function oneMember<K extends string>(message: object, members: readonly K[], what: string, context: string): K {
  const record = message as Record<string, unknown>;
  const present = members.filter((member) => record[member] !== null && record[member] !== undefined);
  const member = present[0];
  if (member === undefined) throw corrupt(context, `${what} has no kind`);
  if (present.length > 1) throw corrupt(context, `${what} has several kinds (${present.join(', ')})`);
  return member;
}

export function commandFromMessage(message: CommandMessage, context: string): Command {
  const kind = oneMember(message, commandKinds, 'command', context);
  return Object.freeze({
    timestampMs: readU64(message.timestampMs, 'timestampMs', context),
    requestId: readString(message.requestId),
    body: Object.freeze(bodyFromMessage(message, kind, context)),
  });
}

function bodyFromMessage(message: CommandMessage, kind: CommandKind, context: string): CommandBody {
  switch (kind) {
    case 'noOp':
      return { kind };
    case 'registerNode': {
      const body = message.registerNode ?? {};
      return {
        kind,
        nodeId: readString(body.nodeId),
        name: readString(body.name),
        addresses: readStrings(body.addresses),
        labels: readLabels(body.labels),
        failureDomain: readString(body.failureDomain),
      };
    }
    case 'addDrive': {
      const body = message.addDrive ?? {};
      return {
        kind,
        driveId: readString(body.driveId),
        nodeId: readString(body.nodeId),
        path: readString(body.path),
        capacityBytes: readU64(body.capacityBytes, 'capacityBytes', context),
      };
    }
    case 'createProfile': {
      const body = message.createProfile ?? {};
      return {
        kind,
        name: readString(body.name),
        replicas: readU32(body.replicas, 'replicas', context),
        extentBytes: readU64(body.extentBytes, 'extentBytes', context),
        iopsMax: readU64(body.iopsMax, 'iopsMax', context),
        bandwidthBytesPerSecondMax: readU64(body.bandwidthBytesPerSecondMax, 'bandwidthBytesPerSecondMax', context),
        placement: readEnum(body.placement, placementPolicies, 'placement', context),
        filesystem: readFilesystem(body.filesystem, context),
        description: readString(body.description),
      };
    }
    case 'deleteProfile':
      return { kind, name: readString(message.deleteProfile?.name) };
    case 'createVolume': {
      const body = message.createVolume ?? {};
      return {
        kind,
        name: readString(body.name),
        sizeBytes: readU64(body.sizeBytes, 'sizeBytes', context),
        profile: readString(body.profile),
        readOnly: body.readOnly === true,
        placementSeed: readU32(body.placementSeed, 'placementSeed', context),
      };
    }
    case 'resizeVolume': {
      const body = message.resizeVolume ?? {};
      return {
        kind,
        volume: readString(body.volume),
        sizeBytes: readU64(body.sizeBytes, 'sizeBytes', context),
        placementSeed: readU32(body.placementSeed, 'placementSeed', context),
      };
    }
    case 'deleteVolume':
      return { kind, volume: readString(message.deleteVolume?.volume) };
  }
}

export function encodeCommand(command: Command): Uint8Array {
  return pb.Command.encode(commandToMessage(command)).finish();
}

export function decodeCommand(bytes: Uint8Array, context = 'command'): Command {
  return commandFromMessage(decodeWith((input) => pb.Command.decode(input), bytes, 'Command', context), context);
}

// ---- results ----

const outcomeMembers = ['error', 'node', 'drive', 'profile', 'volume'] as const;

export function resultToMessage(result: CommandResult): CommandResultMessage {
  const message = pb.CommandResult.create({
    index: writeU64(result.index, 'index'),
    changed: result.changed,
    deduplicated: result.deduplicated,
  });
  const outcome = result.outcome;
  switch (outcome.kind) {
    case 'none':
      break;
    case 'error':
      message.error = { code: outcome.error.code, message: outcome.error.message, retryable: outcome.error.retryable };
      break;
    case 'node':
      message.node = nodeToMessage(outcome.node);
      break;
    case 'drive':
      message.drive = driveToMessage(outcome.drive);
      break;
    case 'profile':
      message.profile = profileToMessage(outcome.profile);
      break;
    case 'volume':
      message.volume = volumeToMessage(outcome.volume);
      break;
  }
  return message;
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(errorWire, code);
}

export function resultFromMessage(message: CommandResultFields, context: string): CommandResult {
  const record = message as unknown as Record<string, unknown>;
  const hasOutcome = outcomeMembers.some((member) => record[member] !== null && record[member] !== undefined);
  let outcome: CommandOutcome = { kind: 'none' };
  if (hasOutcome) {
    const kind = oneMember(message, outcomeMembers, 'result', context);
    switch (kind) {
      case 'error': {
        const code = readString(message.error?.code);
        if (!isErrorCode(code)) throw corrupt(context, `result has unknown error code '${code}'`);
        outcome = { kind, error: Object.freeze({ code, message: readString(message.error?.message), retryable: message.error?.retryable === true }) };
        break;
      }
      case 'node':
        outcome = { kind, node: nodeFromMessage(message.node ?? {}, context) };
        break;
      case 'drive':
        outcome = { kind, drive: driveFromMessage(message.drive ?? {}, context) };
        break;
      case 'profile':
        outcome = { kind, profile: profileFromMessage(message.profile ?? {}, context) };
        break;
      case 'volume':
        outcome = { kind, volume: volumeFromMessage(message.volume ?? {}, context) };
        break;
    }
  }
  return Object.freeze({
    index: readU64(message.index, 'index', context),
    changed: message.changed === true,
    deduplicated: message.deduplicated === true,
    outcome: Object.freeze(outcome),
  });
}

export function encodeResult(result: CommandResult): Uint8Array {
  return pb.CommandResult.encode(resultToMessage(result)).finish();
}

export function decodeResult(bytes: Uint8Array, context = 'command result'): CommandResult {
  return resultFromMessage(decodeWith((input) => pb.CommandResult.decode(input), bytes, 'CommandResult', context), context);
}

// ---- remembered requests ----

export function requestToMessage(request: RememberedRequest): RememberedRequestMessage {
  return pb.RememberedRequest.create({
    requestId: request.requestId,
    kind: request.kind,
    result: resultToMessage(request.result),
  });
}

export function requestFromMessage(message: RememberedRequestFields, context: string): RememberedRequest {
  const kindText = readString(message.kind);
  const kind = commandKinds.find((candidate) => candidate === kindText);
  if (kind === undefined) throw corrupt(context, `remembered request has unknown command kind '${kindText}'`);
  if (message.result === null || message.result === undefined) throw corrupt(context, 'remembered request has no result');
  return Object.freeze({
    requestId: readString(message.requestId),
    kind,
    result: resultFromMessage(message.result, context),
  });
}

// ---- single records, as the store keeps them ----

export const recordCodecs = {
  node: {
    encode: (record: NodeRecord): Uint8Array => pb.NodeRecord.encode(nodeToMessage(record)).finish(),
    decode: (bytes: Uint8Array, context: string): NodeRecord =>
      nodeFromMessage(decodeWith((input) => pb.NodeRecord.decode(input), bytes, 'NodeRecord', context), context),
  },
  drive: {
    encode: (record: DriveRecord): Uint8Array => pb.DriveRecord.encode(driveToMessage(record)).finish(),
    decode: (bytes: Uint8Array, context: string): DriveRecord =>
      driveFromMessage(decodeWith((input) => pb.DriveRecord.decode(input), bytes, 'DriveRecord', context), context),
  },
  profile: {
    encode: (record: ProfileRecord): Uint8Array => pb.ProfileRecord.encode(profileToMessage(record)).finish(),
    decode: (bytes: Uint8Array, context: string): ProfileRecord =>
      profileFromMessage(decodeWith((input) => pb.ProfileRecord.decode(input), bytes, 'ProfileRecord', context), context),
  },
  volume: {
    encode: (record: VolumeRecord): Uint8Array => pb.VolumeRecord.encode(volumeToMessage(record)).finish(),
    decode: (bytes: Uint8Array, context: string): VolumeRecord =>
      volumeFromMessage(decodeWith((input) => pb.VolumeRecord.decode(input), bytes, 'VolumeRecord', context), context),
  },
  extent: {
    encode: (record: ExtentRecord): Uint8Array => pb.ExtentRecord.encode(extentToMessage(record)).finish(),
    decode: (bytes: Uint8Array, context: string): ExtentRecord =>
      extentFromMessage(decodeWith((input) => pb.ExtentRecord.decode(input), bytes, 'ExtentRecord', context), context),
  },
  placements: {
    encode: (placements: ExtentPlacements): Uint8Array => pb.ExtentPlacements.encode(placementsToMessage(placements)).finish(),
    decode: (bytes: Uint8Array, context: string): ExtentPlacements =>
      placementsFromMessage(decodeWith((input) => pb.ExtentPlacements.decode(input), bytes, 'ExtentPlacements', context), context),
  },
  request: {
    encode: (record: RememberedRequest): Uint8Array => pb.RememberedRequest.encode(requestToMessage(record)).finish(),
    decode: (bytes: Uint8Array, context: string): RememberedRequest =>
      requestFromMessage(decodeWith((input) => pb.RememberedRequest.decode(input), bytes, 'RememberedRequest', context), context),
  },
  applied: {
    encode: (appliedIndex: number): Uint8Array => pb.AppliedState.encode({ appliedIndex: writeU64(appliedIndex, 'appliedIndex') }).finish(),
    decode: (bytes: Uint8Array, context: string): number =>
      readU64(decodeWith((input) => pb.AppliedState.decode(input), bytes, 'AppliedState', context).appliedIndex, 'appliedIndex', context),
  },
} as const;

// ---- snapshots ----

export function encodeSnapshot(state: MapState): Uint8Array {
  return pb.MapSnapshot.encode({
    formatVersion: snapshotFormatVersion,
    appliedIndex: writeU64(state.appliedIndex, 'appliedIndex'),
    nodes: state.nodes.map(nodeToMessage),
    drives: state.drives.map(driveToMessage),
    profiles: state.profiles.map(profileToMessage),
    volumes: state.volumes.map(volumeToMessage),
    placements: state.placements.map(placementsToMessage),
    requests: state.requests.map(requestToMessage),
  }).finish();
}

export function decodeSnapshot(bytes: Uint8Array, context = 'map snapshot'): MapState {
  const message = decodeWith((input) => pb.MapSnapshot.decode(input), bytes, 'MapSnapshot', context);
  if (message.formatVersion !== snapshotFormatVersion) {
    throw corrupt(context, `snapshot format ${message.formatVersion}; this build reads format ${snapshotFormatVersion}`);
  }
  return {
    appliedIndex: readU64(message.appliedIndex, 'appliedIndex', context),
    nodes: message.nodes.map((node) => nodeFromMessage(node, `${context} node`)),
    drives: message.drives.map((drive) => driveFromMessage(drive, `${context} drive`)),
    profiles: message.profiles.map((profile) => profileFromMessage(profile, `${context} profile`)),
    volumes: message.volumes.map((volume) => volumeFromMessage(volume, `${context} volume`)),
    placements: message.placements.map((placements) => placementsFromMessage(placements, `${context} placements`)),
    requests: message.requests.map((request) => requestFromMessage(request, `${context} request`)),
  };
}
