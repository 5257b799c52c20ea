/**
 * KvStateMachine: a replicated key-value map applied from committed Raft entries — the state
 * machine the simulator runs (and a driver can run). Pure: no node:*, no clocks, no randomness;
 * the same entries in the same order produce the same state and the same snapshot bytes on every
 * replica.
 *
 * Commands: `put`, `get`, `cas` (compare-and-set; `from: null` means "key absent"), `delete`, and
 * `open` (start a client session). Every command carries a client id and a request sequence number.
 * A client opens a session once (`open` with the first sequence number it will use), then issues
 * requests with increasing sequence numbers, one at a time; a retried request keeps its number.
 * Exactly-once application (Raft thesis §6.3):
 * - seq > session.lastSeq: applied; the result is remembered with the session;
 * - seq = session.lastSeq: a retry of the last request — not applied again, the remembered result
 *   is returned (`duplicate: true`);
 * - seq < session.lastSeq: an older request the client gave up on — not applied (`stale`);
 * - no session (never opened, or evicted): not applied (`sessionExpired`). The client re-opens with
 *   its next sequence number, so a delayed copy of an older request can never apply afterwards.
 * `open` is idempotent: on an existing session it changes nothing. The session table is bounded
 * (`sessionsMax`): opening one more evicts the session applied least recently (lowest last index,
 * then lowest client id) — deterministic on every replica.
 *
 * Reads: linearizable reads go through ReadIndex and then `read(key)` on a replica whose applied
 * index reached the read index; `get` through the log is the second mode (it is ordered like a write
 * and its result is remembered like any other).
 *
 * Encoding (big-endian; a later driver uses the same bytes):
 *   command  = u8 version(1) | u8 kind | u64 clientId | u64 seq | body
 *              kind 1 open: (no body) · 2 put: str key, str value · 3 get: str key
 *              · 4 cas: str key, optstr from, str to · 5 delete: str key
 *   str      = u32 byte length | UTF-8 bytes;   optstr = u8 present(0|1) [| str]
 *   u64      = u32 high | u32 low, a safe integer
 *   result   = u8 kind | body: 1 opened · 2 put · 3 get: optstr value · 4 cas: u8 ok, optstr value
 *              before · 5 delete: u8 existed · 6 sessionExpired · 7 stale · 8 invalid · 9 full
 *   snapshot = u8 version(1) | u64 appliedIndex | u32 keys | keys × (str key, str value), sorted by key
 *              | u32 sessions | sessions × (u64 clientId, u64 lastSeq, u64 lastIndex, u8 hasResult
 *              [| result]), sorted by client id
 * Decoders check every length against the remaining bytes before reading or allocating. Undecodable
 * command bytes apply as `invalid` (no effect, the same verdict everywhere); a malformed snapshot
 * throws CAIRN_CORRUPT.
 *
 * Invariants: every key is at most keyBytesMax and every value at most valueBytesMax UTF-8 bytes;
 * at most keysMax keys and sessionsMax sessions; appliedIndex only grows.
 */
import { CairnError } from '../errors/cairn-error';
import { requestIdsRememberedMax } from '../limits';
import { assert } from '../util/assert';

export type KvCommand =
  | { readonly kind: 'open'; readonly clientId: number; readonly seq: number }
  | { readonly kind: 'put'; readonly clientId: number; readonly seq: number; readonly key: string; readonly value: string }
  | { readonly kind: 'get'; readonly clientId: number; readonly seq: number; readonly key: string }
  | {
    readonly kind: 'cas'; readonly clientId: number; readonly seq: number; readonly key: string;
    readonly from: string | null; readonly to: string;
  }
  | { readonly kind: 'delete'; readonly clientId: number; readonly seq: number; readonly key: string };

