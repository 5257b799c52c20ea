/**
 * An in-memory, connected pair of Duplex streams (Node 20 has no stream.duplexPair): bytes written
 * to one side are read from the other, with real backpressure — a write callback is held back
 * until the reading side asks for more, so a paused reader eventually makes the writer's
 * write() return false, as with a socket. Ending one side ends the other's readable side;
 * destroying one side destroys the other (like a connection reset).
 */
import { Duplex } from 'node:stream';

class PairSide extends Duplex {
  peer: PairSide | undefined;
  private pendingCallback: ((error?: Error | null) => void) | undefined;

  constructor(highWaterMarkBytes: number) {
    super({ allowHalfOpen: true, highWaterMark: highWaterMarkBytes });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === undefined || peer.destroyed) {
      callback(new Error('peer closed'));
      return;
    }
    // Copy: the writer may reuse its buffer, as the kernel copies socket writes.
    if (peer.push(Buffer.from(chunk))) callback();
    else this.pendingCallback = callback;
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.push(null);
    callback();
  }

  override _read(): void {
    const peer = this.peer;
    const callback = peer?.pendingCallback;
    if (peer !== undefined && callback !== undefined) {
      peer.pendingCallback = undefined;
      callback();
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    this.peer = undefined;
    const pending = this.pendingCallback;
    this.pendingCallback = undefined;
    if (pending !== undefined) pending(new Error('stream destroyed'));
    if (peer !== undefined && !peer.destroyed) {
      peer.peer = undefined;
      peer.destroy();
    }
    callback(error);
  }
}

export function duplexPair(highWaterMarkBytes = 64 * 1024): [Duplex, Duplex] {
  const a = new PairSide(highWaterMarkBytes);
  const b = new PairSide(highWaterMarkBytes);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
