/**
 * History files: JSON lines on disk (format in history.ts). Owns reading them with bounded memory
 * per line and per file, writing them, and finding the `*.jsonl` files of a history directory
 * (the one named by CAIRN_HISTORY_DIR in the tests of issue 3).
 *
 * Reading streams the file in chunks: a line longer than `historyLineBytesMax` bytes is refused
 * before it is assembled, invalid UTF-8 is refused rather than replaced, and a file with more
 * than `historyFileOperationsMax` operations is refused. Every error names the file and the line.
 */
import { open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '../util/assert';
import { formatHistory, HistoryFormatError, historyLineBytesMax, parseHistoryLine } from './history';
import type { HistoryOperation } from './history';

/** Most operations read from one history file (about 200 bytes of memory each once parsed). */
export const historyFileOperationsMax = 2_000_000;
/** Bytes read from the file per read call. */
const chunkBytes = 64 * 1024;

/**
 * Reads and validates a JSON-lines history file. Throws HistoryFormatError for bad content.
 * `operationsMax` may only lower the bound (tests use it).
 */
export async function readHistoryFile(path: string, operationsMax = historyFileOperationsMax): Promise<HistoryOperation[]> {
  assert(Number.isSafeInteger(operationsMax) && operationsMax > 0 && operationsMax <= historyFileOperationsMax, 'operationsMax is within the file bound');
  const operations: HistoryOperation[] = [];
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const chunk = Buffer.alloc(chunkBytes);
  let pieces: Buffer[] = [];
  let pendingBytes = 0;
  let lineNumber = 0;

  const finishLine = (tail: Buffer): void => {
    lineNumber += 1;
    const bytes = pieces.length === 0 ? tail : Buffer.concat([...pieces, tail]);
    pieces = [];
    pendingBytes = 0;
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      throw new HistoryFormatError(path, lineNumber, 'not valid UTF-8');
    }
    const operation = parseHistoryLine(text, path, lineNumber);
    if (operation === undefined) return;
    if (operations.length >= operationsMax) throw new HistoryFormatError(path, lineNumber, `more than ${operationsMax} operations in one file`);
    operations.push(operation);
  };
  const checkLineBytes = (part: Buffer): void => {
    if (pendingBytes + part.length > historyLineBytesMax) {
      throw new HistoryFormatError(path, lineNumber + 1, `line is longer than ${historyLineBytesMax} bytes`);
    }
  };

  const file = await open(path, 'r');
  try {
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, chunkBytes, null);
      if (bytesRead === 0) break;
      const data = chunk.subarray(0, bytesRead);
      let start = 0;
      for (let newline = data.indexOf(0x0a, start); newline !== -1; newline = data.indexOf(0x0a, start)) {
        const line = data.subarray(start, newline);
        checkLineBytes(line);
        finishLine(line);
        start = newline + 1;
      }
      // The rest of the chunk starts a line the next chunk finishes; `chunk` is reused, so copy it.
      const partial = data.subarray(start);
      checkLineBytes(partial);
      if (partial.length > 0) pieces.push(Buffer.from(partial));
      pendingBytes += partial.length;
    }
    if (pendingBytes > 0) finishLine(Buffer.alloc(0));
  } finally {
    await file.close();
  }
  return operations;
}

/** Writes `operations` as a JSON-lines history file, replacing any file at `path`. */
export async function writeHistoryFile(path: string, operations: readonly HistoryOperation[]): Promise<void> {
  await writeFile(path, formatHistory(operations), 'utf8');
}

/** The `*.jsonl` files directly inside `directory`, as paths, sorted by name. */
export async function listHistoryFiles(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.jsonl'))
    .map((entry) => entry.name)
    .sort()
    .map((name) => join(directory, name));
}
