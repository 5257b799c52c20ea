/**
 * BulkChannel: a connection's second descriptor for its socket, on which large READ replies and
 * WRITE payloads move on the thread pool (socket-ops.cc). With every socket copy on the main
 * thread, one core caps a server's 1 MiB throughput at what that thread can copy (≈ 1.6 GB/s
 * for writes here) no matter how many connections share the load; the pool spreads the copies
 * over every core.
 *
 * The connection keeps the ordering rules (nothing else reads while a receive runs, nothing
 * else writes while a send runs); this class owns the descriptor and the process-wide budget:
 * - at most `bulkTransfersMax` transfers run at once in the process (the rest of the pool stays
 *   free for file I/O), and a transfer gives up after `bulkIdleMs` without progress, so a slow
 *   or stalled peer holds a pool thread only briefly (the connection finishes on the event loop);
 * - the descriptor is closed only once the connection has let go of it (`close`) and no
 *   transfer is running: a closed number can be reused by another file at once, and a transfer
 *   still using it would then read or write that file.
 */
import { assert } from '../util/assert';

/**
 * The socket calls a bulk channel needs, implemented by the native addon (SocketBinding in
 * src/native); the daemon passes them in, so this layer depends on no addon. A transfer resolves
 * with the bytes moved — all of them, or fewer when the peer stayed silent for idleMs, ended its
 * side (receive) or the socket was shut down — and rejects on a socket error. Nothing else may
 * read (recv) or write (send) the socket while a transfer runs, and the descriptor (a socketDup
 * copy) must stay open until it settles.
 */
export interface SocketCalls {
  /** A close-on-exec duplicate of a stream socket's descriptor. */
  socketDup(fd: number): number;
  /** shutdown(SHUT_RDWR): ends transfers blocked on the socket; ENOTCONN is not an error. */
  socketShutdown(fd: number): void;
  socketClose(fd: number): void;
  /** Sends the buffers in order, gathered into one sendmsg (the addon takes 1 to 64 of them). */
  sendAsync(fd: number, sources: readonly Uint8Array[], idleMs: number): Promise<number>;
  recvAsync(fd: number, target: Uint8Array, idleMs: number): Promise<number>;
  /**
   * recvAsync, then — only if the whole target arrived — one recv that does not wait, into
   * `ahead` (a separate buffer): whatever the peer has sent since, usually the next request's
   * header. `ahead` is 0 when nothing was waiting, the peer ended or the socket failed (the
   * caller's own reads then find out).
   */
  recvAheadAsync(fd: number, target: Uint8Array, ahead: Uint8Array, idleMs: number): Promise<ReceiveAheadResult>;
  /**
   * Receives buffer[from..] from the socket, then — only if all of it arrived — pwrites the whole
   * buffer to `fileFd` at `position`, then receives ahead as recvAheadAsync does (when `ahead`
   * is given), in one pool call. A failed pwrite is reported in `writeError` (the socket is
   * fine); socket errors reject.
   */
  recvWriteAsync(fd: number, buffer: Uint8Array, from: number, idleMs: number, fileFd: number, position: number, ahead?: Uint8Array): Promise<ReceiveWriteResult>;
}

/** What a receive did: bytes of the target in place, bytes received into the ahead buffer. */
export interface ReceiveAheadResult {
  readonly received: number;
  readonly ahead: number;
}

/** What a receive-and-write did: bytes of the buffer in place, bytes written, the write's failure. */
export interface ReceiveWriteResult {
  readonly received: number;
  readonly written: number;
  readonly writeError?: Error;
  /** Bytes received into the ahead buffer (0 or absent when none was given). */
  readonly ahead?: number;
}

/** Transfers running at once in the process (of the libuv pool's threads). */
export const bulkTransfersMax = 4;
/** How long a transfer waits for a silent peer before it hands the rest back to the event loop. */
export const bulkIdleMs = 20;
/** Most buffers (replies) one send gathers, and most bytes it starts with. */
export const bulkSendBuffersMax = 64;
export const bulkSendBytesMax = 32 * 1024 * 1024;

