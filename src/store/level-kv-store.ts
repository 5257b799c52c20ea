/**
 * LevelKvStore: KvStore on LevelDB through classic-level. One database directory per daemon; the
 * LevelDB lock makes a second opener fail with CAIRN_DATA_DIR_LOCKED instead of sharing it.
 *
 * Atomicity and durability come from LevelDB itself: a batch is one write-ahead-log record
 * (all or nothing after a crash), and `sync: true` fsyncs that log before the batch resolves.
 * Errors from LevelDB are wrapped: LEVEL_LOCKED → CAIRN_DATA_DIR_LOCKED, LEVEL_CORRUPTION →
 * CAIRN_CORRUPT, anything else → CAIRN_IO, each with the original as `cause`.
 */
import { ClassicLevel } from 'classic-level';
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import { prefixUpperBound, type KvIterateOptions, type KvOperation, type KvRange, type KvStore, type KvWriteOptions } from './kv-store';

type Database = ClassicLevel<Uint8Array, Uint8Array>;

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function wrap(error: unknown, action: string): CairnError {
  if (error instanceof CairnError) return error;
  const codes = [codeOf(error), codeOf((error as { cause?: unknown } | null)?.cause)];
  const detail = error instanceof Error ? error.message : String(error);
  if (codes.includes('LEVEL_LOCKED')) {
    return new CairnError('CAIRN_DATA_DIR_LOCKED', `${action}: the database is locked by another process (${detail}); is another cairnd running on this data directory?`, { cause: error });
  }
  if (codes.includes('LEVEL_CORRUPTION')) return new CairnError('CAIRN_CORRUPT', `${action}: ${detail}`, { cause: error });
  return new CairnError('CAIRN_IO', `${action}: ${detail}`, { cause: error });
}

export interface LevelKvStoreOptions {
  /** Create the database when the directory holds none (default true). */
  readonly createIfMissing?: boolean;
}

export class LevelKvStore implements KvStore {
  private closed = false;

  private constructor(
    private readonly database: Database,
    readonly location: string,
  ) {}

  static async open(location: string, options: LevelKvStoreOptions = {}): Promise<LevelKvStore> {
    const database: Database = new ClassicLevel<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await database.open({ createIfMissing: options.createIfMissing ?? true });
    } catch (error) {
      throw wrap(error, `cannot open the database at ${location}`);
    }
    return new LevelKvStore(database, location);
  }

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.checkOpen();
    try {
      return await this.database.get(key);
    } catch (error) {
      throw wrap(error, 'database read failed');
    }
  }

  async put(key: Uint8Array, value: Uint8Array, options: KvWriteOptions): Promise<void> {
    this.checkOpen();
    try {
      await this.database.put(key, value, { sync: options.sync });
    } catch (error) {
      throw wrap(error, 'database write failed');
    }
  }

  async batch(operations: readonly KvOperation[], options: KvWriteOptions): Promise<void> {
    this.checkOpen();
    if (operations.length === 0) return;
    try {
      await this.database.batch(
        operations.map((operation) => (operation.type === 'put'
          ? { type: 'put' as const, key: operation.key, value: operation.value }
          : { type: 'del' as const, key: operation.key })),
        { sync: options.sync },
      );
    } catch (error) {
      throw wrap(error, `database batch of ${operations.length} operations failed`);
    }
  }

  async *iterate(range: KvRange, options: KvIterateOptions = {}): AsyncIterableIterator<[Uint8Array, Uint8Array]> {
    this.checkOpen();
    const bounds: { gte?: Uint8Array; gt?: Uint8Array; lt?: Uint8Array } = {};
    if ('prefix' in range) {
      bounds.gte = range.prefix;
      const upper = prefixUpperBound(range.prefix);
      if (upper !== undefined) bounds.lt = upper;
    } else {
      if ('gte' in range) bounds.gte = range.gte;
      else bounds.gt = range.gt;
      if (range.lt !== undefined) bounds.lt = range.lt;
    }
    if (options.limit !== undefined) assert(Number.isSafeInteger(options.limit) && options.limit >= 0, 'limit must be a count');
    const iterator = this.database.iterator({ ...bounds, reverse: options.reverse ?? false, limit: options.limit ?? -1 });
    try {
      for (;;) {
        let entry: [Uint8Array, Uint8Array] | undefined;
        try {
          entry = await iterator.next();
        } catch (error) {
          throw wrap(error, 'database iteration failed');
        }
        if (entry === undefined) return;
        yield entry;
      }
    } finally {
      await iterator.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.database.close();
    } catch (error) {
      throw wrap(error, 'closing the database failed');
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new CairnError('CAIRN_CLOSED', `the database at ${this.location} is closed`);
  }
}
