/**
 * SimClient: one client process of the key-value workload. It runs one operation at a time,
 * retries it with the same request id (session seq) until it gets an answer or its deadline
 * passes, and records each operation in the shared history (src/check HistoryRecorder).
 *
 * Protocol: the client first opens its session (`open`, retried until it succeeds; not part of the
 * history). Writes (`put`, `cas`, `delete`) and log reads (`get` through the log) are proposals
 * carrying (client id, seq); a retry keeps the seq, so the dedupe table applies it at most once.
 * ReadIndex reads carry no seq. Each attempt goes to the node the client believes leads (learnt
 * from `notLeader` hints and answers), or, when it knows none or the attempt is a ReadIndex read
 * it chose to spread, to a random node; an attempt that gets no answer within `attemptTimeoutNs`
 * is abandoned and the operation retried.
 *
 * History status, exactly as issue 3 defines it:
 * - `ok`: an answer with the command's result arrived (from any attempt, even an abandoned one);
 * - `fail`: certainly not applied — every attempt was answered with a refusal: `notLeader` or
 *   `dropped` (refused before anything was appended), or an applied entry that had no effect
 *   (`sessionExpired`, `stale`) while no earlier attempt had timed out;
 * - `unknown`: some attempt timed out unanswered (it may have been appended, forwarded, applied
 *   with its answer lost): the operation may take effect at any time after its call, or never.
 * A read that timed out is `unknown` too; the checker drops reads that are not `ok` (they
 * observed nothing and changed nothing).
 */
import type { KvResult } from '../control/kv-state-machine';
import type { HistoryRecorder } from '../check/history-recorder';
import type { KvValue } from '../check/history';
import { assert } from '../util/assert';
import type { SeededRandom } from '../util/random';
import type { EventHandle, SimClock } from './sim-clock';
import { type ClientRequest, type NodeReply, type SimPayload, clientEndpoint } from './sim-messages';

export interface WorkloadOptions {
  /** Keys the clients use ("k0", "k1", …): few keys, many conflicts. */
  readonly keys: number;
  /** Operation mix; the rest are puts. */
  readonly readFraction: number;
  readonly casFraction: number;
  readonly deleteFraction: number;
  /** Of the reads, the fraction that go through the log instead of ReadIndex. */
  readonly logReadFraction: number;
  /** Of the ReadIndex reads, the fraction sent to a random node (follower reads) rather than the leader. */
  readonly spreadReadFraction: number;
  /** Pause between operations, uniform in [0, thinkNsMax]. */
  readonly thinkNsMax: number;
  readonly attemptTimeoutNs: number;
  /** An operation is abandoned this long after its call. */
  readonly operationTimeoutNs: number;
}

type Operation =
  | { readonly op: 'open'; readonly seq: number }
  | { readonly op: 'read'; readonly key: string; readonly seq: number | undefined }
  | { readonly op: 'write'; readonly key: string; readonly value: string; readonly seq: number }
  | { readonly op: 'cas'; readonly key: string; readonly from: KvValue; readonly to: string; readonly seq: number }
  | { readonly op: 'delete'; readonly key: string; readonly seq: number };

interface Current {
  readonly operation: Operation;
  readonly opId: number;
  /** History handle; undefined for `open`. */
  readonly handle: number | undefined;
  readonly deadlineNs: number;
  attempt: number;
  /** An abandoned attempt may have been appended (or, for a read, served): it timed out unanswered. */
  maybeTookEffect: boolean;
  /** The latest attempt is still waiting for its answer. */
  attemptOutstanding: boolean;
  timer: EventHandle | undefined;
}

export interface ClientStats {
  operations: number;
  ok: number;
  failed: number;
  unknown: number;
  attempts: number;
  timeouts: number;
  redirects: number;
}

export interface SimClientContext {
  readonly clock: SimClock;
  readonly random: SeededRandom;
  readonly recorder: HistoryRecorder;
  readonly send: (from: number, to: number, payload: SimPayload) => void;
  /** Every node id the client may contact. */
  readonly nodeIds: readonly number[];
}

export class SimClient {
  readonly endpoint: number;
  private nextSeq = 1;
  private nextOpId = 1;
  private sessionOpen = false;
  private leaderGuess: number | undefined;
  private current: Current | undefined;
  private stopped = false;
  private thinkTimer: EventHandle | undefined;
  /** The node the latest attempt went to (a timeout makes the client forget it as leader). */
  private attemptTarget = 0;
  /** Last value this client saw per key, to make cas operations that can succeed. */
  private readonly seen = new Map<string, KvValue>();
  readonly stats: ClientStats = { operations: 0, ok: 0, failed: 0, unknown: 0, attempts: 0, timeouts: 0, redirects: 0 };

