/**
 * AttachmentStore: the node-local record of the volumes this daemon attached to the kernel, in
 * `<dataDir>/attachments.json`. A restarted daemon reads it to find its devices again (by backend
 * identifier) and hand them fresh sockets before the kernel's dead-connection timeout runs out.
 *
 * Owns: the record format, its strict validation, and durable replacement of the file.
 * Invariants:
 * - The file is replaced atomically (temp file, fsync, rename, fsync of the directory): a crash
 *   leaves the old or the new set, never a torn one.
 * - Saves are serialised: each writes the whole set given to it, in call order.
 * - A record is written with state 'attaching' BEFORE the kernel is asked to connect, so a crash
 *   in between leaves a record that names the backend identifier to look for.
 * - Loading never throws on bad content: a file that fails validation is moved aside and the
 *   daemon starts with no records (the problem is returned for the log).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { nbdBackendIdBytesMax, nbdSocketsMax, nbdTimeoutSecondsMax } from '../native/binding';
import { assert } from '../util/assert';

export type AttachMethod = 'netlink' | 'ioctl';
export type RecordState = 'attaching' | 'attached' | 'detaching';

export interface AttachmentRecord {
  readonly volumeId: string;
  readonly volumeName: string;
  /** Stable for the attachment's life: CONNECT and every RECONFIGURE name it. */
  readonly backendId: string;
  readonly method: AttachMethod;
  /** Device index; null until the kernel has answered the first CONNECT. */
  readonly index: number | null;
  readonly connections: number;
  readonly readOnly: boolean;
  readonly ioTimeoutSeconds: number;
  readonly deadConnTimeoutSeconds: number;
  readonly blockBytes: number;
  /** The transmission flags the kernel was told (the server validates against exactly these). */
  readonly serverFlags: number;
  /** The size the kernel was last told. */
  readonly sizeBytes: number;
  readonly attachedAtMs: number;
  readonly state: RecordState;
}

/** Largest attachments file read; far above what attachmentsMax records need. */
export const attachmentsFileBytesMax = 1024 * 1024;
/** Most attachments one node keeps. */
export const attachmentsMax = 1024;
const formatVersion = 1;

export class AttachmentStore {
  readonly path: string;
  private saving: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.path = join(dataDir, 'attachments.json');
  }

  /** Reads the records; a missing file is an empty set, a bad one is moved aside (see the module doc). */
  load(nowMs: number = Date.now()): { records: AttachmentRecord[]; problem?: string } {
    if (!existsSync(this.path)) return { records: [] };
    let problem: string;
    try {
      const size = statSync(this.path).size;
      if (size > attachmentsFileBytesMax) throw new Error(`the file is ${size} bytes, more than ${attachmentsFileBytesMax}`);
      return { records: parseAttachments(readFileSync(this.path, 'utf8')) };
    } catch (error) {
      problem = (error as Error).message;
    }
    const aside = `${this.path}.corrupt-${nowMs}`;
    try {
      renameSync(this.path, aside);
    } catch (error) {
      return { records: [], problem: `${problem}; moving it aside failed: ${(error as Error).message}` };
    }
    return { records: [], problem: `${problem}; moved to ${aside}` };
  }

  /** Durably replaces the file with `records`; resolves once this save (and earlier ones) landed. */
  save(records: readonly AttachmentRecord[]): Promise<void> {
    assert(records.length <= attachmentsMax, 'attachments stay within attachmentsMax');
    const text = serializeAttachments(records);
    const next = this.saving.then(() => this.writeNow(text));
    // A failed save must not poison later ones; the caller of this save sees its failure.
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async writeNow(text: string): Promise<void> {
    const temporary = `${this.path}.tmp`;
    const fd = openSync(temporary, 'w', 0o600);
    try {
      const bytes = Buffer.from(text, 'utf8');
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, this.path);
    const directory = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(directory);
    } finally {
      closeSync(directory);
    }
  }
}

export function serializeAttachments(records: readonly AttachmentRecord[]): string {
  for (const record of records) validateRecord(record);
  return JSON.stringify({ version: formatVersion, attachments: records }, null, 2) + '\n';
}

/** Parses and validates the file's content; throws an Error naming the first problem. */
export function parseAttachments(text: string): AttachmentRecord[] {
  const parsed = JSON.parse(text) as unknown;
  if (typeof parsed !== 'object' || parsed === null) throw new Error('the attachments file is not a JSON object');
  const { version, attachments } = parsed as { version?: unknown; attachments?: unknown };
  if (version !== formatVersion) throw new Error(`unknown attachments file version ${String(version)}`);
  if (!Array.isArray(attachments)) throw new Error('attachments must be an array');
  if (attachments.length > attachmentsMax) throw new Error(`more than ${attachmentsMax} attachments`);
  const seen = new Set<string>();
  const records = attachments.map((entry: unknown, position) => {
    const record = validateRecord(entry, `attachments[${position}]`);
    if (seen.has(record.volumeId)) throw new Error(`volume ${record.volumeId} is recorded twice`);
    seen.add(record.volumeId);
    return record;
  });
  return records;
}

function validateRecord(value: unknown, where = 'attachment'): AttachmentRecord {
  if (typeof value !== 'object' || value === null) throw new Error(`${where} is not an object`);
  const record = value as Record<string, unknown>;
  const text = (name: string, bytesMax: number): string => {
    const field = record[name];
    if (typeof field !== 'string' || field.length === 0 || Buffer.byteLength(field) > bytesMax) {
      throw new Error(`${where}.${name} must be a non-empty string of at most ${bytesMax} bytes`);
    }
    return field;
  };
  const integer = (name: string, minimum: number, maximum: number): number => {
    const field = record[name];
    if (typeof field !== 'number' || !Number.isSafeInteger(field) || field < minimum || field > maximum) {
      throw new Error(`${where}.${name} must be an integer in [${minimum}, ${maximum}]`);
    }
    return field;
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[]): T => {
    const field = record[name];
    if (typeof field !== 'string' || !(allowed as readonly string[]).includes(field)) {
      throw new Error(`${where}.${name} must be one of ${allowed.join(', ')}`);
    }
    return field as T;
  };
  if (typeof record['readOnly'] !== 'boolean') throw new Error(`${where}.readOnly must be a boolean`);
  const index = record['index'] === null ? null : integer('index', 0, 0x7fffffff);
  const blockBytes = integer('blockBytes', 512, 65536);
  if ((blockBytes & (blockBytes - 1)) !== 0) throw new Error(`${where}.blockBytes must be a power of two`);
  const state = oneOf<RecordState>('state', ['attaching', 'attached', 'detaching']);
  if (state !== 'attaching' && index === null) throw new Error(`${where} is ${state} but has no device index`);
  return {
    volumeId: text('volumeId', 128),
    volumeName: text('volumeName', 255),
    backendId: text('backendId', nbdBackendIdBytesMax),
    method: oneOf<AttachMethod>('method', ['netlink', 'ioctl']),
    index,
    connections: integer('connections', 1, nbdSocketsMax),
    readOnly: record['readOnly'],
    ioTimeoutSeconds: integer('ioTimeoutSeconds', 0, nbdTimeoutSecondsMax),
    deadConnTimeoutSeconds: integer('deadConnTimeoutSeconds', 0, nbdTimeoutSecondsMax),
    blockBytes,
    serverFlags: integer('serverFlags', 1, 0xffff),
    sizeBytes: integer('sizeBytes', 1, Number.MAX_SAFE_INTEGER),
    attachedAtMs: integer('attachedAtMs', 0, Number.MAX_SAFE_INTEGER),
    state,
  };
}
