/**
 * NbdConnection: one NBD session over one Duplex stream — the fixed newstyle handshake (answered
 * by Negotiation), then the transmission phase; or the transmission phase alone, for the kernel
 * driver, which never negotiates. This is the I/O edge: the pure parsers, validator and encoders
 * do the protocol; this class moves bytes, runs device calls concurrently and owns the lifecycle.
 *
 * Lifecycle: handshake → transmission → draining → closing → closed. Draining (after DISC, the
 * client's end of stream, or server shutdown) takes no new requests and finishes the ones in
 * flight; closing ends the stream once every reply is written; closed means the stream is gone.
 * The export handle is released once, after close, when no device call is still running.
 *
 * Invariants:
 * - Requests in flight ≤ inflightRequestsMax and their bytes (WRITE payloads, READ buffers) stay
 *   below inflightBytesMax plus one request: at either bound, and while more than
 *   inflightBytesMax of replies wait in the stream's write buffer (a client not reading), the
 *   stream is paused and no further request is parsed; it resumes as requests complete.
 * - Every request taken from the parser gets exactly one reply (DISC none), unless the stream
 *   closed first; replies may leave out of order. A READ reply header is written only together
 *   with its data, so an error can always still be reported.
 * - Nothing a client sends can throw out of this class: bad input becomes an errno reply, an
 *   option error, or a dropped connection; stream errors close the session. Assertion failures
 *   (bugs) are not caught.
 * - Replies written in one event-loop turn are coalesced: the stream is corked at the first
 *   write and uncorked on the next tick, so one writev carries them.
 * - A closing connection whose peer stops reading is destroyed after lingerMs (or the shutdown
 *   deadline), so neither a connection slot nor server.close() can be held forever.
 *
 * Socket fast paths (only for sockets the server adopted, see socket-input.ts and
 * bulk-channel.ts; any other Duplex uses plain 'data' events and stream writes):
 * - Reads land in staging slabs, and a large WRITE payload is received straight into its own
 *   buffer (no copy out of receive chunks).
 * - A payload with at least bulkReceiveBytesMin still missing is received on the thread pool
 *   while the socket is not read on the event loop — unless Node already holds the payload's
 *   rest as the buffer of its next read (SocketInput.directTargetFree), which the event loop
 *   then fills; a READ reply of at least bulkSendBytesMin
 *   is sent on the thread pool when nothing else is queued for output, and replies finished
 *   meanwhile wait (in order) until it is done. So the socket is never read, or written, by two
 *   threads at once, and the stream is ended only after a bulk send has finished.
 * - A bulk receive that got its whole payload also takes, without waiting, what has arrived
 *   after it (an ahead region, see socket-input.ts): usually the next request's header, parsed
 *   at once — the next large payload's bulk receive starts without the socket being resumed,
 *   polled and read on the event loop in between. Those bytes follow the payload in the stream.
 * - A FLUSH that is the connection's only request, with no output queued, lends the output to
 *   the thread that syncs: it sends the reply the moment the data is durable (FlushNotice), with
 *   no hand-back to the event loop first — the QD1 write+flush pattern of databases. Replies
 *   finished meanwhile wait as for a bulk send; the shutdown deadline never answers that FLUSH
 *   a second time.
 */
import type { Duplex } from 'node:stream';
import { isCairnError, NbdErrno } from '../errors/cairn-error';
import {
  nbdBlockStatusDescriptorsMax, nbdHandshakeTimeoutMs, nbdInflightBytesMax, nbdInflightRequestsMax,
  nbdOptionBytesMax, nbdOptionsPerConnectionMax, requestBytesMax,
} from '../limits';
import type { BlockDevice, DirectWrite, FlushNotice, WriteFlags, ZeroFlags } from '../block/block-device';
import { ioBufferPool } from './io-buffer-pool';
import { assert, AssertionError } from '../util/assert';
import { ByteQueue } from './byte-queue';
import type { ExportResolver, NbdExportHandle, NbdLogger } from './export-resolver';
import { NegotiatedFeatures, Negotiation, NegotiationHost } from './negotiation';
import { baseAllocationContextId, Command, CommandFlag, simpleReplyBytes, TransmissionFlag } from './protocol';
import {
  encodeBlockStatus, encodeServerGreeting, encodeSimpleReply, encodeStructuredDone, encodeStructuredError,
  structuredReadPrefixBytes, writeSimpleReplyHeader, writeStructuredReadPrefix,
} from './replies';
import { NbdRequest, RequestParseFailure, RequestParser } from './request-parser';
import { BulkChannel, bulkSendBuffersMax, bulkSendBytesMax, bulkTransfersRunning } from './bulk-channel';
import type { InputConsumer, SocketInput } from './socket-input';
import { clientMessageOf, descriptorsFor, nbdErrorFor, TransmissionContext, validateRequest } from './validate';
import { KiB } from '../util/units';

