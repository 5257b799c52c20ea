/**
 * Translation of filesystem and native-addon failures into CairnError codes, in one place, so
 * every extent-store call reports a full drive, a failing disk or a missing feature the same way.
 * Programmer errors (TypeError, AssertionError) and errors that already carry a Cairn code pass
 * through unchanged.
 */
import { CairnError, ErrorCode } from '../errors/cairn-error';
import { AssertionError } from '../util/assert';

function errnoCodeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when the error says the filesystem or kernel lacks the call (not a failure of the data). */
export function isUnsupportedError(error: unknown): boolean {
  const code = errnoCodeOf(error);
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'ENOSYS';
}

const codeForErrno: Record<string, { code: ErrorCode; meaning: string }> = {
  ENOSPC: { code: 'CAIRN_NO_SPACE', meaning: 'the drive has no free space left' },
  EDQUOT: { code: 'CAIRN_NO_SPACE', meaning: 'the disk quota is exhausted' },
  EFBIG: { code: 'CAIRN_NO_SPACE', meaning: 'the file would exceed the largest size this filesystem allows' },
  EIO: { code: 'CAIRN_IO', meaning: 'the drive reported an I/O error' },
  EROFS: { code: 'CAIRN_READ_ONLY', meaning: 'the drive\'s filesystem is mounted read-only' },
  EOPNOTSUPP: { code: 'CAIRN_PLATFORM', meaning: 'the filesystem does not support this operation' },
  ENOTSUP: { code: 'CAIRN_PLATFORM', meaning: 'the filesystem does not support this operation' },
  ENOSYS: { code: 'CAIRN_PLATFORM', meaning: 'the kernel does not support this operation' },
  EMFILE: { code: 'CAIRN_IO', meaning: 'the process has too many open files' },
  ENFILE: { code: 'CAIRN_IO', meaning: 'the system has too many open files' },
  EACCES: { code: 'CAIRN_IO', meaning: 'permission denied' },
  EPERM: { code: 'CAIRN_IO', meaning: 'operation not permitted' },
  ENOENT: { code: 'CAIRN_IO', meaning: 'a file or directory of the drive is missing' },
};

/**
 * Maps a failure of `action` ("write", "punch hole in", …) on `path` to a CairnError whose
 * message names the path and the errno, with the original error as `cause`.
 */
export function extentError(error: unknown, action: string, path: string): Error {
  if (error instanceof CairnError || error instanceof TypeError || error instanceof AssertionError) return error;
  const errno = errnoCodeOf(error);
  const known = errno === undefined ? undefined : codeForErrno[errno];
  const detail = known?.meaning ?? (error instanceof Error ? error.message : String(error));
  return new CairnError(known?.code ?? 'CAIRN_IO', `${action} ${path}: ${detail}${errno === undefined ? '' : ` (${errno})`}`,
    { cause: error });
}
