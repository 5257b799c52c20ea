/**
 * Attach policy as pure functions: the defaults, how a request becomes a plan (method,
 * connections, timeouts, flags), backend identifiers, reconnect back-off, and how a failed
 * kernel call becomes a CairnError with words an operator can act on. No I/O.
 *
 * Choices (and why):
 * - Netlink first: CONNECT needs no blocking thread, and only netlink devices survive a daemon
 *   restart (RECONFIGURE); ioctls are the fallback for kernels without the netlink family.
 * - One socket per CPU, capped at `connectionsDefaultMax`, when the volume allows multi-conn:
 *   the kernel makes one hardware queue per socket. One socket otherwise (the kernel refuses more).
 * - Netlink I/O timeout 30 s: a request the kernel sent to a daemon that then died is retried on
 *   the next socket after this long, so a restart costs a pause of at most this, never EIO.
 *   With 0 such a request would wait forever.
 * - Dead-connection timeout 120 s: how long the kernel queues I/O while the daemon restarts; a
 *   restart (even under systemd's RestartSec and a slow start) must fit inside it.
 * - Ioctl devices get I/O timeout 0 by default: they cannot be given fresh sockets, so a
 *   timed-out socket would end the device; waiting is the safer failure.
 */
import type { AttachRequest } from '../api/types';
import type { BlockCapabilities } from '../block/block-device';
import { CairnError } from '../errors/cairn-error';
import { blockBytes } from '../limits';
import { isNativeError, nbdSocketsMax, nbdTimeoutSecondsMax } from '../native/binding';
import { transmissionFlagsFor } from '../nbd/validate';
import { TransmissionFlag } from '../nbd/protocol';
import type { AttachMethod } from './attachment-store';

export const attachDefaults = {
  netlinkIoTimeoutSeconds: 30,
  ioctlIoTimeoutSeconds: 0,
  deadConnTimeoutSeconds: 120,
  blockBytes,
  connectionsDefaultMax: 8,
} as const;

/** The message every "no NBD in this kernel" failure carries. */
export const noNbdDriverMessage = 'this kernel has no nbd driver: load it with `modprobe nbd`';

/** Re-connect attempts for one loss of sockets before the attachment is declared failed. */
export const reconnectAttemptsMax = 30;
/** A handed-over socket that closes sooner than this counts as refused by the kernel. */
export const reconnectStableMs = 2000;
/** How long stop() lets the kernel's in-flight requests finish before dropping the sockets. */
export const stopDrainMs = 20_000;
/** How long detach waits for the kernel to close its sockets after DISCONNECT. */
export const detachCloseWaitMs = 30_000;
/** How long an ioctl device may take to show as running after its thread entered NBD_DO_IT. */
export const ioctlStartWaitMs = 10_000;
/** CONNECT attempts on EBUSY (udev or another tool briefly holding the chosen device). */
export const connectAttemptsMax = 3;

export interface AttachPlan {
  readonly method: AttachMethod;
  readonly connections: number;
  readonly readOnly: boolean;
  readonly ioTimeoutSeconds: number;
  readonly deadConnTimeoutSeconds: number;
  readonly blockBytes: number;
  /** Exactly what the kernel is told and what the server validates against. */
  readonly serverFlags: number;
}

export interface PlanContext {
  readonly method: AttachMethod;
  readonly cpuCount: number;
  readonly capabilities: BlockCapabilities;
  readonly volumeReadOnly: boolean;
}

