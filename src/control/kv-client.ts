/**
 * KvClient: the typed client of the KV node's protocol (see kv-node.ts for the wire format).
 *
 * A client knows every node's client address and keeps at most one pipelined connection to each.
 * Work happens in sessions (`openSession`): a session is one client id of the state machine with
 * its own sequence numbers and runs one request at a time, so a retried request keeps its number
 * and is applied once (kv-state-machine.ts). Run N sessions for N concurrent requests.
 *
 * Retries: every operation has a deadline (`operationTimeoutMs`). Each attempt goes to the node
 * believed to lead (the last leader hint, else the next node in turn) and waits at most
 * `attemptTimeoutMs`; CAIRN_NOT_LEADER moves to the named leader, other retryable errors, lost
 * connections and attempt timeouts move on after a short pause. When the deadline passes the
 * operation fails with KvClientError, whose `outcome` says what the caller may assume:
 * - `not-applied`: no attempt can have taken effect (every attempt was refused before reaching a
 *   log, or the state machine refused it);
 * - `unknown`: some attempt may have reached a log (timeout, lost connection, leadership lost
 *   after append) — it may take effect later, or never. Reads are always safe to report as unknown.
 *
 * Bounds: requests in flight per connection follow the sessions using it; a response frame is
 * refused beyond kvClientFramePayloadBytesMax (the connection is dropped).
 */
import { randomInt } from 'node:crypto';
import { type Socket, connect } from 'node:net';
import { CairnError, type ErrorCode, errorWire } from '../errors/cairn-error';
import { kvClientFramePayloadBytesMax } from '../limits';
import { assert } from '../util/assert';
import { FrameDecoder, FrameError, encodeFrame } from '../wire/frame';
import { pb } from '../wire/messages';
import type { PeerAddress } from '../transport/peer-link';
import { type KvCommand, type KvResult, decodeKvResult, encodeKvCommand } from './kv-state-machine';

/** Frame types of the client protocol (version 1); shared with kv-node.ts, which serves it. */
export const kvFrameType = { request: 1, response: 2 } as const;
export const kvFrameVersion = 1;

export type KvOutcome = 'not-applied' | 'unknown';

export class KvClientError extends CairnError {
  constructor(code: ErrorCode, message: string, readonly outcome: KvOutcome, options: { retryable: boolean; cause?: unknown }) {
    super(code, message, options);
  }
}

export interface KvClientOptions {
  /** Node id → the node's client address. */
  readonly endpoints: ReadonlyMap<number, PeerAddress>;
  /** Total time one operation may take, retries included (default 5000 ms). */
  readonly operationTimeoutMs?: number;
  /** Time one attempt may take before the client moves on (default 1000 ms). */
  readonly attemptTimeoutMs?: number;
  /**
   * Where reads go: `leader` (default; the node believed to lead) or `any` (every node in turn —
   * followers serve linearizable reads through the leader's read index, spreading the load).
   */
  readonly readFrom?: 'leader' | 'any';
}

export interface KvNodeStatus {
  readonly nodeId: number;
  readonly leaderId: number;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly role: string;
}

type KvResponse = ReturnType<typeof pb.KvResponse.decode>;
type RequestBody = { readonly propose: Uint8Array } | { readonly readKey: string } | { readonly status: true };

/** The request never left this process (the connection was never established). */
class NotSentError extends Error {
  override readonly name = 'NotSentError';
}

/** One pipelined connection to one node. Fails every call in flight when it breaks. */
class NodeConnection {
  private readonly socket: Socket;
  private established = false;
  private readonly calls = new Map<number, { resolve: (response: KvResponse) => void; reject: (error: Error) => void }>();
  private nextCallId = 1;
  private broken: Error | undefined;
  private readonly connected: Promise<void>;

  constructor(address: PeerAddress, private readonly onBroken: () => void) {
    this.socket = connect({ host: address.host, port: address.port });
    this.socket.setNoDelay(true);
    this.connected = new Promise<void>((resolve, reject) => {
      this.socket.once('connect', () => {
        this.established = true;
        resolve();
      });
      this.socket.once('error', reject);
    });
    this.connected.catch(() => {});
    const decoder = new FrameDecoder({
      payloadBytesMax: kvClientFramePayloadBytesMax,
      acceptType: (type) => type === kvFrameType.response,
      acceptVersion: (_type, version) => version === kvFrameVersion,
    });
    this.socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of decoder.push(chunk)) {
          const response = pb.KvResponse.decode(frame.payload);
          const callId = Number(response.callId);
          const call = this.calls.get(callId);
          if (call === undefined) continue; // answered after the caller gave up
          this.calls.delete(callId);
          call.resolve(response);
        }
      } catch (error) {
        this.break(error instanceof FrameError ? error : new Error(`bad response: ${String(error)}`));
      }
    });
    this.socket.on('error', (error) => this.break(error));
    this.socket.on('close', () => this.break(new Error('connection closed')));
  }

  get isBroken(): boolean {
    return this.broken !== undefined;
  }

  async call(body: RequestBody, timeoutMs: number): Promise<KvResponse> {
    if (this.broken !== undefined) throw this.broken;
    const callId = this.nextCallId++;
    const frame = encodeFrame({
      type: kvFrameType.request, version: kvFrameVersion, payload: pb.KvRequest.encode({ callId, ...body }).finish(),
    }, { payloadBytesMax: kvClientFramePayloadBytesMax });
    return new Promise<KvResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(callId);
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.calls.set(callId, {
        resolve: (response) => {
          clearTimeout(timer);
          resolve(response);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.connected.then(() => {
        if (this.calls.has(callId)) this.socket.write(frame); // not if the caller gave up meanwhile
      }, () => {});
    });
  }

  close(): void {
    this.break(new Error('client closed'));
  }

  private break(cause: Error): void {
    if (this.broken !== undefined) return;
    const error = this.established ? cause : new NotSentError(`cannot connect: ${cause.message}`);
    this.broken = error;
    this.socket.destroy();
    for (const call of this.calls.values()) call.reject(error);
    this.calls.clear();
    this.onBroken();
  }
}

