/**
 * Every bound in Cairn, in one place, units in the names. Relations between them are asserted at
 * load time so a bad edit fails at start-up, not under load.
 */
import { assert } from './util/assert';
import { GiB, KiB, MiB, TiB } from './util/units';

/** Smallest I/O unit we advertise to NBD clients; volume sizes are multiples of it. */
export const blockBytes = 4096;
/** Minimum block size advertised over NBD (clients may do 512-byte aligned I/O; we handle RMW-free). */
export const nbdMinimumBlockBytes = 512;
/** Largest NBD read/write payload accepted; larger requests are refused (EINVAL / ENOMEM-free). */
export const requestBytesMax = 32 * MiB;
/** Largest option payload in the NBD handshake. */
export const nbdOptionBytesMax = 64 * KiB;
/** Longest string (export name, context name) in the handshake, per the spec's MUST. */
export const nbdStringBytesMax = 4096;
/** Most meta-context queries in one LIST/SET_META_CONTEXT. */
export const nbdMetaQueriesMax = 128;
/** Most options negotiated on one connection before we hang up (abuse guard). */
export const nbdOptionsPerConnectionMax = 1024;
/** Requests in flight per NBD connection; beyond this the server stops reading the socket. */
export const nbdInflightRequestsMax = 128;
/** Bytes of request payload in flight per NBD connection; beyond this reading pauses. */
export const nbdInflightBytesMax = 64 * MiB;
/** Largest BLOCK_STATUS descriptor count in one reply chunk. */
export const nbdBlockStatusDescriptorsMax = 1024;
/** Handshake must finish within this time or the connection is dropped. */
export const nbdHandshakeTimeoutMs = 30_000;
/** Concurrent NBD connections per daemon. */
export const nbdConnectionsMax = 1024;

/** Default extent size: the unit of placement and of the extent store's files. */
export const extentBytesDefault = 64 * MiB;
export const extentBytesMin = 1 * MiB;
export const extentBytesMax = 1 * GiB;
/** Largest volume. 2^53 bounds JS integers; 1 PiB is well inside and plenty. */
export const volumeBytesMax = 1024 * TiB;
/** Open extent file descriptors kept cached by one extent store. */
export const extentOpenFilesMax = 256;
/** Longest volume / profile / node name. */
export const nameBytesMax = 63;

/** Largest control-API request body. */
export const apiBodyBytesMax = 1 * MiB;

assert(requestBytesMax % blockBytes === 0);
assert(blockBytes % nbdMinimumBlockBytes === 0);
assert(nbdInflightBytesMax >= requestBytesMax);
assert(extentBytesDefault >= extentBytesMin);
assert(extentBytesDefault <= extentBytesMax);
assert(extentBytesMin % blockBytes === 0);

// ---- wire frames, cluster map and metadata log (src/wire, src/meta, src/store, src/control) ----

/** Largest payload of one length-prefixed wire frame: an NBD-sized request plus room for its header. */
export const framePayloadBytesMax = requestBytesMax + 64 * KiB;
/** Most replicas of one extent. */
export const replicasMax = 5;
/** Most extents in one volume: 16 TiB at the default extent size, 256 TiB at 1 GiB extents. */
export const volumeExtentsMax = 256 * KiB;
/** Most extents in the whole map: every node holds all of them in memory and in its LevelDB. */
export const mapExtentsMax = 2 * MiB;
/** Most nodes, drives per node, profiles and volumes in the map (every map keyed by input is bounded). */
export const nodesMax = 1024;
export const drivesPerNodeMax = 64;
export const profilesMax = 256;
export const volumesMax = 64 * KiB;
/** Request ids the map remembers so a retried command is applied once (oldest forgotten first). */
export const requestIdsRememberedMax = 8192;
/** Longest client request id. */
export const requestIdBytesMax = 64;
/** Most labels and addresses of one node, and their longest forms. */
export const labelsPerNodeMax = 32;
export const addressesPerNodeMax = 8;
export const addressBytesMax = 255;
/** Longest drive path and profile description. */
export const drivePathBytesMax = 4096;
export const descriptionBytesMax = 256;
/** Proposals waiting for the metadata log; more are refused with CAIRN_UNAVAILABLE (retryable). */
export const metaProposalsQueuedMax = 1024;
/** Proposals applied and persisted in one LevelDB batch (one fsync). */
export const metaApplyBatchMax = 128;

assert(framePayloadBytesMax > requestBytesMax);
assert(framePayloadBytesMax < 2 ** 32);
assert(volumeExtentsMax <= mapExtentsMax);
assert(volumeExtentsMax < 2 ** 32);
assert(metaApplyBatchMax <= metaProposalsQueuedMax);
