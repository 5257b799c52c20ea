/**
 * Stable identities on disk: the node id lives in `<dataDir>/node.json`, each drive's id in
 * `<drive>/.cairn-drive.json`, so a node keeps its identity across restarts and a drive keeps its
 * id when its mount point moves. Files are written atomically (temp + fsync + rename + dir fsync).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CairnError } from '../errors/cairn-error';

const idPattern = /^[a-z0-9-]{1,64}$/;

export function loadOrCreateId(path: string, prefix: string): { id: string; created: boolean } {
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new CairnError('CAIRN_IO', `cannot read ${path}: ${(error as Error).message}`, { cause: error });
    }
  }
  if (text !== undefined) {
    let id: unknown;
    try {
      id = (JSON.parse(text) as { id?: unknown }).id;
    } catch {
      id = undefined;
    }
    if (typeof id !== 'string' || !idPattern.test(id)) {
      throw new CairnError('CAIRN_CORRUPT', `${path} does not hold a valid id; restore it from a backup, or remove it only if this directory holds no Cairn data`);
    }
    return { id, created: false };
  }
  const id = `${prefix}-${randomBytes(8).toString('hex')}`;
  writeFileAtomic(path, JSON.stringify({ id }) + '\n');
  return { id, created: true };
}

export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, text, { mode: 0o600 });
  const fd = openSync(temporary, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  const directory = openSync(dirname(path), 'r');
  try {
    fsyncSync(directory);
  } finally {
    closeSync(directory);
  }
}

export function nodeIdPath(dataDir: string): string {
  return join(dataDir, 'node.json');
}

export function driveIdPath(drive: string): string {
  return join(drive, '.cairn-drive.json');
}

/**
 * The extent store's directory name for a map volume id. Map ids are `vol:<index>` (a ':' no
 * name can contain); directory names avoid ':', so it becomes `vol-<index>`. One-to-one.
 */
export function extentVolumeId(volumeId: string): string {
  return volumeId.replace(':', '-');
}
