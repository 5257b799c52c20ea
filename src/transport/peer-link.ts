/**
 * PeerLink: the one outbound Raft connection from this node to one peer. It dials, says hello
 * (cluster id, own id, the peer's id), waits for the peer's hello, and then carries length-prefixed
 * frames of Raft messages in one direction; messages from the peer arrive on the connection the
 * peer dialed (see peer-transport.ts). Between two nodes there is thus one connection each way.
 *
 * Sending never blocks and never grows memory without bound: `send` writes the frame to the socket
 * at once and refuses it (returns false, the caller reports the peer unreachable to Raft) when the
 * link is not connected or when the bytes and frames the socket has not yet handed to the kernel
 * would pass `queueBytesMax` / `queueFramesMax`. A slow or stalled peer therefore costs at most
 * that much memory, and Raft — which tolerates loss — retransmits.
 *
 * Reconnect: any error, close, refused hello or handshake timeout moves the link to `backoff`; it
 * redials after a delay that doubles from `backoffMinMs` to `backoffMaxMs`, with jitter in
 * [50 %, 100 %] of the delay, and resets after a successful hello.
 *
 * Lifecycle: idle → connecting → ready → backoff → connecting … → closed (close(), final).
 */
import { Socket, connect } from 'node:net';
import { type Logger } from '../observe/logger';
import { assert } from '../util/assert';
import type { Random } from '../util/random';
import { FrameDecoder, FrameError, encodeFrame } from '../wire/frame';
import { WireDecodeError, decodePeerHello, encodePeerHello } from '../wire/raft-codec';

/** Frame types on a Raft peer connection (all version 1). */
export const peerFrameType = { hello: 1, raft: 2 } as const;
export const peerFrameVersion = 1;
/** Version of the hello exchange and of the message framing that follows it. */
export const peerProtocolVersion = 1;
/** Largest hello payload (a cluster id and three numbers). */
export const peerHelloBytesMax = 256;

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface PeerLinkOptions {
  readonly clusterId: string;
  readonly nodeId: number;
  readonly peerId: number;
  readonly address: PeerAddress;
  readonly queueBytesMax: number;
  readonly queueFramesMax: number;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  readonly handshakeTimeoutMs: number;
  readonly random: Random;
  readonly logger: Logger;
}

export type PeerLinkState = 'idle' | 'connecting' | 'ready' | 'backoff' | 'closed';

export interface PeerLinkStats {
  readonly state: PeerLinkState;
  readonly framesSent: number;
  readonly framesDropped: number;
  /** Bytes written to the socket and not yet taken by the kernel. */
  readonly queuedBytes: number;
  readonly queuedFrames: number;
  readonly connects: number;
}

export class PeerLink {
  private linkState: PeerLinkState = 'idle';
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  /** Invariant: frames written whose write callback has not run; <= queueFramesMax. */
  private queuedFrames = 0;
  private framesSent = 0;
  /** The socket corked by `send` and not yet uncorked (flush or the next tick uncorks it). */
  private corkedSocket: Socket | undefined;
  private framesDropped = 0;
  private connects = 0;
  /** The reason of the last failure, logged once per change so a down peer does not flood the log. */
  private lastFailure = '';

  constructor(private readonly options: PeerLinkOptions) {
    assert(options.queueBytesMax > 0 && options.queueFramesMax > 0, 'peer queue bounds must be positive');
    assert(options.backoffMinMs > 0 && options.backoffMinMs <= options.backoffMaxMs, 'backoff bounds must be ordered');
  }

  get state(): PeerLinkState {
    return this.linkState;
  }

  stats(): PeerLinkStats {
    return {
      state: this.linkState, framesSent: this.framesSent, framesDropped: this.framesDropped,
      queuedBytes: this.socket?.writableLength ?? 0, queuedFrames: this.queuedFrames, connects: this.connects,
    };
  }

  start(): void {
    assert(this.linkState === 'idle', `peer link start in state ${this.linkState}`);
    this.dial();
  }

  /**
   * Queues one frame, encoded by `encode` only when the link can take it (undefined: do not send);
   * false when it was dropped (not connected, the queue is full, or nothing to send).
   */
  send(encode: () => Buffer | undefined): boolean {
    const socket = this.socket;
    if (this.linkState !== 'ready' || socket === undefined) {
      this.framesDropped++;
      return false;
    }
    const frame = encode();
    if (frame === undefined || this.queuedFrames >= this.options.queueFramesMax || socket.writableLength + frame.length > this.options.queueBytesMax) {
      this.framesDropped++;
      return false;
    }
    this.queuedFrames++;
    this.framesSent++;
    if (this.corkedSocket === undefined) {
      // Frames written in the same turn of the event loop (one Ready's messages) leave in one
      // writev instead of one syscall each: at `flush()` (the driver calls it once a Ready's
      // messages are queued, so they leave before its disk write is even submitted), or at the
      // latest on the next tick.
      this.corkedSocket = socket;
      socket.cork();
      process.nextTick(() => this.flush());
    }
    socket.write(frame, () => {
      this.queuedFrames--;
      assert(this.queuedFrames >= 0, 'peer link: more write callbacks than writes');
    });
    return true;
  }