export type KvResult =
  | { readonly kind: 'opened' }
  | { readonly kind: 'put' }
  | { readonly kind: 'get'; readonly value: string | null }
  /** `value` is the value before the command (what `from` was compared with). */
  | { readonly kind: 'cas'; readonly ok: boolean; readonly value: string | null }
  | { readonly kind: 'delete'; readonly existed: boolean }
  /** Not applied: the client has no session (never opened or evicted). */
  | { readonly kind: 'sessionExpired' }
  /** Not applied: older than the client's last applied request. */
  | { readonly kind: 'stale' }
  /** Not applied: the bytes are not a valid command, or a key/value is over its bound. */
  | { readonly kind: 'invalid' }
  /** Not applied: the map holds keysMax keys and the command would add one. */
  | { readonly kind: 'full' };

export interface KvApplyOutcome {
  readonly index: number;
  /** The decoded command; undefined when the bytes did not decode. */
  readonly command: KvCommand | undefined;
  readonly result: KvResult;
  /** A retry of the session's last request: the remembered result, nothing applied now. */
  readonly duplicate: boolean;
}

export interface KvLimits {
  readonly keysMax: number;
  readonly sessionsMax: number;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
}

/** Defaults: sessions as many as the cluster map remembers request ids. */
export const kvLimitsDefault: KvLimits = {
  keysMax: 1024 * 1024,
  sessionsMax: requestIdsRememberedMax,
  keyBytesMax: 1024,
  valueBytesMax: 64 * 1024,
};

interface Session {
  lastSeq: number;
  lastIndex: number;
  /** Result of the request numbered lastSeq; undefined right after open. */
  lastResult: KvResult | undefined;
}

