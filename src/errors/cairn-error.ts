/**
 * CairnError: expected failures with stable codes. One table maps each code to the NBD errno, the
 * gRPC status and the HTTP status it is reported as, so every frontend translates errors the same
 * way and the compiler proves every code is mapped (`satisfies`). Programmer errors are TypeError /
 * AssertionError without a code: nobody should branch on them.
 */

/** NBD protocol error values (not host errno values). */
export const NbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof NbdErrno)[keyof typeof NbdErrno];

/** gRPC status codes (numbers as in grpc's Status enum). */
export const GrpcStatus = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
} as const;
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

export const errorWire = {
  CAIRN_INVALID_ARGUMENT:           { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.INVALID_ARGUMENT,    http: 400 },
  CAIRN_OUT_OF_RANGE:               { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.OUT_OF_RANGE,        http: 400 },
  CAIRN_VOLUME_NOT_FOUND:           { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.NOT_FOUND,           http: 404 },
  CAIRN_VOLUME_EXISTS:              { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.ALREADY_EXISTS,      http: 409 },
  CAIRN_VOLUME_IN_USE:              { nbd: NbdErrno.EIO,       grpc: GrpcStatus.FAILED_PRECONDITION, http: 409 },
  CAIRN_PROFILE_NOT_FOUND:          { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.NOT_FOUND,           http: 404 },
  CAIRN_PROFILE_EXISTS:             { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.ALREADY_EXISTS,      http: 409 },
  CAIRN_PROFILE_IN_USE:             { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.FAILED_PRECONDITION, http: 409 },
  CAIRN_SHRINK_REFUSED:             { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.OUT_OF_RANGE,        http: 400 },
  CAIRN_NO_SPACE:                   { nbd: NbdErrno.ENOSPC,    grpc: GrpcStatus.RESOURCE_EXHAUSTED,  http: 507 },
  CAIRN_NOT_ENOUGH_NODES:           { nbd: NbdErrno.EIO,       grpc: GrpcStatus.RESOURCE_EXHAUSTED,  http: 507 },
  CAIRN_READ_ONLY:                  { nbd: NbdErrno.EPERM,     grpc: GrpcStatus.FAILED_PRECONDITION, http: 409 },
  CAIRN_NOT_SUPPORTED:              { nbd: NbdErrno.ENOTSUP,   grpc: GrpcStatus.UNIMPLEMENTED,       http: 501 },
  CAIRN_IO:                         { nbd: NbdErrno.EIO,       grpc: GrpcStatus.INTERNAL,            http: 500 },
  CAIRN_NOT_LEADER:                 { nbd: NbdErrno.EIO,       grpc: GrpcStatus.UNAVAILABLE,         http: 503 },
  CAIRN_STALE_EPOCH:                { nbd: NbdErrno.EIO,       grpc: GrpcStatus.ABORTED,             http: 409 },
  CAIRN_OPERATION_PENDING:          { nbd: NbdErrno.EIO,       grpc: GrpcStatus.ABORTED,             http: 409 },
  CAIRN_SHUTTING_DOWN:              { nbd: NbdErrno.ESHUTDOWN, grpc: GrpcStatus.UNAVAILABLE,         http: 503 },
  CAIRN_CLOSED:                     { nbd: NbdErrno.ESHUTDOWN, grpc: GrpcStatus.UNAVAILABLE,         http: 503 },
  CAIRN_CONFIG:                     { nbd: NbdErrno.EINVAL,    grpc: GrpcStatus.INVALID_ARGUMENT,    http: 400 },
  CAIRN_DATA_DIR_LOCKED:            { nbd: NbdErrno.EIO,       grpc: GrpcStatus.FAILED_PRECONDITION, http: 409 },
  CAIRN_PLATFORM:                   { nbd: NbdErrno.ENOTSUP,   grpc: GrpcStatus.UNIMPLEMENTED,       http: 501 },
  CAIRN_CORRUPT:                    { nbd: NbdErrno.EIO,       grpc: GrpcStatus.INTERNAL,            http: 500 },
  CAIRN_UNAVAILABLE:                { nbd: NbdErrno.EIO,       grpc: GrpcStatus.UNAVAILABLE,         http: 503 },
} satisfies Record<string, { nbd: NbdErrno; grpc: GrpcStatus; http: number }>;

export type ErrorCode = keyof typeof errorWire;

/** Human descriptions of each code, for docs and `cairn` output; a test checks both directions. */
export const errorDescriptions: Record<ErrorCode, string> = {
  CAIRN_INVALID_ARGUMENT: 'a request argument is malformed or out of its allowed set',
  CAIRN_OUT_OF_RANGE: 'an offset or length lies outside the volume',
  CAIRN_VOLUME_NOT_FOUND: 'no volume has that name or id',
  CAIRN_VOLUME_EXISTS: 'a volume with that name already exists with different properties',
  CAIRN_VOLUME_IN_USE: 'the volume is attached or served and cannot be changed that way now',
  CAIRN_PROFILE_NOT_FOUND: 'no profile has that name',
  CAIRN_PROFILE_EXISTS: 'a profile with that name already exists',
  CAIRN_PROFILE_IN_USE: 'volumes still use the profile, so it cannot be deleted',
  CAIRN_SHRINK_REFUSED: 'volumes only grow; a smaller size would destroy data',
  CAIRN_NO_SPACE: 'the pool or a drive has no room for the request',
  CAIRN_NOT_ENOUGH_NODES: 'fewer nodes than replicas requested are available',
  CAIRN_READ_ONLY: 'the volume or export is read-only',
  CAIRN_NOT_SUPPORTED: 'the operation is not supported by this device or platform',
  CAIRN_IO: 'an I/O operation failed on a drive',
  CAIRN_NOT_LEADER: 'this node is not the metadata leader; retry on the leader',
  CAIRN_STALE_EPOCH: 'the request carries an owner epoch older than the current one',
  CAIRN_OPERATION_PENDING: 'a conflicting operation on the same object is in progress',
  CAIRN_SHUTTING_DOWN: 'the daemon is shutting down',
  CAIRN_CLOSED: 'the resource was closed',
  CAIRN_CONFIG: 'the configuration is invalid',
  CAIRN_DATA_DIR_LOCKED: 'another cairnd already uses this data directory',
  CAIRN_PLATFORM: 'the kernel or filesystem lacks a needed facility',
  CAIRN_CORRUPT: 'stored data failed an integrity check',
  CAIRN_UNAVAILABLE: 'a needed service or peer is not reachable right now',
};

export class CairnError extends Error {
  override readonly name = 'CairnError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryable?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options?.retryable ?? false;
  }
  readonly retryable: boolean;
}

export function isCairnError(error: unknown, code?: ErrorCode): error is CairnError {
  return error instanceof CairnError && (code === undefined || error.code === code);
}

/** Maps any thrown value to the NBD errno to report; unknown errors are EIO. */
export function nbdErrnoOf(error: unknown): NbdErrno {
  if (error instanceof CairnError) return errorWire[error.code].nbd;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') return NbdErrno.ENOSPC;
  if (code === 'EROFS' || code === 'EPERM' || code === 'EACCES') return NbdErrno.EPERM;
  if (code === 'ENOMEM') return NbdErrno.ENOMEM;
  return NbdErrno.EIO;
}

export function httpStatusOf(error: unknown): number {
  return error instanceof CairnError ? errorWire[error.code].http : 500;
}
