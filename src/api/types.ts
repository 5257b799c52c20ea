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
}

export interface ProfileView {
  readonly name: string;
  readonly replicas: number;
  readonly extentBytes: number;
  readonly description: string;
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
  readonly nbd: { readonly tcp: readonly string[]; readonly socket: string | null; readonly connections: number };
  readonly metadata: { readonly appliedIndex: number; readonly mode: string };
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
  | { readonly type: 'daemon.stopping' };

export interface ControlService {
  status(): Promise<StatusView>;
  listVolumes(): Promise<VolumeView[]>;
  getVolume(name: string): Promise<VolumeView>;
  createVolume(request: CreateVolumeRequest): Promise<{ volume: VolumeView; created: boolean }>;
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeView>;
  deleteVolume(name: string): Promise<void>;
  listProfiles(): Promise<ProfileView[]>;
  listNodes(): Promise<NodeView[]>;
  /** Subscribes to events; returns the unsubscribe function. */
  subscribe(listener: (event: ApiEvent) => void): () => void;
}

/** Error body of every non-2xx response. */
export interface ApiErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}
