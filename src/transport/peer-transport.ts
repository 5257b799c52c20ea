/**
 * PeerTransport: Raft messages between the nodes of one cluster over TCP. It owns the listening
 * socket, one outbound PeerLink per configured peer (messages to a peer travel on the connection
 * this node dialed) and the inbound connections peers dialed (messages from a peer arrive there).
 * Raft traffic has these connections to itself; a later issue adds separate data connections so
 * bulk data never delays heartbeats.
 *
 * Wire: frames of src/wire/frame.ts — `[u32 length][u16 type][u16 version][payload]` — type 1 the
 * PeerHello (first frame each way), type 2 one RaftMessage. The inbound side checks, in order:
 * the declared frame length against `raftFramePayloadBytesMax` before anything is allocated (the
 * hello against `peerHelloBytesMax`), that the first frame is a hello from a configured peer of
 * this cluster addressed to this node (answered with our own hello; anything else is logged with
 * the reason and the connection closed), and that every later frame decodes to a message whose
 * `from` is the authenticated peer and `to` is this node. Any violation closes that one
 * connection and nothing else; the peer reconnects. A newer authenticated connection from a peer
 * replaces its older one. Authentication by cluster secret and TLS come with a later issue; the
 * hello only guards against misconfiguration (wrong cluster, wrong node, wrong address).
 *
 * `send` never blocks: a message for a peer that is not connected, or whose queue is full, is
 * dropped and reported through `onUnreachable` (Raft then probes instead of pipelining).
 *
 * Bounds: per-peer queue bytes and frames, inbound connections, handshake time (src/limits.ts).
 */
import { type Server, type Socket, createServer } from 'node:net';
import { clusterIdBytesMax, peerHandshakeTimeoutMs, peerInboundConnectionsMax, peerQueueBytesMax, peerQueueMessagesMax,
  peerReconnectBackoffMaxMs, peerReconnectBackoffMinMs, raftFramePayloadBytesMax } from '../limits';
import { type Logger, silentLogger } from '../observe/logger';
import type { Message } from '../raft';
import { assert } from '../util/assert';
import type { Random } from '../util/random';
import { FrameDecoder, FrameError, encodeFrame } from '../wire/frame';
import { WireDecodeError, decodePeerHello, decodeRaftMessage, encodePeerHello, encodeRaftMessage } from '../wire/raft-codec';
import {
  type PeerAddress, PeerLink, type PeerLinkStats, peerFrameType, peerFrameVersion, peerHelloBytesMax, peerProtocolVersion,
} from './peer-link';

/** The same refusal is logged at most once per this interval. */
const refusalLogIntervalMs = 60_000;
/** Distinct refusal reasons remembered (the table is cleared when it fills). */
const refusalReasonsMax = 256;

/** Says whether a line with this key may be logged now; bounded memory. */
class LogThrottle {
  private readonly lastLoggedMs = new Map<string, number>();

  constructor(private readonly intervalMs: number) {}

  shouldLog(key: string): boolean {
    const now = Date.now();
    const last = this.lastLoggedMs.get(key);
    if (last !== undefined && now - last < this.intervalMs) return false;
    if (this.lastLoggedMs.size >= refusalReasonsMax) this.lastLoggedMs.clear();
    this.lastLoggedMs.set(key, now);
    return true;
  }
}

export interface PeerTransportOptions {
  readonly clusterId: string;
  readonly nodeId: number;
  /** Where to listen; port 0 picks a free one (see `port`). */
  readonly listen: PeerAddress;
  /** Every other member: id → the address to dial. */
  readonly peers: ReadonlyMap<number, PeerAddress>;
  /** A message from an authenticated peer, addressed to this node. */
  readonly onMessage: (message: Message) => void;
  /** A message to `peerId` was dropped. */
  readonly onUnreachable: (peerId: number) => void;
  readonly random: Random;
  readonly logger?: Logger;
  readonly queueBytesMax?: number;
  readonly queueFramesMax?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  readonly handshakeTimeoutMs?: number;
  readonly inboundConnectionsMax?: number;
  readonly framePayloadBytesMax?: number;
}

interface Inbound {
  readonly socket: Socket;
  /** The authenticated peer, once its hello was accepted. */
  peerId: number | undefined;
}

export interface PeerTransportStats {
  readonly peers: ReadonlyMap<number, PeerLinkStats>;
  readonly inboundConnections: number;
  readonly inboundRejected: number;
  readonly messagesReceived: number;
}

