/**
 * The control API server: HTTP/1.1 + JSON on a Unix socket (mode 0600, root-only by default) or on
 * a loopback TCP port guarded by a bearer token, plus a WebSocket event stream at /v1/events.
 * Owns routing, body limits and error translation (CairnError code → HTTP status via errorWire);
 * all behaviour lives in the injected ControlService. Bodies larger than limits.apiBodyBytesMax
 * are refused before they are buffered.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { WebSocketServer, WebSocket } from 'ws';
import { CairnError, errorWire, isCairnError } from '../errors/cairn-error';
import { apiBodyBytesMax, descriptionBytesMax, nameBytesMax } from '../limits';
import { Logger, silentLogger } from '../observe/logger';
import type { ApiEndpoint } from '../config/config';
import type { AttachRequest, ControlService, CreateProfileRequest, CreateVolumeRequest, DetachRequest } from './types';

type Handler = (request: IncomingMessage, params: string[], body: unknown) => Promise<{ status: number; body: unknown }>;

interface Route { method: string; pattern: RegExp; handler: Handler }

export class ApiServer {
  private readonly server: Server;
  private readonly sockets = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private readonly routes: Route[];
  private unixPath: string | null = null;

  constructor(private readonly service: ControlService, private readonly options: { token: string | null; logger?: Logger }) {
    this.routes = this.buildRoutes();
    this.server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => this.logger.error('api request failed', { error }));
    });
    this.server.on('upgrade', (request, socket, head) => {
      if (request.url !== '/v1/events' || !this.authorized(request)) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      this.sockets.handleUpgrade(request, socket, head, (ws) => this.streamEvents(ws));
    });
  }

  private get logger(): Logger {
    return this.options.logger ?? silentLogger;
  }

  async listen(endpoint: ApiEndpoint): Promise<void> {
    if (endpoint.kind === 'unix') {
      removeStaleSocket(endpoint.path);
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(endpoint.path, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
      chmodSync(endpoint.path, 0o600);
      this.unixPath = endpoint.path;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(endpoint.port, endpoint.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** The bound TCP address (null for a Unix socket). */
  address(): { host: string; port: number } | null {
    const address = this.server.address();
    return address !== null && typeof address === 'object' ? { host: address.address, port: address.port } : null;
  }

  async close(): Promise<void> {
    for (const client of this.sockets.clients) client.close(1001, 'daemon stopping');
    this.server.closeIdleConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    if (this.unixPath !== null && existsSync(this.unixPath)) unlinkSync(this.unixPath);
  }

  private authorized(request: IncomingMessage): boolean {
    const token = this.options.token;
    if (token === null) return true;
    const header = request.headers.authorization ?? '';
    const expected = Buffer.from(`Bearer ${token}`);
    const given = Buffer.from(header);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private streamEvents(ws: WebSocket): void {
    const unsubscribe = this.service.subscribe((event) => {
      if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1024 * 1024) ws.send(JSON.stringify(event));
    });
    ws.on('close', unsubscribe);
    ws.on('error', unsubscribe);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let status = 500;
    let body: unknown;
    try {
      if (!this.authorized(request)) throw new HttpError(401, 'CAIRN_UNAUTHORIZED', 'missing or wrong API token (send Authorization: Bearer TOKEN)');
      const url = new URL(request.url ?? '/', 'http://cairn');
      const matchingPath = this.routes.filter((route) => route.pattern.test(url.pathname));
      if (matchingPath.length === 0) throw new HttpError(404, 'CAIRN_NOT_FOUND', `no such endpoint: ${url.pathname}`);
      const route = matchingPath.find((candidate) => candidate.method === request.method);
      if (!route) throw new HttpError(405, 'CAIRN_METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${url.pathname}`);
      const params = (route.pattern.exec(url.pathname) ?? []).slice(1).map(decodePathPart);
      const requestBody = request.method === 'POST' || request.method === 'PATCH' ? await readJsonBody(request) : undefined;
      ({ status, body } = await route.handler(request, params, requestBody));
    } catch (error) {
      if (error instanceof HttpError) {
        status = error.status;
        body = { error: { code: error.code, message: error.message } };
      } else if (isCairnError(error)) {
        status = errorWire[error.code].http;
        body = { error: { code: error.code, message: error.message } };
      } else {
        this.logger.error('api handler failed', { error, url: request.url });
        status = 500;
        body = { error: { code: 'CAIRN_INTERNAL', message: `internal error: ${(error as Error).message}` } };
      }
    }
    const text = body === undefined ? '' : JSON.stringify(body) + '\n';
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    response.end(text);
  }

  private buildRoutes(): Route[] {
    const service = this.service;
    const ok = (body: unknown, status = 200): { status: number; body: unknown } => ({ status, body });
    return [
      { method: 'GET', pattern: /^\/v1\/status$/, handler: async () => ok(await service.status()) },
      { method: 'GET', pattern: /^\/v1\/volumes$/, handler: async () => ok(await service.listVolumes()) },
      {
        method: 'POST', pattern: /^\/v1\/volumes$/, handler: async (_request, _params, body) => {
          const result = await service.createVolume(parseCreateVolume(body));
          return ok(result.volume, result.created ? 201 : 200);
        },
      },
      { method: 'GET', pattern: /^\/v1\/volumes\/([^/]+)$/, handler: async (_r, [name]) => ok(await service.getVolume(name ?? '')) },
      {
        method: 'PATCH', pattern: /^\/v1\/volumes\/([^/]+)$/, handler: async (_r, [name], body) => {
          const sizeBytes = (body as { sizeBytes?: unknown } | null)?.sizeBytes;
          if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes)) {
            throw new CairnError('CAIRN_INVALID_ARGUMENT', 'sizeBytes must be an integer number of bytes');
          }
          return ok(await service.resizeVolume(name ?? '', sizeBytes));
        },
      },
      { method: 'DELETE', pattern: /^\/v1\/volumes\/([^/]+)$/, handler: async (_r, [name]) => { await service.deleteVolume(name ?? ''); return ok(undefined, 204); } },
      {
        method: 'POST', pattern: /^\/v1\/volumes\/([^/]+)\/attach$/, handler: async (_r, [name], body) => {
          if (!service.attachVolume) throw new CairnError('CAIRN_NOT_SUPPORTED', 'this daemon does not attach kernel block devices');
          const result = await service.attachVolume(name ?? '', parseAttach(body));
          return ok(result.attachment, result.created ? 201 : 200);
        },
      },
      {
        method: 'POST', pattern: /^\/v1\/volumes\/([^/]+)\/detach$/, handler: async (_r, [name], body) => {
          if (!service.detachVolume) throw new CairnError('CAIRN_NOT_SUPPORTED', 'this daemon does not attach kernel block devices');
          return ok(await service.detachVolume(name ?? '', parseDetach(body)));
        },
      },
      { method: 'GET', pattern: /^\/v1\/profiles$/, handler: async () => ok(await service.listProfiles()) },
      {
        method: 'POST', pattern: /^\/v1\/profiles$/, handler: async (_request, _params, body) => {
          const result = await service.createProfile(parseCreateProfile(body));
          return ok(result.profile, result.created ? 201 : 200);
        },
      },
      { method: 'DELETE', pattern: /^\/v1\/profiles\/([^/]+)$/, handler: async (_r, [name]) => { await service.deleteProfile(name ?? ''); return ok(undefined, 204); } },
      { method: 'GET', pattern: /^\/v1\/nodes$/, handler: async () => ok(await service.listNodes()) },
    ];
  }
}

