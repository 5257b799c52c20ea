/**
 * ClusterMap: the replicated state machine of Cairn's metadata. It holds nodes, drives, profiles,
 * volumes, the placement of every extent's replicas, and a bounded table of recent request ids.
 * Committed log entries reach it through `apply(index, command)`; everything else only reads.
 *
 * Determinism (Raft applies the same entries on every node and they must agree byte for byte):
 * no clocks (times come from the command), no randomness except the seed carried in the command,
 * no iteration over insertion-ordered collections where order could leak into state (lists are
 * sorted), no node:* imports. `snapshot()` after the same commands gives identical bytes.
 *
 * Placement is computed inside apply, from the applied map and the command's seed, rather than by
 * the proposer and carried in the command. Reasons: apply then always sees the exact state it
 * places against (a proposer's view can be stale by any number of uncommitted entries, which would
 * need re-validation and retries), log entries stay small (a seed, not up to 256 Ki extents of
 * drive ids), and the rules live in one place. The price: the placement algorithm is part of the
 * replicated state machine, so changing it needs a versioned command field (see placement.ts).
 *
 * Apply contract:
 * - indexes strictly increase; gaps are allowed (Raft entries that are not map commands);
 * - a command that fails validation still consumes its index and yields outcome 'error' on every
 *   node alike; validation finishes before the first mutation, so a failed command changes nothing
 *   but the applied index and the request-id table;
 * - a request id seen in the table is answered with the first result (deduplicated: true) and the
 *   command is not applied again; the table forgets the oldest id past requestIdsRememberedMax;
 * - broken invariants throw AssertionError and are never caught here.
 *
 * Capacity: each replica of each extent provisions `extentBytes` on its drive (the last, partial
 * extent too); provisioned bytes never exceed a drive's capacity when placed (thin: space is
 * allocated lazily by the extent store, but never promised twice).
 */
import { CairnError, isCairnError } from '../errors/cairn-error';
import { extentBytesDefault, mapExtentsMax, drivesPerNodeMax, nodesMax, profilesMax, requestIdsRememberedMax, volumeExtentsMax, volumesMax } from '../limits';
import { assert } from '../util/assert';
import { formatBytes } from '../util/units';
import { decodeSnapshot, encodeSnapshot } from './codec';
import { placeExtents, type PlacementDrive } from './placement';
import type {
  Command,
  CommandBody,
  CommandOutcome,
  CommandResult,
  DriveRecord,
  ExtentPlacements,
  ExtentRecord,
  Label,
  MapState,
  NodeRecord,
  PlacementPolicy,
  ProfileRecord,
  RememberedRequest,
  ReplicaLocation,
  ReplicaSet,
  VolumeRecord,
} from './types';
import {
  checkAddresses,
  checkCapacity,
  checkDescription,
  checkDrivePath,
  checkExtentBytes,
  checkFailureDomain,
  checkLabels,
  checkLimit,
  checkName,
  checkPlacementSeed,
  checkReplicas,
  checkRequestId,
  checkTimestamp,
  checkVolumeSize,
  isVolumeId,
  volumeIdFor,
  volumeIdIndex,
} from './validate';

/** The built-in profile every cluster has: one replica, default extent size. */
export const defaultProfile: ProfileRecord = Object.freeze({
  name: 'default',
  replicas: 1,
  extentBytes: extentBytesDefault,
  iopsMax: 0,
  bandwidthBytesPerSecondMax: 0,
  placement: 'spread-domains',
  filesystem: 'ext4',
  description: 'built in: one replica, 64 MiB extents, no limits',
  createdAtMs: 0,
});

/** One record written or deleted (record undefined) by an apply; the store persists these. */
export type MapChange =
  | { readonly kind: 'node'; readonly id: string; readonly record: NodeRecord | undefined }
  | { readonly kind: 'drive'; readonly id: string; readonly record: DriveRecord | undefined }
  | { readonly kind: 'profile'; readonly name: string; readonly record: ProfileRecord | undefined }
  | { readonly kind: 'volume'; readonly id: string; readonly record: VolumeRecord | undefined }
  | { readonly kind: 'extent'; readonly volumeId: string; readonly index: number; readonly record: ExtentRecord | undefined }
  | { readonly kind: 'request'; readonly index: number; readonly record: RememberedRequest | undefined };

export interface DriveUsage {
  readonly capacityBytes: number;
  readonly provisionedBytes: number;
}

/** The read side of the map: what everything except the log driver gets. */
export interface ClusterMapView {
  /** Index of the last applied entry (0 before any). */
  readonly appliedIndex: number;
  getNode(id: string): NodeRecord | undefined;
  /** Sorted by id. */
  listNodes(): NodeRecord[];
  getDrive(id: string): DriveRecord | undefined;
  /** Sorted by id; only the node's drives when `nodeId` is given. */
  listDrives(nodeId?: string): DriveRecord[];
  driveUsage(driveId: string): DriveUsage | undefined;
  /** Totals over all drives. */
  poolUsage(): DriveUsage;
  /** Includes the built-in 'default'. */
  getProfile(name: string): ProfileRecord | undefined;
  /** Sorted by name, 'default' included. */
  listProfiles(): ProfileRecord[];
  /** By name or by id (`vol:N`); the two never collide. */
  getVolume(nameOrId: string): VolumeRecord | undefined;
  /** Sorted by name. */
  listVolumes(): VolumeRecord[];
  /** Where the replicas of one extent live. */
  extentPlacement(volumeNameOrId: string, index: number): ExtentRecord | undefined;
  /** Every extent of a volume in index order (empty for an unknown volume). */
  listExtents(volumeNameOrId: string): ExtentRecord[];
  /**
   * Extents `firstIndex .. firstIndex + count - 1` of a volume (fewer at its end) in compact form;
   * undefined for an unknown volume or a first index past its last extent.
   */
  extentPlacements(volumeNameOrId: string, firstIndex: number, count: number): ExtentPlacements | undefined;
  rememberedRequest(requestId: string): RememberedRequest | undefined;
  /** The whole map, sorted (see MapState). */
  state(): MapState;
  /** `state()` encoded; identical maps give identical bytes. */
  snapshot(): Uint8Array;
}

