/**
 * KvNode: one member of a replicated key-value store — the KvStateMachine (kv-state-machine.ts)
 * behind a RaftDriver, persisted in LevelDB (RaftLogStore), talking to its peers over the TCP
 * PeerTransport, and serving clients on a TCP port. The tests and the benchmark run it as a real
 * process through kv-node-main.ts; kv-client.ts is its typed client.
 *
 * Client protocol (chosen for speed and to reuse the peer framing): a TCP connection carrying
 * frames of src/wire/frame.ts, type 1 = KvRequest (client → node), type 2 = KvResponse, version 1,
 * payloads from src/wire/cairn.proto, at most kvClientFramePayloadBytesMax each. Requests are
 * pipelined: each carries a `call_id` that its response echoes; responses may come out of order.
 * - `propose`: an encoded KvCommand (put / get / cas / delete / open with client id and sequence
 *   number, see kv-state-machine.ts). Refused as CAIRN_INVALID_ARGUMENT unless it decodes. It is
 *   proposed as is (this node must lead: CAIRN_NOT_LEADER names the leader otherwise) and answered
 *   with the encoded KvResult once applied. A retry with the same client id and sequence number
 *   is applied once (the state machine's sessions).
 * - `read_key`: a linearizable read through ReadIndex, on any node (followers ask the leader).
 * - `status`: this node's view (leader, term, commit, applied).
 * Errors come back as KvError: a CairnError code, retryable, the known leader and whether the
 * request may still take effect (`outcome_unknown`). A malformed frame or request closes that
 * connection only. At most kvClientRequestsInflightMax requests run per connection: beyond that
 * the node stops reading the socket until answers go out (backpressure, not buffering).
 *
 * Durability of the KV state: the state machine persists through Raft snapshots only (its
 * `apply` returns no operations); the snapshot record holds the state and its applied index
 * together, and a restart replays the committed entries after it (see raft-driver.ts).
 */