/** A WRITE payload missing at least this much is received straight into its buffer. */
export const directReceiveBytesMin = 32 * KiB;
/** A WRITE payload missing at least this much is received on the thread pool (bulk channel). */
export const bulkReceiveBytesMin = 256 * KiB;
/** A reply at least this long is sent on the thread pool (bulk channel) when output is idle. */
export const bulkSendBytesMin = 256 * KiB;

export interface ConnectionLimits {
  readonly inflightRequestsMax: number;
  readonly inflightBytesMax: number;
  readonly handshakeTimeoutMs: number;
  readonly payloadBytesMax: number;
  readonly optionBytesMax: number;
  readonly optionsMax: number;
  readonly blockStatusDescriptorsMax: number;
  /** How long a closing connection may take to flush its last replies before it is destroyed. */
  readonly lingerMs: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  inflightRequestsMax: nbdInflightRequestsMax,
  inflightBytesMax: nbdInflightBytesMax,
  handshakeTimeoutMs: nbdHandshakeTimeoutMs,
  payloadBytesMax: requestBytesMax,
  optionBytesMax: nbdOptionBytesMax,
  optionsMax: nbdOptionsPerConnectionMax,
  blockStatusDescriptorsMax: nbdBlockStatusDescriptorsMax,
  // A peer that stops reading must not pin a closing connection forever; as long as a handshake may take.
  lingerMs: nbdHandshakeTimeoutMs,
};

export type ConnectionPhase = 'handshake' | 'transmission' | 'draining' | 'closing' | 'closed';

export interface ConnectionOptions {
  readonly id: number;
  readonly logger: NbdLogger;
  readonly limits: ConnectionLimits;
  /** Handshake only: where exports come from. */
  readonly resolver?: ExportResolver;
  /** Handshake only: true once the server is closing (options get ERR_SHUTDOWN). */
  readonly isShuttingDown?: () => boolean;
  /** The stream is a socket in onread mode whose reads land where this input says (adoptSocket). */
  readonly input?: SocketInput;
  /** A second descriptor of the stream's socket for bulk transfers; the connection closes it. */
  readonly bulk?: BulkChannel;
  /** When a bulk-received WRITE payload is stored as it arrives (see StoreOnArrival). */
  readonly storeOnArrival?: StoreOnArrival;
}

/**
 * 'always' (the default): store a WRITE payload straight from the socket (one pool call) whenever
 * the device offers the range as one open file. 'auto': only while other bulk transfers run;
 * alone, the payload is received in one pool call and written in another, so its file write
 * overlaps the next payload's receive. Before payloads received ahead (recvAheadAsync), 'auto'
 * won on one connection (2.5 vs 2.2 GB/s); with them, the saved hand-offs win: 1 MiB QD8 writes
 * on one connection were 0.82 against 0.78 × nbdkit (tmpfs, 10 paired runs) and 0.92 against
 * 0.85-0.91 (ext4, 8 paired runs each, twice); on four connections both are above 1.1.
 */
export type StoreOnArrival = 'auto' | 'always';

const noWriteFlags: WriteFlags = {};
const fuaWriteFlags: WriteFlags = { fua: true };

export class NbdConnection {
  readonly id: number;
  /** Resolves once the stream has closed and the export handle (if any) was released. */
  readonly closed: Promise<void>;

  private phaseValue: ConnectionPhase = 'handshake';
  private readonly stream: Duplex;
  private readonly logger: NbdLogger;
  private readonly limits: ConnectionLimits;
  private readonly resolver: ExportResolver | undefined;
  private readonly isShuttingDown: () => boolean;
  private readonly queue = new ByteQueue();

  // Handshake state.
  private negotiation: Negotiation | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;

  // Transmission state.
  private requestParser: RequestParser | undefined;
  private handle: NbdExportHandle | undefined;
  private context: TransmissionContext | undefined;
  /** Requests taken from the parser and not yet answered. */
  private readonly inflight = new Set<NbdRequest>();
  private inflightBytes = 0;
  /** Device calls still running (may outlive `inflight` after a shutdown deadline or close). */
  private deviceCallsRunning = 0;
  /** Whether the stream is flowing (we pause it at the bounds and while an option is answered). */
  private reading = true;
  /** The client ended its side: drain once no complete request is left in the queue. */
  private inputEnded = false;
  private corked = false;
  private outputBlocked = false;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private shutdownDeadlineMs = 0;
  /** Destroys a closing stream that did not finish flushing in time (a peer that stopped reading). */
  private lingerTimer: NodeJS.Timeout | undefined;
  private released = false;
  private resolveClosed: () => void = () => {};

