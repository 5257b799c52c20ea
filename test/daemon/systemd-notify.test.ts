/**
 * Goal: cairnd tells systemd READY=1, STOPPING=1 and watchdog keep-alives exactly when the unit
 * (Type=notify, WatchdogSec=) expects them, does nothing without NOTIFY_SOCKET, and never lets a
 * failed notification take the daemon down.
 *
 * Method: SystemdNotifier with a recording sender; the watchdog interval is derived from the
 * environment variables systemd sets. Then a real cairnd with NOTIFY_SOCKET pointing at a Unix
 * datagram socket bound by Debian's python3 (systemd's side), and systemd-analyze on the unit.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot, startDaemon, TestDaemon } from '../helpers/daemon';
import { runTool } from '../helpers/tools';
import { SystemdNotifier, watchdogIntervalMs } from '../../src/daemon/systemd-notify';
import { silentLogger, Logger } from '../../src/observe/logger';

class Recorder {
  readonly sent: Array<{ socketPath: string; message: string }> = [];
  failWith: Error | undefined;
  sdNotify(socketPath: string, message: string): void {
    if (this.failWith !== undefined) throw this.failWith;
    this.sent.push({ socketPath, message });
  }
}

void t.test('the watchdog interval is half of WATCHDOG_USEC, for this process only', async (t) => {
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42), 15_000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15_000);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '41' }, 42), undefined, 'meant for another process');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '100' }, 42), 100, 'never more often than every 100 ms');
  t.equal(watchdogIntervalMs({}, 42), undefined);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 42), undefined);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '-5' }, 42), undefined);
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '3e7' }, 42), undefined);
});

void t.test('without NOTIFY_SOCKET nothing is sent and the sender is never loaded', async (t) => {
  let loaded = false;
  const notifier = SystemdNotifier.fromEnvironment({}, () => { loaded = true; return new Recorder(); }, silentLogger);
  notifier.ready('x');
  notifier.stopping();
  t.notOk(notifier.enabled);
  t.notOk(loaded);
});

void t.test('READY=1 carries a status and MAINPID; STOPPING=1 ends the keep-alives', async (t) => {
  const recorder = new Recorder();
  const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '@sd', WATCHDOG_USEC: '200000' }, () => recorder, silentLogger, process.pid);
  t.ok(notifier.enabled);
  notifier.ready('serving 2 volume(s),\n1 attached');
  t.same(recorder.sent[0], { socketPath: '@sd', message: `READY=1\nSTATUS=serving 2 volume(s), 1 attached\nMAINPID=${process.pid}` });
  await sleep(350);
  const pings = recorder.sent.filter((entry) => entry.message === 'WATCHDOG=1').length;
  t.ok(pings >= 2, `keep-alives every 100 ms (${pings} sent)`);
  notifier.stopping();
  const afterStop = recorder.sent.length;
  t.match(recorder.sent[afterStop - 1]?.message, /^STOPPING=1\nSTATUS=stopping$/);
  await sleep(250);
  t.equal(recorder.sent.length, afterStop, 'no keep-alive after STOPPING=1');
});

void t.test('a stalled event loop sends no keep-alive (so systemd restarts the daemon)', async (t) => {
  const recorder = new Recorder();
  const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '/run/n', WATCHDOG_USEC: '200000' }, () => recorder, silentLogger, process.pid);
  notifier.ready('ok');
  const busyUntil = Date.now() + 400;
  while (Date.now() < busyUntil) { /* the event loop is stuck */ }
  t.equal(recorder.sent.filter((entry) => entry.message === 'WATCHDOG=1').length, 0, 'no keep-alive while the loop was blocked');
  notifier.stopWatchdog();
});

void t.test('a failed send is logged once per kind and never thrown', async (t) => {
  const recorder = new Recorder();
  recorder.failWith = Object.assign(new Error('sendto: gone'), { code: 'ENOENT' });
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message), child: () => logger };
  const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '/run/n' }, () => recorder, logger);
  notifier.ready('a');
  notifier.ready('b');
  notifier.status('c');
  notifier.stopping();
  t.same(warnings, ['cannot notify systemd', 'cannot notify systemd', 'cannot notify systemd'], 'READY, STATUS and STOPPING once each');
});

void t.test('a sender that cannot load leaves notifications off', async (t) => {
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message), child: () => logger };
  const notifier = SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '/run/n' }, () => { throw new Error('no addon'); }, logger);
  t.notOk(notifier.enabled);
  notifier.ready('x');
  t.same(warnings, ['cannot notify systemd: the native addon is unavailable']);
});

void t.test('a real cairnd sends READY=1 once serving, keep-alives, and STOPPING=1 on SIGTERM', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-sd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'notify.sock');
  const receiver = collectDatagrams(socketPath);
  await receiver.ready;
  const saved = { NOTIFY_SOCKET: process.env['NOTIFY_SOCKET'], WATCHDOG_USEC: process.env['WATCHDOG_USEC'] };
  process.env['NOTIFY_SOCKET'] = socketPath;
  process.env['WATCHDOG_USEC'] = '400000';
  let daemon: TestDaemon;
  try {
    daemon = await startDaemon(t);
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
  await sleep(700);
  t.equal(await daemon.stop(), 0, 'clean stop');
  const messages = await receiver.stop();
  t.match(messages[0], /^READY=1\nSTATUS=serving 0 volume\(s\), 0 attached\nMAINPID=\d+$/, 'READY=1 first');
  t.ok(messages.filter((message) => message === 'WATCHDOG=1').length >= 2, `keep-alives (${messages.length} messages)`);
  t.match(messages[messages.length - 1], /^STOPPING=1/, 'STOPPING=1 last');
});

void t.test('the unit is Type=notify with a watchdog, and systemd-analyze verify finds nothing', async (t) => {
  const unit = readFileSync(join(repoRoot, 'systemd', 'cairnd.service'), 'utf8');
  t.match(unit, /^Type=notify$/m);
  t.match(unit, /^WatchdogSec=\d+s$/m);
  t.match(unit, /^Restart=on-failure$/m, 'a watchdog kill restarts the daemon');
  const verify = await runTool('systemd-analyze', ['verify', join(repoRoot, 'systemd', 'cairnd.service')]);
  t.equal(verify.code, 0, `systemd-analyze verify: ${verify.stderr.trim()}`);
  t.equal(verify.stderr.trim(), '', 'no warnings');
});

/** Binds a Unix datagram socket with Debian's python3 and collects datagrams until stopped. */
function collectDatagrams(path: string): { ready: Promise<void>; stop: () => Promise<string[]> } {
  const script = [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    's.settimeout(0.2)',
    'print("ready", flush=True)',
    'import select',
    'while True:',
    '    try:',
    '        print(json.dumps(s.recv(4096).decode()), flush=True)',
    '    except socket.timeout:',
    '        if select.select([sys.stdin], [], [], 0)[0] and sys.stdin.read() == "": break',
  ].join('\n');
  const child = spawn('/usr/bin/python3', ['-c', script, path], { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  let readyResolve: () => void = () => {};
  const ready = new Promise<void>((resolve) => { readyResolve = resolve; });
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (output.startsWith('ready\n')) readyResolve();
  });
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    ready,
    stop: async () => {
      await sleep(300);
      child.stdin.end();
      await closed;
      return output.split('\n').slice(1).filter((line) => line !== '').map((line) => JSON.parse(line) as string);
    },
  };
}