/** One %-encoded path segment; a malformed escape is the client's mistake (400), not ours. */
function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, 'CAIRN_INVALID_ARGUMENT', `'${part.slice(0, 80)}' has a malformed %-escape; encode names with encodeURIComponent`);
  }
}

/**
 * Text the API stores (names, descriptions) must be well-formed Unicode of bounded size: checked
 * before anything is proposed, so an oversized or malformed value never reaches the metadata log.
 */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkText(field: string, value: string, bytesMax: number): void {
  if (loneSurrogate.test(value)) throw new CairnError('CAIRN_INVALID_ARGUMENT', `${field} must be valid Unicode text (it holds a lone surrogate)`);
  if (Buffer.byteLength(value) > bytesMax) throw new CairnError('CAIRN_INVALID_ARGUMENT', `${field} is longer than ${bytesMax} bytes`);
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function parseCreateVolume(body: unknown): CreateVolumeRequest {
  if (typeof body !== 'object' || body === null) throw new CairnError('CAIRN_INVALID_ARGUMENT', 'expected a JSON object {"name", "sizeBytes", "profile"?}');
  const { name, sizeBytes, profile, readOnly } = body as Record<string, unknown>;
  if (typeof name !== 'string') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'name must be a string');
  checkText('name', name, nameBytesMax);
  if (typeof sizeBytes !== 'number' || !Number.isSafeInteger(sizeBytes)) throw new CairnError('CAIRN_INVALID_ARGUMENT', 'sizeBytes must be an integer number of bytes');
  if (profile !== undefined && typeof profile !== 'string') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'profile must be a string');
  if (readOnly !== undefined && typeof readOnly !== 'boolean') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'readOnly must be a boolean');
  return { name, sizeBytes, ...(profile === undefined ? {} : { profile }), ...(readOnly === undefined ? {} : { readOnly }) };
}

const createProfileFields = new Set(['name', 'replicas', 'extentBytes', 'description']);
/** Profile properties the map has but the API does not set yet, and why (an unknown field is refused, not ignored). */
const unsettableProfileFields: Readonly<Record<string, string>> = {
  iopsMax: 'IOPS limits are not enforced by the data path yet; profiles are unlimited',
  bandwidthBytesPerSecondMax: 'bandwidth limits are not enforced by the data path yet; profiles are unlimited',
  placement: 'placement is not settable yet; profiles spread replicas over failure domains',
  filesystem: 'filesystem is not settable yet; volumes are raw block devices',
};