  /** Hands the frames queued since the last flush to the kernel now (one writev). */
  flush(): void {
    const socket = this.corkedSocket;
    if (socket === undefined) return;
    this.corkedSocket = undefined;
    socket.uncork();
  }

  close(): void {
    this.linkState = 'closed';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
  }

  private dial(): void {
    if (this.linkState === 'closed') return;
    this.linkState = 'connecting';
    const { address, clusterId, nodeId, peerId } = this.options;
    const socket = connect({ host: address.host, port: address.port });
    this.socket = socket;
    socket.setNoDelay(true);
    const decoder = new FrameDecoder({
      payloadBytesMax: peerHelloBytesMax,
      acceptType: (type) => type === peerFrameType.hello,
      acceptVersion: (_type, version) => version === peerFrameVersion,
    });
    this.timer = setTimeout(() => this.failed(socket, `no hello within ${this.options.handshakeTimeoutMs} ms`), this.options.handshakeTimeoutMs);
    socket.once('connect', () => {
      socket.write(encodeFrame({
        type: peerFrameType.hello, version: peerFrameVersion,
        payload: encodePeerHello({ clusterId, fromNode: nodeId, toNode: peerId, protocolVersion: peerProtocolVersion }),
      }));
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.socket !== socket) return;
      if (this.linkState === 'ready') {
        this.failed(socket, 'the peer sent data after its hello');
        return;
      }
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        this.failed(socket, `malformed hello frame: ${error.message}`);
        return;
      }
      const frame = frames[0];
      if (frame === undefined) return;
      if (frames.length > 1) {
        this.failed(socket, 'the peer sent data after its hello');
        return;
      }
      this.helloReceived(socket, frame.payload);
    });
    socket.on('error', (error) => this.failed(socket, error.message));
    socket.on('close', () => this.failed(socket, 'connection closed'));
  }

  private helloReceived(socket: Socket, payload: Uint8Array): void {
    const { clusterId, nodeId, peerId } = this.options;
    let hello;
    try {
      hello = decodePeerHello(payload);
    } catch (error) {
      if (!(error instanceof WireDecodeError)) throw error;
      this.failed(socket, `undecodable hello: ${error.message}`);
      return;
    }
    if (hello.clusterId !== clusterId) {
      this.failed(socket, `the peer belongs to cluster '${hello.clusterId}', not '${clusterId}'`, 'error');
      return;
    }
    if (hello.fromNode !== peerId || hello.toNode !== nodeId) {
      this.failed(socket, `the peer says it is node ${hello.fromNode} talking to ${hello.toNode}; expected node ${peerId} talking to ${nodeId}`, 'error');
      return;
    }
    if (hello.protocolVersion !== peerProtocolVersion) {
      this.failed(socket, `the peer speaks protocol version ${hello.protocolVersion}, not ${peerProtocolVersion}`, 'error');
      return;
    }
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.linkState = 'ready';
    this.attempt = 0;
    this.connects++;
    this.lastFailure = '';
    this.options.logger.info('connected to peer', { peer: peerId, address: `${this.options.address.host}:${this.options.address.port}` });
  }

  /** Drops `socket` (if it is still the current one) and schedules a redial. */
  private failed(socket: Socket, reason: string, level: 'debug' | 'error' = 'debug'): void {
    if (this.socket !== socket || this.linkState === 'closed') return;
    const wasReady = this.linkState === 'ready';
    this.socket = undefined;
    socket.destroy();
    if (this.timer !== undefined) clearTimeout(this.timer);
    const { peerId, backoffMinMs, backoffMaxMs, random } = this.options;
    const fields = { peer: peerId, address: `${this.options.address.host}:${this.options.address.port}`, reason };
    if (level === 'error') {
      if (reason !== this.lastFailure) this.options.logger.error('refusing peer connection', fields);
    }
    else if (wasReady) this.options.logger.warn('lost the connection to a peer', fields);
    else if (reason !== this.lastFailure) this.options.logger.debug('cannot reach peer', fields);
    this.lastFailure = reason;
    const delayMs = Math.min(backoffMaxMs, backoffMinMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    this.linkState = 'backoff';
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dial();
    }, Math.max(1, Math.round(delayMs * (0.5 + random.float() / 2))));
  }
}