  // Socket fast paths (see the module comment).
  private readonly bulk: BulkChannel | undefined;
  private readonly input: SocketInput | undefined;
  private readonly storeOnArrival: StoreOnArrival;
  /** Whether the last request taken was a WRITE large enough for a bulk receive (SocketInput hint). */
  private lastWriteLarge = false;
  /** Whether the caller wants input; the socket reads only if also no bulk receive runs. */
  private readingWanted = true;
  private bulkReceiving = false;
  /** A payload whose bulk receive came back short: it is finished on the event loop. */
  private bulkDeclined: NbdRequest | undefined;
  /** A pool thread owns the socket's output: a bulk send, or the FLUSH in `lentFor`. */
  private outputLent = false;
  /** A large reply waits in `held` for the end of this turn (sendBatch), with the turn's others. */
  private batchPending = false;
  private lentFor: NbdRequest | undefined;
  /** Replies finished while a bulk send runs, in order, and their bytes. */
  private held: Array<{ buffer: Buffer; releaseAfter: boolean }> = [];
  private heldBytes = 0;
  /** endStream() ran while a bulk send was running: end the stream once it is done. */
  private endPending = false;

  constructor(stream: Duplex, options: ConnectionOptions) {
    this.stream = stream;
    this.id = options.id;
    this.logger = options.logger;
    this.limits = options.limits;
    this.resolver = options.resolver;
    this.isShuttingDown = options.isShuttingDown ?? (() => false);
    assert(this.limits.inflightRequestsMax > 0, 'inflightRequestsMax must be positive');
    assert(this.limits.inflightBytesMax >= this.limits.payloadBytesMax, 'inflightBytesMax must hold one request');
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    assert(options.bulk === undefined || options.input !== undefined, 'a bulk channel comes with its socket input');
    this.bulk = options.bulk;
    this.input = options.input;
    this.storeOnArrival = options.storeOnArrival ?? 'always';
    if (options.input !== undefined) options.input.attach(this.inputConsumer());
    else stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('error', this.onError);
    stream.on('close', this.onClose);
    stream.on('drain', this.onDrain);
    if (stream.destroyed) queueMicrotask(this.onClose);
  }

  get phase(): ConnectionPhase {
    return this.phaseValue;
  }

  get inflightRequests(): number {
    return this.inflight.size;
  }

  /** Starts the fixed newstyle handshake: greeting, then options until EXPORT_NAME/GO/ABORT. */
  startHandshake(): void {
    assert(this.phaseValue === 'handshake', 'handshake started twice');
    assert(this.negotiation === undefined, 'handshake started twice');
    assert(this.resolver !== undefined, 'a handshake needs a resolver');
    this.negotiation = new Negotiation(this.negotiationHost(), this.queue, this.resolver, this.limits);
    this.handshakeTimer = setTimeout(this.onHandshakeTimeout, this.limits.handshakeTimeoutMs);
    this.write(encodeServerGreeting());
  }

  /** Skips the handshake: serves `handle` with simple replies only, as the kernel driver needs. */
  startTransmission(handle: NbdExportHandle, transmissionFlags: number): void {
    assert(this.phaseValue === 'handshake', 'transmission started twice');
    assert((transmissionFlags & TransmissionFlag.HAS_FLAGS) !== 0, 'transmission flags need HAS_FLAGS');
    assert((transmissionFlags & TransmissionFlag.SEND_DF) === 0, 'DF needs structured replies');
    const writable = handle.device.capabilities.canWrite && !handle.readOnly;
    assert(writable || (transmissionFlags & TransmissionFlag.READ_ONLY) !== 0, 'a read-only export must say READ_ONLY');
    this.enterTransmission(handle, transmissionFlags, { structuredReplies: false, blockStatus: false });
  }

  /**
   * Server shutdown: handshakes get ERR_SHUTDOWN for every further option; transmission stops
   * taking requests and finishes those in flight. At the deadline, requests still running are
   * answered ESHUTDOWN and the connection closes; a handshake still open is dropped.
   */
  shutdown(deadlineMs: number): void {
    if (this.phaseValue === 'closed') return;
    if (this.phaseValue === 'closing') {
      this.armLingerTimer(deadlineMs);
      return;
    }
    this.shutdownDeadlineMs = deadlineMs;
    if (this.deadlineTimer === undefined) this.deadlineTimer = setTimeout(this.onShutdownDeadline, deadlineMs);
    if (this.phaseValue === 'transmission') this.beginDraining('server shutdown');
  }

  /** Drops the connection now; requests in flight get no reply. */
  destroy(reason: string): void {
    if (this.phaseValue === 'closed' || this.stream.destroyed) return;
    this.logger.debug('nbd connection dropped', { connection: this.id, reason });
    // 'closing' stops every pump loop at once; the stream's 'close' event makes it 'closed'.
    this.phaseValue = 'closing';
    this.clearTimers();
    this.queue.clear();
    this.stream.destroy();
    this.bulk?.close();
  }

  // ---- stream events (bound once per connection) ----

  private readonly onData = (chunk: Buffer | string): void => {
    if (this.phaseValue !== 'handshake' && this.phaseValue !== 'transmission') return;
    if (typeof chunk === 'string') {
      this.destroy('stream delivered text, not bytes');
      return;
    }
    this.queue.push(chunk);
    if (this.phaseValue === 'transmission') this.pumpRequests();
    else this.negotiation?.pump();
  };