const commandVersion = 1;
const snapshotVersion = 1;
const commandKinds = ['open', 'put', 'get', 'cas', 'delete'] as const;
const resultKinds = ['opened', 'put', 'get', 'cas', 'delete', 'sessionExpired', 'stale', 'invalid', 'full'] as const;
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class KvStateMachine {
  readonly limits: KvLimits;
  private readonly map = new Map<string, string>();
  private readonly sessions = new Map<number, Session>();
  private applied = 0;

  constructor(limits: Partial<KvLimits> = {}) {
    this.limits = { ...kvLimitsDefault, ...limits };
    for (const [name, value] of Object.entries(this.limits)) {
      assert(Number.isSafeInteger(value) && value > 0, `kv limit ${name} must be a positive safe integer, got ${value}`);
    }
  }

  /** Index of the last entry given to apply() (or the snapshot's). */
  get appliedIndex(): number {
    return this.applied;
  }

  get keyCount(): number {
    return this.map.size;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Local read for ReadIndex: call only once the applied index reached the read index. */
  read(key: string): string | null {
    return this.map.get(key) ?? null;
  }

  /** The session's last applied sequence number, or undefined without a session. */
  sessionSeq(clientId: number): number | undefined {
    return this.sessions.get(clientId)?.lastSeq;
  }

  /**
   * Applies the committed normal entry at `index` (indexes strictly increase; entries without data
   * and configuration entries are simply not passed in).
   */
  apply(index: number, bytes: Uint8Array): KvApplyOutcome {
    assert(Number.isSafeInteger(index), `kv apply: index ${index} is not an integer`);
    assert(index > this.applied, `kv apply: index ${index} is not after the applied index ${this.applied}`);
    this.applied = index;
    const command = tryDecodeKvCommand(bytes);
    if (command === undefined || !this.withinBounds(command)) {
      return { index, command, result: { kind: 'invalid' }, duplicate: false };
    }
    if (command.kind === 'open') return { index, command, result: this.open(command.clientId, command.seq, index), duplicate: false };
    const session = this.sessions.get(command.clientId);
    if (session === undefined) return { index, command, result: { kind: 'sessionExpired' }, duplicate: false };
    if (command.seq < session.lastSeq) return { index, command, result: { kind: 'stale' }, duplicate: false };
    if (command.seq === session.lastSeq && session.lastResult !== undefined) {
      return { index, command, result: session.lastResult, duplicate: true };
    }
    if (command.seq === session.lastSeq) {
      // lastSeq right after open is "first seq − 1": a request with that number came before the session.
      return { index, command, result: { kind: 'stale' }, duplicate: false };
    }
    const result = this.execute(command);
    if (result.kind !== 'full') {
      session.lastSeq = command.seq;
      session.lastResult = result;
      session.lastIndex = index;
    }
    return { index, command, result, duplicate: false };
  }

  private withinBounds(command: KvCommand): boolean {
    if (command.kind === 'open') return true;
    if (utf8Encoder.encode(command.key).length > this.limits.keyBytesMax) return false;
    if (command.kind === 'put' && utf8Encoder.encode(command.value).length > this.limits.valueBytesMax) return false;
    if (command.kind === 'cas' && utf8Encoder.encode(command.to).length > this.limits.valueBytesMax) return false;
    return true;
  }

  private open(clientId: number, firstSeq: number, index: number): KvResult {
    if (this.sessions.has(clientId)) return { kind: 'opened' };
    if (this.sessions.size >= this.limits.sessionsMax) this.evictOldestSession();
    this.sessions.set(clientId, { lastSeq: firstSeq - 1, lastIndex: index, lastResult: undefined });
    assert(this.sessions.size <= this.limits.sessionsMax, 'kv: session table over its bound');
    return { kind: 'opened' };
  }

  private evictOldestSession(): void {
    let victim: number | undefined;
    let victimIndex = Infinity;
    for (const [clientId, session] of this.sessions) {
      if (session.lastIndex < victimIndex || (session.lastIndex === victimIndex && clientId < (victim ?? Infinity))) {
        victim = clientId;
        victimIndex = session.lastIndex;
      }
    }
    assert(victim !== undefined, 'kv: evicting from an empty session table');
    this.sessions.delete(victim);
  }

  private execute(command: Exclude<KvCommand, { kind: 'open' }>): KvResult {
    const current = this.map.get(command.key) ?? null;
    switch (command.kind) {
      case 'put':
        if (current === null && this.map.size >= this.limits.keysMax) return { kind: 'full' };
        this.map.set(command.key, command.value);
        return { kind: 'put' };
      case 'get':
        return { kind: 'get', value: current };
      case 'cas':
        if (current !== command.from) return { kind: 'cas', ok: false, value: current };
        if (current === null && this.map.size >= this.limits.keysMax) return { kind: 'full' };
        this.map.set(command.key, command.to);
        return { kind: 'cas', ok: true, value: current };
      case 'delete':
        return { kind: 'delete', existed: this.map.delete(command.key) };
    }
  }

  /** The whole state as bytes; identical states give identical bytes. */
  snapshot(): Uint8Array {
    const writer = new ByteWriter();
    writer.u8(snapshotVersion);
    writer.u64(this.applied);
    const keys = [...this.map.keys()].sort(compareStrings);
    writer.u32(keys.length);
    for (const key of keys) {
      writer.str(key);
      writer.str(this.map.get(key) as string);
    }
    const clientIds = [...this.sessions.keys()].sort((a, b) => a - b);
    writer.u32(clientIds.length);
    for (const clientId of clientIds) {
      const session = this.sessions.get(clientId) as Session;
      writer.u64(clientId);
      writer.u64(session.lastSeq);
      writer.u64(session.lastIndex);
      writer.u8(session.lastResult === undefined ? 0 : 1);
      if (session.lastResult !== undefined) writeResult(writer, session.lastResult);
    }
    return writer.finish();
  }

  /** Replaces the whole state with a snapshot's. Throws CAIRN_CORRUPT on malformed bytes (state unchanged). */
  restore(bytes: Uint8Array): void {
    const reader = new ByteReader(bytes, 'kv snapshot');
    const version = reader.u8();
    if (version !== snapshotVersion) throw corrupt(`kv snapshot: unknown version ${version}`);
    const applied = reader.u64();
    const keyCount = reader.count(this.limits.keysMax, 8);
    const map = new Map<string, string>();
    for (let i = 0; i < keyCount; i++) {
      const key = reader.str(this.limits.keyBytesMax);
      const value = reader.str(this.limits.valueBytesMax);
      if (map.has(key)) throw corrupt(`kv snapshot: key ${JSON.stringify(key)} appears twice`);
      map.set(key, value);
    }
    const sessionCount = reader.count(this.limits.sessionsMax, 25);
    const sessions = new Map<number, Session>();
    for (let i = 0; i < sessionCount; i++) {
      const clientId = reader.u64();
      const lastSeq = reader.u64();
      const lastIndex = reader.u64();
      const hasResult = reader.u8();
      if (hasResult > 1) throw corrupt(`kv snapshot: bad result flag ${hasResult}`);
      const lastResult = hasResult === 1 ? readResult(reader, this.limits.valueBytesMax) : undefined;
      if (clientId === 0 || sessions.has(clientId)) throw corrupt(`kv snapshot: bad or repeated client id ${clientId}`);
      sessions.set(clientId, { lastSeq, lastIndex, lastResult });
    }
    reader.end();
    this.map.clear();
    for (const [key, value] of map) this.map.set(key, value);
    this.sessions.clear();
    for (const [clientId, session] of sessions) this.sessions.set(clientId, session);
    this.applied = applied;
  }
}

// ---- codec ----------------------------------------------------------------------------------

/** Encodes a command for a log entry. Throws CAIRN_INVALID_ARGUMENT on ids or numbers it cannot carry. */
export function encodeKvCommand(command: KvCommand): Uint8Array {
  if (!Number.isSafeInteger(command.clientId) || command.clientId <= 0) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', `kv command: client id must be a positive safe integer, got ${command.clientId}`);
  }
  if (!Number.isSafeInteger(command.seq) || command.seq <= 0) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', `kv command: seq must be a positive safe integer, got ${command.seq}`);
  }
  const writer = new ByteWriter();
  writer.u8(commandVersion);
  writer.u8(commandKinds.indexOf(command.kind) + 1);
  writer.u64(command.clientId);
  writer.u64(command.seq);
  switch (command.kind) {
    case 'open':
      break;
    case 'put':
      writer.str(command.key);
      writer.str(command.value);
      break;
    case 'get':
    case 'delete':
      writer.str(command.key);
      break;
    case 'cas':
      writer.str(command.key);
      writer.optStr(command.from);
      writer.str(command.to);
      break;
  }
  return writer.finish();
}

