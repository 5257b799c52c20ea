/**
 * SystemdNotifier: tells systemd (Type=notify) when cairnd is ready, when it stops, and that its
 * event loop is alive (WatchdogSec=). The watchdog keep-alive is a timer on the main event loop,
 * so a loop that stalls stops the keep-alives and systemd restarts the daemon.
 *
 * Owns: reading NOTIFY_SOCKET / WATCHDOG_USEC / WATCHDOG_PID, the keep-alive interval (half the
 * watchdog timeout, as sd_watchdog_enabled(3) advises), and the messages.
 * Invariants: without NOTIFY_SOCKET every call is a no-op; a failed send is logged (once per kind
 * of message) and never thrown: telling systemd must not take the daemon down. The keep-alive
 * timer is unref'd, so it never keeps a stopping process alive.
 */
import type { Logger } from '../observe/logger';

export interface NotifySender {
  sdNotify(socketPath: string, message: string): void;
}

/** The watchdog interval systemd asks this process for, or undefined when there is none. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usecText = env['WATCHDOG_USEC'];
  if (usecText === undefined || !/^\d{1,15}$/.test(usecText)) return undefined;
  const pidText = env['WATCHDOG_PID'];
  if (pidText !== undefined && pidText !== String(pid)) return undefined;
  const usec = Number(usecText);
  if (usec <= 0) return undefined;
  // Keep-alives at half the timeout, never more often than every 100 ms.
  return Math.max(100, Math.floor(usec / 2000));
}

export class SystemdNotifier {
  private timer: NodeJS.Timeout | undefined;
  private readonly failed = new Set<string>();

  constructor(
    private readonly socketPath: string | undefined,
    private readonly sender: NotifySender | undefined,
    private readonly logger: Logger,
    private readonly watchdogMs: number | undefined,
  ) {}

  /** From the process environment; `sender` is loaded lazily by the caller (the native addon). */
  static fromEnvironment(env: NodeJS.ProcessEnv, sender: () => NotifySender, logger: Logger, pid: number = process.pid): SystemdNotifier {
    const socketPath = env['NOTIFY_SOCKET'];
    if (socketPath === undefined || socketPath === '') return new SystemdNotifier(undefined, undefined, logger, undefined);
    let loaded: NotifySender | undefined;
    try {
      loaded = sender();
    } catch (error) {
      logger.warn('cannot notify systemd: the native addon is unavailable', { error });
    }
    return new SystemdNotifier(socketPath, loaded, logger, watchdogIntervalMs(env, pid));
  }

  get enabled(): boolean {
    return this.socketPath !== undefined && this.sender !== undefined;
  }

  /** READY=1 with a status line; starts the watchdog keep-alives when systemd asked for them. */
  ready(status: string): void {
    this.send('READY', `READY=1\nSTATUS=${oneLine(status)}\nMAINPID=${process.pid}`);
    if (this.watchdogMs !== undefined && this.timer === undefined && this.enabled) {
      this.timer = setInterval(() => this.send('WATCHDOG', 'WATCHDOG=1'), this.watchdogMs);
      this.timer.unref();
    }
  }

  status(status: string): void {
    this.send('STATUS', `STATUS=${oneLine(status)}`);
  }

  /** STOPPING=1; the keep-alives stop (systemd's stop timeout governs from here). */
  stopping(status = 'stopping'): void {
    this.stopWatchdog();
    this.send('STOPPING', `STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  stopWatchdog(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private send(kind: string, message: string): void {
    if (this.socketPath === undefined || this.sender === undefined) return;
    try {
      this.sender.sdNotify(this.socketPath, message);
    } catch (error) {
      if (this.failed.has(kind)) return;
      this.failed.add(kind);
      this.logger.warn('cannot notify systemd', { kind, error });
    }
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 200);
}