interface AttemptError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly retryable: boolean;
  readonly leaderId: number;
  /** This attempt may have reached a log. */
  readonly mayHaveApplied: boolean;
}

export class KvClient {
  readonly operationTimeoutMs: number;
  readonly attemptTimeoutMs: number;
  private readonly nodeIds: number[];
  private readonly connections = new Map<number, NodeConnection>();
  private leaderHint = 0;
  private turn = 0;
  private closed = false;

  constructor(private readonly options: KvClientOptions) {
    this.nodeIds = [...options.endpoints.keys()].sort((a, b) => a - b);
    assert(this.nodeIds.length > 0, 'a KV client needs at least one endpoint');
    this.operationTimeoutMs = options.operationTimeoutMs ?? 5000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 1000;
    assert(this.attemptTimeoutMs > 0 && this.operationTimeoutMs >= this.attemptTimeoutMs, 'timeouts must be positive and ordered');
  }

  /** Opens a session with a fresh random client id (retried until the deadline). */
  async openSession(): Promise<KvSession> {
    const clientId = randomInt(1, 2 ** 47);
    const result = await this.propose({ kind: 'open', clientId, seq: 1 });
    if (result.kind !== 'opened') throw new KvClientError('CAIRN_UNAVAILABLE', `opening a session returned ${result.kind}`, 'unknown', { retryable: true });
    return new KvSession(this, clientId);
  }

  /** One node's view of the cluster (no retries). */
  async status(nodeId: number): Promise<KvNodeStatus> {
    const response = await this.connection(nodeId).call({ status: true }, this.attemptTimeoutMs);
    if (response.body !== 'status' || response.status === null || response.status === undefined) throw new Error(`node ${nodeId} answered a status request with ${response.body ?? 'nothing'}`);
    const status = response.status;
    return {
      nodeId: Number(status.nodeId), leaderId: Number(status.leaderId), term: Number(status.term), commit: Number(status.commit),
      applied: Number(status.applied), role: status.role ?? '',
    };
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }

  /** @internal Proposes a command until it is applied, refused for good, or the deadline passes. */
  async propose(command: KvCommand): Promise<KvResult> {
    const bytes = encodeKvCommand(command);
    const response = await this.withRetries({ propose: bytes }, true);
    if (response.body !== 'result' || response.result === null || response.result === undefined) throw new Error(`unexpected answer ${response.body ?? 'nothing'} to a proposal`);
    return decodeKvResult(response.result);
  }

  /** @internal A linearizable read, retried until the deadline. */
  async read(key: string): Promise<string | null> {
    const response = await this.withRetries({ readKey: key }, false, this.options.readFrom === 'any');
    if (response.body !== 'read' || response.read === null || response.read === undefined) throw new Error(`unexpected answer ${response.body ?? 'nothing'} to a read`);
    return response.read.present === true ? (response.read.value ?? '') : null;
  }