/**
 * POST /v1/profiles: shapes only (types, whole numbers); ranges (replicas, extent size as a power
 * of two within the limits, name and description rules) are the cluster map's to check. Unknown
 * fields are refused so that a typo ("extentSize") cannot silently create a default profile.
 */
function parseCreateProfile(body: unknown): CreateProfileRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', 'expected a JSON object {"name", "replicas"?, "extentBytes"?, "description"?}');
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (createProfileFields.has(key)) continue;
    const reason = Object.hasOwn(unsettableProfileFields, key) ? unsettableProfileFields[key] : undefined;
    throw new CairnError('CAIRN_INVALID_ARGUMENT', reason !== undefined
      ? `${key} cannot be set: ${reason}`
      : `unknown field '${key.slice(0, 64)}'; a profile takes "name", "replicas"?, "extentBytes"?, "description"?`);
  }
  const { name, replicas, extentBytes, description } = fields;
  if (typeof name !== 'string') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'name must be a string');
  checkText('name', name, nameBytesMax);
  if (replicas !== undefined && (typeof replicas !== 'number' || !Number.isSafeInteger(replicas) || replicas < 1)) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', 'replicas must be a whole number, at least 1');
  }
  if (extentBytes !== undefined && (typeof extentBytes !== 'number' || !Number.isSafeInteger(extentBytes) || extentBytes < 1)) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', 'extentBytes must be a positive whole number of bytes (a power of two)');
  }
  if (description !== undefined && typeof description !== 'string') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'description must be a string');
  if (description !== undefined) checkText('description', description, descriptionBytesMax);
  return {
    name,
    ...(replicas === undefined ? {} : { replicas }),
    ...(extentBytes === undefined ? {} : { extentBytes }),
    ...(description === undefined ? {} : { description }),
  };
}

/** POST /v1/volumes/:name/attach: an optional object of optional fields. */
function parseAttach(body: unknown): AttachRequest {
  if (body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', 'expected a JSON object {"connections"?, "readOnly"?, "method"?, "ioTimeoutSeconds"?, "deadConnTimeoutSeconds"?}');
  }
  const { connections, readOnly, method, ioTimeoutSeconds, deadConnTimeoutSeconds } = body as Record<string, unknown>;
  const integer = (name: string, value: unknown): number | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new CairnError('CAIRN_INVALID_ARGUMENT', `${name} must be a non-negative integer`);
    return value;
  };
  if (readOnly !== undefined && typeof readOnly !== 'boolean') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'readOnly must be a boolean');
  if (method !== undefined && method !== 'auto' && method !== 'netlink' && method !== 'ioctl') {
    throw new CairnError('CAIRN_INVALID_ARGUMENT', 'method must be auto, netlink or ioctl');
  }
  const fields: { -readonly [K in keyof AttachRequest]: AttachRequest[K] } = {};
  const count = integer('connections', connections);
  if (count !== undefined) fields.connections = count;
  if (readOnly !== undefined) fields.readOnly = readOnly;
  if (method !== undefined) fields.method = method;
  const ioTimeout = integer('ioTimeoutSeconds', ioTimeoutSeconds);
  if (ioTimeout !== undefined) fields.ioTimeoutSeconds = ioTimeout;
  const deadTimeout = integer('deadConnTimeoutSeconds', deadConnTimeoutSeconds);
  if (deadTimeout !== undefined) fields.deadConnTimeoutSeconds = deadTimeout;
  return fields;
}

function parseDetach(body: unknown): DetachRequest {
  if (body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new CairnError('CAIRN_INVALID_ARGUMENT', 'expected a JSON object {"force"?}');
  const { force } = body as Record<string, unknown>;
  if (force !== undefined && typeof force !== 'boolean') throw new CairnError('CAIRN_INVALID_ARGUMENT', 'force must be a boolean');
  return force === undefined ? {} : { force };
}

async function readJsonBody(request: IncomingMessage): Promise<unknown> {
  const declared = Number(request.headers['content-length'] ?? '0');
  if (declared > apiBodyBytesMax) throw new HttpError(413, 'CAIRN_BODY_TOO_LARGE', `request body over ${apiBodyBytesMax} bytes`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of request) {
    total += (chunk as Buffer).length;
    if (total > apiBodyBytesMax) throw new HttpError(413, 'CAIRN_BODY_TOO_LARGE', `request body over ${apiBodyBytesMax} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (total === 0) return null;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new HttpError(400, 'CAIRN_INVALID_ARGUMENT', `request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** A socket file left by a killed daemon is removed; anything else at the path is an error. */
function removeStaleSocket(path: string): void {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new CairnError('CAIRN_CONFIG', `'${path}' exists and is not a socket; remove it or choose another api.listen path`);
  unlinkSync(path);
}