  /** The SocketInput's view of this connection (built once). */
  private inputConsumer(): InputConsumer {
    return {
      directTarget: () => (this.phaseValue === 'transmission' && !this.bulkReceiving
        ? this.requestParser?.directTarget(directReceiveBytesMin) : undefined),
      expectsLargePayloads: () => this.lastWriteLarge,
      receivedChunk: (chunk) => this.onData(chunk),
      receivedDirect: (count) => {
        if (this.phaseValue !== 'transmission') return;
        this.requestParser?.directReceived(count);
        this.pumpRequests();
      },
    };
  }

  private readonly onEnd = (): void => {
    if (this.phaseValue === 'handshake') {
      // Let an option being answered finish; the reply is written if the peer still reads.
      if (this.negotiation?.busy !== true) this.endStream('client closed during the handshake');
    } else if (this.phaseValue === 'transmission') {
      this.inputEnded = true;
      this.pumpRequests(); // requests (or a DISC) may still sit in the queue
    }
  };

  private readonly onError = (error: Error): void => {
    this.logger.debug('nbd stream error', { connection: this.id, error });
  };

  private readonly onClose = (): void => {
    if (this.phaseValue === 'closed') return;
    this.phaseValue = 'closed';
    this.clearTimers();
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.queue.clear();
    this.inflight.clear();
    this.releaseHeld();
    this.bulk?.close();
    this.logger.debug('nbd connection closed', { connection: this.id });
    this.maybeRelease();
  };

  private readonly onDrain = (): void => {
    if (!this.outputBlocked) return;
    this.outputBlocked = false;
    if (this.phaseValue === 'transmission') this.pumpRequests();
  };

  private readonly onHandshakeTimeout = (): void => {
    this.handshakeTimer = undefined;
    if (this.phaseValue === 'handshake') this.destroy('handshake timeout');
  };

  private readonly onShutdownDeadline = (): void => {
    this.deadlineTimer = undefined;
    if (this.phaseValue === 'handshake') {
      this.destroy('server shutdown deadline during the handshake');
      return;
    }
    if (this.phaseValue !== 'draining') return;
    for (const request of this.inflight) {
      if (request === this.lentFor) continue; // its reply is on its way from the syncing thread
      this.write(this.errorReply(request, NbdErrno.ESHUTDOWN, 'server is shutting down'));
    }
    this.inflight.clear();
    this.inflightBytes = 0;
    this.endStream('server shutdown deadline', this.shutdownDeadlineMs);
  };

  private readonly onLingerTimeout = (): void => {
    this.lingerTimer = undefined;
    this.destroy('the peer did not take its last replies in time');
  };

  // ---- handshake ----

  /** The negotiation's view of this connection (built once). */
  private negotiationHost(): NegotiationHost {
    return {
      connectionId: this.id,
      logger: this.logger,
      inHandshake: () => this.phaseValue === 'handshake',
      isShuttingDown: this.isShuttingDown,
      write: (buffer) => this.write(buffer),
      setReading: (wanted) => this.setReading(wanted),
      drop: (reason) => this.destroy(reason),
      finish: (reason) => this.endStream(reason),
      beginTransmission: (handle, flags, negotiated) => this.enterTransmission(handle, flags, negotiated),
      optionSettled: () => this.optionSettled(),
    };
  }

  /** INFO/GO/EXPORT_NAME finished: continue where the connection now is. */
  private optionSettled(): void {
    if (this.phaseValue === 'closed') {
      this.maybeRelease();
    } else if (this.phaseValue === 'transmission') {
      this.pumpRequests();
    } else if (this.phaseValue === 'handshake') {
      if (this.stream.readableEnded) {
        this.endStream('client closed during the handshake');
        return;
      }
      this.setReading(true);
      this.negotiation?.pump();
    }
  }

  // ---- transmission ----

  private enterTransmission(handle: NbdExportHandle, transmissionFlags: number, negotiated: NegotiatedFeatures): void {
    assert(this.phaseValue === 'handshake', 'transmission starts from the handshake');
    assert(this.handle === undefined, 'one export per connection');
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.handle = handle;
    this.context = {
      sizeBytes: handle.device.sizeBytes,
      transmissionFlags,
      structuredReplies: negotiated.structuredReplies,
      blockStatus: negotiated.blockStatus && negotiated.structuredReplies,
      payloadBytesMax: this.limits.payloadBytesMax,
    };
    this.requestParser = new RequestParser(this.queue, { payloadBytesMax: this.limits.payloadBytesMax });
    this.phaseValue = 'transmission';
    // 'end' may have fired while GO was opening the export (onEnd ignores it then): it will not
    // fire again, so remember it here or the connection waits for requests forever.
    if (this.stream.readableEnded) this.inputEnded = true;
    this.logger.debug('nbd transmission', { connection: this.id, export: handle.name, flags: transmissionFlags });
    if (this.shutdownPending()) {
      this.beginDraining('server shutdown');
    } else if (this.negotiation?.busy !== true) {
      this.pumpRequests(); // else optionSettled() pumps once the option's reply is complete
    }
  }

