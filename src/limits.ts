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
/** Open segment file descriptors kept cached by one extent store. */
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

// ---- Raft driver, Raft log store, peer transport and the KV node (src/control/raft-driver.ts,
// src/store/raft-log-store.ts, src/transport, src/control/kv-node.ts) ----

/** Wall-clock length of one Raft tick (tests pass a shorter one through the driver options). */
export const raftTickMs = 100;
/** Election timeout in ticks: randomized in [raftElectionTicks, 2 × raftElectionTicks). */
export const raftElectionTicks = 10;
/** Leader heartbeat interval in ticks. */
export const raftHeartbeatTicks = 1;
/** Largest MsgApp payload the leader builds (one larger entry is still sent alone). */
export const raftMessageBytesMax = 1 * MiB;
/** Largest proposed entry payload; bigger proposals are refused before they reach the log. */
export const raftEntryBytesMax = 1 * MiB;
/** Size of one InstallSnapshot chunk. */
export const raftSnapshotChunkBytes = 1 * MiB;
/** Largest frame payload on a Raft peer connection: a full MsgApp, one oversized entry, headers. */
export const raftFramePayloadBytesMax = raftMessageBytesMax + raftEntryBytesMax + 64 * KiB;
/** Messages received from peers and not yet stepped; more are dropped (Raft retransmits). */
export const raftInboxMessagesMax = 4096;
/** Bytes of messages received from peers and not yet stepped. */
export const raftInboxBytesMax = 64 * MiB;
/** Proposals appended and waiting to be applied; more are refused with CAIRN_UNAVAILABLE. */
export const raftProposalsPendingMax = 8192;
/** Linearizable reads waiting for their read index; more are refused with CAIRN_UNAVAILABLE. */
export const raftReadsPendingMax = 8192;
/** Applied entries between two state machine snapshots (the log is compacted behind each). */
export const raftSnapshotEntries = 10_000;
/** Entries kept behind a snapshot so a slightly slow follower catches up without a snapshot. */
export const raftCompactionLagEntries = 1000;
/** Bytes queued for one peer (written and not yet taken by the kernel); more are dropped. */
export const peerQueueBytesMax = 16 * MiB;
/** Frames queued for one peer. */
export const peerQueueMessagesMax = 4096;
/** Reconnect backoff: first delay, doubling up to the maximum (with jitter). */
export const peerReconnectBackoffMinMs = 50;
export const peerReconnectBackoffMaxMs = 1000;
/** A dial or a hello exchange that takes longer is abandoned. */
export const peerHandshakeTimeoutMs = 5000;
/** Inbound peer connections open at once (authenticated or not). */
export const peerInboundConnectionsMax = 64;
/** Longest cluster id. */
export const clusterIdBytesMax = 64;
/** Largest frame payload on a KV client connection. */
export const kvClientFramePayloadBytesMax = 256 * KiB;
/** Requests in flight on one KV client connection; the server stops reading beyond it. */
export const kvClientRequestsInflightMax = 1024;
/** KV client connections open at once on one node. */
export const kvClientConnectionsMax = 1024;

assert(raftHeartbeatTicks < raftElectionTicks);
assert(raftTickMs > 0);
assert(raftEntryBytesMax <= raftMessageBytesMax);
assert(raftFramePayloadBytesMax >= raftMessageBytesMax + raftEntryBytesMax);
assert(raftFramePayloadBytesMax > raftSnapshotChunkBytes + 4 * KiB);
assert(raftFramePayloadBytesMax <= framePayloadBytesMax);
assert(peerQueueBytesMax >= 2 * raftFramePayloadBytesMax);
assert(raftInboxBytesMax >= 2 * raftFramePayloadBytesMax);
assert(raftCompactionLagEntries < raftSnapshotEntries);
assert(peerReconnectBackoffMinMs > 0);
assert(peerReconnectBackoffMinMs <= peerReconnectBackoffMaxMs);
assert(peerReconnectBackoffMaxMs < raftTickMs * raftElectionTicks * 2);