export class PeerTransport {
  private readonly links = new Map<number, PeerLink>();
  private readonly inbound = new Set<Inbound>();
  private readonly logger: Logger;
  private readonly handshakeTimeoutMs: number;
  private readonly inboundConnectionsMax: number;
  private readonly framePayloadBytesMax: number;
  private inboundRejected = 0;
  /** A misconfigured peer redials forever: each refusal reason is logged once per interval. */
  private readonly refusalLog = new LogThrottle(refusalLogIntervalMs);
  private messagesReceived = 0;
  private closed = false;

  private constructor(private readonly options: PeerTransportOptions, private readonly server: Server, readonly port: number) {
    this.logger = options.logger ?? silentLogger;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? peerHandshakeTimeoutMs;
    this.inboundConnectionsMax = options.inboundConnectionsMax ?? peerInboundConnectionsMax;
    this.framePayloadBytesMax = options.framePayloadBytesMax ?? raftFramePayloadBytesMax;
  }

  /** Listens, then starts dialing every peer. */
  static async start(options: PeerTransportOptions): Promise<PeerTransport> {
    assert(options.clusterId.length > 0 && Buffer.byteLength(options.clusterId) <= clusterIdBytesMax, `cluster id must be 1..${clusterIdBytesMax} bytes`);
    assert(Number.isSafeInteger(options.nodeId) && options.nodeId > 0, 'node id must be a positive safe integer');
    assert(!options.peers.has(options.nodeId), 'the peers must not include this node');
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listen.port, options.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    assert(address !== null && typeof address === 'object', 'a TCP server has an address');
    const transport = new PeerTransport(options, server, address.port);
    server.on('connection', (socket) => transport.accept(socket));
    server.on('error', (error) => transport.logger.error('peer listener error', { error }));
    for (const [peerId, peerAddress] of options.peers) {
      const link = new PeerLink({
        clusterId: options.clusterId, nodeId: options.nodeId, peerId, address: peerAddress,
        queueBytesMax: options.queueBytesMax ?? peerQueueBytesMax, queueFramesMax: options.queueFramesMax ?? peerQueueMessagesMax,
        backoffMinMs: options.backoffMinMs ?? peerReconnectBackoffMinMs, backoffMaxMs: options.backoffMaxMs ?? peerReconnectBackoffMaxMs,
        handshakeTimeoutMs: transport.handshakeTimeoutMs, random: options.random, logger: transport.logger,
      });
      transport.links.set(peerId, link);
      link.start();
    }
    return transport;
  }

  /** Sends one message to its `to`; false (and onUnreachable) when it was dropped. Never blocks. */
  send(message: Message): boolean {
    const link = this.links.get(message.to);
    if (link === undefined || this.closed) {
      this.logger.debug('no link for message', { to: message.to, type: message.type });
      return false;
    }
    assert(message.from === this.options.nodeId, `sending a message from ${message.from} on node ${this.options.nodeId}`);
    let oversized = 0;
    const sent = link.send(() => {
      const payload = encodeRaftMessage(message);
      if (payload.length > this.framePayloadBytesMax) {
        oversized = payload.length;
        return undefined;
      }
      return encodeFrame({ type: peerFrameType.raft, version: peerFrameVersion, payload }, { payloadBytesMax: this.framePayloadBytesMax });
    });
    if (oversized > 0) {
      // Raft bounds its messages (messageBytesMax, one entry ≤ raftEntryBytesMax): this is a bug.
      this.logger.error('raft message larger than a frame; dropped', { type: message.type, to: message.to, bytes: oversized });
    }
    if (!sent) this.options.onUnreachable(message.to);
    return sent;
  }

  /** Sends what `send` queued (corked) on every link now instead of on the next tick. */
  flush(): void {
    for (const link of this.links.values()) link.flush();
  }

  stats(): PeerTransportStats {
    const peers = new Map<number, PeerLinkStats>();
    for (const [peerId, link] of this.links) peers.set(peerId, link.stats());
    return { peers, inboundConnections: this.inbound.size, inboundRejected: this.inboundRejected, messagesReceived: this.messagesReceived };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.links.values()) link.close();
    for (const connection of this.inbound) connection.socket.destroy();
    this.inbound.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- inbound --------------------------------------------------------------------------------

