/**
 * The NBD server's pool of large I/O buffers: READ replies (header + data) and WRITE payloads that
 * arrive split over several receive chunks. One pool per process, shared by every connection;
 * see src/util/buffer-pool.ts for the contract. Buffers under 64 KiB come from Node's own small
 * pool; at most 64 MiB sits idle here.
 */
import { requestBytesMax } from '../limits';
import { BufferPool } from '../util/buffer-pool';
import { KiB, MiB } from '../util/units';

export const ioBufferPool = new BufferPool({
  minimumBytes: 64 * KiB,
  maximumBytes: requestBytesMax + 64 * KiB,
  retainedBytesMax: 64 * MiB,
});
