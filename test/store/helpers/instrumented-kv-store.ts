/**
 * A KvStore that passes every call to a real one, records the batches it writes (size and sync
 * flag) and can fail the next batch with CAIRN_IO: for tests of the layers above the store.
 */
import { CairnError } from '../../../src/errors/cairn-error';
import type { KvIterateOptions, KvOperation, KvRange, KvStore, KvWriteOptions } from '../../../src/store/kv-store';

export class InstrumentedKvStore implements KvStore {
  failNextBatch = false;
  readonly batches: Array<{ operations: number; sync: boolean }> = [];

  constructor(private readonly inner: KvStore) {}

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.inner.get(key);
  }

  put(key: Uint8Array, value: Uint8Array, options: KvWriteOptions): Promise<void> {
    return this.inner.put(key, value, options);
  }

  async batch(operations: readonly KvOperation[], options: KvWriteOptions): Promise<void> {
    if (this.failNextBatch) {
      this.failNextBatch = false;
      throw new CairnError('CAIRN_IO', 'disk on fire');
    }
    this.batches.push({ operations: operations.length, sync: options.sync });
    await this.inner.batch(operations, options);
  }

  iterate(range: KvRange, options?: KvIterateOptions): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    return this.inner.iterate(range, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
