// Goal: the receive accumulator hands out exactly the bytes pushed, in order, whatever the chunk
// boundaries, and cuts contiguous payloads without copying. Method: push known bytes split at
// every boundary and compare what prepare/take/skip return with the original.
import t from 'tap';
import { ByteQueue, byteQueueHeaderBytesMax } from '../../src/nbd/byte-queue';

function pattern(length: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, index) => (index * 7 + 3) & 0xff));
}

void t.test('prepare reads a header split at every possible boundary without consuming it', async (t) => {
  const source = pattern(28);
  for (let cut = 0; cut <= 28; cut++) {
    const queue = new ByteQueue();
    queue.push(source.subarray(0, cut));
    queue.push(source.subarray(cut));
    queue.prepare(28);
    t.same(queue.view.subarray(queue.viewOffset, queue.viewOffset + 28), source, `cut at ${cut}`);
    t.equal(queue.byteLength, 28, 'prepare does not consume');
  }
});

void t.test('take returns a view of the received chunk when the bytes are contiguous', async (t) => {
  const chunk = pattern(100);
  const queue = new ByteQueue();
  queue.push(chunk);
  queue.skip(10);
  const taken = queue.take(50);
  t.equal(taken.buffer, chunk.buffer, 'same memory: zero-copy');
  t.equal(taken.byteOffset, chunk.byteOffset + 10);
  t.same(taken, chunk.subarray(10, 60));
  t.equal(queue.byteLength, 40);
});

void t.test('take across chunks copies the bytes in order', async (t) => {
  const source = pattern(1000);
  const queue = new ByteQueue();
  for (let at = 0; at < 1000; at += 7) queue.push(source.subarray(at, Math.min(at + 7, 1000)));
  t.same(queue.take(3), source.subarray(0, 3));
  t.same(queue.take(500), source.subarray(3, 503));
  queue.skip(100);
  t.same(queue.take(397), source.subarray(603, 1000));
  t.equal(queue.byteLength, 0);
});

void t.test('thousands of small chunks are consumed without losing bytes (compaction)', async (t) => {
  const queue = new ByteQueue();
  const source = pattern(5000);
  let read = 0;
  for (let at = 0; at < 5000; at++) {
    queue.push(source.subarray(at, at + 1));
    if (queue.byteLength >= 3) {
      const bytes = queue.take(3);
      t.equal(bytes.compare(source, read, read + 3), 0);
      read += 3;
    }
  }
  t.equal(read + queue.byteLength, 5000);
});

void t.test('misuse is refused by assertions, not silently wrong', async (t) => {
  const queue = new ByteQueue();
  queue.push(pattern(4));
  t.throws(() => queue.prepare(5), /past the queued bytes/);
  t.throws(() => queue.take(5), /past the queued bytes/);
  t.throws(() => queue.skip(5), /past the queued bytes/);
  queue.push(pattern(100));
  t.throws(() => queue.prepare(byteQueueHeaderBytesMax + 1), /headers only/);
  queue.push(Buffer.alloc(0));
  t.equal(queue.byteLength, 104, 'empty chunks are ignored');
  queue.clear();
  t.equal(queue.byteLength, 0);
});
