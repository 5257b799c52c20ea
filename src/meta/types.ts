/**
 * The cluster map's vocabulary as plain TypeScript: records, commands and results. These are what
 * the state machine (cluster-map.ts), placement, the store and the metadata log exchange; the
 * protobuf messages of src/wire/cairn.proto are their serialised form (codec.ts converts).
 *
 * Records handed out by the map are frozen and shared: never mutate them. Every number is a safe
 * non-negative integer; byte counts end in `Bytes`, times in `Ms` (the proposer's wall clock).
 */
import type { ErrorCode } from '../errors/cairn-error';

export type NodeState = 'up' | 'down' | 'draining';
export type DriveState = 'up' | 'down' | 'draining';
export type VolumeState = 'creating' | 'ready' | 'deleting';
/**
 * Where the replicas of one extent may go: `spread-domains` puts them on distinct failure domains
 * (a node without one is its own domain); `spread-nodes` only on distinct nodes.
 */
export type PlacementPolicy = 'spread-domains' | 'spread-nodes';
/** What a profile formats volumes with; '' is a raw block device. */
export type Filesystem = '' | 'ext4' | 'xfs';

export const nodeStates: readonly NodeState[] = ['up', 'down', 'draining'];
export const driveStates: readonly DriveState[] = ['up', 'down', 'draining'];
export const volumeStates: readonly VolumeState[] = ['creating', 'ready', 'deleting'];
export const placementPolicies: readonly PlacementPolicy[] = ['spread-domains', 'spread-nodes'];
export const filesystems: readonly Filesystem[] = ['', 'ext4', 'xfs'];

export interface Label {
  readonly key: string;
  readonly value: string;
}

export interface NodeRecord {
  readonly id: string;
  readonly name: string;
  readonly addresses: readonly string[];
  /** Sorted by key, keys unique. */
  readonly labels: readonly Label[];
  /** '' = the node is its own failure domain. */
  readonly failureDomain: string;
  readonly state: NodeState;
  readonly joinedAtMs: number;
}

export interface DriveRecord {
  readonly id: string;
  readonly nodeId: string;
  readonly path: string;
  readonly capacityBytes: number;
  readonly state: DriveState;
  readonly addedAtMs: number;
}

export interface ProfileRecord {
  readonly name: string;
  readonly replicas: number;
  readonly extentBytes: number;
  /** 0 = unlimited. */
  readonly iopsMax: number;
  /** 0 = unlimited. */
  readonly bandwidthBytesPerSecondMax: number;
  readonly placement: PlacementPolicy;
  readonly filesystem: Filesystem;
  readonly description: string;
  readonly createdAtMs: number;
}

export interface VolumeRecord {
  /** `vol:<index of the entry that created it>`; never a valid volume name (names have no ':'). */
  readonly id: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly extentBytes: number;
  readonly replicas: number;
  readonly profile: string;
  readonly state: VolumeState;
  readonly createdAtMs: number;
  /** '' = no owner. */
  readonly ownerNodeId: string;
  readonly epoch: number;
  readonly readOnly: boolean;
  readonly placement: PlacementPolicy;
}

export interface ReplicaLocation {
  readonly nodeId: string;
  readonly driveId: string;
}

export interface ExtentRecord {
  readonly volumeId: string;
  readonly index: number;
  readonly replicas: readonly ReplicaLocation[];
  /** Sorted; every id is the drive of one of `replicas`. */
  readonly inSyncDriveIds: readonly string[];
}

/** The replicas of an extent and which of them are in sync; extents placed alike share one (frozen). */
export interface ReplicaSet {
  readonly replicas: readonly ReplicaLocation[];
  /** Sorted; every id is the drive of one of `replicas`. */
  readonly inSyncDriveIds: readonly string[];
}

/**
 * The placement of consecutive extents of one volume, compactly: extent `firstIndex + i` is placed
 * as `sets[extentSets[i]]`. Sets are listed in order of first use (a canonical order, so equal maps
 * encode to equal bytes). A large volume costs a few bytes per extent this way, not an object.
 */
export interface ExtentPlacements {
  readonly volumeId: string;
  readonly firstIndex: number;
  readonly sets: readonly ReplicaSet[];
  readonly extentSets: ArrayLike<number>;
}

