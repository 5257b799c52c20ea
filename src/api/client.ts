/**
 * The typed control-API client used by the CLI and the CSI driver. Speaks HTTP/1.1 + JSON to a
 * Unix socket or a loopback TCP port. Non-2xx answers become ApiError with the server's stable
 * code; a daemon that is not running becomes ApiError('CAIRN_UNAVAILABLE') naming the endpoint
 * and how to start it.
 */
import { request as httpRequest } from 'node:http';
import type { ApiEndpoint } from '../config/config';
import type { AttachmentView, AttachRequest, CreateProfileRequest, CreateVolumeRequest, DetachRequest, DetachResult, NodeView, ProfileView, StatusView, VolumeView } from './types';

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(readonly code: string, message: string, readonly status: number) {
    super(message);
  }
}

export interface ApiClientOptions {
  readonly endpoint: ApiEndpoint;
  readonly token?: string | null;
  readonly timeoutMs?: number;
}

export class ApiClient {
  constructor(private readonly options: ApiClientOptions) {}

  status(): Promise<StatusView> { return this.call('GET', '/v1/status'); }
  listVolumes(): Promise<VolumeView[]> { return this.call('GET', '/v1/volumes'); }
  getVolume(name: string): Promise<VolumeView> { return this.call('GET', `/v1/volumes/${encodeURIComponent(name)}`); }
  createVolume(request: CreateVolumeRequest): Promise<VolumeView> { return this.call('POST', '/v1/volumes', request); }
  resizeVolume(name: string, sizeBytes: number): Promise<VolumeView> {
    return this.call('PATCH', `/v1/volumes/${encodeURIComponent(name)}`, { sizeBytes });
  }
  async deleteVolume(name: string): Promise<void> { await this.call('DELETE', `/v1/volumes/${encodeURIComponent(name)}`); }
  attachVolume(name: string, request: AttachRequest = {}): Promise<AttachmentView> {
    return this.call('POST', `/v1/volumes/${encodeURIComponent(name)}/attach`, request);
  }
  detachVolume(name: string, request: DetachRequest = {}): Promise<DetachResult> {
    return this.call('POST', `/v1/volumes/${encodeURIComponent(name)}/detach`, request);
  }
  listProfiles(): Promise<ProfileView[]> { return this.call('GET', '/v1/profiles'); }
  /** Resolves with the profile whether it was created now or already existed identically. */
  createProfile(request: CreateProfileRequest): Promise<ProfileView> { return this.call('POST', '/v1/profiles', request); }
  async deleteProfile(name: string): Promise<void> { await this.call('DELETE', `/v1/profiles/${encodeURIComponent(name)}`); }
  listNodes(): Promise<NodeView[]> { return this.call('GET', '/v1/nodes'); }

  describeEndpoint(): string {
    const endpoint = this.options.endpoint;
    return endpoint.kind === 'unix' ? `unix:${endpoint.path}` : `http://${endpoint.host}:${endpoint.port}`;
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const endpoint = this.options.endpoint;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    if (this.options.token) headers['authorization'] = `Bearer ${this.options.token}`;
    const target = endpoint.kind === 'unix' ? { socketPath: endpoint.path } : { host: endpoint.host, port: endpoint.port };
    return new Promise<T>((resolve, reject) => {
      const request = httpRequest({ ...target, method, path, headers, timeout: this.options.timeoutMs ?? 30_000 }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text.length === 0 ? undefined : JSON.parse(text);
          } catch {
            reject(new ApiError('CAIRN_BAD_RESPONSE', `the daemon at ${this.describeEndpoint()} sent a response that is not JSON`, response.statusCode ?? 0));
            return;
          }
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve(parsed as T);
            return;
          }
          const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
          reject(new ApiError(error?.code ?? 'CAIRN_HTTP_ERROR', error?.message ?? `HTTP ${status}`, status));
        });
      });
      request.on('timeout', () => request.destroy(new ApiError('CAIRN_UNAVAILABLE', `the daemon at ${this.describeEndpoint()} did not answer in time`, 0)));
      request.on('error', (error: NodeJS.ErrnoException) => {
        if (error instanceof ApiError) return reject(error);
        if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') {
          reject(new ApiError('CAIRN_UNAVAILABLE',
            `cannot reach cairnd at ${this.describeEndpoint()} (${error.code}): is it running? Start it with 'systemctl start cairnd' or 'npm start', or point --api / CAIRN_API at its socket`, 0));
          return;
        }
        if (error.code === 'EACCES') {
          reject(new ApiError('CAIRN_UNAVAILABLE', `permission denied on ${this.describeEndpoint()}: the API socket is root-only; run cairn as root (sudo)`, 0));
          return;
        }
        reject(new ApiError('CAIRN_UNAVAILABLE', `request to ${this.describeEndpoint()} failed: ${error.message}`, 0));
      });
      if (payload) request.write(payload);
      request.end();
    });
  }
}
