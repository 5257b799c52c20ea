/**
 * NbdServer: accepts NBD sessions on any Duplex stream (TCP and Unix listeners are thin helpers)
 * and serves the exports an injected ExportResolver opens. Also `serveTransmission`, the
 * handshake-less entry the kernel NBD driver needs (a socketpair end handed to the kernel speaks
 * only the transmission phase, with simple replies).
 *
 * Lifecycle: open → closing → closed. `close()` stops the listeners, answers every further
 * option with ERR_SHUTDOWN, lets transmission connections finish their in-flight requests (new
 * ones are not read), answers what is still running at the deadline with ESHUTDOWN, drops
 * handshakes still open at the deadline, and resolves once every connection has closed and
 * released its export. One connection's failure never touches another.
 *
 * Invariant: connections ≤ connectionsMax; a stream beyond it is destroyed at once.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { nbdConnectionsMax } from '../limits';
import { assert } from '../util/assert';
import { ConnectionLimits, defaultConnectionLimits, NbdConnection, StoreOnArrival } from './connection';
import { ExportResolver, NbdExportHandle, NbdLogger, silentNbdLogger } from './export-resolver';
import { BulkChannel, SocketCalls } from './bulk-channel';
import { adoptSocket, SocketInput } from './socket-input';

/** How long close() lets in-flight requests run before answering them ESHUTDOWN. */
export const shutdownDeadlineMsDefault = 10_000;

export interface NbdServerOptions {
  readonly resolver: ExportResolver;
  readonly logger?: NbdLogger;
  /** Per-connection bounds; defaults from src/limits.ts. */
  readonly limits?: Partial<ConnectionLimits>;
  readonly connectionsMax?: number;
  readonly shutdownDeadlineMs?: number;
  /**
   * Enables the socket fast paths for accepted connections — onread staging and direct payload
   * receive, bulk transfers and flush replies from the thread pool (connection.ts) — with the
   * addon's socket calls (loadSocketBinding()). Without it, accepted sockets are served plainly.
   */
  readonly socketCalls?: SocketCalls;
  /** See StoreOnArrival (connection.ts); default 'always'. */
  readonly storeOnArrival?: StoreOnArrival;
}

export type NbdServerStatus = 'open' | 'closing' | 'closed';

export class NbdServer {
  private statusValue: NbdServerStatus = 'open';
  private readonly resolver: ExportResolver;
  private readonly logger: NbdLogger;
  private readonly limits: ConnectionLimits;
  private readonly connectionsMax: number;
  private readonly shutdownDeadlineMs: number;
  private readonly connections = new Set<NbdConnection>();
  private readonly listeners: net.Server[] = [];
  private nextConnectionId = 1;
  private closing: Promise<void> | undefined;
  private readonly socketCalls: SocketCalls | undefined;
  private readonly storeOnArrival: StoreOnArrival;

  constructor(options: NbdServerOptions) {
    this.resolver = options.resolver;
    this.logger = options.logger ?? silentNbdLogger;
    this.limits = { ...defaultConnectionLimits, ...options.limits };
    this.connectionsMax = options.connectionsMax ?? nbdConnectionsMax;
    this.shutdownDeadlineMs = options.shutdownDeadlineMs ?? shutdownDeadlineMsDefault;
    this.socketCalls = options.socketCalls;
    this.storeOnArrival = options.storeOnArrival ?? 'always';
    assert(this.connectionsMax > 0, 'connectionsMax must be positive');
    assert(this.shutdownDeadlineMs >= 0, 'shutdownDeadlineMs must not be negative');
  }

