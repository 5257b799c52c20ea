/**
 * The control API's resources as the API serves them (JSON over HTTP). The server, the typed
 * client, the CLI and the CSI driver all share these types; the daemon implements ControlService.
 * Sizes are bytes (numbers: safe integers up to 2^53 cover every volume Cairn allows).
 */
export interface VolumeView {
  readonly id: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly extentBytes: number;
  readonly replicas: number;
  readonly profile: string;
  readonly state: string;
  readonly readOnly: boolean;
  readonly createdAt: string;
  /** Bytes allocated on drives across replicas (thin volumes start at 0). */
  readonly allocatedBytes: number;
  /** NBD URIs a client can use to reach the volume on this node. */
  readonly nbdUris: readonly string[];
  /** NBD connections currently open to the volume on this node. */
  readonly connections: number;
  /** Where the volume is attached to this node's kernel as a block device (at most one). */
  readonly attachments?: readonly AttachmentView[];
}

/** A volume attached to the local kernel as /dev/nbdX (`cairn volume attach`). */
export interface AttachmentView {
  /** The device node, e.g. /dev/nbd0; '' while the kernel has not answered yet. */
  readonly device: string;
  readonly method: 'netlink' | 'ioctl';
  /** attaching, attached, reconnecting (fresh sockets on their way), detaching, or failed. */
  readonly state: string;
  readonly connections: number;
  readonly readOnly: boolean;
  readonly ioTimeoutSeconds: number;
  readonly deadConnTimeoutSeconds: number;
  /** The size the kernel was told (smaller than the volume's if a resize could not reach it). */
  readonly sizeBytes: number;
  readonly attachedAt: string;
  /** The last problem worth knowing (a failed reattach or resize), if any. */
  readonly message?: string;
}

/** Body of POST /v1/volumes/:name/attach; every field optional. */
export interface AttachRequest {
  /** Sockets handed to the kernel (default: one per CPU when the volume allows multi-conn). */
  readonly connections?: number;
  readonly readOnly?: boolean;
  /** 'auto' (default): netlink, else ioctls. */
  readonly method?: 'auto' | 'netlink' | 'ioctl';
  readonly ioTimeoutSeconds?: number;
  readonly deadConnTimeoutSeconds?: number;
}

/** Answer of POST /v1/volumes/:name/detach. */
export interface DetachResult {
  /** False when the volume was not attached on this node. */
  readonly detached: boolean;
  /** The device it was attached as ('' when it was not). */
  readonly device: string;
}

/** Body of POST /v1/volumes/:name/detach. */
export interface DetachRequest {
  /** Detach even if the device is mounted or held open exclusively (its users get I/O errors). */
  readonly force?: boolean;
}

/**
 * A profile: the properties a volume is created with (`cairn volume create --profile NAME`).
 * 'default' is built in (one replica, 64 MiB extents) and can be neither created nor deleted.
 */
export interface ProfileView {
  readonly name: string;
  readonly replicas: number;
  readonly extentBytes: number;
  readonly description: string;
  /** Volumes created with this profile (a profile in use cannot be deleted). */
  readonly volumes: number;
}

/**
 * Body of POST /v1/profiles. Omitted fields take the built-in defaults: 1 replica, 64 MiB extents
 * (limits.extentBytesDefault), no description. IOPS and bandwidth limits are not settable: the data
 * path does not enforce them yet, so every profile created through the API is unlimited.
 */
export interface CreateProfileRequest {
  readonly name: string;
  readonly replicas?: number;
  /** A power of two from limits.extentBytesMin to limits.extentBytesMax. */
  readonly extentBytes?: number;
  readonly description?: string;
}

export interface NodeView {
  readonly id: string;
  readonly name: string;
  readonly state: string;
  readonly drives: ReadonlyArray<{ readonly id: string; readonly path: string; readonly capacityBytes: number; readonly usedBytes: number }>;
}

export interface StatusView {
  readonly version: string;
  readonly nodeName: string;
  readonly uptimeSeconds: number;
  readonly volumes: number;
  readonly provisionedBytes: number;
  readonly allocatedBytes: number;
  readonly capacityBytes: number;
  readonly freeBytes: number;
  readonly nbd: { readonly tcp: readonly string[]; readonly socket: string | null; readonly connections: number; readonly busyPoll: BusyPollView | null };
  readonly metadata: { readonly appliedIndex: number; readonly mode: string };
}

/**
 * The event loop's adaptive busy poll (config nbd.busyPollMicros): how often an idle loop spun
 * for its next event, how often that event came within the spin, how often the spin stopped
 * because another thread needed the CPU (contended), and the time spent spinning (an upper bound
 * on its CPU cost).
 */
export interface BusyPollView {
  readonly maxMicros: number;
  readonly windowMicros: number;
  readonly spins: number;
  readonly hits: number;
  readonly timeouts: number;
  readonly contended: number;
  readonly spinSeconds: number;
}

export interface CreateVolumeRequest {
  readonly name: string;
  readonly sizeBytes: number;
  readonly profile?: string;
  readonly readOnly?: boolean;
}

export type ApiEvent =
  | { readonly type: 'volume.created'; readonly volume: VolumeView }
  | { readonly type: 'volume.resized'; readonly volume: VolumeView }
  | { readonly type: 'volume.deleted'; readonly name: string }
  | { readonly type: 'volume.attached'; readonly name: string; readonly attachment: AttachmentView }
  | { readonly type: 'volume.detached'; readonly name: string; readonly device: string }
  | { readonly type: 'profile.created'; readonly profile: ProfileView }
  | { readonly type: 'profile.deleted'; readonly name: string }
  | { readonly type: 'daemon.stopping' };

export interface ControlService {
  status(): Promise<StatusView>;
  listVolumes(): Promise<VolumeView[]>;
  getVolume(name: string): Promise<VolumeView>;
  createVolume(request: CreateVolumeRequest): Promise<{ volume: VolumeView; created: boolean }>;
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeView>;
  deleteVolume(name: string): Promise<void>;
  /** Attaches the volume to this node's kernel; `created` is false when it already was. */
  attachVolume?(name: string, request: AttachRequest): Promise<{ attachment: AttachmentView; created: boolean }>;
  /** Flushes and detaches the volume's kernel device (a volume not attached is not an error). */
  detachVolume?(name: string, request: DetachRequest): Promise<DetachResult>;
  listProfiles(): Promise<ProfileView[]>;
  /** Creates a profile; `created` is false when an identical one already exists (idempotent by name). */
  createProfile(request: CreateProfileRequest): Promise<{ profile: ProfileView; created: boolean }>;
  /** Deletes a profile no volume uses; 'default' cannot be deleted. */
  deleteProfile(name: string): Promise<void>;
  listNodes(): Promise<NodeView[]>;
  /** Subscribes to events; returns the unsubscribe function. */
  subscribe(listener: (event: ApiEvent) => void): () => void;
}

/** Error body of every non-2xx response. */
export interface ApiErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}
