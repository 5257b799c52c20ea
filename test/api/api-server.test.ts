// Goal: the control API routes requests to the ControlService, translates CairnError codes to HTTP
// statuses with a stable JSON error body, refuses oversized bodies, enforces the token on TCP, and
// streams events over WebSocket. Method: a real ApiServer on a temp Unix socket and loopback TCP
// with an in-memory ControlService; the real ApiClient and raw HTTP requests talk to it.
import t from 'tap';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ApiClient, ApiError } from '../../src/api/client';
import { ApiServer } from '../../src/api/server';
import type { ApiEvent, ControlService, CreateProfileRequest, CreateVolumeRequest, ProfileView, VolumeView } from '../../src/api/types';
import { CairnError } from '../../src/errors/cairn-error';

class FakeService implements ControlService {
  readonly volumes = new Map<string, VolumeView>();
  private readonly listeners = new Set<(event: ApiEvent) => void>();
  private view(request: CreateVolumeRequest): VolumeView {
    return {
      id: `id-${request.name}`, name: request.name, sizeBytes: request.sizeBytes, extentBytes: 64 << 20, replicas: 1,
      profile: request.profile ?? 'default', state: 'ready', readOnly: request.readOnly ?? false, createdAt: '2026-01-01T00:00:00.000Z',
      allocatedBytes: 0, nbdUris: [], connections: 0,
    };
  }
  async status() {
    return { version: 'test', nodeName: 'n', uptimeSeconds: 1, volumes: this.volumes.size, provisionedBytes: 0, allocatedBytes: 0, capacityBytes: 0, freeBytes: 0,
      nbd: { tcp: [], socket: null, connections: 0, busyPoll: null }, metadata: { appliedIndex: 0, mode: 'single-node' } };
  }
  async listVolumes() { return [...this.volumes.values()]; }
  async getVolume(name: string) {
    const volume = this.volumes.get(name);
    if (!volume) throw new CairnError('CAIRN_VOLUME_NOT_FOUND', `no volume named '${name}'`);
    return volume;
  }
  async createVolume(request: CreateVolumeRequest) {
    const existing = this.volumes.get(request.name);
    if (existing) {
      if (existing.sizeBytes !== request.sizeBytes) throw new CairnError('CAIRN_VOLUME_EXISTS', `volume '${request.name}' already exists`);
      return { volume: existing, created: false };
    }
    const volume = this.view(request);
    this.volumes.set(request.name, volume);
    for (const listener of this.listeners) listener({ type: 'volume.created', volume });
    return { volume, created: true };
  }
  async resizeVolume(name: string, sizeBytes: number) {
    const volume = await this.getVolume(name);
    const resized = { ...volume, sizeBytes };
    this.volumes.set(name, resized);
    return resized;
  }
  async deleteVolume(name: string) {
    await this.getVolume(name);
    this.volumes.delete(name);
  }
  readonly profiles = new Map<string, ProfileView>();
  /** Every request the service received, as the server parsed it. */
  readonly profileRequests: CreateProfileRequest[] = [];
  async listProfiles() { return [...this.profiles.values()]; }
  async createProfile(request: CreateProfileRequest) {
    this.profileRequests.push(request);
    const profile: ProfileView = {
      name: request.name, replicas: request.replicas ?? 1, extentBytes: request.extentBytes ?? 64 << 20, description: request.description ?? '', volumes: 0,
    };
    const existing = this.profiles.get(request.name);
    if (existing) {
      if (existing.replicas !== profile.replicas || existing.extentBytes !== profile.extentBytes || existing.description !== profile.description) {
        throw new CairnError('CAIRN_PROFILE_EXISTS', `profile '${request.name}' already exists with other properties`);
      }
      return { profile: existing, created: false };
    }
    this.profiles.set(request.name, profile);
    return { profile, created: true };
  }
  async deleteProfile(name: string) {
    if (!this.profiles.delete(name)) throw new CairnError('CAIRN_PROFILE_NOT_FOUND', `profile '${name}' does not exist`);
  }
  async listNodes() { return []; }
  subscribe(listener: (event: ApiEvent) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function rawRequest(socketPath: string, method: string, path: string, body?: string, headers: Record<string, string | number> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

t.test('the API over a Unix socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-api-'));
  const socketPath = join(dir, 'api.sock');
  const service = new FakeService();
  const server = new ApiServer(service, { token: null });
  await server.listen({ kind: 'unix', path: socketPath });
  t.teardown(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const client = new ApiClient({ endpoint: { kind: 'unix', path: socketPath } });

  t.test('the socket is root-only (mode 0600)', async (t) => {
    t.equal(statSync(socketPath).mode & 0o777, 0o600);
  });

  t.test('create, get, list, resize and delete round-trip through the client', async (t) => {
    const created = await client.createVolume({ name: 'db', sizeBytes: 4096 });
    t.equal(created.name, 'db');
    t.equal((await client.getVolume('db')).sizeBytes, 4096);
    t.same((await client.listVolumes()).map((v) => v.name), ['db']);
    t.equal((await client.resizeVolume('db', 8192)).sizeBytes, 8192);
    await client.deleteVolume('db');
    t.same(await client.listVolumes(), []);
  });

  t.test('creating the same volume twice answers 200 the second time, 201 the first', async (t) => {
    const body = JSON.stringify({ name: 'twice', sizeBytes: 4096 });
    const first = await rawRequest(socketPath, 'POST', '/v1/volumes', body, { 'content-type': 'application/json' });
    const second = await rawRequest(socketPath, 'POST', '/v1/volumes', body, { 'content-type': 'application/json' });
    t.equal(first.status, 201);
    t.equal(second.status, 200);
  });

  t.test('coded errors become HTTP statuses with a stable body', async (t) => {
    const missing = await rawRequest(socketPath, 'GET', '/v1/volumes/nope');
    t.equal(missing.status, 404);
    t.same(JSON.parse(missing.body), { error: { code: 'CAIRN_VOLUME_NOT_FOUND', message: "no volume named 'nope'" } });
    await t.rejects(client.createVolume({ name: 'twice', sizeBytes: 8192 }), { code: 'CAIRN_VOLUME_EXISTS', status: 409 });
  });

  t.test('bad requests get 400, unknown paths 404, wrong methods 405', async (t) => {
    t.equal((await rawRequest(socketPath, 'POST', '/v1/volumes', '{not json')).status, 400);
    t.match(JSON.parse((await rawRequest(socketPath, 'POST', '/v1/volumes', '{"name":"x","sizeBytes":"big"}')).body), { error: { code: 'CAIRN_INVALID_ARGUMENT', message: /sizeBytes/ } });
    t.equal((await rawRequest(socketPath, 'POST', '/v1/volumes', '[]')).status, 400);
    t.equal((await rawRequest(socketPath, 'PATCH', '/v1/volumes/twice', '{"sizeBytes":1.5}')).status, 400);
    t.equal((await rawRequest(socketPath, 'GET', '/v2/anything')).status, 404);
    t.equal((await rawRequest(socketPath, 'PUT', '/v1/volumes')).status, 405);
  });

  t.test('profiles: create answers 201 then 200 for the same properties, delete 204, through the client too', async (t) => {
    const body = JSON.stringify({ name: 'fast', replicas: 2, extentBytes: 256 << 20, description: 'for databases' });
    const first = await rawRequest(socketPath, 'POST', '/v1/profiles', body, { 'content-type': 'application/json' });
    const second = await rawRequest(socketPath, 'POST', '/v1/profiles', body, { 'content-type': 'application/json' });
    t.equal(first.status, 201);
    t.equal(second.status, 200);
    t.same(JSON.parse(second.body), { name: 'fast', replicas: 2, extentBytes: 256 << 20, description: 'for databases', volumes: 0 });
    t.same(service.profileRequests.at(-1), { name: 'fast', replicas: 2, extentBytes: 256 << 20, description: 'for databases' });
    await t.rejects(client.createProfile({ name: 'fast' }), { code: 'CAIRN_PROFILE_EXISTS', status: 409 });
    t.same(service.profileRequests.at(-1), { name: 'fast' }, 'omitted fields stay omitted: the service applies the defaults');
    t.match(await client.createProfile({ name: 'slow', extentBytes: 1 << 20 }), { name: 'slow', extentBytes: 1 << 20 });
    t.same((await client.listProfiles()).map((p) => p.name), ['fast', 'slow']);
    t.equal((await rawRequest(socketPath, 'DELETE', '/v1/profiles/slow')).status, 204);
    await t.rejects(client.deleteProfile('slow'), { code: 'CAIRN_PROFILE_NOT_FOUND', status: 404 });
    await client.deleteProfile('fast');
    t.same(await client.listProfiles(), []);
  });

  t.test('profile bodies of the wrong shape get 400 with a message naming the field', async (t) => {
    const post = async (body: string) => {
      const response = await rawRequest(socketPath, 'POST', '/v1/profiles', body, { 'content-type': 'application/json' });
      return { status: response.status, body: JSON.parse(response.body) as unknown };
    };
    const before = service.profileRequests.length;
    const cases: Array<[string, RegExp]> = [
      ['{not json', /not valid JSON/],
      ['', /expected a JSON object \{"name", "replicas"\?, "extentBytes"\?, "description"\?\}/],
      ['[]', /expected a JSON object/],
      ['"fast"', /expected a JSON object/],
      ['{}', /name must be a string/],
      ['{"name":7}', /name must be a string/],
      ['{"name":"x","replicas":"2"}', /replicas must be a whole number/],
      ['{"name":"x","replicas":1.5}', /replicas must be a whole number/],
      ['{"name":"x","replicas":0}', /replicas must be a whole number, at least 1/],
      ['{"name":"x","extentBytes":"256MiB"}', /extentBytes must be a positive whole number/],
      ['{"name":"x","extentBytes":-4096}', /extentBytes must be a positive whole number/],
      ['{"name":"x","extentBytes":1e300}', /extentBytes must be a positive whole number/],
      ['{"name":"x","description":false}', /description must be a string/],
      ['{"name":"x","extentSize":268435456}', /unknown field 'extentSize'; a profile takes "name", "replicas"\?, "extentBytes"\?, "description"\?/],
      ['{"name":"x","iopsMax":1000}', /iopsMax cannot be set: IOPS limits are not enforced/],
      ['{"name":"x","bandwidthBytesPerSecondMax":1000}', /bandwidthBytesPerSecondMax cannot be set/],
      ['{"name":"x","placement":"spread-nodes"}', /placement cannot be set/],
      ['{"name":"x","filesystem":"xfs"}', /filesystem cannot be set/],
      ['{"name":"x","constructor":1}', /^unknown field 'constructor'; a profile takes/],
      ['{"name":"x","toString":1}', /^unknown field 'toString'; a profile takes/],
      ['{"name":"a\\ud800b"}', /^name must be valid Unicode text \(it holds a lone surrogate\)$/],
      ['{"name":"x","description":"a\\udc00"}', /^description must be valid Unicode text/],
      [`{"name":"${'n'.repeat(100_000)}"}`, /^name is longer than 63 bytes$/],
      [`{"name":"x","description":"${'d'.repeat(257)}"}`, /^description is longer than 256 bytes$/],
    ];
    for (const [body, message] of cases) {
      const response = await post(body);
      t.equal(response.status, 400, `status for ${JSON.stringify(body)}`);
      t.match(response.body, { error: { code: 'CAIRN_INVALID_ARGUMENT', message } }, `message for ${JSON.stringify(body)}`);
    }
    t.equal(service.profileRequests.length, before, 'no malformed body reached the service');
    const malformed = await rawRequest(socketPath, 'DELETE', '/v1/profiles/%ZZ');
    t.equal(malformed.status, 400, 'a malformed %-escape in the path is the client\'s mistake');
    t.match(JSON.parse(malformed.body), { error: { code: 'CAIRN_INVALID_ARGUMENT', message: /'%ZZ' has a malformed %-escape/ } });
    t.equal((await rawRequest(socketPath, 'PUT', '/v1/profiles/x')).status, 405);
    t.equal((await rawRequest(socketPath, 'DELETE', '/v1/profiles')).status, 405);
  });

  t.test('a body larger than 1 MiB is refused with 413 before it is buffered', async (t) => {
    const big = 'x'.repeat(1024 * 1024 + 1);
    const response = await rawRequest(socketPath, 'POST', '/v1/volumes', big, { 'content-length': big.length });
    t.equal(response.status, 413);
  });

  t.test('events stream over WebSocket', async (t) => {
    const ws = new WebSocket('ws+unix://' + socketPath + ':/v1/events');
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const received = new Promise<ApiEvent>((resolve) => ws.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as ApiEvent)));
    await client.createVolume({ name: 'evented', sizeBytes: 4096 });
    const event = await received;
    t.equal(event.type, 'volume.created');
    t.match(event, { volume: { name: 'evented' } });
    ws.close();
  });
});

