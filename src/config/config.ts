/**
 * The daemon's configuration: the typed schema, defaults, and validation. A config file (JSON,
 * see config/cairnd.json) is read first, then command-line flags override it; `validateConfig`
 * fills defaults and rejects every contradiction with a CairnError('CAIRN_CONFIG') whose message
 * names the field, the bad value and what is allowed. Nothing here touches the disk except
 * `loadConfigFile`; paths are resolved to absolute paths against the process's cwd.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { homedir, hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { CairnError } from '../errors/cairn-error';
import { GiB, isPowerOfTwo, MiB, parseBytes, PiB } from '../util/units';
import { nameBytesMax } from '../limits';

export interface HostPort { readonly host: string; readonly port: number }

export type ApiEndpoint =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export interface DaemonConfig {
  readonly nodeName: string;
  /** Holds the metadata database, the lock and (by default) the first drive. */
  readonly dataDir: string;
  /** Directories whose filesystems hold extent files. */
  readonly drives: readonly string[];
  /**
   * Volume bytes per segment file for volumes first stored on a drive (see
   * src/extent/extent-layout.ts), or null for the store's default: 1 TiB, or the longest file
   * the drive's filesystem takes. A volume always uses at least its extent size.
   */
  readonly segmentBytes: number | null;
  readonly nbd: {
    /** TCP listeners; loopback only until TLS is configured. Empty = no TCP listener. */
    readonly listen: readonly HostPort[];
    /** Unix socket path for NBD, or null. */
    readonly socket: string | null;
    /**
     * The longest the daemon's event loop spins for its next event before it sleeps, in
     * microseconds (adaptive: long idle periods shrink the spin to nothing; 0 = never spin).
     * Spinning saves the wake-up a sleeping thread pays for each request at queue depth 1.
     */
    readonly busyPollMicros: number;
  };
  readonly api: {
    readonly endpoint: ApiEndpoint;
    /** Required for a TCP endpoint: clients send it as a bearer token. */
    readonly token: string | null;
  };
  readonly log: { readonly level: 'error' | 'warn' | 'info' | 'debug'; readonly format: 'json' | 'text' };
  /** Volume created at start when missing (the embedded demo), or null. */
  readonly demoVolume: { readonly name: string; readonly sizeBytes: number } | null;
  /** Seconds SIGTERM waits for in-flight I/O before failing it. */
  readonly shutdownTimeoutSeconds: number;
}

/** Input shape: every field optional, as read from a file or flags. */
export interface ConfigInput {
  nodeName?: unknown;
  dataDir?: unknown;
  drives?: unknown;
  segmentSize?: unknown;
  nbd?: { listen?: unknown; socket?: unknown; busyPollMicros?: unknown };
  api?: { listen?: unknown; token?: unknown };
  log?: { level?: unknown; format?: unknown };
  demoVolume?: { name?: unknown; size?: unknown } | null;
  shutdownTimeoutSeconds?: unknown;
}

export const defaultNbdPort = 10809;
const segmentBytesMin = 1 * MiB;
/** Segments up to 1 PiB: the largest volume, in one file where the filesystem allows it. */
const segmentBytesMax = 1 * PiB;
/** Default event-loop busy poll: the kernel's haltpoll governor polls up to 200 us too. */
export const defaultBusyPollMicros = 200;
/** Most a busy poll may be configured to spin (the native bound, 10 ms). */
export const busyPollMicrosMax = 10_000;

/** The state directory of the running user (XDG_STATE_HOME or ~/.local/state), for the embedded mode. */
export function userStateDir(): string {
  const xdg = process.env['XDG_STATE_HOME'];
  return xdg && isAbsolute(xdg) ? join(xdg, 'cairn') : join(homedir(), '.local', 'state', 'cairn');
}

/** The API socket the CLI tries when neither --api nor CAIRN_API is given, in order. */
export function defaultApiSocketCandidates(): string[] {
  return ['/run/cairn/api.sock', join(userStateDir(), 'api.sock')];
}

function fail(field: string, message: string): never {
  throw new CairnError('CAIRN_CONFIG', `config: ${field}: ${message}`);
}

function expectString(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) fail(field, `expected a non-empty string, got ${JSON.stringify(value)}`);
  if (value.includes('\0')) fail(field, 'must not contain NUL bytes');
  return value;
}