interface Executed {
  readonly outcome: CommandOutcome;
  readonly changed: boolean;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function extentCountOf(sizeBytes: number, extentBytes: number): number {
  return Math.ceil(sizeBytes / extentBytes);
}

function toIndex(index: bigint | number): number {
  const value = typeof index === 'bigint' ? Number(index) : index;
  assert(Number.isSafeInteger(value), `log index ${String(index)} is not a safe integer`);
  assert(value > 0, `log index ${String(index)} must be positive`);
  return value;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

function sameLabels(a: readonly Label[], b: readonly Label[]): boolean {
  return a.length === b.length && a.every((label, i) => label.key === b[i]?.key && label.value === b[i]?.value);
}

function makeReplicaSet(replicas: readonly ReplicaLocation[], interned: Map<string, ReplicaSet>): ReplicaSet {
  const key = replicas.map((replica) => `${replica.nodeId}/${replica.driveId}`).join(' ');
  const existing = interned.get(key);
  if (existing !== undefined) return existing;
  const set: ReplicaSet = Object.freeze({
    replicas: Object.freeze(replicas.map((replica) => Object.freeze({ nodeId: replica.nodeId, driveId: replica.driveId }))),
    inSyncDriveIds: Object.freeze(replicas.map((replica) => replica.driveId).sort(compareStrings)),
  });
  interned.set(key, set);
  return set;
}

export class ClusterMap implements ClusterMapView {
  private applied = 0;
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly nodeIdByName = new Map<string, string>();
  private readonly drives = new Map<string, DriveRecord>();
  /** Invariant: for every drive, the sum over extents of extentBytes per replica on it. */
  private readonly provisionedBytes = new Map<string, number>();
  private readonly profiles = new Map<string, ProfileRecord>();
  private readonly volumes = new Map<string, VolumeRecord>();
  private readonly volumeIdByName = new Map<string, string>();
  /** Invariant: for every volume, exactly ceil(sizeBytes / extentBytes) entries. */
  private readonly extents = new Map<string, ReplicaSet[]>();
  /** Invariant: the sum of the lengths of `extents` values, at most mapExtentsMax. */
  private extentTotal = 0;
  /** Insertion order = application order (oldest first); at most requestIdsRememberedMax. */
  private readonly requests = new Map<string, RememberedRequest>();
  /** The change list of the apply in progress, if its caller asked for one. */
  private changes: MapChange[] | undefined;

  static empty(): ClusterMap {
    return new ClusterMap();
  }

  /** Rebuilds a map from its state, checking every record and relation: failures are CAIRN_CORRUPT. */
  static fromState(state: MapState, context = 'cluster map'): ClusterMap {
    try {
      return ClusterMap.build(state);
    } catch (error) {
      if (isCairnError(error)) throw new CairnError('CAIRN_CORRUPT', `${context}: ${error.message}`, { cause: error });
      throw error;
    }
  }

  /** Restores a map from `snapshot()` bytes. Throws CAIRN_CORRUPT for anything inconsistent. */
  static restore(bytes: Uint8Array): ClusterMap {
    return ClusterMap.fromState(decodeSnapshot(bytes), 'map snapshot');
  }

  get appliedIndex(): number {
    return this.applied;
  }

  // ---- apply ----

  /** Applies one committed command at `index`; see the module comment for the contract. */
  apply(index: bigint | number, command: Command): CommandResult {
    return this.run(index, command, undefined);
  }

  /** Like apply, and also returns every record it wrote or deleted, for the store to persist. */
  applyWithChanges(index: bigint | number, command: Command): { result: CommandResult; changes: MapChange[] } {
    const changes: MapChange[] = [];
    const result = this.run(index, command, changes);
    return { result, changes };
  }

  private run(rawIndex: bigint | number, command: Command, changes: MapChange[] | undefined): CommandResult {
    const index = toIndex(rawIndex);
    assert(index > this.applied, `log index ${index} applied after ${this.applied}`);
    this.applied = index;
    // Only a well-formed, first-seen request id enters the table.
    let rememberable = false;
    let executed: Executed;
    try {
      checkRequestId(command.requestId);
      checkTimestamp(command.timestampMs);
      const remembered = this.requests.get(command.requestId);
      if (remembered !== undefined) return this.replay(index, command, remembered);
      rememberable = true;
      this.changes = changes;
      executed = this.execute(index, command.timestampMs, command.body);
    } catch (error) {
      if (!isCairnError(error)) throw error;
      executed = { outcome: { kind: 'error', error: { code: error.code, message: error.message, retryable: error.retryable } }, changed: false };
    } finally {
      this.changes = undefined;
    }
    const result: CommandResult = Object.freeze({ index, changed: executed.changed, deduplicated: false, outcome: Object.freeze(executed.outcome) });
    if (rememberable) this.remember(command, result, changes);
    return result;
  }

  private replay(index: number, command: Command, remembered: RememberedRequest): CommandResult {
    if (remembered.kind !== command.body.kind) {
      throw new CairnError(
        'CAIRN_INVALID_ARGUMENT',
        `request id '${command.requestId}' was already used by a ${remembered.kind} command (entry ${remembered.result.index}); ` +
          `use a new request id for every change`,
      );
    }
    assert(remembered.result.index < index);
    return Object.freeze({ ...remembered.result, deduplicated: true });
  }

  /** Remembers a request id with its first result (errors too); forgets the oldest past the bound. */
  private remember(command: Command, result: CommandResult, changes: MapChange[] | undefined): void {
    assert(!this.requests.has(command.requestId));
    const request: RememberedRequest = Object.freeze({ requestId: command.requestId, kind: command.body.kind, result });
    this.requests.set(command.requestId, request);
    changes?.push({ kind: 'request', index: result.index, record: request });
    if (this.requests.size > requestIdsRememberedMax) {
      const oldest = this.requests.values().next().value as RememberedRequest;
      this.requests.delete(oldest.requestId);
      changes?.push({ kind: 'request', index: oldest.result.index, record: undefined });
    }
    assert(this.requests.size <= requestIdsRememberedMax);
  }

  private execute(index: number, timestampMs: number, body: CommandBody): Executed {
    switch (body.kind) {
      case 'noOp':
        return { outcome: { kind: 'none' }, changed: false };
      case 'registerNode':
        return this.registerNode(timestampMs, body);
      case 'addDrive':
        return this.addDrive(timestampMs, body);
      case 'createProfile':
        return this.createProfile(timestampMs, body);
      case 'deleteProfile':
        return this.deleteProfile(body);
      case 'createVolume':
        return this.createVolume(index, timestampMs, body);
      case 'resizeVolume':
        return this.resizeVolume(body);
      case 'deleteVolume':
        return this.deleteVolume(body);
    }
  }

  private registerNode(timestampMs: number, body: Extract<CommandBody, { kind: 'registerNode' }>): Executed {
    checkName('node id', body.nodeId);
    checkName('node name', body.name);
    checkAddresses(body.addresses);
    const labels = checkLabels(body.labels);
    checkFailureDomain(body.failureDomain);
    const existing = this.nodes.get(body.nodeId);
    const nameOwner = this.nodeIdByName.get(body.name);
    if (nameOwner !== undefined && nameOwner !== body.nodeId) {
      throw new CairnError('CAIRN_INVALID_ARGUMENT', `node name '${body.name}' is already used by node '${nameOwner}'; choose another name`);
    }
    if (existing === undefined && this.nodes.size >= nodesMax) {
      throw new CairnError('CAIRN_NO_SPACE', `the cluster already has ${nodesMax} nodes, the most it supports`);
    }
    const node: NodeRecord = Object.freeze({
      id: body.nodeId,
      name: body.name,
      addresses: Object.freeze([...body.addresses]),
      labels,
      failureDomain: body.failureDomain,
      state: existing?.state ?? 'up',
      joinedAtMs: existing?.joinedAtMs ?? timestampMs,
    });
    if (existing !== undefined && existing.name === node.name && existing.failureDomain === node.failureDomain &&
      sameStrings(existing.addresses, node.addresses) && sameLabels(existing.labels, node.labels)) {
      return { outcome: { kind: 'node', node: existing }, changed: false };
    }
    if (existing !== undefined) this.nodeIdByName.delete(existing.name);
    this.nodeIdByName.set(node.name, node.id);
    this.nodes.set(node.id, node);
    this.changes?.push({ kind: 'node', id: node.id, record: node });
    return { outcome: { kind: 'node', node }, changed: true };
  }

  private addDrive(timestampMs: number, body: Extract<CommandBody, { kind: 'addDrive' }>): Executed {
    checkName('drive id', body.driveId);
    checkDrivePath(body.path);
    checkCapacity(body.capacityBytes);
    if (!this.nodes.has(body.nodeId)) {
      throw new CairnError('CAIRN_INVALID_ARGUMENT', `node '${body.nodeId}' is not registered; register the node before adding its drives`);
    }
    const existing = this.drives.get(body.driveId);
    if (existing !== undefined && (existing.nodeId !== body.nodeId || existing.path !== body.path)) {
      throw new CairnError(
        'CAIRN_INVALID_ARGUMENT',
        `drive '${body.driveId}' is already registered on node '${existing.nodeId}' at ${existing.path}; every drive needs its own id`,
      );
    }
    if (existing === undefined) {
      let nodeDrives = 0;
      for (const drive of this.drives.values()) {
        if (drive.nodeId !== body.nodeId) continue;
        nodeDrives++;
        if (drive.path === body.path) {
          throw new CairnError('CAIRN_INVALID_ARGUMENT', `node '${body.nodeId}' already has drive '${drive.id}' at ${body.path}; add each path once`);
        }
      }
      if (nodeDrives >= drivesPerNodeMax) {
        throw new CairnError('CAIRN_NO_SPACE', `node '${body.nodeId}' already has ${drivesPerNodeMax} drives, the most a node may have`);
      }
    } else if (existing.capacityBytes === body.capacityBytes) {
      return { outcome: { kind: 'drive', drive: existing }, changed: false };
    }
    const drive: DriveRecord = Object.freeze({
      id: body.driveId,
      nodeId: body.nodeId,
      path: body.path,
      capacityBytes: body.capacityBytes,
      state: existing?.state ?? 'up',
      addedAtMs: existing?.addedAtMs ?? timestampMs,
    });
    this.drives.set(drive.id, drive);
    if (existing === undefined) this.provisionedBytes.set(drive.id, 0);
    this.changes?.push({ kind: 'drive', id: drive.id, record: drive });
    return { outcome: { kind: 'drive', drive }, changed: true };
  }

  private createProfile(timestampMs: number, body: Extract<CommandBody, { kind: 'createProfile' }>): Executed {
    checkName('profile name', body.name);
    if (body.name === defaultProfile.name) {
      throw new CairnError('CAIRN_PROFILE_EXISTS', `profile 'default' is built in; choose another name`);
    }
    checkReplicas(body.replicas);
    checkExtentBytes(body.extentBytes);
    checkLimit('iopsMax', body.iopsMax);
    checkLimit('bandwidthBytesPerSecondMax', body.bandwidthBytesPerSecondMax);
    checkDescription(body.description);
    const existing = this.profiles.get(body.name);
    if (existing !== undefined) {
      const differences = profileDifferences(existing, body);
      if (differences.length === 0) return { outcome: { kind: 'profile', profile: existing }, changed: false };
      throw new CairnError(
        'CAIRN_PROFILE_EXISTS',
        `profile '${body.name}' already exists with other properties (${differences.join('; ')}); choose another name or delete it first`,
      );
    }
    if (this.profiles.size >= profilesMax) {
      throw new CairnError('CAIRN_NO_SPACE', `the cluster already has ${profilesMax} profiles, the most it supports; delete unused ones`);
    }
    const profile: ProfileRecord = Object.freeze({
      name: body.name,
      replicas: body.replicas,
      extentBytes: body.extentBytes,
      iopsMax: body.iopsMax,
      bandwidthBytesPerSecondMax: body.bandwidthBytesPerSecondMax,
      placement: body.placement,
      filesystem: body.filesystem,
      description: body.description,
      createdAtMs: timestampMs,
    });
    this.profiles.set(profile.name, profile);
    this.changes?.push({ kind: 'profile', name: profile.name, record: profile });
    return { outcome: { kind: 'profile', profile }, changed: true };
  }

  private deleteProfile(body: Extract<CommandBody, { kind: 'deleteProfile' }>): Executed {
    if (body.name === defaultProfile.name) {
      throw new CairnError('CAIRN_INVALID_ARGUMENT', `profile 'default' is built in and cannot be deleted`);
    }
    const profile = this.profiles.get(body.name);
    if (profile === undefined) {
      throw new CairnError('CAIRN_PROFILE_NOT_FOUND', `profile '${body.name}' does not exist; 'cairn profile list' shows the profiles`);
    }
    const users = [...this.volumes.values()].filter((volume) => volume.profile === body.name).map((volume) => volume.name).sort(compareStrings);
    if (users.length > 0) {
      const shown = users.length > 5 ? `${users.slice(0, 5).join(', ')}, …` : users.join(', ');
      throw new CairnError(
        'CAIRN_PROFILE_IN_USE',
        `profile '${body.name}' is used by ${users.length} volume${users.length === 1 ? '' : 's'} (${shown}); ` +
          `delete ${users.length === 1 ? 'it' : 'them'} first (cairn volume delete ${users[0] ?? ''})`,
      );
    }
    this.profiles.delete(body.name);
    this.changes?.push({ kind: 'profile', name: body.name, record: undefined });
    return { outcome: { kind: 'profile', profile }, changed: true };
  }

  private createVolume(index: number, timestampMs: number, body: Extract<CommandBody, { kind: 'createVolume' }>): Executed {
    checkName('volume name', body.name);
    checkVolumeSize(body.sizeBytes);
    checkPlacementSeed(body.placementSeed);
    const profileName = body.profile === '' ? defaultProfile.name : body.profile;
    const profile = this.getProfile(profileName);
    if (profile === undefined) {
      throw new CairnError('CAIRN_PROFILE_NOT_FOUND', `profile '${profileName}' does not exist; 'cairn profile list' shows the profiles`);
    }
    const existing = this.getVolume(body.name);
    if (existing !== undefined) return { outcome: { kind: 'volume', volume: this.sameVolume(existing, body, profileName) }, changed: false };
    const extentCount = extentCountOf(body.sizeBytes, profile.extentBytes);
    this.checkExtentCount(body.name, body.sizeBytes, profile.extentBytes, extentCount, extentCount);
    if (this.volumes.size >= volumesMax) {
      throw new CairnError('CAIRN_NO_SPACE', `the cluster already has ${volumesMax} volumes, the most it supports`);
    }
    const placements = placeExtents(this.placementDrives(profile.placement), {
      volumeName: body.name,
      firstExtentIndex: 0,
      extentCount,
      extentBytes: profile.extentBytes,
      replicas: profile.replicas,
      policy: profile.placement,
      seed: body.placementSeed,
    });
    const volume: VolumeRecord = Object.freeze({
      id: volumeIdFor(index),
      name: body.name,
      sizeBytes: body.sizeBytes,
      extentBytes: profile.extentBytes,
      replicas: profile.replicas,
      profile: profileName,
      state: 'ready',
      createdAtMs: timestampMs,
      ownerNodeId: '',
      epoch: 0,
      readOnly: body.readOnly,
      placement: profile.placement,
    });
    assert(!this.volumes.has(volume.id), `volume id ${volume.id} reused`);
    this.volumes.set(volume.id, volume);
    this.volumeIdByName.set(volume.name, volume.id);
    this.extents.set(volume.id, []);
    this.changes?.push({ kind: 'volume', id: volume.id, record: volume });
    this.appendExtents(volume, placements);
    return { outcome: { kind: 'volume', volume }, changed: true };
  }

  /** The existing volume when a create repeats it exactly; CAIRN_VOLUME_EXISTS otherwise. */
  private sameVolume(existing: VolumeRecord, body: Extract<CommandBody, { kind: 'createVolume' }>, profileName: string): VolumeRecord {
    if (existing.sizeBytes !== body.sizeBytes) {
      throw new CairnError('CAIRN_VOLUME_EXISTS', `volume '${body.name}' already exists (${formatBytes(existing.sizeBytes)}); choose another name`);
    }
    if (existing.profile !== profileName) {
      throw new CairnError('CAIRN_VOLUME_EXISTS', `volume '${body.name}' already exists with profile '${existing.profile}', not '${profileName}'; choose another name`);
    }
    if (existing.readOnly !== body.readOnly) {
      throw new CairnError(
        'CAIRN_VOLUME_EXISTS',
        `volume '${body.name}' already exists and is ${existing.readOnly ? 'read-only' : 'read-write'}; choose another name`,
      );
    }
    return existing;
  }

  private checkExtentCount(name: string, sizeBytes: number, extentBytes: number, extentCount: number, addedExtents: number): void {
    if (extentCount > volumeExtentsMax) {
      throw new CairnError(
        'CAIRN_OUT_OF_RANGE',
        `a ${formatBytes(sizeBytes)} volume with ${formatBytes(extentBytes)} extents needs ${extentCount} extents, more than the ` +
          `${volumeExtentsMax} one volume may have; use a profile with larger extents`,
      );
    }
    if (this.extentTotal + addedExtents > mapExtentsMax) {
      throw new CairnError(
        'CAIRN_NO_SPACE',
        `volume '${name}' needs ${addedExtents} more extents; the cluster map holds ${this.extentTotal} of at most ${mapExtentsMax}; ` +
          `delete volumes or use profiles with larger extents`,
      );
    }
  }

  private resizeVolume(body: Extract<CommandBody, { kind: 'resizeVolume' }>): Executed {
    const volume = this.requireVolume(body.volume);
    checkVolumeSize(body.sizeBytes);
    checkPlacementSeed(body.placementSeed);
    if (body.sizeBytes < volume.sizeBytes) {
      throw new CairnError(
        'CAIRN_SHRINK_REFUSED',
        `volumes only grow: '${volume.name}' is ${formatBytes(volume.sizeBytes)}, asked for ${formatBytes(body.sizeBytes)}`,
      );
    }
    if (body.sizeBytes === volume.sizeBytes) return { outcome: { kind: 'volume', volume }, changed: false };
    if (volume.readOnly) throw new CairnError('CAIRN_READ_ONLY', `volume '${volume.name}' is read-only; it cannot grow`);
    const oldCount = extentCountOf(volume.sizeBytes, volume.extentBytes);
    const newCount = extentCountOf(body.sizeBytes, volume.extentBytes);
    this.checkExtentCount(volume.name, body.sizeBytes, volume.extentBytes, newCount, newCount - oldCount);
    const placements = placeExtents(this.placementDrives(volume.placement), {
      volumeName: volume.name,
      firstExtentIndex: oldCount,
      extentCount: newCount - oldCount,
      extentBytes: volume.extentBytes,
      replicas: volume.replicas,
      policy: volume.placement,
      seed: body.placementSeed,
    });
    const resized: VolumeRecord = Object.freeze({ ...volume, sizeBytes: body.sizeBytes });
    this.volumes.set(resized.id, resized);
    this.changes?.push({ kind: 'volume', id: resized.id, record: resized });
    this.appendExtents(resized, placements);
    return { outcome: { kind: 'volume', volume: resized }, changed: true };
  }

  private deleteVolume(body: Extract<CommandBody, { kind: 'deleteVolume' }>): Executed {
    const volume = this.requireVolume(body.volume);
    const sets = this.extents.get(volume.id);
    assert(sets !== undefined, `volume ${volume.id} has no extent list`);
    for (let extentIndex = 0; extentIndex < sets.length; extentIndex++) {
      for (const replica of (sets[extentIndex] as ReplicaSet).replicas) this.provision(replica.driveId, -volume.extentBytes);
      this.changes?.push({ kind: 'extent', volumeId: volume.id, index: extentIndex, record: undefined });
    }
    this.extentTotal -= sets.length;
    assert(this.extentTotal >= 0);
    this.extents.delete(volume.id);
    this.volumes.delete(volume.id);
    this.volumeIdByName.delete(volume.name);
    this.changes?.push({ kind: 'volume', id: volume.id, record: undefined });
    return { outcome: { kind: 'volume', volume }, changed: true };
  }

  private requireVolume(nameOrId: string): VolumeRecord {
    const volume = this.getVolume(nameOrId);
    if (volume === undefined) {
      throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `volume '${nameOrId}' does not exist; 'cairn volume list' shows the volumes`);
    }
    return volume;
  }

  /** Appends placed extents after the volume's current ones and provisions their space. */
  private appendExtents(volume: VolumeRecord, placements: readonly ReplicaLocation[][]): void {
    const sets = this.extents.get(volume.id);
    assert(sets !== undefined, `volume ${volume.id} has no extent list`);
    const interned = new Map<string, ReplicaSet>();
    for (const replicas of placements) {
      assert(replicas.length === volume.replicas);
      const set = makeReplicaSet(replicas, interned);
      const extentIndex = sets.length;
      sets.push(set);
      for (const replica of set.replicas) this.provision(replica.driveId, volume.extentBytes);
      this.changes?.push({ kind: 'extent', volumeId: volume.id, index: extentIndex, record: this.extentView(volume.id, extentIndex, set) });
    }
    this.extentTotal += placements.length;
    assert(sets.length === extentCountOf(volume.sizeBytes, volume.extentBytes));
    assert(this.extentTotal <= mapExtentsMax);
  }

  private provision(driveId: string, deltaBytes: number): void {
    const provisionedBytes = (this.provisionedBytes.get(driveId) ?? 0) + deltaBytes;
    assert(this.drives.has(driveId), `extent on unknown drive ${driveId}`);
    assert(provisionedBytes >= 0, `drive ${driveId} provisioned bytes went negative`);
    this.provisionedBytes.set(driveId, provisionedBytes);
  }

  /** Drives placement may use under a policy, sorted by id: the drive and its node are up. */
  private placementDrives(policy: PlacementPolicy): PlacementDrive[] {
    const candidates: PlacementDrive[] = [];
    for (const drive of this.drives.values()) {
      const node = this.nodes.get(drive.nodeId);
      assert(node !== undefined, `drive ${drive.id} on unknown node ${drive.nodeId}`);
      if (drive.state !== 'up' || node.state !== 'up') continue;
      candidates.push({
        nodeId: node.id,
        driveId: drive.id,
        failureDomain: policy === 'spread-domains' ? node.failureDomain : '',
        freeBytes: drive.capacityBytes - (this.provisionedBytes.get(drive.id) ?? 0),
      });
    }
    return candidates.sort((a, b) => compareStrings(a.driveId, b.driveId));
  }

  private extentView(volumeId: string, index: number, set: ReplicaSet): ExtentRecord {
    return Object.freeze({ volumeId, index, replicas: set.replicas, inSyncDriveIds: set.inSyncDriveIds });
  }

  // ---- queries ----

  getNode(id: string): NodeRecord | undefined {
    return this.nodes.get(id);
  }

  listNodes(): NodeRecord[] {
    return [...this.nodes.values()].sort((a, b) => compareStrings(a.id, b.id));
  }

  getDrive(id: string): DriveRecord | undefined {
    return this.drives.get(id);
  }

  listDrives(nodeId?: string): DriveRecord[] {
    return [...this.drives.values()].filter((drive) => nodeId === undefined || drive.nodeId === nodeId).sort((a, b) => compareStrings(a.id, b.id));
  }

  driveUsage(driveId: string): DriveUsage | undefined {
    const drive = this.drives.get(driveId);
    if (drive === undefined) return undefined;
    return { capacityBytes: drive.capacityBytes, provisionedBytes: this.provisionedBytes.get(driveId) ?? 0 };
  }

  poolUsage(): DriveUsage {
    let capacityBytes = 0;
    let provisionedBytes = 0;
    for (const drive of this.drives.values()) {
      capacityBytes += drive.capacityBytes;
      provisionedBytes += this.provisionedBytes.get(drive.id) ?? 0;
    }
    return { capacityBytes, provisionedBytes };
  }

  getProfile(name: string): ProfileRecord | undefined {
    return name === defaultProfile.name ? defaultProfile : this.profiles.get(name);
  }

  listProfiles(): ProfileRecord[] {
    return [defaultProfile, ...this.profiles.values()].sort((a, b) => compareStrings(a.name, b.name));
  }

  getVolume(nameOrId: string): VolumeRecord | undefined {
    if (isVolumeId(nameOrId)) return this.volumes.get(nameOrId);
    const id = this.volumeIdByName.get(nameOrId);
    return id === undefined ? undefined : this.volumes.get(id);
  }

  listVolumes(): VolumeRecord[] {
    return [...this.volumes.values()].sort((a, b) => compareStrings(a.name, b.name));
  }

  extentPlacement(volumeNameOrId: string, index: number): ExtentRecord | undefined {
    const volume = this.getVolume(volumeNameOrId);
    if (volume === undefined) return undefined;
    const set = this.extents.get(volume.id)?.[index];
    return set === undefined ? undefined : this.extentView(volume.id, index, set);
  }

  listExtents(volumeNameOrId: string): ExtentRecord[] {
    const volume = this.getVolume(volumeNameOrId);
    if (volume === undefined) return [];
    return (this.extents.get(volume.id) ?? []).map((set, index) => this.extentView(volume.id, index, set));
  }

  rememberedRequest(requestId: string): RememberedRequest | undefined {
    return this.requests.get(requestId);
  }

  extentPlacements(volumeNameOrId: string, firstIndex: number, count: number): ExtentPlacements | undefined {
    assert(Number.isSafeInteger(firstIndex) && firstIndex >= 0, 'firstIndex must be an index');
    assert(Number.isSafeInteger(count) && count >= 1, 'count must be at least 1');
    const volume = this.getVolume(volumeNameOrId);
    const all = volume === undefined ? undefined : this.extents.get(volume.id);
    if (volume === undefined || all === undefined || firstIndex >= all.length) return undefined;
    const end = Math.min(all.length, firstIndex + count);
    // Sets numbered in order of first use; equal sets that are distinct objects share a number.
    const numberOf = new Map<ReplicaSet, number>();
    const numberOfContent = new Map<string, number>();
    const sets: ReplicaSet[] = [];
    const extentSets = new Uint32Array(end - firstIndex);
    for (let index = firstIndex; index < end; index++) {
      const set = all[index] as ReplicaSet;
      let number = numberOf.get(set);
      if (number === undefined) {
        const content = `${set.replicas.map((replica) => `${replica.nodeId}/${replica.driveId}`).join(' ')}|${set.inSyncDriveIds.join(' ')}`;
        number = numberOfContent.get(content);
        if (number === undefined) {
          number = sets.length;
          sets.push(set);
          numberOfContent.set(content, number);
        }
        numberOf.set(set, number);
      }
      extentSets[index - firstIndex] = number;
    }
    return Object.freeze({ volumeId: volume.id, firstIndex, sets: Object.freeze(sets), extentSets });
  }

  state(): MapState {
    const volumes = [...this.volumes.values()].sort((a, b) => compareStrings(a.id, b.id));
    const placements: ExtentPlacements[] = [];
    for (const volume of volumes) {
      const run = this.extentPlacements(volume.id, 0, volumeExtentsMax);
      assert(run !== undefined, `volume ${volume.id} has no extents`);
      placements.push(run);
    }
    return {
      appliedIndex: this.applied,
      nodes: this.listNodes(),
      drives: this.listDrives(),
      profiles: [...this.profiles.values()].sort((a, b) => compareStrings(a.name, b.name)),
      volumes,
      placements,
      requests: [...this.requests.values()],
    };
  }

  snapshot(): Uint8Array {
    return encodeSnapshot(this.state());
  }

  // ---- rebuilding from state ----

  /** Builds a map from state, checking it record by record; throws CairnError on the first problem. */
  private static build(state: MapState): ClusterMap {
    const map = new ClusterMap();
    const fail = (message: string): never => {
      throw new CairnError('CAIRN_CORRUPT', message);
    };
    if (!Number.isSafeInteger(state.appliedIndex) || state.appliedIndex < 0) fail(`applied index ${state.appliedIndex} is not valid`);
    map.applied = state.appliedIndex;
    map.loadNodes(state.nodes, fail);
    map.loadDrives(state.drives, fail);
    map.loadProfiles(state.profiles, fail);
    map.loadVolumes(state.volumes, fail);
    map.loadPlacements(state.placements, fail);
    map.loadRequests(state.requests, fail);
    return map;
  }

  private loadNodes(nodes: readonly NodeRecord[], fail: (message: string) => never): void {
    if (nodes.length > nodesMax) fail(`${nodes.length} nodes, more than ${nodesMax}`);
    let previous = '';
    for (const node of nodes) {
      checkName('node id', node.id);
      if (node.id <= previous) fail(`node '${node.id}' is out of order or repeated`);
      previous = node.id;
      checkName('node name', node.name);
      checkAddresses(node.addresses);
      const sorted = checkLabels(node.labels);
      if (!sameLabels(sorted, node.labels)) fail(`labels of node '${node.id}' are not sorted by key`);
      checkFailureDomain(node.failureDomain);
      checkTimestamp(node.joinedAtMs);
      if (this.nodeIdByName.has(node.name)) fail(`node name '${node.name}' is used twice`);
      this.nodes.set(node.id, node);
      this.nodeIdByName.set(node.name, node.id);
    }
  }

  private loadDrives(drives: readonly DriveRecord[], fail: (message: string) => never): void {
    const paths = new Set<string>();
    const perNode = new Map<string, number>();
    let previous = '';
    for (const drive of drives) {
      checkName('drive id', drive.id);
      if (drive.id <= previous) fail(`drive '${drive.id}' is out of order or repeated`);
      previous = drive.id;
      if (!this.nodes.has(drive.nodeId)) fail(`drive '${drive.id}' is on unknown node '${drive.nodeId}'`);
      checkDrivePath(drive.path);
      checkCapacity(drive.capacityBytes);
      checkTimestamp(drive.addedAtMs);
      const pathKey = `${drive.nodeId}\u0000${drive.path}`;
      if (paths.has(pathKey)) fail(`node '${drive.nodeId}' lists path ${drive.path} twice`);
      paths.add(pathKey);
      const count = (perNode.get(drive.nodeId) ?? 0) + 1;
      if (count > drivesPerNodeMax) fail(`node '${drive.nodeId}' has more than ${drivesPerNodeMax} drives`);
      perNode.set(drive.nodeId, count);
      this.drives.set(drive.id, drive);
      this.provisionedBytes.set(drive.id, 0);
    }
  }

  private loadProfiles(profiles: readonly ProfileRecord[], fail: (message: string) => never): void {
    if (profiles.length > profilesMax) fail(`${profiles.length} profiles, more than ${profilesMax}`);
    let previous = '';
    for (const profile of profiles) {
      checkName('profile name', profile.name);
      if (profile.name <= previous) fail(`profile '${profile.name}' is out of order or repeated`);
      previous = profile.name;
      if (profile.name === defaultProfile.name) fail(`profile 'default' is stored, but it is built in`);
      checkReplicas(profile.replicas);
      checkExtentBytes(profile.extentBytes);
      checkLimit('iopsMax', profile.iopsMax);
      checkLimit('bandwidthBytesPerSecondMax', profile.bandwidthBytesPerSecondMax);
      checkDescription(profile.description);
      checkTimestamp(profile.createdAtMs);
      this.profiles.set(profile.name, profile);
    }
  }

  private loadVolumes(volumes: readonly VolumeRecord[], fail: (message: string) => never): void {
    if (volumes.length > volumesMax) fail(`${volumes.length} volumes, more than ${volumesMax}`);
    let previous = '';
    for (const volume of volumes) {
      if (!isVolumeId(volume.id)) fail(`volume id '${volume.id}' is not valid`);
      if (volume.id <= previous) fail(`volume '${volume.id}' is out of order or repeated`);
      previous = volume.id;
      if (volumeIdIndex(volume.id) > this.applied) fail(`volume '${volume.id}' was created after the applied index ${this.applied}`);
      checkName('volume name', volume.name);
      if (this.volumeIdByName.has(volume.name)) fail(`volume name '${volume.name}' is used twice`);
      checkVolumeSize(volume.sizeBytes);
      checkExtentBytes(volume.extentBytes);
      checkReplicas(volume.replicas);
      checkTimestamp(volume.createdAtMs);
      checkTimestamp(volume.epoch);
      if (this.getProfile(volume.profile) === undefined) fail(`volume '${volume.name}' uses unknown profile '${volume.profile}'`);
      if (volume.ownerNodeId !== '' && !this.nodes.has(volume.ownerNodeId)) fail(`volume '${volume.name}' is owned by unknown node '${volume.ownerNodeId}'`);
      if (extentCountOf(volume.sizeBytes, volume.extentBytes) > volumeExtentsMax) fail(`volume '${volume.name}' has too many extents`);
      this.volumes.set(volume.id, volume);
      this.volumeIdByName.set(volume.name, volume.id);
      this.extents.set(volume.id, []);
    }
  }

  private loadPlacements(placements: readonly ExtentPlacements[], fail: (message: string) => never): void {
    let previousVolumeId = '';
    for (const run of placements) {
      const volume = this.volumes.get(run.volumeId);
      if (volume === undefined) fail(`extents from ${run.firstIndex} belong to unknown volume '${run.volumeId}'`);
      if (run.volumeId < previousVolumeId) fail(`extents of volume '${run.volumeId}' are out of order`);
      previousVolumeId = run.volumeId;
      const extents = this.extents.get(volume.id) as ReplicaSet[];
      const expectedCount = extentCountOf(volume.sizeBytes, volume.extentBytes);
      if (run.firstIndex !== extents.length) fail(`extents of volume '${volume.name}' from ${run.firstIndex} are out of order or repeated (expected ${extents.length})`);
      if (run.extentSets.length === 0) fail(`an empty run of extents of volume '${volume.name}'`);
      if (extents.length + run.extentSets.length > expectedCount) fail(`volume '${volume.name}' has more extents than its size needs (${expectedCount})`);
      if (this.extentTotal + run.extentSets.length > mapExtentsMax) fail(`more than ${mapExtentsMax} extents`);
      const sets = run.sets.map((set, number) => this.loadReplicaSet(set, volume, `replica set ${number} of volume '${volume.name}' (extents from ${run.firstIndex})`, fail));
      const uses = new Array<number>(sets.length).fill(0);
      for (let offset = 0; offset < run.extentSets.length; offset++) {
        const number = run.extentSets[offset] as number;
        const set = sets[number];
        if (set === undefined) fail(`extent ${run.firstIndex + offset} of volume '${volume.name}' names unknown replica set ${number}`);
        extents.push(set);
        uses[number] = (uses[number] as number) + 1;
      }
      sets.forEach((set, number) => {
        for (const replica of set.replicas) this.provision(replica.driveId, (uses[number] as number) * volume.extentBytes);
      });
      this.extentTotal += run.extentSets.length;
    }
    for (const volume of this.volumes.values()) {
      const count = (this.extents.get(volume.id) as ReplicaSet[]).length;
      const expected = extentCountOf(volume.sizeBytes, volume.extentBytes);
      if (count !== expected) fail(`volume '${volume.name}' has ${count} extents, its size needs ${expected}`);
    }
  }

  /** Checks one stored replica set against the volume and the drives; returns it frozen. */
  private loadReplicaSet(set: ReplicaSet, volume: VolumeRecord, where: string, fail: (message: string) => never): ReplicaSet {
    if (set.replicas.length !== volume.replicas) fail(`${where} has ${set.replicas.length} replicas, the volume ${volume.replicas}`);
    const nodes = new Set<string>();
    const driveIds = new Set<string>();
    for (const replica of set.replicas) {
      const drive = this.drives.get(replica.driveId);
      if (drive === undefined) fail(`${where} is on unknown drive '${replica.driveId}'`);
      if (drive.nodeId !== replica.nodeId) fail(`${where} names node '${replica.nodeId}' for drive '${drive.id}' of node '${drive.nodeId}'`);
      if (nodes.has(replica.nodeId)) fail(`${where} has two replicas on node '${replica.nodeId}'`);
      nodes.add(replica.nodeId);
      driveIds.add(replica.driveId);
    }
    let previous = '';
    for (const driveId of set.inSyncDriveIds) {
      if (!driveIds.has(driveId)) fail(`${where} lists drive '${driveId}' in sync, but no replica is on it`);
      if (driveId <= previous) fail(`${where} lists its in-sync drives out of order or twice`);
      previous = driveId;
    }
    return Object.isFrozen(set) ? set : Object.freeze({ replicas: Object.freeze([...set.replicas]), inSyncDriveIds: Object.freeze([...set.inSyncDriveIds]) });
  }

  private loadRequests(requests: readonly RememberedRequest[], fail: (message: string) => never): void {
    if (requests.length > requestIdsRememberedMax) fail(`${requests.length} remembered requests, more than ${requestIdsRememberedMax}`);
    let previousIndex = 0;
    for (const request of requests) {
      checkRequestId(request.requestId);
      if (this.requests.has(request.requestId)) fail(`request id '${request.requestId}' is remembered twice`);
      if (request.result.index <= previousIndex) fail(`remembered request '${request.requestId}' is out of order`);
      if (request.result.index > this.applied) fail(`remembered request '${request.requestId}' is newer than the applied index`);
      if (request.result.deduplicated) fail(`remembered request '${request.requestId}' stores a deduplicated answer`);
      previousIndex = request.result.index;
      this.requests.set(request.requestId, request);
    }
  }
}

/** What a create asks for that the existing profile of that name does not have, as 'replicas 2, asked 3'. */
function profileDifferences(existing: ProfileRecord, asked: Extract<CommandBody, { kind: 'createProfile' }>): string[] {
  const differences: string[] = [];
  const compare = (what: string, has: string | number, wants: string | number, show: (value: string | number) => string = String): void => {
    if (has !== wants) differences.push(`${what} ${show(has)}, asked ${show(wants)}`);
  };
  const bytes = (value: string | number): string => formatBytes(Number(value));
  const quoted = (value: string | number): string => JSON.stringify(value);
  compare('replicas', existing.replicas, asked.replicas);
  compare('extent size', existing.extentBytes, asked.extentBytes, bytes);
  const limit = (show: (value: string | number) => string) => (value: string | number): string => (value === 0 ? 'unlimited' : show(value));
  compare('IOPS limit', existing.iopsMax, asked.iopsMax, limit(String));
  compare('bandwidth limit', existing.bandwidthBytesPerSecondMax, asked.bandwidthBytesPerSecondMax, limit((value) => `${bytes(value)}/s`));
  compare('placement', existing.placement, asked.placement);
  compare('filesystem', existing.filesystem, asked.filesystem, quoted);
  compare('description', existing.description, asked.description, quoted);
  return differences;
}