// ---- commands ----

export type CommandBody =
  | { readonly kind: 'noOp' }
  | {
      readonly kind: 'registerNode';
      readonly nodeId: string;
      readonly name: string;
      readonly addresses: readonly string[];
      readonly labels: readonly Label[];
      readonly failureDomain: string;
    }
  | {
      readonly kind: 'addDrive';
      readonly driveId: string;
      readonly nodeId: string;
      readonly path: string;
      readonly capacityBytes: number;
    }
  | {
      readonly kind: 'createProfile';
      readonly name: string;
      readonly replicas: number;
      readonly extentBytes: number;
      readonly iopsMax: number;
      readonly bandwidthBytesPerSecondMax: number;
      readonly placement: PlacementPolicy;
      readonly filesystem: Filesystem;
      readonly description: string;
    }
  | { readonly kind: 'deleteProfile'; readonly name: string }
  | {
      readonly kind: 'createVolume';
      readonly name: string;
      readonly sizeBytes: number;
      /** '' = the built-in 'default' profile. */
      readonly profile: string;
      readonly readOnly: boolean;
      /** Seeds the placement computed inside apply (uint32). */
      readonly placementSeed: number;
    }
  | {
      readonly kind: 'resizeVolume';
      /** Name or id. */
      readonly volume: string;
      readonly sizeBytes: number;
      readonly placementSeed: number;
    }
  | {
      readonly kind: 'deleteVolume';
      /** Name or id. */
      readonly volume: string;
    };

export type CommandKind = CommandBody['kind'];

export const commandKinds: readonly CommandKind[] = [
  'noOp', 'registerNode', 'addDrive', 'createProfile', 'deleteProfile', 'createVolume', 'resizeVolume', 'deleteVolume',
];

export interface Command {
  /** Proposer's wall clock: the only time the state machine sees. */
  readonly timestampMs: number;
  /** Client-chosen, one per intended change; a retry reuses it and is applied once. */
  readonly requestId: string;
  readonly body: CommandBody;
}

// ---- results ----

export interface CommandError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly retryable: boolean;
}

export type CommandOutcome =
  | { readonly kind: 'none' }
  | { readonly kind: 'error'; readonly error: CommandError }
  | { readonly kind: 'node'; readonly node: NodeRecord }
  | { readonly kind: 'drive'; readonly drive: DriveRecord }
  | { readonly kind: 'profile'; readonly profile: ProfileRecord }
  | { readonly kind: 'volume'; readonly volume: VolumeRecord };

/**
 * What applying one command produced. A command that fails validation is still applied (its index
 * is consumed, every replica reaches the same verdict) and its result carries outcome 'error'.
 */
export interface CommandResult {
  /** Index of the log entry whose command produced this result. */
  readonly index: number;
  /** Whether the command changed the map (false for an idempotent repeat or an error). */
  readonly changed: boolean;
  /** Whether this answer was replayed from the request-id table instead of applying anything. */
  readonly deduplicated: boolean;
  readonly outcome: CommandOutcome;
}

/** One entry of the bounded request-id table. */
export interface RememberedRequest {
  readonly requestId: string;
  readonly kind: CommandKind;
  /** The first result; `result.index` is where the request was applied. */
  readonly result: CommandResult;
}

/** The whole map as sorted lists: what snapshots and the store hold. */
export interface MapState {
  readonly appliedIndex: number;
  /** Sorted by id. */
  readonly nodes: readonly NodeRecord[];
  /** Sorted by id. */
  readonly drives: readonly DriveRecord[];
  /** Sorted by name; the built-in 'default' profile is never listed. */
  readonly profiles: readonly ProfileRecord[];
  /** Sorted by id. */
  readonly volumes: readonly VolumeRecord[];
  /**
   * Sorted by volume id, then first index; the runs of one volume are contiguous and cover all of
   * its extents (`state()` gives one run per volume; the store gives one per stored chunk).
   */
  readonly placements: readonly ExtentPlacements[];
  /** Oldest first (by result.index). */
  readonly requests: readonly RememberedRequest[];
}