let transfersRunning = 0;

/** Bulk transfers running now in the process (all connections). */
export function bulkTransfersRunning(): number {
  return transfersRunning;
}

export class BulkChannel {
  private running = 0;
  private closing = false;
  private closed = false;

  private constructor(private readonly binding: SocketCalls, readonly fd: number) {}

  /** A channel over a duplicate of `socketFd`, or undefined when it cannot be duplicated. */
  static open(socketFd: number, binding: SocketCalls): BulkChannel | undefined {
    try {
      return new BulkChannel(binding, binding.socketDup(socketFd));
    } catch {
      return undefined;
    }
  }

  /** Whether the descriptor may still be used (close() was not called). */
  get isOpen(): boolean {
    return !this.closing;
  }

  /** Whether a transfer may start now (the channel is open and the process budget allows it). */
  get available(): boolean {
    return !this.closing && transfersRunning < bulkTransfersMax;
  }

  /** Sends the buffers in order; resolves with the bytes sent (fewer when the peer stopped taking them). */
  send(sources: readonly Buffer[]): Promise<number> {
    assert(sources.length > 0 && sources.length <= bulkSendBuffersMax, 'a bulk send gathers 1 to bulkSendBuffersMax buffers');
    return this.run((fd) => this.binding.sendAsync(fd, sources, bulkIdleMs));
  }

  /**
   * Receives into `target` (fewer bytes: the peer paused or ended), then — when all of it came —
   * what has already arrived after it into `ahead`, without waiting.
   */
  receive(target: Buffer, ahead?: Buffer): Promise<ReceiveAheadResult> {
    if (ahead === undefined) return this.run((fd) => this.binding.recvAsync(fd, target, bulkIdleMs).then((received) => ({ received, ahead: 0 })));
    return this.run((fd) => this.binding.recvAheadAsync(fd, target, ahead, bulkIdleMs));
  }

  /**
   * Keeps the descriptor open while `use` runs: every transfer, and a FLUSH whose syncing thread
   * sends the reply on it (FlushNotice) — that one outside the transfer budget, as its thread is
   * busy syncing anyway.
   */
  async lend<T>(use: () => Promise<T>): Promise<T> {
    assert(!this.closing, 'a closed channel lends nothing');
    this.running++;
    try {
      return await use();
    } finally {
      this.running--;
      this.maybeCloseFd();
    }
  }

  /**
   * Receives buffer[from..], then — only if all of it arrived — writes the whole buffer to
   * `fileFd` at `position`, then receives into `ahead` as receive() does, in one pool call (a
   * WRITE payload straight from the socket to its extent file).
   */
  receiveAndWrite(buffer: Buffer, from: number, fileFd: number, position: number, ahead?: Buffer): Promise<ReceiveWriteResult> {
    return this.run((fd) => this.binding.recvWriteAsync(fd, buffer, from, bulkIdleMs, fileFd, position, ahead));
  }

  /** The connection is done with the socket: wakes running transfers, closes once they settle. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.running > 0) {
      try {
        this.binding.socketShutdown(this.fd);
      } catch {
        // the peer is gone already; the transfers end on their own within bulkIdleMs
      }
    }
    this.maybeCloseFd();
  }

  /** A transfer: the descriptor is lent for it, and it counts against the process budget. */
  private async run<T>(transfer: (fd: number) => Promise<T>): Promise<T> {
    assert(this.available, 'a bulk transfer starts only when the channel is available');
    transfersRunning++;
    try {
      return await this.lend(() => transfer(this.fd));
    } finally {
      transfersRunning--;
    }
  }

  private maybeCloseFd(): void {
    if (!this.closing || this.closed || this.running > 0) return;
    this.closed = true;
    try {
      this.binding.socketClose(this.fd);
    } catch {
      // close(2) released the number even if it reported an error
    }
  }
}
