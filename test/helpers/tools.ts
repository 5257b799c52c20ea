/**
 * Runs third-party tools from tests: always asynchronous (a server in the same process must keep
 * serving), with a timeout, and with Debian's python first on PATH (nbdsh needs `import nbd`).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

export interface ToolResult { readonly code: number | null; readonly stdout: string; readonly stderr: string }

export const toolEnv: NodeJS.ProcessEnv = { ...process.env, PATH: `/usr/bin:/usr/sbin:/bin:/sbin:${process.env['PATH'] ?? ''}`, LIBNBD_DEBUG: '0' };

export function runTool(command: string, args: readonly string[], options: { timeoutMs?: number; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? toolEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', (error) => { clearTimeout(timer); reject(error); });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input);
  });
}

/** Runs a tool and fails with its output unless it exits 0. */
export async function mustRun(command: string, args: readonly string[], options: { timeoutMs?: number; input?: Buffer | string } = {}): Promise<ToolResult> {
  const result = await runTool(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result;
}

export function hasTool(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export const isRoot = process.getuid?.() === 0;
