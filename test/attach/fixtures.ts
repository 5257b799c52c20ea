/**
 * Fixtures for the attach tests: volumes over in-memory devices that can grow (with counted
 * export handles, to prove every handle is released), a logger that keeps its lines, a
 * FakeKernel on real socketpairs, and an AttachManager wired to them in a temp data dir.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { AttachManager, AttachmentStore } from '../../src/attach';
import type { AttachableVolume, AttachManagerOptions, AttachVolumeSource } from '../../src/attach';
import { FakeKernel } from '../../src/attach/fake-kernel';
import { BlockCapabilities, BlockDeviceBase, Extent } from '../../src/block/block-device';
import { loadKernelBinding } from '../../src/native/binding';
import type { NbdExportHandle } from '../../src/nbd';
import type { Logger, LogFields } from '../../src/observe/logger';

/** An in-memory device whose size can grow (as a volume's does on resize). */
export class GrowableDevice extends BlockDeviceBase {
  readonly capabilities: BlockCapabilities;
  private data: Buffer;
  flushes = 0;

  constructor(public sizeBytes: number, options: { readOnly?: boolean; multiConn?: boolean } = {}) {
    super();
    this.data = Buffer.alloc(sizeBytes);
    this.capabilities = {
      canWrite: options.readOnly !== true, canFlush: true, canTrim: true, canZero: true, canFastZero: true,
      canMultiConn: options.multiConn !== false, canCache: true, canExtents: true, fua: 'native',
    };
  }

  grow(sizeBytes: number): void {
    const next = Buffer.alloc(sizeBytes);
    this.data.copy(next);
    this.data = next;
    this.sizeBytes = sizeBytes;
  }

  bytes(offset: number, length: number): Buffer {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  protected async _read(offset: number, target: Buffer): Promise<void> {
    this.data.copy(target, 0, offset, offset + target.length);
  }

  protected async _write(offset: number, source: Buffer): Promise<void> {
    source.copy(this.data, offset);
  }

  protected async _flush(): Promise<void> {
    this.flushes += 1;
  }

  protected async _trim(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }

  protected async _zero(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }

  protected async _extents(_offset: number, length: number): Promise<Extent[]> {
    return [{ length, hole: false, zero: false }];
  }
}

interface TestVolume {
  volume: AttachableVolume;
  readonly device: GrowableDevice;
}

export class TestVolumes implements AttachVolumeSource {
  readonly entries = new Map<string, TestVolume>();
  opens = 0;
  releases = 0;
  /** open() throws this when set. */
  openError: Error | undefined;

  add(name: string, sizeBytes: number, options: { readOnly?: boolean; multiConn?: boolean } = {}): GrowableDevice {
    const device = new GrowableDevice(sizeBytes, options);
    this.entries.set(name, { volume: { id: `vol-${name}`, name, sizeBytes, readOnly: options.readOnly === true }, device });
    return device;
  }

  grow(name: string, sizeBytes: number): AttachableVolume {
    const entry = this.entries.get(name);
    if (entry === undefined) throw new Error(`no test volume ${name}`);
    entry.device.grow(sizeBytes);
    entry.volume = { ...entry.volume, sizeBytes };
    return entry.volume;
  }

  /** Anchors held now (also counted in `outstanding`). */
  anchorsHeld = 0;

  get outstanding(): number {
    return this.opens - this.releases;
  }

  async anchor(name: string): Promise<NbdExportHandle | undefined> {
    const handle = await this.open(name);
    if (handle === undefined) return undefined;
    this.anchorsHeld += 1;
    return { ...handle, release: () => { handle.release(); this.anchorsHeld -= 1; } };
  }

  byName(name: string): AttachableVolume | undefined {
    return this.entries.get(name)?.volume;
  }

  byId(id: string): AttachableVolume | undefined {
    return [...this.entries.values()].find((entry) => entry.volume.id === id)?.volume;
  }

  async open(name: string): Promise<NbdExportHandle | undefined> {
    if (this.openError !== undefined) throw this.openError;
    const entry = this.entries.get(name);
    if (entry === undefined) return undefined;
    this.opens += 1;
    let released = false;
    return {
      name, device: entry.device, readOnly: entry.volume.readOnly,
      release: () => {
        if (released) throw new Error(`handle of ${name} released twice`);
        released = true;
        this.releases += 1;
      },
    };
  }
}

export class MemoryLogger implements Logger {
  constructor(readonly lines: string[] = []) {}
  error(message: string, fields?: LogFields): void { this.lines.push(`error ${message} ${describe(fields)}`); }
  warn(message: string, fields?: LogFields): void { this.lines.push(`warn ${message} ${describe(fields)}`); }
  info(message: string, fields?: LogFields): void { this.lines.push(`info ${message} ${describe(fields)}`); }
  debug(): void {}
  child(): Logger { return this; }
}

function describe(fields?: LogFields): string {
  return fields === undefined ? '' : JSON.stringify(fields, (_key, value: unknown) => (value instanceof Error ? value.message : value));
}

export interface Harness {
  readonly kernel: FakeKernel;
  readonly volumes: TestVolumes;
  readonly dataDir: string;
  readonly logger: MemoryLogger;
  readonly store: AttachmentStore;
  manager: AttachManager;
  /** A new manager on the same kernel, volumes and data dir (a restarted cairnd), not yet started. */
  restart(): AttachManager;
}

export function harness(t: Test, options: { devices?: number; netlink?: boolean; cpuCount?: number;
  manager?: Partial<AttachManagerOptions> } = {}): Harness {
  const socketPair = (): [number, number] => loadKernelBinding().nbdSocketPair();
  const kernel = new FakeKernel({
    socketPair, ...(options.devices === undefined ? {} : { devices: options.devices }),
    ...(options.netlink === undefined ? {} : { netlink: options.netlink }),
  });
  const volumes = new TestVolumes();
  const dataDir = mkdtempSync(join(tmpdir(), 'cairn-attach-'));
  const logger = new MemoryLogger();
  const build = (): AttachManager => new AttachManager({
    kernel, sysfs: kernel, store: new AttachmentStore(dataDir), volumes, logger, cpuCount: options.cpuCount ?? 2,
    reconnect: { attemptsMax: 5, delayMs: () => 20 }, ...options.manager,
  });
  const managers: AttachManager[] = [];
  const result: Harness = {
    kernel, volumes, dataDir, logger, store: new AttachmentStore(dataDir), manager: build(),
    restart: () => {
      const next = build();
      managers.push(next);
      result.manager = next;
      return next;
    },
  };
  managers.push(result.manager);
  t.teardown(async () => {
    for (const manager of managers) await manager.stop(0);
    kernel.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });
  return result;
}

export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function pattern(length: number, seed: number): Buffer {
  const buffer = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buffer[i] = (i * 31 + seed * 17) & 0xff;
  return buffer;
}