/** Decodes a command; throws CAIRN_CORRUPT on anything malformed (including trailing bytes). */
export function decodeKvCommand(bytes: Uint8Array): KvCommand {
  const reader = new ByteReader(bytes, 'kv command');
  const version = reader.u8();
  if (version !== commandVersion) throw corrupt(`kv command: unknown version ${version}`);
  const kind = commandKinds[reader.u8() - 1];
  if (kind === undefined) throw corrupt('kv command: unknown kind');
  const clientId = reader.u64();
  const seq = reader.u64();
  if (clientId === 0 || seq === 0) throw corrupt('kv command: client id and seq must be positive');
  // Strings are bounded by the entry itself here; apply() checks them against the limits.
  const bound = bytes.length;
  let command: KvCommand;
  switch (kind) {
    case 'open':
      command = { kind, clientId, seq };
      break;
    case 'put':
      command = { kind, clientId, seq, key: reader.str(bound), value: reader.str(bound) };
      break;
    case 'get':
    case 'delete':
      command = { kind, clientId, seq, key: reader.str(bound) };
      break;
    case 'cas':
      command = { kind, clientId, seq, key: reader.str(bound), from: reader.optStr(bound), to: reader.str(bound) };
      break;
  }
  reader.end();
  return command;
}

function tryDecodeKvCommand(bytes: Uint8Array): KvCommand | undefined {
  try {
    return decodeKvCommand(bytes);
  } catch (error) {
    if (error instanceof CairnError && error.code === 'CAIRN_CORRUPT') return undefined;
    throw error;
  }
}

export function encodeKvResult(result: KvResult): Uint8Array {
  const writer = new ByteWriter();
  writeResult(writer, result);
  return writer.finish();
}

export function decodeKvResult(bytes: Uint8Array, valueBytesMax = kvLimitsDefault.valueBytesMax): KvResult {
  const reader = new ByteReader(bytes, 'kv result');
  const result = readResult(reader, valueBytesMax);
  reader.end();
  return result;
}

