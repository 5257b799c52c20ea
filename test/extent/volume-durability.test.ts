/**
 * Goal: the durability bookkeeping never lets a flush or a FUA write resolve before the syncs
 * it depends on, including syncs that other callers started, and remembers a failed sync.
 *
 * Method: VolumeDurability driven directly with fake entries and a sync function whose calls
 * are held in a queue and completed (or failed) one by one by the test; "resolved" is checked
 * after draining the microtask and immediate queues.
 */
import t from 'tap';
import { VolumeDurability } from '../../src/extent/volume-durability';
import type { OpenSegment, SyncTarget } from '../../src/extent/extent-types';
import type { StoredVolume } from '../../src/extent/stored-volume';
import type { FlushNotice } from '../../src/block/block-device';
import { rejectsCode } from '../helpers/assertions';

interface HeldSync { data: string[]; metadata: string[]; notice: boolean; finish: (error?: Error) => void }

function harness(): { durability: VolumeDurability; held: HeldSync[] } {
  const held: HeldSync[] = [];
  const sync = (data: readonly SyncTarget[], metadata: readonly SyncTarget[], notice?: FlushNotice): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      held.push({
        data: data.map((target) => target.path), metadata: metadata.map((target) => target.path), notice: notice !== undefined,
        finish: (error) => (error === undefined ? resolve() : reject(error)),
      });
    });
  return { durability: new VolumeDurability(sync, { fd: 3, path: '/dir' }), held };
}

function entry(name: string, createdSeq = 0): OpenSegment {
  return {
    volume: undefined as unknown as StoredVolume, segment: 0, fd: 10, path: name, inflight: 0, dirty: false, evicting: false,
    writebackFailed: false, closed: false, createdSeq, previous: null, next: null, listed: false,
  };
}

async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  return done;
}

void t.test('a flush syncs the dirty set once and pins its entries while syncing', async (t) => {
  const { durability, held } = harness();
  const a = entry('a');
  const b = entry('b');
  durability.markDirty(a);
  durability.markDirty(b);
  durability.markDirty(a);
  t.equal(durability.dirtyCount, 2);
  const flushing = durability.flush();
  t.same(held.map((call) => call.data), [['a', 'b']]);
  t.equal(a.inflight, 1, 'pinned while syncing');
  t.notOk(a.dirty, 'cleared when the sync started');
  held[0]!.finish();
  await flushing;
  t.equal(a.inflight, 0);
  t.equal(durability.dirtyCount, 0);
});

void t.test('a FUA write to a new file waits for a directory fsync that a flush already started', async (t) => {
  const { durability, held } = harness();
  const created = durability.noteCreated();
  const flushing = durability.flush();
  t.same(held.map((call) => call.metadata), [['/dir']], 'the flush fsyncs the directory');
  const fua = durability.makeCreationDurable(created);
  t.equal(held.length, 1, 'no second fsync: the running one covers the file');
  t.notOk(await settled(fua), 'the FUA write waits for it');
  held[0]!.finish();
  await Promise.all([flushing, fua]);
  await durability.makeCreationDurable(created);
  t.equal(held.length, 1, 'once durable, nothing more to do');
});

void t.test('a file created while a directory fsync runs needs a later fsync', async (t) => {
  const { durability, held } = harness();
  durability.noteCreated();
  const flushing = durability.flush();
  const later = durability.noteCreated();
  const fua = durability.makeCreationDurable(later);
  t.equal(held.length, 2, 'a new fsync, since the running one started before the file existed');
  held[0]!.finish();
  await flushing;
  t.notOk(await settled(fua));
  held[1]!.finish();
  await fua;
});

void t.test('a flush with nothing dirty still waits for syncs in flight, such as an eviction writeback', async (t) => {
  const { durability, held } = harness();
  const a = entry('a');
  durability.markDirty(a);
  const writeback = durability.writeback(a);
  const flushing = durability.flush();
  t.equal(held.length, 1, 'nothing new to sync');
  t.notOk(await settled(flushing), 'but the flush waits for the writeback that cleared a');
  held[0]!.finish();
  await Promise.all([writeback, flushing]);
});

void t.test('a failed sync re-dirties its files and fails every later flush (sticky)', async (t) => {
  const { durability, held } = harness();
  const a = entry('a');
  durability.markDirty(a);
  const writeback = durability.writeback(a);
  held[0]!.finish(Object.assign(new Error('injected'), { code: 'EIO' }));
  await writeback; // never rejects
  t.ok(a.dirty && a.writebackFailed, 'still dirty, marked failed');
  t.equal(durability.failure?.code, 'CAIRN_IO');
  const flushing = durability.flush();
  held[1]!.finish();
  await rejectsCode(t, () => flushing, 'CAIRN_IO', /fdatasync a: the drive reported an I\/O error \(EIO\)/);
  await rejectsCode(t, () => durability.flush(), 'CAIRN_IO');
});

void t.test('after a failed sync, no flush lends its reply to the syncing thread: it would be sent as a success', async (t) => {
  const { durability, held } = harness();
  const notice = (): FlushNotice => ({ fd: 99, bytes: Buffer.alloc(16), sentBytes: 0 });
  const a = entry('a');
  durability.markDirty(a);
  const first = durability.flush(notice());
  t.ok(held[0]!.notice, 'a flush alone with its sync passes the notice on (the reply leaves from the syncing thread)');
  held[0]!.finish(Object.assign(new Error('injected'), { code: 'EIO' }));
  await rejectsCode(t, () => first, 'CAIRN_IO');
  // The next sync of the file may well succeed (the kernel reports a writeback error once), but
  // the flush must fail: the thread would have sent a success reply before it did.
  const second = durability.flush(notice());
  t.equal(held.length, 2, 'the re-dirtied file is synced again');
  t.notOk(held[1]!.notice, 'the sticky failure keeps the reply on the event loop');
  held[1]!.finish();
  await rejectsCode(t, () => second, 'CAIRN_IO');
});

void t.test('a failed directory fsync fails the FUA write that needed it', async (t) => {
  const { durability, held } = harness();
  const created = durability.noteCreated();
  const fua = durability.makeCreationDurable(created);
  held[0]!.finish(Object.assign(new Error('injected'), { code: 'ENOSPC' }));
  await rejectsCode(t, () => fua, 'CAIRN_NO_SPACE', /fsync \/dir/);
});
