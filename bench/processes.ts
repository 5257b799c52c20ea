/** Child-process helpers for benchmarks: start a server, wait until its socket answers, stop it, and read its CPU time. */
import { ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Server {
  readonly name: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** Every server still running: killed if this process exits without stopping them (a crash, a closed pipe). */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});
// `npm run bench -- raft | head` closes stdout early: keep going and clean up instead of dying on EPIPE.
process.stdout.on('error', () => {});

export function startServer(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Server {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000); });
  child.on('exit', (code, signal) => {
    if (code !== 0 && code !== null && signal === null) process.stderr.write(`${name} exited with ${code}: ${stderr}\n`);
  });
  return {
    name,
    process: child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const timeout = sleep(10_000).then(() => child.kill('SIGKILL'));
      await Promise.race([exited, timeout]);
      await exited;
    },
  };
}

export async function waitForSocket(path: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(path, () => { socket.destroy(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`socket ${path} did not come up within ${timeoutMs} ms`);
}

export function run(command: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000);
    child.on('error', (error) => { clearTimeout(timer); reject(error); });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/**
 * One line of /proc/PID/stat: the parent's pid and the user + system CPU time in clock ticks.
 * The command name sits in parentheses and may hold spaces and parentheses itself, so the
 * fields are counted from the last ')'. Undefined when the line is not a stat line.
 */
export function parseProcStat(line: string): { ppid: number; ticks: number } | undefined {
  const close = line.lastIndexOf(')');
  if (close < 0) return undefined;
  // After the name: state (field 3), ppid (4), ... utime (14), stime (15).
  const fields = line.slice(close + 1).trim().split(/\s+/);
  const ppid = Number(fields[1]);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (![ppid, utime, stime].every(Number.isSafeInteger)) return undefined;
  return { ppid, ticks: utime + stime };
}

/**
 * CPU seconds used so far by the process `pid` and every live descendant (all their threads):
 * a server that forks a process per connection is measured whole. A descendant that has exited
 * and been reaped is no longer counted, so take both readings while the server runs.
 */
export function treeCpuSeconds(pid: number, ticksPerSecond: number): number {
  const ticksOf = new Map<number, number>();
  const childrenOf = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let line: string;
    try {
      line = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    const parsed = parseProcStat(line);
    if (parsed === undefined) continue;
    const id = Number(entry);
    ticksOf.set(id, parsed.ticks);
    const siblings = childrenOf.get(parsed.ppid);
    if (siblings === undefined) childrenOf.set(parsed.ppid, [id]);
    else siblings.push(id);
  }
  let ticks = 0;
  for (const pending = [pid]; pending.length > 0;) {
    const id = pending.pop()!;
    ticks += ticksOf.get(id) ?? 0;
    pending.push(...(childrenOf.get(id) ?? []));
  }
  return ticks / ticksPerSecond;
}

/** The kernel's clock ticks per second for /proc times (getconf CLK_TCK). */
export async function clockTicksPerSecond(): Promise<number> {
  const { code, stdout } = await run('getconf', ['CLK_TCK']);
  const ticks = Number(stdout.trim());
  if (code !== 0 || !Number.isSafeInteger(ticks) || ticks <= 0) throw new Error(`getconf CLK_TCK failed (${code}): '${stdout.trim()}'`);
  return ticks;
}