function writeResult(writer: ByteWriter, result: KvResult): void {
  writer.u8(resultKinds.indexOf(result.kind) + 1);
  switch (result.kind) {
    case 'get':
      writer.optStr(result.value);
      break;
    case 'cas':
      writer.u8(result.ok ? 1 : 0);
      writer.optStr(result.value);
      break;
    case 'delete':
      writer.u8(result.existed ? 1 : 0);
      break;
    default:
      break;
  }
}

function readResult(reader: ByteReader, valueBytesMax: number): KvResult {
  const kind = resultKinds[reader.u8() - 1];
  switch (kind) {
    case undefined:
      throw corrupt('kv result: unknown kind');
    case 'get':
      return { kind, value: reader.optStr(valueBytesMax) };
    case 'cas': {
      const ok = reader.bool();
      return { kind, ok, value: reader.optStr(valueBytesMax) };
    }
    case 'delete':
      return { kind, existed: reader.bool() };
    default:
      return { kind };
  }
}

function corrupt(message: string): CairnError {
  return new CairnError('CAIRN_CORRUPT', message);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class ByteWriter {
  private parts: Uint8Array[] = [];
  private length = 0;

  u8(value: number): void {
    assert(Number.isInteger(value) && value >= 0 && value < 256, `u8 out of range: ${value}`);
    this.push(Uint8Array.of(value));
  }

  u32(value: number): void {
    assert(Number.isInteger(value) && value >= 0 && value < 2 ** 32, `u32 out of range: ${value}`);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value);
    this.push(bytes);
  }

  u64(value: number): void {
    assert(Number.isSafeInteger(value) && value >= 0, `u64 must be a non-negative safe integer: ${value}`);
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, Math.floor(value / 2 ** 32));
    view.setUint32(4, value % 2 ** 32);
    this.push(bytes);
  }

  str(value: string): void {
    const bytes = utf8Encoder.encode(value);
    this.u32(bytes.length);
    this.push(bytes);
  }

  optStr(value: string | null): void {
    this.u8(value === null ? 0 : 1);
    if (value !== null) this.str(value);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const part of this.parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.length += bytes.length;
  }
}

/** Reads big-endian fields; every read checks the remaining length first and throws CAIRN_CORRUPT. */
class ByteReader {
  private offset = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array, private readonly what: string) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(count: number): void {
    if (this.bytes.length - this.offset < count) {
      throw corrupt(`${this.what}: truncated (need ${count} bytes at offset ${this.offset} of ${this.bytes.length})`);
    }
  }

  u8(): number {
    this.need(1);
    return this.view.getUint8(this.offset++);
  }

  bool(): boolean {
    const value = this.u8();
    if (value > 1) throw corrupt(`${this.what}: bad boolean ${value}`);
    return value === 1;
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  u64(): number {
    this.need(8);
    const high = this.view.getUint32(this.offset);
    const low = this.view.getUint32(this.offset + 4);
    this.offset += 8;
    const value = high * 2 ** 32 + low;
    if (!Number.isSafeInteger(value)) throw corrupt(`${this.what}: 64-bit value past 2^53`);
    return value;
  }

  /** A count of records that take at least `recordBytesMin` each, checked against `max` and the bytes left. */
  count(max: number, recordBytesMin: number): number {
    const value = this.u32();
    if (value > max) throw corrupt(`${this.what}: ${value} records exceed the bound ${max}`);
    if (value * recordBytesMin > this.bytes.length - this.offset) throw corrupt(`${this.what}: ${value} records cannot fit`);
    return value;
  }

  str(bytesMax: number): string {
    const length = this.u32();
    if (length > bytesMax) throw corrupt(`${this.what}: string of ${length} bytes exceeds ${bytesMax}`);
    this.need(length);
    let value: string;
    try {
      value = utf8Decoder.decode(this.bytes.subarray(this.offset, this.offset + length));
    } catch {
      throw corrupt(`${this.what}: string is not valid UTF-8`);
    }
    this.offset += length;
    return value;
  }

  optStr(bytesMax: number): string | null {
    return this.bool() ? this.str(bytesMax) : null;
  }

  end(): void {
    if (this.offset !== this.bytes.length) throw corrupt(`${this.what}: ${this.bytes.length - this.offset} trailing bytes`);
  }
}
