/**
 * Goal: the benchmark's CPU reading (bench/processes.ts) parses /proc/PID/stat whatever the
 * command name holds, and counts a server's child processes with it.
 * Method: parse crafted stat lines; then start a real shell that forks a busy child and check
 * that the tree's CPU time grows while the parent itself stays idle.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { clockTicksPerSecond, parseProcStat, startServer, treeCpuSeconds } from '../../bench/processes';

void t.test('a stat line is read from the last parenthesis on', (t) => {
  const tail = 'S 4242 1 1 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 1 0 100 1000 10 18446744073709551615';
  t.same(parseProcStat(`123 (node) ${tail}`), { ppid: 4242, ticks: 42 });
  t.same(parseProcStat(`123 (a (b) c) d) ${tail}`), { ppid: 4242, ticks: 42 }, 'a name with spaces and parentheses');
  t.equal(parseProcStat('123 node S 1'), undefined, 'no parenthesis');
  t.equal(parseProcStat('123 (node) S x'), undefined, 'missing fields');
  const own = parseProcStat(readFileSync('/proc/self/stat', 'utf8'));
  t.equal(own?.ppid, process.ppid, 'our own stat line names our parent');
  t.end();
});

void t.test("a forked child's CPU time counts for its parent", async (t) => {
  const ticks = await clockTicksPerSecond();
  t.ok(ticks > 0, 'clock ticks per second');
  // The shell waits (no CPU); its child computes for 1.5 s and exits by itself.
  const spin = 'const end = Date.now() + 1500; while (Date.now() < end);';
  const server = startServer('spinner', 'sh', ['-c', `"${process.execPath}" -e '${spin}' & wait`]);
  t.teardown(() => server.stop());
  const pid = server.process.pid;
  if (pid === undefined) throw new Error('no pid');
  const before = treeCpuSeconds(pid, ticks);
  await new Promise((resolve) => setTimeout(resolve, 1200));
  const after = treeCpuSeconds(pid, ticks);
  const parent = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  t.ok(after - before >= 0.3, `the tree used CPU while the child spun (${(after - before).toFixed(2)} s)`);
  t.ok(parent !== undefined && parent.ticks / ticks < 0.2, 'the parent itself stayed idle');
  // The shell exits once its child has: nothing is left running (teardown kills it otherwise).
  if (server.process.exitCode === null) await new Promise((resolve) => server.process.once('exit', resolve));
});
