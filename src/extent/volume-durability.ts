/**
 * VolumeDurability: which of a volume's segment files must be synced, and the syncs in flight.
 * Pure bookkeeping around one injected SyncFunction; it never opens or closes a file.
 *
 * Contract:
 * - `markDirty` after a write/trim/zero completed; `flush` snapshots the dirty set, clears it,
 *   and fdatasyncs those files in one call — a file written while that sync runs is dirty
 *   again, for the next flush. `flush` also waits for every sync already in flight (an earlier
 *   flush, an eviction writeback: they cleared files that this flush must still cover) and
 *   fsyncs the directory when files were created since its last fsync.
 * - New files are numbered (`noteCreated`); the directory is durable up to a number once an
 *   fsync that started after that creation completed. A FUA write to a new file waits for that
 *   (`makeCreationDurable`).
 * - A failed sync is sticky: the kernel may have dropped the dirty pages, so the flush that saw
 *   it and every later flush or FUA directory wait fail with the first error. Syncs never
 *   reject internally, so no promise is left unhandled.
 *
 * Invariant: entry.dirty ⇔ entry ∈ dirtyEntries; an entry being synced is pinned (inflight).
 */
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import { extentError } from './extent-errors';
import type { FlushNotice } from '../block/block-device';
import type { OpenSegment, SyncFunction, SyncTarget } from './extent-types';

export class VolumeDurability {
  private readonly dirtyEntries = new Set<OpenSegment>();
  /** Syncs running now (flush, eviction, directory); they never reject (failures are sticky). */
  private readonly syncsInFlight = new Set<Promise<void>>();
  private stickyFailure: CairnError | undefined;
  /** Files created so far; each new file gets the next number. */
  private createdCount = 0;
  /** Every file numbered ≤ this has a durable directory entry. */
  private directoryDurableSeq = 0;
  private directorySync: { coverSeq: number; promise: Promise<void> } | undefined;

  constructor(private readonly sync: SyncFunction, private readonly directory: SyncTarget) {}

  /** The first sync failure, if any. */
  get failure(): CairnError | undefined {
    return this.stickyFailure;
  }

  /** Every file numbered up to this has a durable directory entry. */
  get directoryDurableUpTo(): number {
    return this.directoryDurableSeq;
  }

  get dirtyCount(): number {
    return this.dirtyEntries.size;
  }

  /** Numbers a newly created file; its directory entry is durable once makeCreationDurable(n) resolves. */
  noteCreated(): number {
    return ++this.createdCount;
  }

  markDirty(entry: OpenSegment): void {
    if (entry.dirty) return;
    entry.dirty = true;
    this.dirtyEntries.add(entry);
  }

  /**
   * Makes every completed write durable; see the module contract. The notice (see FlushNotice)
   * is passed on only when this flush is exactly one sync call — nothing else in flight to wait
   * for, no directory to sync, no earlier failure — so the sync's completion is the flush's. (After
   * a failure the file's next fdatasync may well succeed, as the kernel reports a writeback error
   * once; a notice would then send success for a flush that must fail.)
   */
  async flush(notice?: FlushNotice): Promise<void> {
    const waits = [...this.syncsInFlight];
    const alone = waits.length === 0 && this.createdCount <= this.directoryDurableSeq && this.stickyFailure === undefined;
    if (this.dirtyEntries.size > 0) waits.push(this.syncEntries([...this.dirtyEntries], alone ? notice : undefined));
    if (this.createdCount > this.directoryDurableSeq) waits.push(this.syncDirectory(this.createdCount));
    await Promise.all(waits);
    if (this.stickyFailure !== undefined) throw this.stickyFailure;
  }

  /** Syncs one entry so its descriptor can be closed (eviction). Never rejects. */
  writeback(entry: OpenSegment): Promise<void> {
    return this.syncEntries([entry]);
  }

  /** After a FUA write: the directory entry of file number `createdSeq` (0: old file) must be durable too. */
  async makeCreationDurable(createdSeq: number): Promise<void> {
    if (createdSeq <= this.directoryDurableSeq) return;
    await this.syncDirectory(createdSeq);
    if (createdSeq > this.directoryDurableSeq) {
      assert(this.stickyFailure !== undefined, 'a directory sync that did not cover the file failed');
      throw this.stickyFailure;
    }
  }

  /** Waits until no sync is running (shutdown). */
  async settle(): Promise<void> {
    while (this.syncsInFlight.size > 0) await Promise.all([...this.syncsInFlight]);
  }

  /** Clears the entries' dirty flags, pins them, and fdatasyncs them in one call. Never rejects. */
  private syncEntries(entries: readonly OpenSegment[], notice?: FlushNotice): Promise<void> {
    for (const entry of entries) {
      assert(!entry.closed, 'a synced entry is open');
      if (entry.dirty) {
        entry.dirty = false;
        this.dirtyEntries.delete(entry);
      }
      entry.inflight++;
    }
    const run = async (): Promise<void> => {
      try {
        await this.sync(entries.map((entry) => ({ fd: entry.fd, path: entry.path })), [], notice);
        for (const entry of entries) entry.writebackFailed = false;
      } catch (error) {
        this.recordFailure(error, 'fdatasync', entries.map((entry) => entry.path).join(', '));
        for (const entry of entries) {
          entry.writebackFailed = true;
          this.markDirty(entry);
        }
      } finally {
        for (const entry of entries) entry.inflight--;
      }
    };
    return this.track(run());
  }

  /** fsyncs the directory so files numbered up to `seq` survive a crash. Never rejects. */
  private syncDirectory(seq: number): Promise<void> {
    if (this.directorySync !== undefined && this.directorySync.coverSeq >= seq) return this.directorySync.promise;
    const coverSeq = this.createdCount;
    assert(coverSeq >= seq, 'a directory sync covers the files it is asked for');
    const run = async (): Promise<void> => {
      try {
        await this.sync([], [this.directory]);
        this.directoryDurableSeq = Math.max(this.directoryDurableSeq, coverSeq);
      } catch (error) {
        this.recordFailure(error, 'fsync', this.directory.path);
      }
    };
    const record = { coverSeq, promise: this.track(run()) };
    this.directorySync = record;
    void record.promise.then(() => {
      if (this.directorySync === record) this.directorySync = undefined;
    });
    return record.promise;
  }

  private track(promise: Promise<void>): Promise<void> {
    this.syncsInFlight.add(promise);
    void promise.then(() => this.syncsInFlight.delete(promise));
    return promise;
  }

  private recordFailure(error: unknown, action: string, target: string): void {
    if (this.stickyFailure !== undefined) return;
    const mapped = extentError(error, action, target);
    this.stickyFailure = mapped instanceof CairnError ? mapped
      : new CairnError('CAIRN_IO', `${action} ${target} failed: ${mapped.message}`, { cause: error });
  }
}