  private accept(socket: Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.closed || this.inbound.size >= this.inboundConnectionsMax) {
      this.inboundRejected++;
      this.logger.warn('refusing a peer connection: too many inbound connections', { remote, max: this.inboundConnectionsMax });
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const connection: Inbound = { socket, peerId: undefined };
    this.inbound.add(connection);
    const decoder = new FrameDecoder({
      payloadBytesMax: this.framePayloadBytesMax,
      acceptType: (type) => (connection.peerId === undefined ? type === peerFrameType.hello : type === peerFrameType.raft),
      acceptVersion: (_type, version) => version === peerFrameVersion,
    });
    const timer = setTimeout(() => this.drop(connection, 'warn', 'no hello within the handshake timeout', { remote }), this.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => {
      if (!this.inbound.has(connection)) return;
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        this.drop(connection, 'warn', 'closing a peer connection: malformed frame', { remote, peer: connection.peerId, reason: error.message });
        return;
      }
      for (const frame of frames) {
        if (!this.inbound.has(connection)) return;
        if (connection.peerId === undefined) {
          if (frame.payload.length > peerHelloBytesMax) {
            this.drop(connection, 'warn', 'closing a peer connection: oversized hello', { remote, bytes: frame.payload.length });
            return;
          }
          if (this.helloReceived(connection, frame.payload, remote)) clearTimeout(timer);
        } else {
          this.messageReceived(connection, frame.payload, remote);
        }
      }
    });
    socket.on('error', (error) => this.drop(connection, 'debug', 'peer connection error', { remote, peer: connection.peerId, error }));
    socket.on('close', () => {
      clearTimeout(timer);
      this.inbound.delete(connection);
    });
  }

  /** Validates the peer's hello and answers it; false (connection closed) when it is refused. */
  private helloReceived(connection: Inbound, payload: Uint8Array, remote: string): boolean {
    const { clusterId, nodeId, peers } = this.options;
    let hello;
    try {
      hello = decodePeerHello(payload);
    } catch (error) {
      if (!(error instanceof WireDecodeError)) throw error;
      this.drop(connection, 'warn', 'closing a peer connection: undecodable hello', { remote, reason: error.message });
      return false;
    }
    const refuse = (reason: string): false => {
      // Answer with our own hello before closing, so the dialer can log what is wrong on its side.
      this.inboundRejected++;
      this.inbound.delete(connection);
      if (this.refusalLog.shouldLog(reason)) this.logger.error('refusing a peer connection', { remote, reason });
      connection.socket.end(encodeFrame({
        type: peerFrameType.hello, version: peerFrameVersion,
        payload: encodePeerHello({ clusterId, fromNode: nodeId, toNode: hello.fromNode, protocolVersion: peerProtocolVersion }),
      }));
      setTimeout(() => connection.socket.destroy(), this.handshakeTimeoutMs).unref();
      return false;
    };
    if (hello.clusterId !== clusterId) return refuse(`it belongs to cluster '${hello.clusterId}', this node to '${clusterId}'`);
    if (hello.toNode !== nodeId) return refuse(`it wants node ${hello.toNode}, this is node ${nodeId}`);
    if (!peers.has(hello.fromNode)) return refuse(`node ${hello.fromNode} is not a configured peer`);
    if (hello.protocolVersion !== peerProtocolVersion) return refuse(`it speaks protocol version ${hello.protocolVersion}, this node ${peerProtocolVersion}`);
    for (const other of this.inbound) {
      if (other !== connection && other.peerId === hello.fromNode) this.drop(other, 'debug', 'replaced by a newer connection from the same peer', { peer: hello.fromNode });
    }
    connection.peerId = hello.fromNode;
    connection.socket.write(encodeFrame({
      type: peerFrameType.hello, version: peerFrameVersion,
      payload: encodePeerHello({ clusterId, fromNode: nodeId, toNode: hello.fromNode, protocolVersion: peerProtocolVersion }),
    }));
    this.logger.debug('accepted a peer connection', { remote, peer: hello.fromNode });
    return true;
  }

  private messageReceived(connection: Inbound, payload: Uint8Array, remote: string): void {
    let message: Message;
    try {
      message = decodeRaftMessage(payload);
    } catch (error) {
      if (!(error instanceof WireDecodeError)) throw error;
      this.drop(connection, 'warn', 'closing a peer connection: undecodable raft message', { remote, peer: connection.peerId, reason: error.message });
      return;
    }
    if (message.from !== connection.peerId || message.to !== this.options.nodeId) {
      this.drop(connection, 'warn', 'closing a peer connection: message not from the peer or not for this node', {
        remote, peer: connection.peerId, from: message.from, to: message.to,
      });
      return;
    }
    this.messagesReceived++;
    this.options.onMessage(message);
  }

  private drop(connection: Inbound, level: 'debug' | 'warn' | 'error', message: string, fields: Record<string, unknown>): void {
    if (!this.inbound.delete(connection)) return;
    this.logger[level](message, fields);
    connection.socket.destroy();
  }
}
