/**
 * MemoryDevice: a sparse in-memory BlockDevice for tests and the simulator. Data lives in
 * fixed-size chunks allocated on first write; a chunk that is trimmed or zeroed whole is freed,
 * so allocation status is real (BLOCK_STATUS reports holes). Nothing is durable: flush is a no-op
 * that still orders correctly because every write completes synchronously.
 */
import { assert } from '../util/assert';
import { BlockCapabilities, BlockDeviceBase, Extent } from './block-device';

const chunkBytes = 64 * 1024;

export interface MemoryDeviceOptions {
  readonly sizeBytes: number;
  readonly readOnly?: boolean;
}

export class MemoryDevice extends BlockDeviceBase {
  readonly sizeBytes: number;
  readonly capabilities: BlockCapabilities;
  private readonly chunks = new Map<number, Buffer>();

  constructor(options: MemoryDeviceOptions) {
    super();
    assert(Number.isSafeInteger(options.sizeBytes) && options.sizeBytes >= 0, 'sizeBytes must be a non-negative integer');
    this.sizeBytes = options.sizeBytes;
    this.capabilities = {
      canWrite: options.readOnly !== true, canFlush: true, canTrim: true, canZero: true, canFastZero: true,
      canMultiConn: true, canCache: true, canExtents: true, fua: 'native',
    };
  }

  /** Bytes of memory holding data (allocated chunks). */
  get allocatedBytes(): number {
    return this.chunks.size * chunkBytes;
  }

  protected async _read(offset: number, target: Buffer): Promise<void> {
    this.forEachPiece(offset, target.length, (index, within, length, done) => {
      const chunk = this.chunks.get(index);
      if (chunk) chunk.copy(target, done, within, within + length);
      else target.fill(0, done, done + length);
    });
  }

  protected async _write(offset: number, source: Buffer): Promise<void> {
    this.forEachPiece(offset, source.length, (index, within, length, done) => {
      let chunk = this.chunks.get(index);
      if (!chunk) {
        chunk = Buffer.alloc(chunkBytes);
        this.chunks.set(index, chunk);
      }
      source.copy(chunk, within, done, done + length);
    });
  }

  protected async _flush(): Promise<void> {}

  protected async _trim(offset: number, length: number): Promise<void> {
    this.clear(offset, length, false);
  }

  protected async _zero(offset: number, length: number, flags: { noHole: boolean }): Promise<void> {
    this.clear(offset, length, flags.noHole);
  }

  protected async _extents(offset: number, length: number): Promise<Extent[]> {
    const extents: Array<{ length: number; hole: boolean; zero: boolean }> = [];
    this.forEachPiece(offset, length, (index, _within, pieceLength) => {
      const hole = !this.chunks.has(index);
      const last = extents[extents.length - 1];
      if (last && last.hole === hole) last.length += pieceLength;
      else extents.push({ length: pieceLength, hole, zero: hole });
    });
    return extents;
  }

  /** Zeroes a range; whole chunks are freed unless the range must stay allocated. */
  private clear(offset: number, length: number, keepAllocated: boolean): void {
    this.forEachPiece(offset, length, (index, within, pieceLength) => {
      const chunk = this.chunks.get(index);
      if (!chunk) {
        if (keepAllocated) this.chunks.set(index, Buffer.alloc(chunkBytes));
        return;
      }
      if (pieceLength === chunkBytes && !keepAllocated) this.chunks.delete(index);
      else chunk.fill(0, within, within + pieceLength);
    });
  }

  private forEachPiece(offset: number, length: number,
    visit: (index: number, within: number, length: number, done: number) => void): void {
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / chunkBytes);
      const within = position % chunkBytes;
      const pieceLength = Math.min(chunkBytes - within, length - done);
      visit(index, within, pieceLength, done);
      done += pieceLength;
    }
  }
}