  constructor(readonly clientId: number, private readonly context: SimClientContext, private readonly workload: WorkloadOptions) {
    assert(context.nodeIds.length > 0, 'a client needs nodes to talk to');
    this.endpoint = clientEndpoint(clientId);
  }

  get isIdle(): boolean {
    return this.current === undefined;
  }

  /** Starts the operation loop after a random pause. */
  start(): void {
    this.stopped = false;
    this.scheduleNext();
  }

  /** Issues no new operation; the one in progress runs to its answer or deadline. */
  stop(): void {
    this.stopped = true;
    if (this.thinkTimer !== undefined) this.context.clock.cancel(this.thinkTimer);
    this.thinkTimer = undefined;
  }

  private scheduleNext(): void {
    if (this.stopped) return;
    const pauseNs = this.context.random.int(this.workload.thinkNsMax + 1);
    this.thinkTimer = this.context.clock.after(pauseNs, 'client', () => {
      this.thinkTimer = undefined;
      this.begin();
    });
  }

  private begin(): void {
    if (this.stopped || this.current !== undefined) return;
    const operation = this.sessionOpen ? this.chooseOperation() : { op: 'open' as const, seq: this.nextSeq };
    const handle = operation.op === 'open' ? undefined : this.context.recorder.invoke(this.clientId, historyInput(operation));
    if (operation.op !== 'open') this.stats.operations++;
    this.current = {
      operation, opId: this.nextOpId++, handle, deadlineNs: this.context.clock.nowNs + this.workload.operationTimeoutNs,
      attempt: 0, maybeTookEffect: false, attemptOutstanding: false, timer: undefined,
    };
    this.sendAttempt();
  }

  private chooseOperation(): Operation {
    const random = this.context.random;
    const key = `k${random.int(this.workload.keys)}`;
    const roll = random.float();
    const w = this.workload;
    if (roll < w.readFraction) {
      const viaLog = random.float() < w.logReadFraction;
      return { op: 'read', key, seq: viaLog ? this.nextSeq++ : undefined };
    }
    const value = `c${this.clientId}-${this.nextOpId}`;
    if (roll < w.readFraction + w.casFraction) {
      // Half the time compare with what we last saw (likely to swap), else with absent.
      const from = random.int(2) === 0 ? (this.seen.get(key) ?? null) : null;
      return { op: 'cas', key, from, to: value, seq: this.nextSeq++ };
    }
    if (roll < w.readFraction + w.casFraction + w.deleteFraction) return { op: 'delete', key, seq: this.nextSeq++ };
    return { op: 'write', key, value, seq: this.nextSeq++ };
  }

  private sendAttempt(): void {
    const current = this.current;
    assert(current !== undefined, 'an attempt needs an operation');
    const now = this.context.clock.nowNs;
    if (now >= current.deadlineNs) {
      this.giveUp();
      return;
    }
    current.attempt++;
    this.stats.attempts++;
    const operation = current.operation;
    const spread = operation.op === 'read' && operation.seq === undefined && this.context.random.float() < this.workload.spreadReadFraction;
    const target = spread || this.leaderGuess === undefined ? this.randomNode() : this.leaderGuess;
    const request = this.request(operation);
    current.attemptOutstanding = true;
    this.context.send(this.endpoint, target, { kind: 'request', clientId: this.clientId, opId: current.opId, attempt: current.attempt, request });
    const attempt = current.attempt;
    const timeoutNs = Math.min(this.workload.attemptTimeoutNs, current.deadlineNs - now);
    current.timer = this.context.clock.after(timeoutNs, 'client', () => this.attemptTimedOut(current, attempt));
    this.attemptTarget = target;
  }

  private request(operation: Operation): ClientRequest {
    const clientId = this.clientId;
    switch (operation.op) {
      case 'open':
        return { kind: 'propose', command: { kind: 'open', clientId, seq: operation.seq } };
      case 'read':
        return operation.seq === undefined
          ? { kind: 'read', key: operation.key }
          : { kind: 'propose', command: { kind: 'get', clientId, seq: operation.seq, key: operation.key } };
      case 'write':
        return { kind: 'propose', command: { kind: 'put', clientId, seq: operation.seq, key: operation.key, value: operation.value } };
      case 'cas':
        return { kind: 'propose', command: { kind: 'cas', clientId, seq: operation.seq, key: operation.key, from: operation.from, to: operation.to } };
      case 'delete':
        return { kind: 'propose', command: { kind: 'delete', clientId, seq: operation.seq, key: operation.key } };
    }
  }

  private attemptTimedOut(current: Current, attempt: number): void {
    if (this.current !== current || current.attempt !== attempt) return;
    this.stats.timeouts++;
    current.timer = undefined;
    current.attemptOutstanding = false;
    current.maybeTookEffect = true;
    if (this.leaderGuess === this.attemptTarget) this.leaderGuess = undefined;
    this.sendAttempt();
  }

