/**
 * Test exports: a resolver over named BlockDevices that counts opens and releases (so tests can
 * prove every handle is released exactly once), and GatedDevice, a BlockDevice wrapper whose
 * calls wait until the test releases them — to hold requests in flight on purpose.
 */
import type { BlockCapabilities, BlockDevice, Extent, WriteFlags, ZeroFlags } from '../../../src/block/block-device';
import type { ExportResolver, NbdExportHandle } from '../../../src/nbd/export-resolver';

export interface TestExport {
  readonly device: BlockDevice;
  readonly readOnly?: boolean;
  readonly description?: string;
}

export class TestResolver implements ExportResolver {
  opens = 0;
  releases = 0;
  /** Thrown by open() when set. */
  openError: unknown;
  /** Awaited by open() when set (to hold an open in progress). */
  openGate: Promise<void> | undefined;

  constructor(readonly exports: Map<string, TestExport>, readonly defaultName?: string) {}

  list(): Array<{ name: string; description?: string }> {
    return [...this.exports].map(([name, entry]) =>
      (entry.description === undefined ? { name } : { name, description: entry.description }));
  }

  async open(name: string): Promise<NbdExportHandle | undefined> {
    if (this.openGate !== undefined) await this.openGate;
    if (this.openError !== undefined) throw this.openError;
    const canonical = name === '' && this.defaultName !== undefined ? this.defaultName : name;
    const entry = this.exports.get(canonical);
    if (entry === undefined) return undefined;
    this.opens += 1;
    let released = false;
    const handle: NbdExportHandle = {
      name: canonical,
      device: entry.device,
      readOnly: entry.readOnly ?? false,
      release: () => {
        if (released) throw new Error(`handle ${canonical} released twice`);
        released = true;
        this.releases += 1;
      },
      ...(entry.description === undefined ? {} : { description: entry.description }),
    };
    return handle;
  }
}

interface PendingCall {
  readonly operation: string;
  readonly offset: number;
  readonly run: () => void;
}

/** Every call waits until released (release() / releaseAll()), then runs on the inner device. */
export class GatedDevice implements BlockDevice {
  readonly pending: PendingCall[] = [];
  /** Most calls that were waiting at the same time. */
  waitingMax = 0;
  private waiters: Array<() => void> = [];
  gated = true;

  constructor(private readonly inner: BlockDevice) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get capabilities(): BlockCapabilities {
    return this.inner.capabilities;
  }

  read(offset: number, target: Buffer): Promise<void> {
    return this.gate('read', offset, () => this.inner.read(offset, target));
  }

  write(offset: number, source: Buffer, flags?: WriteFlags): Promise<void> {
    const copy = Buffer.from(source);
    return this.gate('write', offset, () => this.inner.write(offset, copy, flags));
  }

  flush(): Promise<void> {
    return this.gate('flush', 0, () => this.inner.flush());
  }

  trim(offset: number, length: number, flags?: WriteFlags): Promise<void> {
    return this.gate('trim', offset, () => this.inner.trim(offset, length, flags));
  }

  zero(offset: number, length: number, flags?: ZeroFlags): Promise<void> {
    return this.gate('zero', offset, () => this.inner.zero(offset, length, flags));
  }

  cache(offset: number, length: number): Promise<void> {
    return this.gate('cache', offset, () => this.inner.cache(offset, length));
  }

  extents(offset: number, length: number): Promise<Extent[]> {
    return this.gate('extents', offset, () => this.inner.extents(offset, length));
  }

  /** Releases the call at `index` of `pending` (default: the oldest). */
  release(index = 0): void {
    const [call] = this.pending.splice(index, 1);
    if (call === undefined) throw new Error('no pending call to release');
    call.run();
  }

  releaseAll(): void {
    while (this.pending.length > 0) this.release();
  }

  /** Stops gating: waiting calls run, new calls run at once. */
  open(): void {
    this.gated = false;
    this.releaseAll();
  }

  /** Resolves once `count` calls are waiting. */
  async waitForPending(count: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.length < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} pending calls (have ${this.pending.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private gate<T>(operation: string, offset: number, call: () => Promise<T>): Promise<T> {
    if (!this.gated) return call();
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ operation, offset, run: () => { call().then(resolve, reject); } });
      this.waitingMax = Math.max(this.waitingMax, this.pending.length);
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    });
  }
}