function expectPath(field: string, value: unknown): string {
  return resolve(expectString(field, value));
}

const loopbackHosts = new Set(['localhost', '::1']);
export function isLoopbackHost(host: string): boolean {
  if (loopbackHosts.has(host)) return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** Parses "HOST:PORT", "[::1]:PORT" or ":PORT" (loopback). */
export function parseHostPort(field: string, text: unknown): HostPort {
  const value = expectString(field, text);
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  if (!match) fail(field, `expected HOST:PORT (e.g. 127.0.0.1:${defaultNbdPort}), got '${value}'`);
  const host = match[1] ?? (match[2] === '' || match[2] === undefined ? '127.0.0.1' : match[2]);
  const port = Number(match[3]);
  if (port > 65535) fail(field, `port ${port} is out of range 0-65535`);
  if (isIP(host) === 0 && host !== 'localhost') fail(field, `'${host}' is not an IP address (use 127.0.0.1 or ::1)`);
  return { host, port };
}

export function parseApiEndpoint(field: string, text: unknown): ApiEndpoint {
  const value = expectString(field, text);
  if (value.startsWith('unix:')) {
    const path = value.slice('unix:'.length);
    if (path.length === 0) fail(field, "expected unix:PATH, got 'unix:'");
    return { kind: 'unix', path: resolve(path) };
  }
  if (value.startsWith('http://')) {
    const { host, port } = parseHostPort(field, value.slice('http://'.length).replace(/\/$/, ''));
    return { kind: 'tcp', host, port };
  }
  if (value.startsWith('/')) return { kind: 'unix', path: value };
  fail(field, `expected unix:PATH or http://HOST:PORT, got '${value}'`);
}

const nodeNamePattern = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

export function validateConfig(input: ConfigInput): DaemonConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) fail('(root)', 'expected a JSON object');
  const known = new Set(['nodeName', 'dataDir', 'drives', 'segmentSize', 'nbd', 'api', 'log', 'demoVolume', 'shutdownTimeoutSeconds']);
  for (const key of Object.keys(input)) if (!known.has(key)) fail(key, `unknown setting (known: ${[...known].join(', ')})`);

  const nodeName = input.nodeName === undefined ? hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-') : expectString('nodeName', input.nodeName);
  if (!nodeNamePattern.test(nodeName) || nodeName.length > nameBytesMax) {
    fail('nodeName', `'${nodeName}' must be lower-case letters, digits, '.' or '-', at most ${nameBytesMax} characters`);
  }
  const dataDir = input.dataDir === undefined ? '/var/lib/cairn' : expectPath('dataDir', input.dataDir);

  let drives: string[];
  if (input.drives === undefined) drives = [join(dataDir, 'drives', '0')];
  else {
    if (!Array.isArray(input.drives) || input.drives.length === 0) fail('drives', 'expected a non-empty list of directories');
    drives = input.drives.map((drive, i) => expectPath(`drives[${i}]`, drive));
    if (new Set(drives).size !== drives.length) fail('drives', 'lists the same directory twice');
  }

  let segmentBytes: number | null = null;
  if (input.segmentSize !== undefined && input.segmentSize !== null) {
    const size = input.segmentSize;
    const bytes = typeof size === 'number' ? size : parseBytes(expectString('segmentSize', size));
    if (bytes === undefined || !isPowerOfTwo(bytes) || bytes < segmentBytesMin || bytes > segmentBytesMax) {
      fail('segmentSize', `expected a power of two from 1MiB to 1PiB (e.g. 1TiB; 1MiB keeps one file per extent), got ${JSON.stringify(size)}`);
    }
    segmentBytes = bytes;
  }

  const nbdInput = input.nbd ?? {};
  if (typeof nbdInput !== 'object') fail('nbd', 'expected an object');
  const listenInput = nbdInput.listen === undefined ? [`127.0.0.1:${defaultNbdPort}`] : nbdInput.listen;
  if (!Array.isArray(listenInput)) fail('nbd.listen', 'expected a list of HOST:PORT strings');
  const listen = listenInput.map((entry, i) => parseHostPort(`nbd.listen[${i}]`, entry));
  for (const [i, entry] of listen.entries()) {
    if (!isLoopbackHost(entry.host)) {
      fail(`nbd.listen[${i}]`, `'${entry.host}' is not a loopback address; NBD without TLS is served on loopback only (127.0.0.1 or ::1)`);
    }
  }
  const socket = nbdInput.socket === undefined ? join(dataDir, 'nbd.sock') : nbdInput.socket === null ? null : expectPath('nbd.socket', nbdInput.socket);
  if (listen.length === 0 && socket === null) fail('nbd', 'neither a TCP listener nor a socket is configured: clients could not connect');
  for (const key of Object.keys(nbdInput)) {
    if (key !== 'listen' && key !== 'socket' && key !== 'busyPollMicros') fail(`nbd.${key}`, 'unknown setting (known: listen, socket, busyPollMicros)');
  }
  const busyPollMicros = nbdInput.busyPollMicros ?? defaultBusyPollMicros;
  if (typeof busyPollMicros !== 'number' || !Number.isInteger(busyPollMicros) || busyPollMicros < 0 || busyPollMicros > busyPollMicrosMax) {
    fail('nbd.busyPollMicros', `expected an integer number of microseconds in [0, ${busyPollMicrosMax}] (0 turns busy polling off), got ${JSON.stringify(busyPollMicros)}`);
  }

  const apiInput = input.api ?? {};
  const endpoint = apiInput.listen === undefined ? { kind: 'unix' as const, path: join(dataDir, 'api.sock') } : parseApiEndpoint('api.listen', apiInput.listen);
  const token = apiInput.token === undefined || apiInput.token === null ? null : expectString('api.token', apiInput.token);
  if (endpoint.kind === 'tcp' && token === null) fail('api.token', 'a TCP API endpoint needs a token (api.token); the Unix socket needs none');
  if (endpoint.kind === 'tcp' && !isLoopbackHost(endpoint.host)) fail('api.listen', `'${endpoint.host}' is not a loopback address`);

  const logInput = input.log ?? {};
  const level = logInput.level ?? 'info';
  if (level !== 'error' && level !== 'warn' && level !== 'info' && level !== 'debug') fail('log.level', `expected error, warn, info or debug, got ${JSON.stringify(level)}`);
  const format = logInput.format ?? 'json';
  if (format !== 'json' && format !== 'text') fail('log.format', `expected json or text, got ${JSON.stringify(format)}`);

  let demoVolume: DaemonConfig['demoVolume'] = null;
  if (input.demoVolume !== undefined && input.demoVolume !== null) {
    const name = expectString('demoVolume.name', input.demoVolume.name ?? 'demo');
    const size = input.demoVolume.size ?? '1GiB';
    const sizeBytes = typeof size === 'number' ? size : parseBytes(expectString('demoVolume.size', size));
    if (sizeBytes === undefined || sizeBytes <= 0) fail('demoVolume.size', `expected a size like 1GiB, got ${JSON.stringify(size)}`);
    demoVolume = { name, sizeBytes };
  }

  const shutdownTimeoutSeconds = input.shutdownTimeoutSeconds ?? 30;
  if (typeof shutdownTimeoutSeconds !== 'number' || !(shutdownTimeoutSeconds > 0) || shutdownTimeoutSeconds > 3600) {
    fail('shutdownTimeoutSeconds', `expected a number of seconds in (0, 3600], got ${JSON.stringify(shutdownTimeoutSeconds)}`);
  }

  return {
    nodeName, dataDir, drives, segmentBytes,
    nbd: { listen, socket, busyPollMicros },
    api: { endpoint, token },
    log: { level, format },
    demoVolume,
    shutdownTimeoutSeconds,
  };
}

export function loadConfigFile(path: string): ConfigInput {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CairnError('CAIRN_CONFIG', `config: cannot read '${path}': ${(error as Error).message}`, { cause: error });
  }
  try {
    return JSON.parse(text) as ConfigInput;
  } catch (error) {
    throw new CairnError('CAIRN_CONFIG', `config: '${path}' is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

/** The embedded single-node default: data under the user's state dir, a 1 GiB demo volume. */
export function embeddedConfigInput(): ConfigInput {
  const dataDir = userStateDir();
  return {
    dataDir,
    nbd: { listen: [`127.0.0.1:${defaultNbdPort}`], socket: join(dataDir, 'nbd.sock') },
    api: { listen: `unix:${join(dataDir, 'api.sock')}` },
    log: { format: 'text' },
    demoVolume: { name: 'demo', size: 1 * GiB },
  };
}
