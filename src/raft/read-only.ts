/**
 * ReadIndex bookkeeping on the leader (thesis §6.4): each read records the commit index at the
 * time it arrived and waits until a heartbeat round started after it has been acknowledged by a
 * quorum, which proves this node was still the leader when the read arrived.
 *
 * Invariants: requests are released in arrival order; a request is released only together with
 * (or after) every request queued before it; the queue holds at most `pendingReadsMax` requests.
 */
import { assert } from '../util/assert';

export interface ReadRequest {
  /** Commit index when the request arrived: the read may be served once applied >= index. */
  readonly index: number;
  /** Node that asked (this node for local reads). */
  readonly from: number;
  readonly context: Uint8Array;
  readonly acks: Set<number>;
}

export function contextKey(context: Uint8Array): string {
  let key = '';
  for (const byte of context) key += byte.toString(16).padStart(2, '0');
  return key;
}

export class ReadOnlyQueue {
  private readonly pending = new Map<string, ReadRequest>();
  private queue: string[] = [];

  get size(): number {
    return this.queue.length;
  }

  has(context: Uint8Array): boolean {
    return this.pending.has(contextKey(context));
  }

  /** Queues a read; a context already pending is coalesced with it (one ReadState results). */
  add(index: number, from: number, context: Uint8Array): void {
    assert(context.length > 0, 'read index: context must not be empty');
    const key = contextKey(context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, from, context, acks: new Set() });
    this.queue.push(key);
  }

  /** Records a heartbeat acknowledgement carrying `context`; returns who acked it so far. */
  recordAck(from: number, context: Uint8Array): ReadonlySet<number> | undefined {
    const request = this.pending.get(contextKey(context));
    if (request === undefined) return undefined;
    request.acks.add(from);
    return request.acks;
  }

  /** Releases the request with `context` and every request queued before it. */
  release(context: Uint8Array): ReadRequest[] {
    const key = contextKey(context);
    const position = this.queue.indexOf(key);
    if (position < 0) return [];
    const released = this.queue.slice(0, position + 1).map((k) => {
      const request = this.pending.get(k);
      assert(request !== undefined, `read index: queued context ${k} has no request`);
      this.pending.delete(k);
      return request;
    });
    this.queue = this.queue.slice(position + 1);
    return released;
  }

  /** Context of the newest pending request (heartbeats carry it). */
  lastContext(): Uint8Array | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)?.context;
  }
}
