/**
 * Negotiation: the server side of the fixed newstyle handshake for one connection — it takes
 * options from the HandshakeParser one at a time and answers them (LIST, INFO, GO, EXPORT_NAME,
 * ABORT, STRUCTURED_REPLY, LIST/SET_META_CONTEXT; STARTTLS and unknown options get ERR_UNSUP),
 * opening exports through the injected ExportResolver. The connection (its host) owns the
 * stream and the lifecycle; this class owns what was negotiated.
 *
 * Invariants:
 * - One option at a time: while INFO/GO/EXPORT_NAME waits for the resolver, reading is paused
 *   and no further option is parsed (`busy`).
 * - Every handle the resolver returns is either handed to the host with GO/EXPORT_NAME, or
 *   released here (INFO, or the connection left the handshake while the open was running).
 * - A client that is not fixed-newstyle, sends more than optionsMax options, a malformed
 *   option header, or a refused EXPORT_NAME is dropped; every other mistake is an option error
 *   and negotiation continues.
 */
import { isCairnError } from '../errors/cairn-error';
import { assert, AssertionError } from '../util/assert';
import type { ExportResolver, NbdExportHandle, NbdLogger } from './export-resolver';
import {
  decodeExportName, decodeInfoRequest, decodeMetaContextRequest, HandshakeParser, OptionDecodeError,
} from './handshake-parser';
import type { ByteQueue } from './byte-queue';
import {
  baseAllocationContext, baseAllocationContextId, ClientFlag, Info, Option, OptionReply, optionName,
} from './protocol';
import {
  encodeExportNameReply, encodeInfoBlockSize, encodeInfoExport, encodeInfoText, encodeMetaContext, encodeOptionAck,
  encodeOptionError, encodeServerEntry,
} from './replies';
import { blockSizesFor, transmissionFlagsFor } from './validate';

/** What the negotiation needs from its connection. */
export interface NegotiationHost {
  readonly connectionId: number;
  readonly logger: NbdLogger;
  /** True while the connection is in the handshake phase (not transmitting, closing or closed). */
  inHandshake(): boolean;
  isShuttingDown(): boolean;
  write(buffer: Buffer): void;
  setReading(wanted: boolean): void;
  /** Hang up now. */
  drop(reason: string): void;
  /** Flush what was written, then close. */
  finish(reason: string): void;
  /** GO or EXPORT_NAME succeeded: the host now owns `handle`. */
  beginTransmission(handle: NbdExportHandle, transmissionFlags: number, negotiated: NegotiatedFeatures): void;
  /** An asynchronous option (INFO/GO/EXPORT_NAME) finished, whatever its outcome. */
  optionSettled(): void;
}

export interface NegotiatedFeatures {
  readonly structuredReplies: boolean;
  /** base:allocation was selected by SET_META_CONTEXT for the export being served. */
  readonly blockStatus: boolean;
}

export interface NegotiationLimits {
  readonly optionBytesMax: number;
  readonly optionsMax: number;
  readonly payloadBytesMax: number;
}

export class Negotiation {
  private readonly parser: HandshakeParser;
  private clientFlags = 0;
  private optionsSeen = 0;
  private busyValue = false;
  private structuredReplies = false;
  private metaContextSelected = false;
  private metaContextExportName = '';

  constructor(
    private readonly host: NegotiationHost,
    queue: ByteQueue,
    private readonly resolver: ExportResolver,
    private readonly limits: NegotiationLimits,
  ) {
    this.parser = new HandshakeParser(queue, { optionBytesMax: limits.optionBytesMax });
  }

  /** An option is being answered asynchronously; the next one waits. */
  get busy(): boolean {
    return this.busyValue;
  }

  /** Parses and answers options until more bytes are needed, an option goes async, or the handshake ends. */
  pump(): void {
    const host = this.host;
    while (host.inHandshake() && !this.busyValue) {
      const event = this.parser.next();
      if (event === undefined) return;
      if (event.kind === 'failure') {
        host.drop(event.reason);
        return;
      }
      if (event.kind === 'client-flags') {
        this.clientFlags = event.flags;
        continue;
      }
      this.optionsSeen += 1;
      if (this.optionsSeen > this.limits.optionsMax) {
        host.drop(`more than ${this.limits.optionsMax} options`);
        return;
      }
      this.answer(event.option, event.data);
    }
  }

