/**
 * The Node floor: the least a Node.js NBD server can do per request, as a reference point for the
 * latency-bound jobs of `bench nbd --floor` (QD1 write + flush above all). One file, the fixed
 * newstyle handshake with NBD_OPT_GO (or EXPORT_NAME) and nothing else negotiated, then every
 * request answered in the 'data' callback that parsed it: WRITE = fs.writeSync, READ =
 * fs.readSync, FLUSH = fs.fdatasyncSync, simple replies only. No thread pool, no promises, no
 * concurrency, no validation beyond lengths and bounds: not a server to use, only the cost of
 * Node's event loop, a socket read and a socket write around the same system calls nbdkit makes.
 * It busy-polls its event loop like cairnd (loop-poll.cc, 200 us), so the floor is what any Node
 * server using that technique reaches. If Cairn / nbdkit on a job is close to floor / nbdkit,
 * the remaining gap is Node's, not Cairn's.
 *
 *   node dist/bench/nbd-floor-server.js SOCKET_PATH IMAGE_FILE [PROCESSES]
 */
import cluster from 'node:cluster';
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import {
  ClientFlag, Command, HandshakeFlag, Option, OptionReply, optionReplyMagicHigh, optionReplyMagicLow, requestMagic, simpleReplyMagic, TransmissionFlag,
} from '../src/nbd/protocol';
import { defaultBusyPollMicros } from '../src/config/config';
import { loadLoopPollBinding } from '../src/native/binding';
import { MiB } from '../src/util/units';

const optionBytesMax = 4096;
const requestBytesMax = 32 * MiB;
const EINVAL = 22;

function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const reply = Buffer.alloc(20 + data.length);
  reply.writeUInt32BE(optionReplyMagicHigh, 0);
  reply.writeUInt32BE(optionReplyMagicLow, 4);
  reply.writeUInt32BE(option, 8);
  reply.writeUInt32BE(type >>> 0, 12);
  reply.writeUInt32BE(data.length, 16);
  data.copy(reply, 20);
  return reply;
}

function serve(socket: Socket, fd: number, sizeBytes: number): void {
  const transmissionFlags = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH; // no FUA: it would be ignored
  const greeting = Buffer.alloc(18);
  greeting.write('NBDMAGICIHAVEOPT', 0, 'latin1');
  greeting.writeUInt16BE(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES, 16);
  socket.write(greeting);
  let pending: Buffer = Buffer.alloc(0);
  let phase: 'flags' | 'options' | 'transmission' = 'flags';
  let noZeroes = false;
  const fail = (): void => { socket.destroy(); };
  // Chunks of a request still incomplete wait in `waiting` and are joined once, when `needed`
  // bytes are there (joining at every chunk would copy a 1 MiB WRITE ~8 times).
  const waiting: Buffer[] = [];
  let waitingBytes = 0;
  let needed = 0;
  socket.on('data', (chunk: Buffer) => {
    if (waitingBytes + chunk.length < needed) {
      waiting.push(chunk);
      waitingBytes += chunk.length;
      return;
    }
    pending = waiting.length === 0 ? chunk : Buffer.concat([...waiting, chunk]);
    waiting.length = 0;
    waitingBytes = 0;
    needed = 0;
    const wait = (bytes: number): void => {
      needed = bytes;
      waiting.push(pending);
      waitingBytes = pending.length;
    };
    for (;;) {
      if (phase === 'flags') {
        if (pending.length < 4) return wait(4);
        noZeroes = (pending.readUInt32BE(0) & ClientFlag.NO_ZEROES) !== 0;
        pending = pending.subarray(4);
        phase = 'options';
      } else if (phase === 'options') {
        if (pending.length < 16) return wait(16);
        const option = pending.readUInt32BE(8);
        const length = pending.readUInt32BE(12);
        if (length > optionBytesMax) return fail();
        if (pending.length < 16 + length) return wait(16 + length);
        pending = pending.subarray(16 + length);
        if (option === Option.GO) {
          const info = Buffer.alloc(12); // NBD_INFO_EXPORT
          info.writeBigUInt64BE(BigInt(sizeBytes), 2);
          info.writeUInt16BE(transmissionFlags, 10);
          socket.write(optionReply(option, OptionReply.INFO, info));
          socket.write(optionReply(option, OptionReply.ACK));
          phase = 'transmission';
        } else if (option === Option.EXPORT_NAME) {
          const reply = Buffer.alloc(noZeroes ? 10 : 10 + 124); // 124 reserved zero bytes unless NO_ZEROES
          reply.writeBigUInt64BE(BigInt(sizeBytes), 0);
          reply.writeUInt16BE(transmissionFlags, 8);
          socket.write(reply);
          phase = 'transmission';
        } else if (option === Option.ABORT) {
          return fail();
        } else {
          socket.write(optionReply(option, OptionReply.ERR_UNSUP));
        }
      } else {
        if (pending.length < 28) return wait(28);
        if (pending.readUInt32BE(0) !== requestMagic) return fail();
        const type = pending.readUInt16BE(6);
        const offset = Number(pending.readBigUInt64BE(16));
        const length = pending.readUInt32BE(24);
        if (length > requestBytesMax) return fail();
        const payloadBytes = type === Command.WRITE ? length : 0;
        if (pending.length < 28 + payloadBytes) return wait(28 + payloadBytes);
        const inRange = offset + length <= sizeBytes;
        const reply = Buffer.alloc(16 + (type === Command.READ && inRange ? length : 0));
        reply.writeUInt32BE(simpleReplyMagic, 0);
        pending.copy(reply, 8, 8, 16); // the cookie
        if (type === Command.DISC) {
          socket.end();
          return;
        } else if (!inRange) {
          reply.writeUInt32BE(EINVAL, 4);
        } else if (type === Command.WRITE) {
          writeSync(fd, pending, 28, length, offset);
        } else if (type === Command.READ) {
          readSync(fd, reply, 16, length, offset);
        } else if (type === Command.FLUSH) {
          fdatasyncSync(fd);
        } else {
          reply.writeUInt32BE(EINVAL, 4);
        }
        pending = pending.subarray(28 + payloadBytes);
        socket.write(reply);
      }
    }
  });
  socket.on('error', () => socket.destroy());
}

function main(): void {
  const [socketPath, image, processesText] = process.argv.slice(2);
  const processes = Number(processesText ?? '1');
  if (socketPath === undefined || image === undefined || !Number.isInteger(processes) || processes < 1 || processes > 64) {
    process.stderr.write('usage: nbd-floor-server SOCKET_PATH IMAGE_FILE [PROCESSES]\n');
    process.exit(2);
  }
  if (processes > 1 && cluster.isPrimary) {
    // One process per connection slot (node:cluster hands each accepted connection to a worker):
    // the floor for jobs with several connections, as nbdkit serves them on several threads.
    const workers = Array.from({ length: processes }, () => cluster.fork());
    process.once('SIGTERM', () => {
      for (const worker of workers) worker.process.kill('SIGTERM');
      process.exit(0);
    });
    return;
  }
  loadLoopPollBinding().loopPollSet(defaultBusyPollMicros * 1000);
  const fd = openSync(image, 'r+');
  const sizeBytes = fstatSync(fd).size;
  const server = createServer({ noDelay: true }, (socket) => serve(socket, fd, sizeBytes));
  server.listen(socketPath);
  process.once('SIGTERM', () => {
    server.close();
    closeSync(fd);
    process.exit(0);
  });
}

main();
