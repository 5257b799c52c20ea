/**
 * FaultProxy: a TCP proxy on 127.0.0.1 in front of one node's Raft port, used for one direction of
 * one link (node A dials B through the proxy "A→B"). It injects the network faults the cluster
 * tests need without network namespaces:
 * - `pass`: bytes flow both ways unchanged;
 * - `blackhole`: connections stay open but every byte is silently discarded both ways, and new
 *   connections are accepted and discarded the same way — a partition as TCP sees it (no reset,
 *   the sender's writes succeed, nothing arrives);
 * - back to `pass` (heal): connections that lost bytes are closed (their framing is broken), so
 *   both ends reconnect cleanly; new connections pass.
 * Memory stays bounded: discarded bytes are read and dropped; passing bytes follow TCP
 * backpressure through pipe().
 */
import { type Server, type Socket, connect, createServer } from 'node:net';

export type ProxyMode = 'pass' | 'blackhole';

interface ProxiedConnection {
  readonly client: Socket;
  /** None for a connection accepted during a blackhole: the node behind sees nothing of it. */
  readonly upstream: Socket | undefined;
  /** Bytes were discarded on this connection: close it on heal. */
  damaged: boolean;
}

export class FaultProxy {
  private modeNow: ProxyMode = 'pass';
  private readonly connections = new Set<ProxiedConnection>();

  private constructor(private readonly server: Server, readonly port: number, private readonly targetPort: number) {}

  static async start(targetPort: number): Promise<FaultProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address !== 'object') throw new Error('proxy has no address');
    const proxy = new FaultProxy(server, address.port, targetPort);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  get mode(): ProxyMode {
    return this.modeNow;
  }

  setMode(mode: ProxyMode): void {
    if (mode === this.modeNow) return;
    this.modeNow = mode;
    for (const connection of this.connections) {
      if (mode === 'blackhole') this.discard(connection);
      else if (connection.damaged) this.closeConnection(connection);
    }
  }

  async close(): Promise<void> {
    for (const connection of this.connections) this.closeConnection(connection);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const upstream = this.modeNow === 'pass' ? connect({ host: '127.0.0.1', port: this.targetPort }) : undefined;
    const connection: ProxiedConnection = { client, upstream, damaged: false };
    this.connections.add(connection);
    client.on('error', () => this.closeConnection(connection));
    client.on('close', () => this.closeConnection(connection));
    if (upstream === undefined) {
      this.discard(connection);
      return;
    }
    upstream.on('error', () => this.closeConnection(connection));
    upstream.on('close', () => this.closeConnection(connection));
    client.pipe(upstream);
    upstream.pipe(client);
  }

  private discard(connection: ProxiedConnection): void {
    connection.damaged = true;
    for (const socket of [connection.client, connection.upstream]) {
      if (socket === undefined) continue;
      socket.unpipe();
      socket.removeAllListeners('data');
      socket.on('data', () => {});
      socket.resume();
    }
  }

  private closeConnection(connection: ProxiedConnection): void {
    if (!this.connections.delete(connection)) return;
    connection.client.destroy();
    connection.upstream?.destroy();
  }
}