  private answer(option: number, data: Buffer): void {
    const host = this.host;
    host.logger.debug('nbd option', { connection: host.connectionId, option: optionName(option), bytes: data.length });
    if ((this.clientFlags & ClientFlag.FIXED_NEWSTYLE) === 0 && option !== Option.EXPORT_NAME) {
      // A client that is not fixed-newstyle cannot parse option replies: hanging up is all we can do.
      host.drop(`non-fixed-newstyle client sent ${optionName(option)}`);
      return;
    }
    if (option === Option.ABORT) {
      host.write(encodeOptionAck(option));
      host.finish('client aborted the handshake');
      return;
    }
    if (host.isShuttingDown()) {
      if (option === Option.EXPORT_NAME) host.drop('EXPORT_NAME while shutting down');
      else this.refuse(option, OptionReply.ERR_SHUTDOWN, 'server is shutting down');
      return;
    }
    switch (option) {
      case Option.EXPORT_NAME:
      case Option.INFO:
      case Option.GO:
        this.busyValue = true;
        host.setReading(false);
        void this.answerAsync(option, data);
        return;
      case Option.LIST:
        this.answerList(option, data);
        return;
      case Option.STARTTLS:
        this.refuse(option, OptionReply.ERR_UNSUP, 'TLS is not configured on this server');
        return;
      case Option.STRUCTURED_REPLY:
        if (data.length !== 0) this.refuse(option, OptionReply.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        else if (this.structuredReplies) this.refuse(option, OptionReply.ERR_INVALID, 'structured replies already negotiated');
        else {
          this.structuredReplies = true;
          host.write(encodeOptionAck(option));
        }
        return;
      case Option.LIST_META_CONTEXT:
      case Option.SET_META_CONTEXT:
        this.answerMetaContext(option, data);
        return;
      default:
        this.refuse(option, OptionReply.ERR_UNSUP, `option ${optionName(option)} is not supported`);
    }
  }

  private async answerAsync(option: number, data: Buffer): Promise<void> {
    try {
      if (option === Option.EXPORT_NAME) await this.answerExportName(data);
      else await this.answerInfoOrGo(option, data);
    } finally {
      this.busyValue = false;
    }
    this.host.optionSettled();
  }

  private answerList(option: number, data: Buffer): void {
    if (data.length !== 0) {
      this.refuse(option, OptionReply.ERR_INVALID, 'LIST takes no data');
      return;
    }
    let entries: Array<{ name: string; description?: string }>;
    try {
      entries = this.resolver.list();
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      const reply = optionErrorOf(error);
      this.refuse(option, reply.type, reply.message);
      return;
    }
    for (const entry of entries) this.host.write(encodeServerEntry(option, entry.name, entry.description));
    this.host.write(encodeOptionAck(option));
  }

  private answerMetaContext(option: number, data: Buffer): void {
    const set = option === Option.SET_META_CONTEXT;
    if (set) this.metaContextSelected = false; // SET replaces the selection, even when it fails
    const request = decodeMetaContextRequest(data);
    if (request instanceof OptionDecodeError) {
      this.refuse(option, request.reply, request.message);
      return;
    }
    if (set && !this.structuredReplies) {
      this.refuse(option, OptionReply.ERR_INVALID, 'SET_META_CONTEXT needs structured replies');
      return;
    }
    // LIST: no query means everything and "base:" means all of base. SET: exact names only.
    const matches = request.queries.some((query) => query === baseAllocationContext || (!set && query === 'base:'));
    if (matches || (!set && request.queries.length === 0)) {
      this.host.write(encodeMetaContext(option, baseAllocationContextId, baseAllocationContext));
    }
    if (set) {
      this.metaContextSelected = matches;
      this.metaContextExportName = request.exportName;
    }
    this.host.write(encodeOptionAck(option));
  }

  private async answerExportName(data: Buffer): Promise<void> {
    const name = decodeExportName(data);
    if (name instanceof OptionDecodeError) {
      this.host.drop(`EXPORT_NAME: ${name.message}`);
      return;
    }
    const opened = await this.openExport(name);
    if (opened === undefined) return;
    if (opened instanceof OptionFailure) {
      // EXPORT_NAME has no error reply: hanging up is the only way to refuse.
      this.host.drop(`EXPORT_NAME ${JSON.stringify(name)} refused: ${opened.message}`);
      return;
    }
    const flags = transmissionFlagsFor(opened.device.capabilities, opened.readOnly, this.structuredReplies);
    this.host.write(encodeExportNameReply(opened.device.sizeBytes, flags, (this.clientFlags & ClientFlag.NO_ZEROES) !== 0));
    this.host.beginTransmission(opened, flags, this.featuresFor(name));
  }

  private async answerInfoOrGo(option: number, data: Buffer): Promise<void> {
    const request = decodeInfoRequest(data);
    if (request instanceof OptionDecodeError) {
      this.refuse(option, request.reply, request.message);
      return;
    }
    const opened = await this.openExport(request.name);
    if (opened === undefined) return;
    if (opened instanceof OptionFailure) {
      this.refuse(option, opened.type, opened.message);
      return;
    }
    const host = this.host;
    const device = opened.device;
    const flags = transmissionFlagsFor(device.capabilities, opened.readOnly, this.structuredReplies);
    host.write(encodeInfoExport(option, device.sizeBytes, flags));
    if (request.infoTypes.includes(Info.NAME)) host.write(encodeInfoText(option, Info.NAME, opened.name));
    if (request.infoTypes.includes(Info.DESCRIPTION) && opened.description !== undefined) {
      host.write(encodeInfoText(option, Info.DESCRIPTION, opened.description));
    }
    // Sent even when not asked for (allowed); clients that obey it do 512-byte aligned I/O.
    host.write(encodeInfoBlockSize(option, blockSizesFor(device.sizeBytes, this.limits.payloadBytesMax)));
    host.write(encodeOptionAck(option));
    if (option === Option.INFO) {
      opened.release();
      return;
    }
    host.beginTransmission(opened, flags, this.featuresFor(request.name));
  }

  /** Meta contexts count only if SET named the export being served (spec: SET then GO, same name). */
  private featuresFor(name: string): NegotiatedFeatures {
    return {
      structuredReplies: this.structuredReplies,
      blockStatus: this.structuredReplies && this.metaContextSelected && this.metaContextExportName === name,
    };
  }

  /** Opens an export; undefined if the connection left the handshake meanwhile (the handle is released). */
  private async openExport(name: string): Promise<NbdExportHandle | OptionFailure | undefined> {
    let handle: NbdExportHandle | undefined;
    try {
      handle = await this.resolver.open(name);
    } catch (error) {
      if (error instanceof AssertionError) throw error;
      if (!isCairnError(error)) {
        this.host.logger.error('nbd export open failed', { connection: this.host.connectionId, name, error });
      }
      const reply = optionErrorOf(error);
      return new OptionFailure(reply.type, reply.message);
    }
    if (!this.host.inHandshake()) {
      handle?.release();
      return undefined;
    }
    if (handle === undefined) return new OptionFailure(OptionReply.ERR_UNKNOWN, `no export named ${JSON.stringify(name)}`);
    assert(Number.isSafeInteger(handle.device.sizeBytes) && handle.device.sizeBytes >= 0, 'export size is a safe integer');
    return handle;
  }

  private refuse(option: number, replyType: number, message: string): void {
    this.host.logger.debug('nbd option refused', { connection: this.host.connectionId, option: optionName(option), message });
    this.host.write(encodeOptionError(option, replyType, message));
  }
}

class OptionFailure {
  constructor(readonly type: number, readonly message: string) {}
}

/** Option error for a failed LIST/open: the resolver's CairnError message goes to the client. */
function optionErrorOf(error: unknown): { type: number; message: string } {
  if (!isCairnError(error)) return { type: OptionReply.ERR_POLICY, message: 'internal server error' };
  switch (error.code) {
    case 'CAIRN_VOLUME_NOT_FOUND':
      return { type: OptionReply.ERR_UNKNOWN, message: error.message };
    case 'CAIRN_SHUTTING_DOWN':
    case 'CAIRN_CLOSED':
      return { type: OptionReply.ERR_SHUTDOWN, message: error.message };
    case 'CAIRN_PLATFORM':
      return { type: OptionReply.ERR_PLATFORM, message: error.message };
    default:
      return { type: OptionReply.ERR_POLICY, message: error.message };
  }
}
