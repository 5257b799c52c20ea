/**
 * Goal: the default sync function (parallelSync) syncs every file and directory it is given,
 * spreads them over at most syncParallelismMax concurrent thread-pool calls, and reports a
 * failure only after every call has settled (a descriptor must stay pinned while any call
 * still syncs it).
 *
 * Method: a recording stand-in for the addon's syncMany whose calls the test resolves or
 * rejects by hand, so concurrency and settlement order are observed exactly.
 */
import t from 'tap';
import { parallelSync, syncParallelismMax } from '../../src/extent/extent-store';
import type { NativeBinding } from '../../src/native/binding';

interface Call { data: readonly number[]; metadata: readonly number[]; resolve: () => void; reject: (error: Error) => void }

function recordingBinding(): { binding: NativeBinding; calls: Call[] } {
  const calls: Call[] = [];
  const binding = {
    syncMany(data: readonly number[], metadata: readonly number[]): Promise<void> {
      return new Promise<void>((resolve, reject) => calls.push({ data: [...data], metadata: [...metadata], resolve, reject }));
    },
  } as unknown as NativeBinding;
  return { binding, calls };
}

const targets = (fds: number[]): Array<{ fd: number; path: string }> => fds.map((fd) => ({ fd, path: `/drive/${fd}` }));

t.test('one file is one call, as before', async (t) => {
  const { binding, calls } = recordingBinding();
  const done = parallelSync(binding)(targets([7]), []);
  t.equal(calls.length, 1);
  t.same(calls[0]?.data, [7]);
  calls[0]?.resolve();
  await done;
});

t.test('many files and a directory are spread over at most four concurrent calls, each synced once', async (t) => {
  const { binding, calls } = recordingBinding();
  const done = parallelSync(binding)(targets([10, 11, 12, 13, 14, 15, 16]), targets([3]));
  t.equal(calls.length, syncParallelismMax, 'all calls start at once');
  const data = calls.flatMap((call) => call.data).sort((a, b) => a - b);
  const metadata = calls.flatMap((call) => call.metadata);
  t.same(data, [10, 11, 12, 13, 14, 15, 16], 'every file exactly once');
  t.same(metadata, [3], 'the directory exactly once');
  for (const call of calls) call.resolve();
  await done;
});

t.test('a failure rejects only after every call has settled', async (t) => {
  const { binding, calls } = recordingBinding();
  let settled = false;
  const done = parallelSync(binding)(targets([20, 21, 22]), []).finally(() => { settled = true; });
  t.equal(calls.length, 3);
  calls[0]?.reject(new Error('fdatasync: the drive reported an I/O error (EIO)'));
  await new Promise((resolve) => setImmediate(resolve));
  t.notOk(settled, 'still waiting for the other calls');
  calls[1]?.resolve();
  calls[2]?.resolve();
  await t.rejects(done, /EIO/);
});