  get status(): NbdServerStatus {
    return this.statusValue;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Serves one NBD session (handshake first) on `stream`; undefined if refused. `socket` is set
   * for sockets the server adopted (their onread input and bulk channel).
   */
  serve(stream: Duplex, socket?: { readonly input: SocketInput; readonly bulk: BulkChannel | undefined }): NbdConnection | undefined {
    if (this.statusValue !== 'open' || this.connections.size >= this.connectionsMax) {
      this.logger.warn('nbd connection refused', { status: this.statusValue, connections: this.connections.size });
      stream.on('error', ignoreError);
      stream.destroy();
      socket?.bulk?.close();
      return undefined;
    }
    const connection = new NbdConnection(stream, {
      id: this.nextConnectionId++,
      logger: this.logger,
      limits: this.limits,
      resolver: this.resolver,
      isShuttingDown: () => this.statusValue !== 'open',
      ...(socket === undefined ? {} : { input: socket.input, ...(socket.bulk === undefined ? {} : { bulk: socket.bulk }) }),
      storeOnArrival: this.storeOnArrival,
    });
    this.track(connection);
    connection.startHandshake();
    return connection;
  }

  /** Listens on TCP (TCP_NODELAY on every connection); port 0 picks a free port. */
  async listenTcp(host: string, port: number): Promise<net.AddressInfo> {
    const listener = await this.listen((server) => server.listen({ host, port }));
    const address = listener.address();
    assert(address !== null && typeof address === 'object', 'a TCP listener has an address');
    return address;
  }

  /** Listens on a Unix socket path (which must not exist yet). */
  async listenUnix(path: string): Promise<void> {
    await this.listen((server) => server.listen({ path }));
  }

  /** Stops accepting, drains every connection (see the module comment), then resolves. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async closeNow(): Promise<void> {
    this.statusValue = 'closing';
    const listenersClosed = this.listeners.map((listener) => new Promise<void>((resolve) => {
      listener.close(() => resolve());
    }));
    for (const connection of this.connections) connection.shutdown(this.shutdownDeadlineMs);
    await Promise.all(listenersClosed);
    await Promise.all([...this.connections].map((connection) => connection.closed));
    this.statusValue = 'closed';
  }

  private async listen(start: (server: net.Server) => void): Promise<net.Server> {
    assert(this.statusValue === 'open', 'listen on a closing server');
    // pauseOnConnect: the accepted socket must not read before adoptSocket replaces it.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true });
    server.on('connection', (accepted: net.Socket) => {
      const calls = this.socketCalls;
      const adopted = calls === undefined ? undefined : adoptSocket(accepted, (fd) => calls.socketDup(fd));
      if (calls === undefined || adopted === undefined) {
        accepted.setNoDelay(true);
        accepted.resume();
        this.serve(accepted);
        return;
      }
      adopted.socket.setNoDelay(true);
      this.serve(adopted.socket, { input: adopted.input, bulk: BulkChannel.open(adopted.fd, calls) });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve();
      });
      start(server);
    });
    server.on('error', (error) => this.logger.error('nbd listener error', { error }));
    this.listeners.push(server);
    return server;
  }

  private track(connection: NbdConnection): void {
    this.connections.add(connection);
    void connection.closed.then(() => {
      this.connections.delete(connection);
    });
  }
}

export interface TransmissionOptions {
  /** Exactly the flags the peer was told (e.g. NBD_SET_FLAGS for the kernel); no SEND_DF. */
  readonly transmissionFlags: number;
  readonly logger?: NbdLogger;
  readonly limits?: Partial<ConnectionLimits>;
  readonly id?: number;
}

/**
 * Serves only the transmission phase of `handle` on `stream`, with simple replies: what the
 * kernel NBD driver speaks. The handle is released when the connection closes.
 */
export function serveTransmission(stream: Duplex, handle: NbdExportHandle, options: TransmissionOptions): NbdConnection {
  const connection = new NbdConnection(stream, {
    id: options.id ?? 0,
    logger: options.logger ?? silentNbdLogger,
    limits: { ...defaultConnectionLimits, ...options.limits },
  });
  connection.startTransmission(handle, options.transmissionFlags);
  return connection;
}

function ignoreError(): void {}