  private shutdownPending(): boolean {
    return this.deadlineTimer !== undefined || this.isShuttingDown();
  }

  /** Takes and dispatches requests while under every bound, then pauses or resumes the stream. */
  private pumpRequests(): void {
    const parser = this.requestParser;
    assert(parser !== undefined, 'request parser exists in transmission');
    const limits = this.limits;
    while (this.phaseValue === 'transmission' && !this.outputBlocked
      && this.inflight.size < limits.inflightRequestsMax && this.inflightBytes < limits.inflightBytesMax) {
      const request = parser.next();
      if (request === undefined) {
        if (this.inputEnded) {
          this.beginDraining('client closed');
          return;
        }
        break;
      }
      if (request instanceof RequestParseFailure) {
        this.destroy(request.reason);
        return;
      }
      if (request.type === Command.DISC) {
        this.beginDraining('client sent DISC');
        return;
      }
      this.lastWriteLarge = request.type === Command.WRITE && request.length >= bulkReceiveBytesMin;
      this.dispatch(request);
    }
    this.updateReading();
    this.maybeStartBulkReceive();
  }

  /** The pending WRITE's range as one open file, when it can be stored as it arrives. */
  private directWriteFor(request: NbdRequest): DirectWrite | undefined {
    const context = this.context;
    const device = this.handle?.device;
    if (context === undefined || device?.directWrite === undefined || (request.flags & CommandFlag.FUA) !== 0
      || validateRequest(request, context) !== 0) return undefined;
    return device.directWrite(request.offset, request.length);
  }

  private updateReading(): void {
    const limits = this.limits;
    this.setReading(this.phaseValue === 'transmission' && !this.outputBlocked
      && this.inflight.size < limits.inflightRequestsMax && this.inflightBytes < limits.inflightBytesMax);
  }

  private setReading(wanted: boolean): void {
    this.readingWanted = wanted;
    this.applyReading();
  }

  /** Reads the socket when input is wanted and no bulk receive owns it. */
  private applyReading(): void {
    const reading = this.readingWanted && !this.bulkReceiving;
    if (reading === this.reading) return;
    this.reading = reading;
    if (reading) this.stream.resume();
    else this.stream.pause();
  }

  /** Hands the rest of a large pending WRITE payload to the bulk channel (see the module comment). */
  private maybeStartBulkReceive(): void {
    const bulk = this.bulk;
    const input = this.input;
    const parser = this.requestParser;
    if (bulk === undefined || input === undefined || parser === undefined || this.bulkReceiving || !this.reading
      || this.phaseValue !== 'transmission' || !bulk.available) return;
    const pending = parser.pendingWrite;
    if (pending === undefined || pending === this.bulkDeclined || parser.missingPayloadBytes < bulkReceiveBytesMin) return;
    // Node may hold the rest of this payload for its next read: then the event loop finishes it.
    if (!input.directTargetFree) return;
    const target = parser.directTarget(bulkReceiveBytesMin);
    if (target === undefined) return;
    this.bulkReceiving = true;
    this.applyReading();
    // Store-as-it-arrives saves a pool round trip but keeps the socket unread until the file
    // write is done too (see StoreOnArrival for which wins when).
    const direct = this.storeOnArrival === 'always' || bulkTransfersRunning() > 0 ? this.directWriteFor(pending) : undefined;
    const adopted = parser.adoptedPayload();
    assert(adopted !== undefined, 'a direct target is the rest of an adopted payload');
    if (direct !== undefined) this.deviceCallsRunning += 1;
    // What follows the payload comes back too when it has already arrived (usually the next
    // request's header): it is parsed at once, without resuming the socket for one more read.
    const ahead = input.aheadRegion();
    // Both kinds report the bytes newly received; storing also reports how the file write went.
    const receiving: Promise<{ count: number; aheadCount: number; stored: true | Error | undefined }> = direct === undefined
      ? bulk.receive(target, ahead).then((result) => ({ count: result.received, aheadCount: result.ahead, stored: undefined }))
      : bulk.receiveAndWrite(adopted.buffer, adopted.filled, direct.fd, direct.position, ahead).then((result) => {
        this.deviceCallsRunning -= 1;
        const failure = direct.finish(result.written > 0 || result.writeError !== undefined, result.writeError);
        return { count: result.received - adopted.filled, aheadCount: result.ahead ?? 0, stored: failure ?? true };
      });
    receiving.then(({ count, aheadCount, stored }) => {
      this.bulkReceiving = false;
      if (this.phaseValue !== 'transmission') { // draining or closed: the payload is abandoned
        this.maybeRelease();
        return;
      }
      parser.directReceived(count);
      if (count === target.length) pending.stored = stored;
      else this.bulkDeclined = pending; // short: the peer paused or ended; finish on the event loop
      // Bytes ahead come only after a complete payload, so they follow it in the stream.
      if (aheadCount > 0) this.queue.push(input.aheadReceived(ahead, aheadCount));
      this.pumpRequests();
    }, (error: unknown) => {
      this.bulkReceiving = false;
      if (direct !== undefined) {
        this.deviceCallsRunning -= 1;
        direct.finish(false);
      }
      this.destroy(`socket receive failed: ${(error as Error).message}`);
      this.maybeRelease();
    });
  }

