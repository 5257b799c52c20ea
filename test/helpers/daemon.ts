/**
 * Test harness for a real cairnd process: a temp data dir, a Unix NBD socket, a loopback TCP port
 * picked by the kernel, the API on a Unix socket. `stop()` sends SIGTERM (graceful), `kill()`
 * SIGKILL; `restart()` starts a new process on the same data dir. Every process is killed in
 * teardown even when the test fails, and the temp dir is removed.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { ApiClient } from '../../src/api/client';
import { freePort } from './ports';

export const repoRoot = resolve(__dirname, '..', '..');
export const cairndPath = join(repoRoot, 'bin', 'cairnd');
export const cairnPath = join(repoRoot, 'bin', 'cairn');

export interface DaemonOptions {
  readonly extraArgs?: readonly string[];
  /** Keep the data dir (and its temp root) across restarts; default: a new temp dir. */
  readonly root?: string;
  readonly tcp?: boolean;
}

export class TestDaemon {
  readonly root: string;
  readonly dataDir: string;
  readonly nbdSocket: string;
  readonly apiSocket: string;
  readonly api: ApiClient;
  process: ChildProcess | undefined;
  tcpPort = 0;
  log = '';

  constructor(readonly options: DaemonOptions = {}) {
    this.root = options.root ?? mkdtempSync(join(tmpdir(), 'cairn-test-'));
    this.dataDir = join(this.root, 'data');
    this.nbdSocket = join(this.root, 'nbd.sock');
    this.apiSocket = join(this.root, 'api.sock');
    this.api = new ApiClient({ endpoint: { kind: 'unix', path: this.apiSocket } });
  }

  uri(volume: string): string {
    return `nbd+unix:///${volume}?socket=${this.nbdSocket}`;
  }

  tcpUri(volume: string): string {
    return `nbd://127.0.0.1:${this.tcpPort}/${volume}`;
  }

  async start(): Promise<void> {
    if (this.options.tcp === true && this.tcpPort === 0) this.tcpPort = await freePort();
    const args = [
      cairndPath, '--data-dir', this.dataDir, '--node-name', 'test', '--nbd-socket', this.nbdSocket, '--api', `unix:${this.apiSocket}`,
      '--nbd-listen', this.tcpPort > 0 ? `127.0.0.1:${this.tcpPort}` : 'none', '--log-format', 'text', ...(this.options.extraArgs ?? []),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    child.stdout.on('data', (chunk: Buffer) => { this.log += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { this.log += chunk.toString(); });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`cairnd exited with ${child.exitCode} during start:\n${this.log}`);
      if (/cairnd started/.test(this.log) && await canConnect(this.apiSocket)) return;
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new Error(`cairnd did not start within 20 s:\n${this.log}`);
  }

  /** SIGTERM and wait; resolves with the exit code. */
  async stop(): Promise<number | null> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  /** SIGKILL and wait: nothing gets a chance to flush. */
  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
    child.kill('SIGKILL');
    await exited;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async cleanup(): Promise<void> {
    await this.kill();
    if (this.options.root === undefined) rmSync(this.root, { recursive: true, force: true });
  }
}

/** Starts a daemon for the test and registers its cleanup. */
export async function startDaemon(t: Test, options: DaemonOptions = {}): Promise<TestDaemon> {
  const daemon = new TestDaemon(options);
  t.teardown(() => daemon.cleanup());
  await daemon.start();
  return daemon;
}

async function canConnect(path: string): Promise<boolean> {
  return new Promise((resolveConnect) => {
    const socket = connect(path, () => { socket.destroy(); resolveConnect(true); });
    socket.on('error', () => resolveConnect(false));
  });
}