t.test('a TCP endpoint requires the bearer token', async (t) => {
  const server = new ApiServer(new FakeService(), { token: 's3cret' });
  await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  t.teardown(() => server.close());
  const port = server.address()?.port ?? 0;
  t.ok(port > 0);
  const anonymous = new ApiClient({ endpoint: { kind: 'tcp', host: '127.0.0.1', port } });
  const refused: unknown = await anonymous.status().catch((error: unknown) => error);
  t.ok(refused instanceof ApiError);
  t.match(refused, { status: 401, message: /token/ });
  const wrong = new ApiClient({ endpoint: { kind: 'tcp', host: '127.0.0.1', port }, token: 's3creT' });
  t.match(await wrong.status().catch((error: unknown) => error), { status: 401 });
  const right = new ApiClient({ endpoint: { kind: 'tcp', host: '127.0.0.1', port }, token: 's3cret' });
  t.equal((await right.status()).nodeName, 'n');
});

t.test('a client names the endpoint and the fix when no daemon runs', async (t) => {
  const client = new ApiClient({ endpoint: { kind: 'unix', path: join(tmpdir(), 'cairn-no-such.sock') } });
  const error: unknown = await client.status().catch((caught: unknown) => caught);
  t.ok(error instanceof ApiError);
  t.match(error, { code: 'CAIRN_UNAVAILABLE', message: /is it running\?/ });
});