  private async withRetries(body: RequestBody, isWrite: boolean, anyNode = false): Promise<KvResponse> {
    const deadline = Date.now() + this.operationTimeoutMs;
    let mayHaveApplied = false;
    let last: AttemptError | undefined;
    for (;;) {
      if (this.closed) throw new KvClientError('CAIRN_CLOSED', 'the KV client is closed', mayHaveApplied || !isWrite ? 'unknown' : 'not-applied', { retryable: false });
      const nodeId = anyNode ? this.nextNode() : this.pickNode();
      const remainingMs = deadline - Date.now();
      const attempt = await this.attempt(nodeId, body, Math.max(1, Math.min(this.attemptTimeoutMs, remainingMs)));
      if (!('code' in attempt)) return attempt;
      last = attempt;
      mayHaveApplied ||= attempt.mayHaveApplied;
      // Reads on any node simply try the next one; the rest follow the leader hint.
      if (!anyNode) {
        const named = attempt.code === 'CAIRN_NOT_LEADER' && attempt.leaderId !== nodeId && this.options.endpoints.has(attempt.leaderId);
        this.leaderHint = named ? attempt.leaderId : 0;
      }
      if (!attempt.retryable) break;
      if (Date.now() >= deadline) break;
      // Without a leader to go to, give the cluster a moment (an election takes a few ticks).
      if (this.leaderHint === 0 && !anyNode) await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(0, deadline - Date.now()))));
      if (Date.now() >= deadline) break;
    }
    assert(last !== undefined);
    const outcome: KvOutcome = isWrite && !mayHaveApplied ? 'not-applied' : 'unknown';
    throw new KvClientError(last.code, `${last.message} (gave up after ${this.operationTimeoutMs} ms)`, outcome, { retryable: last.retryable });
  }

  private pickNode(): number {
    return this.leaderHint !== 0 ? this.leaderHint : this.nextNode();
  }

  private nextNode(): number {
    this.turn = (this.turn + 1) % this.nodeIds.length;
    return this.nodeIds[this.turn] as number;
  }

  private async attempt(nodeId: number, body: RequestBody, timeoutMs: number): Promise<KvResponse | AttemptError> {
    let response: KvResponse;
    try {
      response = await this.connection(nodeId).call(body, timeoutMs);
    } catch (error) {
      // Unless it certainly never left, a write may have reached the log.
      const mayHaveApplied = !(error instanceof NotSentError);
      return { code: 'CAIRN_UNAVAILABLE', message: `node ${nodeId}: ${error instanceof Error ? error.message : String(error)}`, retryable: true, leaderId: 0, mayHaveApplied };
    }
    if (response.body !== 'error') return response;
    const error = response.error;
    const code = (error?.code ?? '') in errorWire ? (error?.code as ErrorCode) : 'CAIRN_IO';
    return {
      code, message: `node ${nodeId}: ${error?.message ?? 'error'}`, retryable: error?.retryable === true, leaderId: Number(error?.leaderId ?? 0),
      mayHaveApplied: error?.outcomeUnknown === true,
    };
  }

  private connection(nodeId: number): NodeConnection {
    const existing = this.connections.get(nodeId);
    if (existing !== undefined && !existing.isBroken) return existing;
    const address = this.options.endpoints.get(nodeId);
    assert(address !== undefined, `no endpoint for node ${nodeId}`);
    const connection = new NodeConnection(address, () => {
      if (this.connections.get(nodeId) === connection) this.connections.delete(nodeId);
    });
    this.connections.set(nodeId, connection);
    return connection;
  }
}

/** One client id: requests run one at a time, each with the next sequence number. */
export class KvSession {
  private seq = 1;
  private busy = false;

  constructor(private readonly client: KvClient, readonly clientId: number) {}

  async put(key: string, value: string): Promise<void> {
    const result = await this.run((seq) => ({ kind: 'put', clientId: this.clientId, seq, key, value }));
    if (result.kind !== 'put') throw this.refused(result);
  }

  /** Compare-and-set: `from` null means "absent". Resolves whether it swapped. */
  async cas(key: string, from: string | null, to: string): Promise<boolean> {
    const result = await this.run((seq) => ({ kind: 'cas', clientId: this.clientId, seq, key, from, to }));
    if (result.kind !== 'cas') throw this.refused(result);
    return result.ok;
  }

  /** Resolves whether the key existed. */
  async delete(key: string): Promise<boolean> {
    const result = await this.run((seq) => ({ kind: 'delete', clientId: this.clientId, seq, key }));
    if (result.kind !== 'delete') throw this.refused(result);
    return result.existed;
  }

  /** A linearizable read (ReadIndex); null when the key is absent. */
  async get(key: string): Promise<string | null> {
    return this.client.read(key);
  }

  private async run(command: (seq: number) => KvCommand): Promise<KvResult> {
    assert(!this.busy, 'a session runs one request at a time');
    this.busy = true;
    // A new number for every operation (even after a failure): the state machine then refuses a
    // late copy of an abandoned request instead of applying it after this one.
    this.seq++;
    try {
      return await this.client.propose(command(this.seq));
    } finally {
      this.busy = false;
    }
  }

  private refused(result: KvResult): KvClientError {
    // The state machine answered without applying: sessionExpired, stale, invalid or full.
    const code: ErrorCode = result.kind === 'invalid' ? 'CAIRN_INVALID_ARGUMENT' : result.kind === 'full' ? 'CAIRN_NO_SPACE' : 'CAIRN_UNAVAILABLE';
    // sessionExpired / stale: an earlier attempt of this request may have applied before the
    // session was evicted, so only invalid and full are certain refusals.
    const outcome: KvOutcome = result.kind === 'invalid' || result.kind === 'full' ? 'not-applied' : 'unknown';
    return new KvClientError(code, `the state machine did not apply the request: ${result.kind}`, outcome, { retryable: false });
  }
}