import { type Server, type Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { CairnError } from '../errors/cairn-error';
import { kvClientConnectionsMax, kvClientFramePayloadBytesMax, kvClientRequestsInflightMax } from '../limits';
import { type Logger, silentLogger } from '../observe/logger';
import type { Entry, Snapshot } from '../raft';
import type { KvOperation } from '../store/kv-store';
import { LevelKvStore } from '../store/level-kv-store';
import { RaftLogStore } from '../store/raft-log-store';
import { type PeerAddress } from '../transport/peer-link';
import { PeerTransport } from '../transport/peer-transport';
import { assert } from '../util/assert';
import { SeededRandom } from '../util/random';
import { FrameDecoder, FrameError, encodeFrame } from '../wire/frame';
import { pb } from '../wire/messages';
import { kvFrameType, kvFrameVersion } from './kv-client';
import { type KvApplyOutcome, KvStateMachine, decodeKvCommand, encodeKvResult } from './kv-state-machine';
import { RaftDriver, RaftRequestError, type RaftStateMachine } from './raft-driver';

/** The KvStateMachine as the driver sees it: persisted through snapshots only. */
export class KvRaftStateMachine implements RaftStateMachine<KvApplyOutcome> {
  constructor(readonly machine: KvStateMachine) {}

  get appliedIndex(): number {
    return this.machine.appliedIndex;
  }

  apply(entries: readonly Entry[]): { results: KvApplyOutcome[]; operations: KvOperation[] } {
    return { results: entries.map((entry) => this.machine.apply(entry.index, entry.data)), operations: [] };
  }

  snapshot(): Uint8Array {
    return this.machine.snapshot();
  }

  restore(snapshot: Snapshot): KvOperation[] {
    this.machine.restore(snapshot.data);
    return [];
  }
}

export interface KvNodeOptions {
  readonly clusterId: string;
  readonly nodeId: number;
  /** Every member's Raft address, this node's included (it listens there); all are bootstrap voters. */
  readonly members: ReadonlyMap<number, PeerAddress>;
  readonly dataDir: string;
  readonly clientListen: PeerAddress;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly snapshotEntries?: number;
  readonly compactionLagEntries?: number;
  readonly sync?: boolean;
  readonly logger?: Logger;
  /** The driver failed: the process must exit and restart. */
  readonly onFatal?: (error: unknown) => void;
}

type ResponseFields = Parameters<typeof pb.KvResponse.encode>[0];

export class KvNode {
  private readonly connections = new Set<Socket>();
  private stopping = false;

  private constructor(
    readonly driver: RaftDriver<KvApplyOutcome>,
    readonly machine: KvStateMachine,
    private readonly kv: LevelKvStore,
    private readonly transport: PeerTransport,
    private readonly server: Server,
    readonly clientPort: number,
    private readonly logger: Logger,
  ) {}

  get raftPort(): number {
    return this.transport.port;
  }

  static async start(options: KvNodeOptions): Promise<KvNode> {
    const logger = options.logger ?? silentLogger;
    const self = options.members.get(options.nodeId);
    assert(self !== undefined, `the members must include this node (${options.nodeId})`);
    const kv = await LevelKvStore.open(join(options.dataDir, 'db'));
    let transport: PeerTransport | undefined;
    try {
      const store = await RaftLogStore.open(kv, { clusterId: options.clusterId, nodeId: options.nodeId });
      const machine = new KvStateMachine();
      const peers = new Map([...options.members].filter(([id]) => id !== options.nodeId));
      const random = new SeededRandom(Number(process.hrtime.bigint() % BigInt(2 ** 48)) + options.nodeId);
      // The transport starts first (the driver needs it), so its callbacks find the driver here.
      const wiring: { driver?: RaftDriver<KvApplyOutcome> } = {};
      transport = await PeerTransport.start({
        clusterId: options.clusterId, nodeId: options.nodeId, listen: self, peers, random: random.fork(), logger: logger.child('transport'),
        onMessage: (message) => wiring.driver?.receive(message),
        onUnreachable: (peerId) => wiring.driver?.reportUnreachable(peerId),
      });
      const peerTransport = transport;
      const driver = new RaftDriver<KvApplyOutcome>({
        nodeId: options.nodeId, store, stateMachine: new KvRaftStateMachine(machine), random,
        transport: { send: (message) => void peerTransport.send(message), flush: () => peerTransport.flush() },
        bootstrapVoters: [...options.members.keys()].sort((a, b) => a - b),
        // Followers learn a commit from the next append or heartbeat, not from a message of its
        // own: one message and answer less per follower per write (see RaftConfig). KV reads
        // stay linearizable — ReadIndex, on any node — and nothing here waits for followers to apply.
        raft: { lazyCommitNotices: true },
        ...(options.tickMs === undefined ? {} : { tickMs: options.tickMs }),
        ...(options.electionTicks === undefined ? {} : { electionTicks: options.electionTicks }),
        ...(options.snapshotEntries === undefined ? {} : { snapshotEntries: options.snapshotEntries }),
        ...(options.compactionLagEntries === undefined ? {} : { compactionLagEntries: options.compactionLagEntries }),
        ...(options.sync === undefined ? {} : { sync: options.sync }),
        logger: logger.child('raft'),
        ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }),
      });
      wiring.driver = driver;
      await driver.start();
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.clientListen.port, options.clientListen.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address();
      assert(address !== null && typeof address === 'object');
      const node = new KvNode(driver, machine, kv, transport, server, address.port, logger);
      server.on('connection', (socket) => node.accept(socket));
      return node;
    } catch (error) {
      await transport?.close();
      await kv.close();
      throw error;
    }
  }

  /** Stops serving clients, stops Raft (pending requests fail), closes the transport and the database. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
    await this.driver.stop();
    await this.transport.close();
    await this.kv.close();
  }

  private accept(socket: Socket): void {
    if (this.stopping || this.connections.size >= kvClientConnectionsMax) {
      socket.destroy();
      return;
    }
    this.connections.add(socket);
    socket.setNoDelay(true);
    const decoder = new FrameDecoder({
      payloadBytesMax: kvClientFramePayloadBytesMax,
      acceptType: (type) => type === kvFrameType.request,
      acceptVersion: (_type, version) => version === kvFrameVersion,
    });
    let inflight = 0;
    const respond = (response: ResponseFields): void => {
      inflight--;
      if (socket.destroyed) return;
      socket.write(encodeFrame({ type: kvFrameType.response, version: kvFrameVersion, payload: pb.KvResponse.encode(response).finish() }));
      maybeResume();
    };
    // Reading pauses while too many requests run or too many answer bytes wait for the client.
    const writeBacklogBytesMax = 16 * kvClientFramePayloadBytesMax;
    const maybeResume = (): void => {
      if (socket.isPaused() && inflight < kvClientRequestsInflightMax && socket.writableLength <= writeBacklogBytesMax) socket.resume();
    };
    socket.on('drain', maybeResume);
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        this.logger.warn('closing a client connection: malformed frame', { reason: error.message });
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        let request;
        try {
          request = pb.KvRequest.decode(frame.payload);
        } catch (error) {
          this.logger.warn('closing a client connection: undecodable request', { reason: error instanceof Error ? error.message : String(error) });
          socket.destroy();
          return;
        }
        const callId = request.callId;
        inflight++;
        if (request.body === 'propose') {
          // Answered straight from the driver's loop (no promise hops), before its next write.
          this.propose(request.propose ?? new Uint8Array(0), (body) => respond({ callId, ...body }));
          continue;
        }
        this.handle(request).then(
          (body) => respond({ callId, ...body }),
          (error: unknown) => respond({ callId, error: errorFields(error) }),
        );
      }
      if (inflight >= kvClientRequestsInflightMax || socket.writableLength > writeBacklogBytesMax) socket.pause();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
  }

  /** Proposes an encoded KvCommand; `answer` gets the result or the error, exactly once. */
  private propose(command: Uint8Array, answer: (body: Omit<ResponseFields, 'callId'>) => void): void {
    try {
      decodeKvCommand(command);
    } catch (error) {
      answer({ error: errorFields(new CairnError('CAIRN_INVALID_ARGUMENT', `not a KV command: ${error instanceof Error ? error.message : String(error)}`)) });
      return;
    }
    this.driver.proposeWith(new Uint8Array(command), {
      resolve: (outcome) => answer({ result: encodeKvResult(outcome.result) }),
      reject: (error) => answer({ error: errorFields(error) }),
    });
  }

  private async handle(request: ReturnType<typeof pb.KvRequest.decode>): Promise<Omit<ResponseFields, 'callId'>> {
    switch (request.body) {
      case 'readKey': {
        const key = request.readKey ?? '';
        const value = await this.driver.read(() => this.machine.read(key));
        return { read: value === null ? { present: false } : { present: true, value } };
      }
      case 'status': {
        const status = this.driver.raftStatus();
        return {
          status: {
            nodeId: status.id, leaderId: status.softState.lead, term: status.hardState.term, commit: status.hardState.commit,
            applied: this.driver.applied, role: status.softState.role,
          },
        };
      }
      default:
        throw new CairnError('CAIRN_INVALID_ARGUMENT', 'empty request');
    }
  }
}

function errorFields(error: unknown): { code: string; message: string; retryable: boolean; leaderId: number; outcomeUnknown: boolean } {
  if (error instanceof RaftRequestError) {
    return { code: error.code, message: error.message, retryable: error.retryable, leaderId: error.leaderId, outcomeUnknown: error.outcomeUnknown };
  }
  if (error instanceof CairnError) return { code: error.code, message: error.message, retryable: error.retryable, leaderId: 0, outcomeUnknown: false };
  // Not an expected failure: a bug. Let it take the process down after answering.
  setImmediate(() => {
    throw error;
  });
  return { code: 'CAIRN_IO', message: String(error), retryable: false, leaderId: 0, outcomeUnknown: true };
}
