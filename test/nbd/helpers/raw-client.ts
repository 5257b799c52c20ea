/**
 * A raw NBD client for tests: sends exactly the bytes a test asks for and decodes what comes
 * back, so tests can speak both well-formed and malformed protocol. Reads wait with a timeout and
 * fail with 'closed' when the server hangs up, so a test about a disconnect can assert it.
 */
import type { Duplex } from 'node:stream';

export const NBD_OPT_MAGIC = 0x49484156454f5054n;
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_MAGIC = 0x67446698;
export const STRUCTURED_MAGIC = 0x668e33ef;

export interface OptionReplyMessage {
  readonly option: number;
  readonly type: number;
  readonly data: Buffer;
}

export interface RequestSpec {
  readonly type: number;
  readonly flags?: number;
  readonly cookie: bigint;
  readonly offset?: number | bigint;
  readonly length?: number;
  /** Sent after the header; the header's length field is `length` if given, else its size. */
  readonly payload?: Buffer;
  /** Overrides the request magic. */
  readonly magic?: number;
}

export type Reply =
  | { readonly kind: 'simple'; readonly error: number; readonly cookie: bigint; readonly data: Buffer }
  | { readonly kind: 'structured'; readonly flags: number; readonly type: number; readonly cookie: bigint; readonly payload: Buffer };

/** The bytes of one transmission request: header, then the payload if any. */
export function encodeRequest(spec: RequestSpec): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(spec.magic ?? REQUEST_MAGIC, 0);
  header.writeUInt16BE(spec.flags ?? 0, 4);
  header.writeUInt16BE(spec.type, 6);
  header.writeBigUInt64BE(spec.cookie, 8);
  header.writeBigUInt64BE(BigInt(spec.offset ?? 0), 16);
  header.writeUInt32BE(spec.length ?? spec.payload?.length ?? 0, 24);
  return spec.payload === undefined ? header : Buffer.concat([header, spec.payload]);
}

export class ClosedError extends Error {
  override readonly name = 'ClosedError';
  constructor() {
    super('closed');
  }
}