  /** A reply arrived from `from`. */
  receive(from: number, payload: SimPayload): void {
    if (payload.kind !== 'reply') return;
    const current = this.current;
    if (current === undefined || payload.opId !== current.opId) return; // a late answer to a finished operation
    const reply = payload.reply;
    if (reply.kind === 'result') {
      if (!this.isRefusal(reply.result)) this.leaderGuess = from;
      this.finishWithResult(current, reply.result);
      return;
    }
    // A refusal only tells about its own attempt; a late one for an abandoned attempt is ignored.
    if (payload.attempt !== current.attempt) return;
    this.cancelTimer(current);
    this.refused(current, reply);
  }

  private refused(current: Current, reply: Exclude<NodeReply, { kind: 'result' }>): void {
    // This attempt was certainly not appended; earlier ones keep their uncertainty.
    current.attemptOutstanding = false;
    this.stats.redirects++;
    const random = this.context.random;
    let pauseNs: number;
    if (reply.kind === 'notLeader') {
      this.leaderGuess = reply.leaderHint === 0 ? undefined : reply.leaderHint;
      pauseNs = reply.leaderHint === 0 ? this.workload.attemptTimeoutNs / 4 : random.int(2_000_000);
    } else {
      this.leaderGuess = undefined;
      pauseNs = this.workload.attemptTimeoutNs / 8 + random.int(this.workload.attemptTimeoutNs / 4);
    }
    current.timer = this.context.clock.after(pauseNs, 'client', () => {
      if (this.current !== current) return;
      current.timer = undefined;
      this.sendAttempt();
    });
  }

  private isRefusal(result: KvResult): boolean {
    return result.kind === 'sessionExpired' || result.kind === 'stale' || result.kind === 'invalid' || result.kind === 'full';
  }

  private finishWithResult(current: Current, result: KvResult): void {
    this.cancelTimer(current);
    const operation = current.operation;
    if (this.isRefusal(result)) {
      // The answered entry had no effect. Another copy of the request can only have taken effect
      // through an attempt that timed out (a copy that applied first would have been answered).
      if (result.kind === 'sessionExpired') this.sessionOpen = false;
      this.end(current, current.maybeTookEffect ? 'unknown' : 'fail');
      return;
    }
    const recorder = this.context.recorder;
    switch (operation.op) {
      case 'open':
        assert(result.kind === 'opened', `open answered with ${result.kind}`);
        this.sessionOpen = true;
        break;
      case 'read':
        assert(result.kind === 'get', `read answered with ${result.kind}`);
        recorder.completeRead(current.handle as number, result.value);
        this.seen.set(operation.key, result.value);
        break;
      case 'write':
        assert(result.kind === 'put', `put answered with ${result.kind}`);
        recorder.completeWrite(current.handle as number);
        this.seen.set(operation.key, operation.value);
        break;
      case 'cas':
        assert(result.kind === 'cas', `cas answered with ${result.kind}`);
        recorder.completeCas(current.handle as number, result.ok);
        this.seen.set(operation.key, result.ok ? operation.to : result.value);
        break;
      case 'delete':
        assert(result.kind === 'delete', `delete answered with ${result.kind}`);
        recorder.completeWrite(current.handle as number);
        this.seen.set(operation.key, null);
        break;
    }
    if (operation.op !== 'open') this.stats.ok++;
    this.current = undefined;
    this.scheduleNext();
  }

  private giveUp(): void {
    const current = this.current;
    assert(current !== undefined, 'giving up needs an operation');
    this.cancelTimer(current);
    if (current.attemptOutstanding) current.maybeTookEffect = true;
    this.end(current, current.maybeTookEffect ? 'unknown' : 'fail');
  }

  private end(current: Current, status: 'fail' | 'unknown'): void {
    if (current.handle !== undefined) {
      if (status === 'fail') {
        this.context.recorder.fail(current.handle);
        this.stats.failed++;
      } else {
        this.context.recorder.unknown(current.handle);
        this.stats.unknown++;
      }
    }
    // An open that failed or is unknown is simply tried again: it is idempotent.
    this.current = undefined;
    this.scheduleNext();
  }

  private cancelTimer(current: Current): void {
    if (current.timer !== undefined) this.context.clock.cancel(current.timer);
    current.timer = undefined;
  }

  private randomNode(): number {
    const ids = this.context.nodeIds;
    return ids[this.context.random.int(ids.length)] as number;
  }
}

function historyInput(operation: Exclude<Operation, { op: 'open' }>):
  Parameters<HistoryRecorder['invoke']>[1] {
  switch (operation.op) {
    case 'read':
      return { op: 'read', key: operation.key };
    case 'write':
      return { op: 'write', key: operation.key, value: operation.value };
    case 'cas':
      return { op: 'cas', key: operation.key, from: operation.from, to: operation.to };
    case 'delete':
      return { op: 'delete', key: operation.key };
  }
}