  private dispatch(request: NbdRequest): void {
    const context = this.context;
    assert(context !== undefined, 'transmission context exists');
    const errno = validateRequest(request, context);
    if (errno !== 0) {
      this.logger.debug('nbd request refused', {
        connection: this.id, type: request.type, flags: request.flags, offset: request.offset, length: request.length, errno,
      });
      this.write(this.errorReply(request, errno, 'invalid request'));
      return;
    }
    this.inflight.add(request);
    this.inflightBytes += costBytesOf(request);
    this.deviceCallsRunning += 1;
    void this.execute(request);
  }

  private async execute(request: NbdRequest): Promise<void> {
    let reply: Buffer | undefined;
    try {
      reply = await this.perform(request);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      const errno = nbdErrorFor(error, request);
      reply = this.errorReply(request, errno, clientMessageOf(error));
      // Coded errors are expected outcomes (no space, read-only, ...); anything else is a device fault.
      const fields = { connection: this.id, type: request.type, offset: request.offset, length: request.length, errno, error };
      if (isCairnError(error)) this.logger.debug('nbd request failed', fields);
      else this.logger.warn('nbd request failed', fields);
    } finally {
      this.deviceCallsRunning -= 1;
    }
    if (!this.inflight.delete(request)) {
      // Answered already (shutdown deadline) or the connection closed.
      if (reply !== undefined) ioBufferPool.release(reply);
      this.maybeRelease();
      return;
    }
    this.inflightBytes -= costBytesOf(request);
    if (reply !== undefined) this.write(reply, true);
    if (this.phaseValue === 'transmission') this.pumpRequests();
    else if (this.phaseValue === 'draining') this.maybeFinishDraining();
    else this.maybeRelease();
  }

  /**
   * Runs one validated request on the device and returns the whole success reply, or undefined
   * when the reply was already sent (a FLUSH answered by its syncing thread).
   */
  private async perform(request: NbdRequest): Promise<Buffer | undefined> {
    const handle = this.handle;
    const context = this.context;
    assert(handle !== undefined && context !== undefined, 'transmission state exists');
    const device = handle.device;
    const fua = (request.flags & CommandFlag.FUA) !== 0;
    switch (request.type) {
      case Command.READ: {
        if (context.structuredReplies && request.length === 0) return encodeStructuredDone(request);
        const prefixBytes = context.structuredReplies ? structuredReadPrefixBytes : simpleReplyBytes;
        const reply = ioBufferPool.acquire(prefixBytes + request.length);
        if (context.structuredReplies) writeStructuredReadPrefix(reply, request, request.length);
        else writeSimpleReplyHeader(reply, 0, request);
        // On failure the buffer is not released: pieces of a multi-extent read may still be
        // filling it in the thread pool; GC reclaims it once they are done.
        await device.read(request.offset, reply.subarray(prefixBytes));
        return reply;
      }
      case Command.WRITE: {
        const payload = request.payload;
        assert(payload !== undefined && payload.length === request.length, 'WRITE carries its payload');
        const stored = request.stored;
        if (stored !== undefined) {
          // Written to its extent file as it arrived (maybeStartBulkReceive).
          request.stored = undefined;
          request.payload = undefined;
          if (stored !== true) throw stored;
          ioBufferPool.release(payload);
          return encodeSimpleReply(0, request);
        }
        await device.write(request.offset, payload, fua ? fuaWriteFlags : noWriteFlags);
        request.payload = undefined; // let the receive buffer go while the reply waits
        // Back to the pool only after a success: a failed multi-extent write may still have
        // pieces running in the thread pool that read this buffer (then GC reclaims it instead).
        ioBufferPool.release(payload); // a no-op unless the payload was assembled in a pooled buffer
        return encodeSimpleReply(0, request);
      }
      case Command.FLUSH:
        return this.flush(device, request);
      case Command.TRIM:
        await device.trim(request.offset, request.length, fua ? fuaWriteFlags : noWriteFlags);
        return encodeSimpleReply(0, request);
      case Command.CACHE:
        await device.cache(request.offset, request.length);
        return encodeSimpleReply(0, request);
      case Command.WRITE_ZEROES: {
        const flags: ZeroFlags = {
          fua,
          noHole: (request.flags & CommandFlag.NO_HOLE) !== 0,
          fast: (request.flags & CommandFlag.FAST_ZERO) !== 0,
        };
        await device.zero(request.offset, request.length, flags);
        return encodeSimpleReply(0, request);
      }
      case Command.BLOCK_STATUS: {
        const extents = device.capabilities.canExtents ? await device.extents(request.offset, request.length) : [];
        const descriptors = descriptorsFor(extents, request.length, (request.flags & CommandFlag.REQ_ONE) !== 0,
          this.limits.blockStatusDescriptorsMax);
        return encodeBlockStatus(request, baseAllocationContextId, descriptors);
      }
      default:
        throw new AssertionError(`validated request has unknown command ${request.type}`);
    }
  }

