/**
 * Chunked, resumable InstallSnapshot. The leader streams the snapshot bytes it read from storage
 * in `snapshotChunkBytes` pieces, keeping a bounded window in flight; the follower answers every
 * chunk with the next offset it expects (MsgSnapResp), rejecting — "resume from here" — when the
 * chunk leaves a gap, and installs the snapshot when the last byte arrives, answering with
 * MsgAppResp like an append. The leader retransmits from the last acknowledged offset when a
 * heartbeat round passes without progress, so lost chunks or a lost final answer never wedge it.
 *
 * Invariants: the follower buffers only bytes it received in order, for one (leader term, leader,
 * snapshot index/term, size) at a time, so memory grows with real data only; acked <= sent <= size.
 */
import { assert } from '../util/assert';
import { restoreConfig } from './confchange';
import { SnapshotTemporarilyUnavailableError } from './errors';
import type { Progress } from './progress';
import type { Raft } from './raft';
import type { Message, Snapshot, SnapshotMetadata } from './types';

interface OutgoingTransfer {
  readonly snapshot: Snapshot;
  /** Bytes the follower confirmed (the next offset it expects). */
  acked: number;
  /** Bytes sent so far (the next offset to send). */
  sent: number;
  /** The chunk at `sent` must go out even if empty (start, or resume). */
  chunkDue: boolean;
  /** `acked` at the previous heartbeat response, to detect stalls. */
  ackedAtLastHeartbeat: number;
  /** Offset of the last resume request honoured, to ignore duplicate gap reports. */
  resumedAt: number | undefined;
}

/** Leader side: one transfer per follower in snapshot state. */
export class SnapshotSender {
  private readonly transfers = new Map<number, OutgoingTransfer>();

  start(to: number, snapshot: Snapshot): void {
    this.transfers.set(to, { snapshot, acked: 0, sent: 0, chunkDue: true, ackedAtLastHeartbeat: 0, resumedAt: undefined });
  }

  get(to: number): OutgoingTransfer | undefined {
    return this.transfers.get(to);
  }

  finish(to: number): void {
    this.transfers.delete(to);
  }

  targets(): number[] {
    return [...this.transfers.keys()];
  }

  clear(): void {
    this.transfers.clear();
  }
}

interface IncomingTransfer {
  readonly term: number;
  readonly from: number;
  readonly metadata: SnapshotMetadata;
  readonly totalBytes: number;
  readonly chunks: Uint8Array[];
  received: number;
}

/** Follower side: the snapshot being received, if any. */
export class SnapshotReceiver {
  current: IncomingTransfer | undefined = undefined;

  clear(): void {
    this.current = undefined;
  }
}

/** Leader: the follower needs entries we compacted; start sending the latest snapshot. */
export function startSnapshot(r: Raft, to: number, pr: Progress): boolean {
  if (!pr.recentActive) return false; // not worth streaming to a node we have not heard from
  let snapshot: Snapshot;
  try {
    snapshot = r.log.snapshot();
  } catch (error) {
    if (error instanceof SnapshotTemporarilyUnavailableError) return false; // retried on the next heartbeat
    throw error;
  }
  const index = snapshot.metadata.index;
  assert(index > 0, `node ${r.id}: need a snapshot for ${to} but storage has none`);
  assert(index >= r.log.firstIndex() - 1, `node ${r.id}: snapshot ${index} does not cover compacted log (first ${r.log.firstIndex()})`);
  pr.becomeSnapshot(index);
  r.snapshotSender.start(to, snapshot);
  sendSnapshotChunks(r, to);
  return true;
}

function windowBytes(r: Raft): number {
  const chunk = r.config.snapshotChunkBytes;
  return Math.max(chunk, Math.min(r.config.inflightBytesMax, r.config.inflightMessagesMax * chunk));
}

export function sendSnapshotChunks(r: Raft, to: number): void {
  const transfer = r.snapshotSender.get(to);
  if (transfer === undefined) return;
  const { metadata, data } = transfer.snapshot;
  const window = windowBytes(r);
  while (transfer.chunkDue || transfer.sent < data.length) {
    if (transfer.sent - transfer.acked >= window) break;
    const end = Math.min(data.length, transfer.sent + r.config.snapshotChunkBytes);
    r.send({
      type: 'MsgSnap', to,
      snapshot: { metadata, totalBytes: data.length, offset: transfer.sent, data: data.subarray(transfer.sent, end) },
    });
    transfer.sent = end;
    transfer.chunkDue = false;
  }
}

