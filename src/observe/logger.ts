/**
 * Logger: structured log lines (JSON, one per line) on stderr, which journald captures under
 * systemd. Levels error < warn < info < debug; debug is enabled per subsystem with
 * CAIRN_DEBUG=nbd,extent (or CAIRN_DEBUG=* for all), so the data path stays quiet by default.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  /** A logger for a subsystem; its debug lines are on when CAIRN_DEBUG names it. */
  child(subsystem: string): Logger;
}

const levelRank: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Comma-separated subsystems with debug on, or '*' (default: CAIRN_DEBUG). */
  readonly debug?: string;
  readonly write?: (line: string) => void;
  readonly format?: 'json' | 'text';
}

export function createLogger(options: LoggerOptions = {}, subsystem = 'cairnd'): Logger {
  const level = options.level ?? 'info';
  const debugSet = new Set((options.debug ?? process.env['CAIRN_DEBUG'] ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const format = options.format ?? 'json';
  const debugOn = debugSet.has('*') || debugSet.has(subsystem) || debugSet.has(subsystem.split('.')[0] ?? '');
  const emit = (lineLevel: LogLevel, message: string, fields?: LogFields): void => {
    if (lineLevel === 'debug' ? !debugOn : levelRank[lineLevel] > levelRank[level]) return;
    if (format === 'text') {
      const extra = fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ') : '';
      write(`${lineLevel.toUpperCase()} [${subsystem}] ${message}${extra}`);
      return;
    }
    write(JSON.stringify({ time: new Date().toISOString(), level: lineLevel, subsystem, message, ...normalize(fields) }));
  };
  return {
    error: (message, fields) => emit('error', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    info: (message, fields) => emit('info', message, fields),
    debug: (message, fields) => emit('debug', message, fields),
    child: (name) => createLogger(options, `${subsystem === 'cairnd' ? '' : subsystem + '.'}${name}`),
  };
}

/** A logger that drops everything (library default, tests). */
export const silentLogger: Logger = {
  error: () => {}, warn: () => {}, info: () => {}, debug: () => {}, child: () => silentLogger,
};

function normalize(fields?: LogFields): LogFields | undefined {
  if (!fields) return undefined;
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? { message: value.message, code: (value as { code?: unknown }).code } : value;
  }
  return out;
}

function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message);
  if (typeof value === 'string') return /\s/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value);
}