/** Turns a request into a plan or throws CAIRN_INVALID_ARGUMENT naming the bad field. */
export function planAttach(request: AttachRequest, context: PlanContext): AttachPlan {
  const readOnly = request.readOnly === true || context.volumeReadOnly;
  const serverFlags = transmissionFlagsFor(context.capabilities, readOnly, false);
  const multiConn = (serverFlags & TransmissionFlag.CAN_MULTI_CONN) !== 0;
  const connections = request.connections ??
    (multiConn ? Math.max(1, Math.min(context.cpuCount, attachDefaults.connectionsDefaultMax)) : 1);
  checkInteger('connections', connections, 1, nbdSocketsMax);
  if (connections > 1 && !multiConn) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', 'this volume cannot be served over several connections (no multi-conn); use --connections 1');
  }
  const ioTimeoutSeconds = request.ioTimeoutSeconds ??
    (context.method === 'netlink' ? attachDefaults.netlinkIoTimeoutSeconds : attachDefaults.ioctlIoTimeoutSeconds);
  checkInteger('ioTimeoutSeconds', ioTimeoutSeconds, 0, nbdTimeoutSecondsMax);
  let deadConnTimeoutSeconds = request.deadConnTimeoutSeconds ?? attachDefaults.deadConnTimeoutSeconds;
  checkInteger('deadConnTimeoutSeconds', deadConnTimeoutSeconds, 0, nbdTimeoutSecondsMax);
  if (context.method === 'ioctl') {
    if (request.deadConnTimeoutSeconds !== undefined && request.deadConnTimeoutSeconds > 0) {
      throw new CairnError('CAIRN_INVALID_ARGUMENT',
        'the ioctl path has no dead-connection timeout (its devices cannot outlive cairnd); attach through netlink for restarts without I/O errors');
    }
    deadConnTimeoutSeconds = 0;
  }
  return {
    method: context.method, connections, readOnly, ioTimeoutSeconds, deadConnTimeoutSeconds,
    blockBytes: attachDefaults.blockBytes, serverFlags,
  };
}

function checkInteger(name: string, value: number, minimum: number, maximum: number): void {
  if (!Number.isSafeInteger(value) || value < minimum || value > maximum) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', `${name} must be an integer from ${minimum} to ${maximum}, got ${value}`);
  }
}

/** Whether an existing attachment satisfies a repeated request (attach is idempotent). */
export function satisfies(existing: { method: AttachMethod; connections: number; readOnly: boolean }, request: AttachRequest): boolean {
  if (request.connections !== undefined && request.connections !== existing.connections) return false;
  if (request.readOnly !== undefined && request.readOnly !== existing.readOnly) return false;
  if (request.method !== undefined && request.method !== 'auto' && request.method !== existing.method) return false;
  return true;
}

/**
 * The identifier the kernel shows in /sys/block/nbdX/backend and checks on RECONFIGURE: the
 * volume id plus a random cookie, so a device is never mistaken for another attachment's.
 */
export function backendIdFor(volumeId: string, cookieHex: string): string {
  const id = `cairn:${volumeId}:${cookieHex}`;
  if (id.length > 255 || !/^[\x21-\x7e]+$/.test(id)) throw new CairnError('CAIRN_INVALID_ARGUMENT', 'volume id unfit for a backend identifier');
  return id;
}

/** Delay before the n-th (0-based) attempt to hand the kernel fresh sockets. */
export function reconnectDelayMs(attempt: number): number {
  const steps = [100, 250, 500, 1000, 2000];
  return steps[Math.min(attempt, steps.length - 1)] ?? 2000;
}

/** True for the lookup failure that means "no netlink nbd family in this kernel". */
export function isMissingNetlinkFamily(error: unknown): boolean {
  return isNativeError(error) && error.code === 'ENOENT' && error.syscall.startsWith('genl CTRL_CMD_GETFAMILY');
}

export function isPermissionError(error: unknown): boolean {
  return isNativeError(error) && (error.code === 'EPERM' || error.code === 'EACCES');
}

export function isBusyError(error: unknown): boolean {
  return isNativeError(error) && error.code === 'EBUSY';
}

/** A failed kernel call as a CairnError; `what` says what was being done ("attach volume 'a'"). */
export function attachErrorOf(error: unknown, what: string): CairnError {
  if (error instanceof CairnError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  if (isPermissionError(error)) return new CairnError('CAIRN_PLATFORM', `cannot ${what}: ${detail}; run cairnd as root`, { cause: error });
  if (isMissingNetlinkFamily(error)) return new CairnError('CAIRN_PLATFORM', `cannot ${what}: ${noNbdDriverMessage}`, { cause: error });
  if (isBusyError(error)) return new CairnError('CAIRN_UNAVAILABLE', `cannot ${what}: ${detail}`, { cause: error, retryable: true });
  return new CairnError('CAIRN_IO', `cannot ${what}: ${detail}`, { cause: error });
}