  /** FLUSH; answered by the syncing thread when the output can be lent (see the module comment). */
  private async flush(device: BlockDevice, request: NbdRequest): Promise<Buffer | undefined> {
    const reply = encodeSimpleReply(0, request);
    const bulk = this.bulk;
    const stream = this.stream;
    if (bulk === undefined || !bulk.isOpen || this.outputLent || this.batchPending || this.inflight.size !== 1 || this.phaseValue !== 'transmission'
      || stream.destroyed || !stream.writable || stream.writableLength !== 0) {
      await device.flush();
      return reply;
    }
    this.outputLent = true;
    this.lentFor = request;
    const notice: FlushNotice = { fd: bulk.fd, bytes: reply, sentBytes: 0 };
    try {
      await bulk.lend(() => device.flush(notice));
    } catch (error) {
      this.returnOutput(undefined);
      throw error;
    }
    this.returnOutput(reply.subarray(notice.sentBytes));
    return undefined;
  }

  /** The pool thread is done with the output: `first` (the rest of its reply) goes out first. */
  private returnOutput(first: Buffer | undefined): void {
    this.outputLent = false;
    this.lentFor = undefined;
    if (first !== undefined && first.length > 0) this.write(first);
    this.outputReturned();
  }

  /** READ and BLOCK_STATUS errors go in a structured ERROR chunk when negotiated; others are simple. */
  private errorReply(request: NbdRequest, errno: number, message: string): Buffer {
    const structured = this.context?.structuredReplies === true
      && (request.type === Command.READ || request.type === Command.BLOCK_STATUS);
    return structured ? encodeStructuredError(request, errno, message) : encodeSimpleReply(errno, request);
  }

  private beginDraining(reason: string): void {
    assert(this.phaseValue === 'transmission', 'draining starts from transmission');
    this.logger.debug('nbd connection draining', { connection: this.id, reason, inflight: this.inflight.size });
    this.phaseValue = 'draining';
    this.queue.clear();
    this.updateReading();
    this.maybeFinishDraining();
  }

  private maybeFinishDraining(): void {
    if (this.phaseValue === 'draining' && this.inflight.size === 0) this.endStream('drained');
  }

  // ---- output and teardown ----

  /**
   * Queues a reply. With `releaseAfter`, the buffer goes back to ioBufferPool once the stream has
   * handed it to the kernel (or failed): never earlier, or a later READ could overwrite it in flight.
   */
  private write(buffer: Buffer, releaseAfter = false): void {
    const stream = this.stream;
    if (stream.destroyed || !stream.writable) {
      if (releaseAfter) ioBufferPool.release(buffer);
      return;
    }
    if (this.outputLent || this.batchPending) {
      this.held.push({ buffer, releaseAfter });
      this.heldBytes += buffer.length;
      if (this.heldBytes + stream.writableLength >= this.limits.inflightBytesMax) this.outputBlocked = true;
      return;
    }
    if (releaseAfter && buffer.length >= bulkSendBytesMin && stream.writableLength === 0 && this.bulk?.available === true) {
      // Gather the replies finished in this event-loop turn (READs completed together) into one
      // bulk send at the end of the turn: one pool round trip for all of them.
      this.batchPending = true;
      this.held.push({ buffer, releaseAfter });
      this.heldBytes += buffer.length;
      process.nextTick(sendBatchOf, this);
      return;
    }
    if (!this.corked) {
      this.corked = true;
      stream.cork();
      process.nextTick(uncorkConnection, this);
    }
    const accepted = releaseAfter ? stream.write(buffer, () => ioBufferPool.release(buffer)) : stream.write(buffer);
    if (!accepted && stream.writableLength >= this.limits.inflightBytesMax) this.outputBlocked = true;
  }

  /**
   * Sends replies on the bulk channel, gathered in order; replies finished meanwhile are held
   * until it is done. Each item is released to the pool (if `releaseAfter`) once the kernel has
   * it, by this send or by the event loop finishing what the peer did not take in time.
   */
  private startBulkSend(bulk: BulkChannel, items: ReadonlyArray<{ buffer: Buffer; releaseAfter: boolean }>): void {
    this.outputLent = true;
    bulk.send(items.map((item) => item.buffer)).then((count) => {
      this.outputLent = false;
      const stream = this.stream;
      let skip = count;
      for (const { buffer, releaseAfter } of items) {
        const sent = Math.min(skip, buffer.length);
        skip -= sent;
        if (sent === buffer.length || stream.destroyed || !stream.writable) {
          if (releaseAfter) ioBufferPool.release(buffer);
        } else {
          // The peer stopped taking bytes for a while: the event loop sends the rest, in order.
          const rest = sent === 0 ? buffer : buffer.subarray(sent);
          if (releaseAfter) stream.write(rest, () => ioBufferPool.release(buffer));
          else stream.write(rest);
        }
      }
      this.outputReturned();
    }, (error: unknown) => {
      this.outputLent = false;
      for (const { buffer, releaseAfter } of items) if (releaseAfter) ioBufferPool.release(buffer);
      this.releaseHeld();
      this.destroy(`socket send failed: ${(error as Error).message}`);
    });
  }