export class RawClient {
  private buffered: Buffer = Buffer.alloc(0);
  private endedValue = false;
  private closedValue = false;
  private wake: (() => void) | undefined;
  readonly closed: Promise<void>;

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      this.notify();
    });
    stream.on('end', () => {
      this.endedValue = true;
      this.notify();
    });
    stream.on('error', () => {});
    this.closed = new Promise((resolve) => {
      stream.on('close', () => {
        this.closedValue = true;
        this.endedValue = true;
        this.notify();
        resolve();
      });
    });
  }

  get ended(): boolean {
    return this.endedValue;
  }

  get isClosed(): boolean {
    return this.closedValue;
  }

  get bufferedBytes(): number {
    return this.buffered.length;
  }

  write(bytes: Buffer): void {
    if (!this.stream.destroyed && this.stream.writable) this.stream.write(bytes);
  }

  end(): void {
    if (!this.stream.destroyed) this.stream.end();
  }

  destroy(): void {
    this.stream.destroy();
  }

  /** Reads exactly `count` bytes; rejects with ClosedError if the server ends first. */
  async read(count: number, timeoutMs = 15_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < count) {
      if (this.endedValue) throw new ClosedError();
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${count} bytes (have ${this.buffered.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const out = this.buffered.subarray(0, count);
    this.buffered = this.buffered.subarray(count);
    return out;
  }

  /** Resolves true if the server closes (or ends) within the timeout, without reading data. */
  async waitEnded(timeoutMs = 15_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.endedValue) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return true;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  // ---- handshake ----

  async readGreeting(): Promise<{ flags: number }> {
    const greeting = await this.read(18);
    if (greeting.readBigUInt64BE(0) !== 0x4e42444d41474943n) throw new Error('bad NBDMAGIC');
    if (greeting.readBigUInt64BE(8) !== NBD_OPT_MAGIC) throw new Error('bad IHAVEOPT');
    return { flags: greeting.readUInt16BE(16) };
  }

  sendClientFlags(flags = 3): void {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(flags >>> 0);
    this.write(bytes);
  }

  /** Greeting read + client flags sent. */
  async startHandshake(clientFlags = 3): Promise<void> {
    await this.readGreeting();
    this.sendClientFlags(clientFlags);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), lengthOverride?: number): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(NBD_OPT_MAGIC, 0);
    header.writeUInt32BE(option >>> 0, 8);
    header.writeUInt32BE((lengthOverride ?? data.length) >>> 0, 12);
    this.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReplyMessage> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== NBD_REP_MAGIC) throw new Error('bad option reply magic');
    const option = header.readUInt32BE(8);
    const type = header.readUInt32BE(12);
    const length = header.readUInt32BE(16);
    const data = Buffer.from(await this.read(length));
    return { option, type, data };
  }

  /** Reads replies up to and including the final one (ACK or an error). */
  async readOptionReplies(): Promise<OptionReplyMessage[]> {
    const replies: OptionReplyMessage[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type === 1 || reply.type >= 0x80000000) return replies;
    }
  }

  async option(option: number, data?: Buffer): Promise<OptionReplyMessage[]> {
    this.sendOption(option, data);
    return this.readOptionReplies();
  }

  /**
   * Full negotiation ending in GO: optional structured replies and meta contexts. Returns the
   * export size and transmission flags from NBD_INFO_EXPORT.
   */
  async negotiate(options: { name?: string; structured?: boolean; metaContexts?: string[]; infos?: number[] } = {}):
    Promise<{ sizeBytes: number; flags: number; replies: OptionReplyMessage[] }> {
    await this.startHandshake();
    return this.negotiateAfterStart(options);
  }

  /** As negotiate, on a connection whose greeting was already read and flags sent. */
  async negotiateAfterStart(options: { name?: string; structured?: boolean; metaContexts?: string[]; infos?: number[] } = {}):
    Promise<{ sizeBytes: number; flags: number; replies: OptionReplyMessage[] }> {
    if (options.structured === true) await this.expectAck(8);
    if (options.metaContexts !== undefined) {
      const replies = await this.option(10, metaContextData(options.name ?? '', options.metaContexts));
      if (replies[replies.length - 1]?.type !== 1) throw new Error('SET_META_CONTEXT failed');
    }
    const replies = await this.option(7, infoData(options.name ?? '', options.infos ?? []));
    const final = replies[replies.length - 1];
    if (final?.type !== 1) throw new Error(`GO failed with reply 0x${final?.type.toString(16)}: ${final?.data.toString()}`);
    const exportInfo = replies.find((reply) => reply.type === 3 && reply.data.readUInt16BE(0) === 0);
    if (exportInfo === undefined) throw new Error('GO without NBD_INFO_EXPORT');
    return { sizeBytes: Number(exportInfo.data.readBigUInt64BE(2)), flags: exportInfo.data.readUInt16BE(10), replies };
  }

  async expectAck(option: number, data?: Buffer): Promise<void> {
    const replies = await this.option(option, data);
    if (replies.length !== 1 || replies[0]?.type !== 1) throw new Error(`option ${option} not acknowledged`);
  }

  // ---- transmission ----

  sendRequest(spec: RequestSpec): void {
    this.write(encodeRequest(spec));
  }

  /**
   * Reads one reply of either kind. `dataBytesFor(cookie)` says how many data bytes follow a
   * successful simple reply (READ length, else 0).
   */
  async readReply(dataBytesFor: (cookie: bigint) => number = () => 0): Promise<Reply> {
    const magic = (await this.read(4)).readUInt32BE(0);
    if (magic === SIMPLE_MAGIC) {
      const rest = await this.read(12);
      const error = rest.readUInt32BE(0);
      const cookie = rest.readBigUInt64BE(4);
      const data = error === 0 ? Buffer.from(await this.read(dataBytesFor(cookie))) : Buffer.alloc(0);
      return { kind: 'simple', error, cookie, data };
    }
    if (magic === STRUCTURED_MAGIC) {
      const rest = await this.read(16);
      const flags = rest.readUInt16BE(0);
      const type = rest.readUInt16BE(2);
      const cookie = rest.readBigUInt64BE(4);
      const payload = Buffer.from(await this.read(rest.readUInt32BE(12)));
      return { kind: 'structured', flags, type, cookie, payload };
    }
    throw new Error(`bad reply magic 0x${magic.toString(16)}`);
  }

  async simpleReply(dataBytes = 0): Promise<{ error: number; cookie: bigint; data: Buffer }> {
    const reply = await this.readReply(() => dataBytes);
    if (reply.kind !== 'simple') throw new Error(`expected a simple reply, got structured type ${reply.type}`);
    return { error: reply.error, cookie: reply.cookie, data: reply.data };
  }

  async structuredChunk(): Promise<{ flags: number; type: number; cookie: bigint; payload: Buffer }> {
    const reply = await this.readReply();
    if (reply.kind !== 'structured') throw new Error(`expected a structured chunk, got simple error ${reply.error}`);
    return { flags: reply.flags, type: reply.type, cookie: reply.cookie, payload: reply.payload };
  }

  /** Simple-reply READ: returns data or throws with the errno. */
  async readSimple(cookie: bigint, offset: number, length: number): Promise<Buffer> {
    this.sendRequest({ type: 0, cookie, offset, length });
    const reply = await this.simpleReply(length);
    if (reply.cookie !== cookie) throw new Error('cookie mismatch');
    if (reply.error !== 0) throw new Error(`READ failed with ${reply.error}`);
    return reply.data;
  }

  /** Simple WRITE: resolves to the reply errno. */
  async writeSimple(cookie: bigint, offset: number, payload: Buffer, flags = 0): Promise<number> {
    this.sendRequest({ type: 1, flags, cookie, offset, payload });
    const reply = await this.simpleReply();
    if (reply.cookie !== cookie) throw new Error('cookie mismatch');
    return reply.error;
  }
}

export function infoData(name: string, infoTypes: number[]): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const data = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoTypes.length);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  data.writeUInt16BE(infoTypes.length, 4 + nameBytes.length);
  infoTypes.forEach((type, index) => data.writeUInt16BE(type, 4 + nameBytes.length + 2 + 2 * index));
  return data;
}

export function metaContextData(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const nameBytes = Buffer.from(name, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(nameBytes.length);
  parts.push(head, nameBytes);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length);
  parts.push(count);
  for (const query of queries) {
    const queryBytes = Buffer.from(query, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(queryBytes.length);
    parts.push(length, queryBytes);
  }
  return Buffer.concat(parts);
}