/** Leader: a chunk acknowledgement or resume request (MsgSnapResp). */
export function handleSnapshotResponse(r: Raft, m: Message, pr: Progress): void {
  const transfer = r.snapshotSender.get(m.from);
  const chunk = m.snapshot;
  if (transfer === undefined || chunk === undefined || pr.state !== 'snapshot') return;
  const { metadata, data } = transfer.snapshot;
  if (chunk.metadata.index !== metadata.index || chunk.metadata.term !== metadata.term) return; // another transfer
  if (!Number.isSafeInteger(chunk.offset) || chunk.offset < 0 || chunk.offset > data.length) return;
  if (m.reject) {
    if (transfer.resumedAt === chunk.offset) return; // already resumed from there
    transfer.resumedAt = chunk.offset;
    transfer.acked = chunk.offset;
    transfer.sent = chunk.offset;
    transfer.chunkDue = true;
  } else if (chunk.offset > transfer.acked) {
    transfer.acked = chunk.offset;
    transfer.sent = Math.max(transfer.sent, transfer.acked);
    if (transfer.resumedAt !== undefined && transfer.acked > transfer.resumedAt) transfer.resumedAt = undefined;
  }
  sendSnapshotChunks(r, m.from);
}

/** Leader, on a heartbeat response: if nothing was acknowledged for a round, resend from `acked`. */
export function retransmitStalledSnapshot(r: Raft, to: number): void {
  const transfer = r.snapshotSender.get(to);
  if (transfer === undefined) return;
  if (transfer.acked === transfer.ackedAtLastHeartbeat && transfer.sent > transfer.acked) {
    transfer.sent = transfer.acked;
    transfer.chunkDue = true;
  }
  transfer.ackedAtLastHeartbeat = transfer.acked;
  sendSnapshotChunks(r, to);
}

function wellFormedChunk(m: Message): boolean {
  const chunk = m.snapshot;
  if (chunk === undefined) return false;
  const { offset, totalBytes, metadata } = chunk;
  return Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(totalBytes)
    && offset + chunk.data.length <= totalBytes && Number.isSafeInteger(metadata.index) && metadata.index > 0;
}

function acknowledge(r: Raft, to: number, transfer: IncomingTransfer, reject: boolean): void {
  r.send({
    type: 'MsgSnapResp', to, reject,
    snapshot: { metadata: transfer.metadata, totalBytes: transfer.totalBytes, offset: transfer.received, data: new Uint8Array(0) },
  });
}

/** Follower: one MsgSnap chunk. */
export function handleSnapshotChunk(r: Raft, m: Message): void {
  if (!wellFormedChunk(m)) return; // malformed input: drop
  const chunk = m.snapshot as NonNullable<Message['snapshot']>;
  const { metadata } = chunk;
  if (metadata.index <= r.log.committed) {
    // Already have it (or something newer): answer like an append so the leader moves on.
    r.snapshotReceiver.clear();
    r.send({ type: 'MsgAppResp', to: m.from, index: r.log.committed });
    return;
  }
  let transfer = r.snapshotReceiver.current;
  if (
    transfer === undefined || transfer.term !== r.term || transfer.from !== m.from || transfer.totalBytes !== chunk.totalBytes
    || transfer.metadata.index !== metadata.index || transfer.metadata.term !== metadata.term
  ) {
    transfer = { term: r.term, from: m.from, metadata, totalBytes: chunk.totalBytes, chunks: [], received: 0 };
    r.snapshotReceiver.current = transfer;
  }
  if (chunk.offset < transfer.received) {
    acknowledge(r, m.from, transfer, false); // duplicate: repeat where we are
    return;
  }
  if (chunk.offset > transfer.received) {
    // A chunk went missing (or we restarted and lost the buffer): ask to resume from what we
    // have. Every such chunk is answered, so a lost request is repeated by the next chunk the
    // leader (re)sends; the leader ignores repeats of a resume it already honoured.
    acknowledge(r, m.from, transfer, true);
    return;
  }
  transfer.chunks.push(chunk.data.slice());
  transfer.received += chunk.data.length;
  if (transfer.received < transfer.totalBytes) {
    acknowledge(r, m.from, transfer, false);
    return;
  }
  const data = new Uint8Array(transfer.totalBytes);
  let offset = 0;
  for (const piece of transfer.chunks) {
    data.set(piece, offset);
    offset += piece.length;
  }
  r.snapshotReceiver.clear();
  handleSnapshot(r, m.from, { metadata, data });
}

/** A whole snapshot arrived: install it unless our log already covers it, then report. */
function handleSnapshot(r: Raft, from: number, snapshot: Snapshot): void {
  if (restoreSnapshot(r, snapshot)) {
    r.send({ type: 'MsgAppResp', to: from, index: r.log.lastIndex() });
  } else {
    r.send({ type: 'MsgAppResp', to: from, index: r.log.committed });
  }
}

function restoreSnapshot(r: Raft, snapshot: Snapshot): boolean {
  const { index, term, confState } = snapshot.metadata;
  if (index <= r.log.committed) return false; // never go back behind what we committed/applied
  assert(r.role === 'follower', `node ${r.id}: restoring a snapshot as ${r.role}`);
  if (r.log.matchTerm(index, term)) {
    // Our log already has the snapshot's last entry: keep the entries after it, just commit.
    r.log.commitTo(index);
    return false;
  }
  r.log.restore(snapshot);
  r.switchToConfig(restoreConfig(confState, r.tracker, r.log.lastIndex()));
  return true;
}