  /**
   * The output is back on the event loop: the held replies go out — gathered into one bulk send
   * when they add up to bulkSendBytesMin, else written — then a pending end of the stream.
   */
  private outputReturned(): void {
    const stream = this.stream;
    if (this.batchPending) return; // sendBatch() comes back here at the end of this turn
    while (this.held.length > 0 && !this.outputLent) {
      const batch = this.takeHeldBatch();
      if (batch !== undefined) {
        this.startBulkSend(batch.bulk, batch.items);
        break;
      }
      const next = this.held.shift();
      if (next === undefined) break;
      this.heldBytes -= next.buffer.length;
      this.write(next.buffer, next.releaseAfter);
    }
    if (this.outputLent) return;
    if (this.endPending) {
      this.endPending = false;
      if (!stream.destroyed && !stream.writableEnded) stream.end(() => stream.destroy());
      return;
    }
    if (this.outputBlocked && stream.writableLength < this.limits.inflightBytesMax) {
      this.outputBlocked = false;
      if (this.phaseValue === 'transmission') this.pumpRequests();
    }
  }

  /** The leading held replies as one bulk send, if they qualify (see outputReturned). */
  private takeHeldBatch(): { bulk: BulkChannel; items: Array<{ buffer: Buffer; releaseAfter: boolean }> } | undefined {
    const bulk = this.bulk;
    if (bulk === undefined || !bulk.available || this.stream.writableLength !== 0) return undefined;
    let count = 0;
    let bytes = 0;
    while (count < this.held.length && count < bulkSendBuffersMax) {
      const length = this.held[count]?.buffer.length ?? 0;
      if (count > 0 && bytes + length > bulkSendBytesMax) break;
      bytes += length;
      count++;
    }
    if (bytes < bulkSendBytesMin) return undefined;
    const items = this.held.splice(0, count);
    this.heldBytes -= bytes;
    return { bulk, items };
  }

  /** Drops held replies (the connection is going away), returning their buffers to the pool. */
  private releaseHeld(): void {
    for (const { buffer, releaseAfter } of this.held) if (releaseAfter) ioBufferPool.release(buffer);
    this.held = [];
    this.heldBytes = 0;
  }

  /** @internal process.nextTick target: sends the replies gathered in one event-loop turn. */
  sendBatch(): void {
    this.batchPending = false;
    if (!this.outputLent) this.outputReturned();
  }

  /** @internal process.nextTick target: flushes the replies of one event-loop turn together. */
  uncork(): void {
    this.corked = false;
    this.stream.uncork();
  }

  /** Ends the stream once the written replies are flushed (within `lingerMs`), then closes it. */
  private endStream(reason: string, lingerMs = this.limits.lingerMs): void {
    if (this.phaseValue === 'closed' || this.phaseValue === 'closing') return;
    this.logger.debug('nbd connection ending', { connection: this.id, reason });
    this.phaseValue = 'closing';
    this.clearTimers();
    this.queue.clear();
    this.setReading(false);
    if (this.stream.destroyed || this.stream.writableEnded) {
      this.stream.destroy();
      return;
    }
    this.armLingerTimer(this.shutdownDeadlineMs > 0 ? Math.min(lingerMs, this.shutdownDeadlineMs) : lingerMs);
    if (this.outputLent || this.batchPending) {
      this.endPending = true; // outputReturned() ends the stream once the bulk send is done
      return;
    }
    this.stream.end(() => this.stream.destroy());
  }

  private armLingerTimer(lingerMs: number): void {
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = setTimeout(this.onLingerTimeout, lingerMs);
  }

  private clearTimers(): void {
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.handshakeTimer = undefined;
    this.deadlineTimer = undefined;
  }

  private maybeRelease(): void {
    if (this.phaseValue !== 'closed' || this.released || this.negotiation?.busy === true || this.deviceCallsRunning > 0) return;
    this.released = true;
    const handle = this.handle;
    this.handle = undefined;
    try {
      handle?.release();
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      this.logger.error('nbd export release failed', { connection: this.id, error });
    }
    this.resolveClosed();
  }
}

function uncorkConnection(connection: NbdConnection): void {
  connection.uncork();
}

function sendBatchOf(connection: NbdConnection): void {
  connection.sendBatch();
}

/** Bytes a request holds while in flight: its WRITE payload or its READ reply buffer. */
function costBytesOf(request: NbdRequest): number {
  return request.type === Command.WRITE || request.type === Command.READ ? request.length : 0;
}
