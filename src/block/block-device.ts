/**
 * BlockDevice: what a frontend (NBD server, kernel attach) needs from storage, and nothing more.
 * Modelled on nbdkit's plugin interface: the device answers block questions and capability
 * questions; the protocol layer owns validation, concurrency and error translation.
 *
 * Contract (every implementation):
 * - `read` fills `target` entirely from `offset`; unwritten and trimmed ranges read as zeroes.
 * - `write`/`zero`/`trim` may complete before the data is durable, unless `fua` is set, in which
 *   case the data of that call is durable before the promise resolves.
 * - `flush` resolves only after every write that resolved before `flush` was called is durable.
 *   It is device-wide: it covers writes issued through any connection (NBD CAN_MULTI_CONN).
 * - Ranges are validated by `BlockDeviceBase` before the protected `_` methods run, so
 *   implementations may assert them.
 * - `extents` describes allocation of [offset, offset+length): contiguous, non-empty descriptors
 *   starting at offset; the last may run past the end of the range; fewer than the full range is
 *   allowed (the caller asks again).
 */
import { assert } from '../util/assert';
import { CairnError } from '../errors/cairn-error';

export type FuaMode = 'none' | 'emulate' | 'native';

export interface BlockCapabilities {
  readonly canWrite: boolean;
  readonly canFlush: boolean;
  readonly canTrim: boolean;
  readonly canZero: boolean;
  readonly canFastZero: boolean;
  readonly canMultiConn: boolean;
  readonly canCache: boolean;
  readonly canExtents: boolean;
  readonly fua: FuaMode;
}

export interface WriteFlags { readonly fua?: boolean }
export interface ZeroFlags {
  readonly fua?: boolean;
  /** The range must stay allocated (NBD NO_HOLE). */
  readonly noHole?: boolean;
  /** Fail with CAIRN_NOT_SUPPORTED instead of zeroing slowly (NBD FAST_ZERO). */
  readonly fast?: boolean;
}

/** One allocation descriptor; flags mirror NBD base:allocation. */
export interface Extent {
  readonly length: number;
  /** Not allocated: writes may need new space. */
  readonly hole: boolean;
  /** Reads as zeroes. */
  readonly zero: boolean;
}

/**
 * A reply a device may send itself the moment a flush is durable: the thread that finished the
 * sync sends `bytes` on the socket `fd` (one non-blocking send, never on failure) and records in
 * `sentBytes` how many went out. It saves the hand-back to the event loop before the client
 * hears. A device may ignore it (`sentBytes` stays 0); the caller sends whatever was not sent.
 * The caller guarantees that nothing else writes the socket, and that `fd` stays open, until
 * the flush settles.
 */
export interface FlushNotice {
  readonly fd: number;
  readonly bytes: Buffer;
  sentBytes: number;
}

/**
 * A range of a device that is one open file, for a caller that moves the bytes itself (from
 * another thread, e.g. straight from a socket): it writes them to `fd` at `position`, then calls
 * `finish` exactly once. Until then the file stays open and the device counts the write as
 * running; `finish` records it (the next flush covers it) and returns the error to answer with
 * when the write failed (mapped as a write() failure would be).
 */
export interface DirectWrite {
  readonly fd: number;
  readonly position: number;
  /** `wrote`: some bytes may have reached the file; `error`: why the write failed, if it did. */
  finish(wrote: boolean, error?: unknown): Error | undefined;
}

export interface BlockDevice {
  readonly sizeBytes: number;
  readonly capabilities: BlockCapabilities;
  read(offset: number, target: Buffer): Promise<void>;
  write(offset: number, source: Buffer, flags?: WriteFlags): Promise<void>;
  flush(notice?: FlushNotice): Promise<void>;
  /** Optional: the range as one open file for a DirectWrite (never FUA), or undefined: use write(). */
  directWrite?(offset: number, length: number): DirectWrite | undefined;
  trim(offset: number, length: number, flags?: WriteFlags): Promise<void>;
  zero(offset: number, length: number, flags?: ZeroFlags): Promise<void>;
  /** Prefetch hint; no data changes. */
  cache(offset: number, length: number): Promise<void>;
  extents(offset: number, length: number): Promise<Extent[]>;
}

/**
 * Argument checks shared by every device: ranges inside the device, capabilities honoured,
 * FUA emulated as write-then-flush where the device says 'emulate'.
 */
export abstract class BlockDeviceBase implements BlockDevice {
  abstract readonly sizeBytes: number;
  abstract readonly capabilities: BlockCapabilities;

  protected abstract _read(offset: number, target: Buffer): Promise<void>;
  protected abstract _write(offset: number, source: Buffer, fua: boolean): Promise<void>;
  protected abstract _flush(notice?: FlushNotice): Promise<void>;
  protected abstract _trim(offset: number, length: number): Promise<void>;
  protected abstract _zero(offset: number, length: number, flags: { noHole: boolean; fast: boolean }): Promise<void>;
  protected abstract _extents(offset: number, length: number): Promise<Extent[]>;
  protected async _cache(_offset: number, _length: number): Promise<void> {}

  protected checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new CairnError('CAIRN_INVALID_ARGUMENT', `invalid range offset=${offset} length=${length}`);
    }
    if (offset + length > this.sizeBytes) {
      throw new CairnError('CAIRN_OUT_OF_RANGE',
        `range ${offset}+${length} ends past the device end (${this.sizeBytes} bytes)`);
    }
  }

  protected checkWritable(): void {
    if (!this.capabilities.canWrite) throw new CairnError('CAIRN_READ_ONLY', 'device is read-only');
  }

  async read(offset: number, target: Buffer): Promise<void> {
    this.checkRange(offset, target.length);
    if (target.length === 0) return;
    await this._read(offset, target);
  }

  async write(offset: number, source: Buffer, flags: WriteFlags = {}): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, source.length);
    if (source.length === 0) return this.maybeFua(flags.fua === true);
    const native = this.capabilities.fua === 'native';
    await this._write(offset, source, native && flags.fua === true);
    if (!native) await this.maybeFua(flags.fua === true);
  }

  async flush(notice?: FlushNotice): Promise<void> {
    if (!this.capabilities.canFlush) return;
    await this._flush(notice);
  }

  async trim(offset: number, length: number, flags: WriteFlags = {}): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (length > 0 && this.capabilities.canTrim) await this._trim(offset, length);
    await this.maybeFua(flags.fua === true);
  }

  async zero(offset: number, length: number, flags: ZeroFlags = {}): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (flags.fast === true && !this.capabilities.canFastZero) {
      throw new CairnError('CAIRN_NOT_SUPPORTED', 'fast zero is not supported by this device');
    }
    if (length > 0) await this._zero(offset, length, { noHole: flags.noHole === true, fast: flags.fast === true });
    await this.maybeFua(flags.fua === true);
  }

  async cache(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length);
    if (length > 0) await this._cache(offset, length);
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.checkRange(offset, length);
    if (length === 0) return [];
    const extents = await this._extents(offset, length);
    assert(extents.length > 0, 'extents must describe at least one byte');
    for (const extent of extents) assert(extent.length > 0, 'extent descriptors are non-empty');
    return extents;
  }

  private async maybeFua(fua: boolean): Promise<void> {
    if (fua && this.capabilities.canFlush) await this._flush();
  }
}
