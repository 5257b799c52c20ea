// Goal: the pool hands out exact-length buffers, reuses released ones, never hands one out twice,
// ignores buffers it did not create, and bounds what it keeps idle.
import t from 'tap';
import { BufferPool } from '../../src/util/buffer-pool';

const pool = (): BufferPool => new BufferPool({ minimumBytes: 64 * 1024, maximumBytes: 4 * 1024 * 1024, retainedBytesMax: 2 * 1024 * 1024 });

t.test('acquire returns exactly the length asked; small and huge lengths are plain allocations', async (t) => {
  const p = pool();
  t.equal(p.acquire(100_000).length, 100_000);
  t.equal(p.acquire(10).length, 10);
  t.equal(p.acquire(5 * 1024 * 1024).length, 5 * 1024 * 1024);
});

t.test('a released buffer is reused, and never handed out twice at once', async (t) => {
  const p = pool();
  const first = p.acquire(1024 * 1024);
  const second = p.acquire(1024 * 1024);
  t.not(first.buffer, second.buffer, 'two outstanding buffers never share memory');
  p.release(first);
  p.release(first); // a second release of the same buffer is ignored
  t.equal(p.idleBytes, 1024 * 1024);
  const third = p.acquire(700 * 1024);
  t.equal(third.buffer, first.buffer, 'the released backing store came back');
  const fourth = p.acquire(700 * 1024);
  t.not(fourth.buffer, third.buffer, 'and only once');
});

t.test('buffers the pool did not create are ignored; idle bytes stay bounded', async (t) => {
  const p = pool();
  p.release(Buffer.alloc(1024 * 1024));
  t.equal(p.idleBytes, 0);
  const held = [p.acquire(1024 * 1024), p.acquire(1024 * 1024), p.acquire(1024 * 1024)];
  for (const buffer of held) p.release(buffer);
  t.equal(p.idleBytes, 2 * 1024 * 1024, 'the third 1 MiB buffer was dropped, not kept');
});
