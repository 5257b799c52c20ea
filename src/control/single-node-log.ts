/**
 * SingleNodeLog: the metadata log of a one-node cluster, behind the MetaLog interface the Raft
 * driver will implement next. There is no separate log: the MapStore batch that writes an entry's
 * changes and its index IS the durable record of the entry.
 *
 * How a proposal travels: `propose` encodes and decodes the command (so it is exactly what a Raft
 * entry would carry, and an unencodable value is refused before it takes an index), then queues
 * it. One drain loop at a time takes up to `batchMax` queued proposals, gives them the next
 * indexes in queue order, applies them and persists them in one batch (group commit: one fsync for
 * many proposals), then resolves them. The queue is bounded: past `queuedMax` waiting proposals,
 * `propose` rejects at once with CAIRN_UNAVAILABLE (retryable) instead of queueing without limit.
 *
 * Lifecycle: open → closing (close called: new proposals refused, queued ones still applied) →
 * closed. A failed write moves it to failed: the batch in flight and everything queued reject with
 * CAIRN_IO, and so does every later proposal. The log does not close the KvStore it was given.
 */
import { CairnError } from '../errors/cairn-error';
import { metaApplyBatchMax, metaProposalsQueuedMax } from '../limits';
import type { ClusterMapView } from '../meta/cluster-map';
import { decodeCommand, encodeCommand } from '../meta/codec';
import type { MetaLog } from '../meta/meta-log';
import type { Command, CommandResult } from '../meta/types';
import type { KvStore } from '../store/kv-store';
import { MapStore, type MapEntry } from '../store/map-store';
import { assert } from '../util/assert';

export interface SingleNodeLogOptions {
  /** Proposals that may wait behind the batch being written (default limits.metaProposalsQueuedMax). */
  readonly queuedMax?: number;
  /** Proposals applied and persisted per batch (default limits.metaApplyBatchMax). */
  readonly batchMax?: number;
  /** fsync each batch (default true). Only tests that do not crash may turn it off. */
  readonly sync?: boolean;
}

interface Pending {
  readonly command: Command;
  readonly resolve: (result: CommandResult) => void;
  readonly reject: (error: unknown) => void;
}

type Status = 'open' | 'closing' | 'closed' | 'failed';

export class SingleNodeLog implements MetaLog {
  private readonly queuedMax: number;
  private readonly batchMax: number;
  private readonly sync: boolean;
  /** Invariant: at most queuedMax entries; empty unless status is open or closing. */
  private queue: Pending[] = [];
  private draining = false;
  private idle: Promise<void> = Promise.resolve();
  private status: Status = 'open';
  private failure: CairnError | undefined;

  constructor(
    private readonly store: MapStore,
    options: SingleNodeLogOptions = {},
  ) {
    this.queuedMax = options.queuedMax ?? metaProposalsQueuedMax;
    this.batchMax = options.batchMax ?? metaApplyBatchMax;
    this.sync = options.sync ?? true;
    assert(Number.isSafeInteger(this.queuedMax) && this.queuedMax >= 1, 'queuedMax must be at least 1');
    assert(Number.isSafeInteger(this.batchMax) && this.batchMax >= 1, 'batchMax must be at least 1');
  }

  /** Loads the stored map from `kv` and opens a log on it. */
  static async open(kv: KvStore, options: SingleNodeLogOptions = {}): Promise<SingleNodeLog> {
    return new SingleNodeLog(await MapStore.open(kv), options);
  }

  get map(): ClusterMapView {
    return this.store.map;
  }

  get appliedIndex(): number {
    return this.store.appliedIndex;
  }

  /** Proposals waiting behind the batch being written. */
  get queuedCount(): number {
    return this.queue.length;
  }

  async propose(command: Command): Promise<CommandResult> {
    this.checkAccepting();
    const normalized = decodeCommand(encodeCommand(command), 'proposed command');
    if (this.queue.length >= this.queuedMax) {
      throw new CairnError('CAIRN_UNAVAILABLE', `the metadata log has ${this.queue.length} proposals waiting; retry later with the same request id`, {
        retryable: true,
      });
    }
    const result = new Promise<CommandResult>((resolve, reject) => {
      this.queue.push({ command: normalized, resolve, reject });
    });
    assert(this.queue.length <= this.queuedMax);
    this.maybeDrain();
    return result;
  }

  async close(): Promise<void> {
    if (this.status === 'open') this.status = 'closing';
    await this.idle;
    assert(this.queue.length === 0);
    if (this.status === 'closing') this.status = 'closed';
  }

  private checkAccepting(): void {
    switch (this.status) {
      case 'open':
        return;
      case 'closing':
        throw new CairnError('CAIRN_SHUTTING_DOWN', 'the metadata log is closing; no new proposals are accepted');
      case 'closed':
        throw new CairnError('CAIRN_CLOSED', 'the metadata log is closed');
      case 'failed':
        throw new CairnError('CAIRN_IO', `the metadata log failed and must be restarted: ${this.failure?.message ?? 'unknown error'}`, { cause: this.failure });
    }
  }

  /** Starts the drain loop unless it runs already (it keeps going until the queue is empty). */
  private maybeDrain(): void {
    if (this.draining) return;
    this.draining = true;
    this.idle = this.drain();
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && this.status !== 'failed') {
        const batch = this.queue.splice(0, this.batchMax);
        const firstIndex = this.store.appliedIndex + 1;
        const entries: MapEntry[] = batch.map((pending, offset) => ({ index: firstIndex + offset, command: pending.command }));
        let results: CommandResult[];
        try {
          results = await this.store.apply(entries, { sync: this.sync });
        } catch (error) {
          this.fail(error, batch);
          // A broken invariant (not a CairnError) must not be absorbed: let it surface and crash.
          if (!(error instanceof CairnError)) throw error;
          return;
        }
        assert(results.length === batch.length);
        batch.forEach((pending, offset) => pending.resolve(results[offset] as CommandResult));
      }
    } finally {
      // Synchronous with the loop's last look at the queue: a proposal queued after it starts a new loop.
      this.draining = false;
    }
  }

  private fail(error: unknown, batch: readonly Pending[]): void {
    this.failure = error instanceof CairnError ? error : new CairnError('CAIRN_IO', String(error), { cause: error });
    this.status = 'failed';
    const waiting = this.queue;
    this.queue = [];
    for (const pending of batch) pending.reject(error);
    const refusal = new CairnError('CAIRN_IO', `the metadata log failed before this proposal was applied: ${this.failure.message}`, { cause: this.failure });
    for (const pending of waiting) pending.reject(refusal);
  }
}
