/**
 * What the attach manager reads about the kernel's nbd devices from sysfs: which devices exist,
 * which run, the backend identifier of each netlink device, and their sizes. The manager finds
 * its own devices after a restart by backend identifier, never by index alone (an index may have
 * been reused by another program meanwhile).
 *
 * Owns: the `NbdSysfs` interface and its Linux implementation over /sys/block and /dev.
 * Invariants: every read is bounded (small attribute files, at most `nbdDevicesScannedMax`
 * devices) and a missing or unreadable file reads as "absent", never as an exception: sysfs
 * entries come and go while the kernel tears devices down.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Most nbd devices one scan looks at (nbds_max is 16 by default). */
export const nbdDevicesScannedMax = 4096;
/** Longest sysfs attribute read (a backend identifier is ≤ 255 bytes). */
const attributeBytesMax = 4096;

export interface NbdSysfs {
  /** Indices of the nbd devices that exist, ascending. Empty when the driver is not loaded. */
  deviceIndices(): number[];
  /** The backend identifier of a device connected through netlink with one; undefined otherwise. */
  backendOf(index: number): string | undefined;
  /** Whether the device is running (it has a serving task: /sys/block/nbdN/pid exists). */
  isRunning(index: number): boolean;
  /** The capacity the kernel shows, in bytes (0 when not running). */
  sizeBytesOf(index: number): number;
  /** The device node, e.g. /dev/nbd0. */
  devicePath(index: number): string;
}

export class LinuxNbdSysfs implements NbdSysfs {
  constructor(private readonly sysBlock = '/sys/block', private readonly devRoot = '/dev') {}

  deviceIndices(): number[] {
    let names: string[];
    try {
      names = readdirSync(this.sysBlock);
    } catch {
      return [];
    }
    const indices: number[] = [];
    for (const name of names) {
      const match = /^nbd(\d{1,9})$/.exec(name);
      if (match === null) continue;
      indices.push(Number(match[1]));
      if (indices.length >= nbdDevicesScannedMax) break;
    }
    return indices.sort((a, b) => a - b);
  }

  backendOf(index: number): string | undefined {
    const text = this.attribute(index, 'backend');
    if (text === undefined) return undefined;
    const trimmed = text.replace(/\n$/, '');
    return trimmed === '' ? undefined : trimmed;
  }

  isRunning(index: number): boolean {
    return this.attribute(index, 'pid') !== undefined;
  }

  sizeBytesOf(index: number): number {
    const sectors = Number((this.attribute(index, 'size') ?? '0').trim());
    return Number.isSafeInteger(sectors) && sectors > 0 ? sectors * 512 : 0;
  }

  devicePath(index: number): string {
    return join(this.devRoot, `nbd${index}`);
  }

  private attribute(index: number, name: string): string | undefined {
    try {
      const buffer = readFileSync(join(this.sysBlock, `nbd${index}`, name));
      return buffer.subarray(0, attributeBytesMax).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
