// Goal: every `cairn` command works against a real daemon, prints a readable table or exact JSON,
// and every failure prints one line naming the problem and the fix, with the documented exit code
// (1 daemon refused, 2 usage, 3 daemon unreachable). Method: bin/cairn as a child process.
import t from 'tap';
import WebSocket from 'ws';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { cairnPath, startDaemon } from '../helpers/daemon';
import { runTool } from '../helpers/tools';
import type { ApiEvent, ProfileView, StatusView, VolumeView } from '../../src/api/types';

t.test('cairn commands against a running daemon', async (t) => {
  const daemon = await startDaemon(t, { tcp: true });
  const cairn = (...args: string[]) => runTool(process.execPath, [cairnPath, '--api', `unix:${daemon.apiSocket}`, ...args], { timeoutMs: 30_000 });

  t.test('volume create prints the volume and its NBD URIs', async (t) => {
    const result = await cairn('volume', 'create', 'db', '--size', '10GiB');
    t.equal(result.code, 0, result.stderr);
    t.match(result.stdout, /volume 'db' ready: 10 GiB, 1 replica\(s\)/);
    t.match(result.stdout, new RegExp(`nbd://127\\.0\\.0\\.1:${daemon.tcpPort}/db`));
    t.match(result.stdout, /nbd\+unix:\/\/\/db\?socket=/);
  });

  t.test('volume create --json prints the API view', async (t) => {
    const result = await cairn('--json', 'volume', 'create', 'logs', '--size', '512MiB');
    t.equal(result.code, 0, result.stderr);
    const volume = JSON.parse(result.stdout) as VolumeView;
    t.match(volume, { name: 'logs', sizeBytes: 512 * 1024 * 1024, replicas: 1, profile: 'default', state: 'ready', allocatedBytes: 0 });
  });

  t.test('volume list prints a table and --json a list', async (t) => {
    const table = await cairn('volume', 'list');
    t.equal(table.code, 0);
    t.match(table.stdout, /^NAME\s+SIZE\s+ALLOCATED\s+REPLICAS\s+PROFILE\s+STATE\s+CONNECTIONS$/m);
    t.match(table.stdout, /^db\s+10 GiB\s+0 B\s+1\s+default\s+ready\s+0$/m);
    t.match(table.stdout, /^logs\s+512 MiB/m);
    const json = JSON.parse((await cairn('--json', 'volume', 'ls')).stdout) as VolumeView[];
    t.same(json.map((v) => v.name).sort(), ['db', 'logs']);
  });

  t.test('volume inspect shows one volume in detail', async (t) => {
    const result = await cairn('volume', 'inspect', 'db');
    t.equal(result.code, 0);
    t.match(result.stdout, /^size\s+10 GiB \(10737418240 bytes\)$/m);
    t.match(result.stdout, /^extent size\s+64 MiB$/m);
    t.match(result.stdout, /^id\s+vol:\d+$/m);
  });

  t.test('volume resize grows and refuses to shrink', async (t) => {
    const grown = await cairn('volume', 'resize', 'db', '--size', '20GiB');
    t.equal(grown.code, 0, grown.stderr);
    t.match(grown.stdout, /volume 'db' is now 20 GiB/);
    const shrink = await cairn('volume', 'resize', 'db', '--size', '1GiB');
    t.equal(shrink.code, 1);
    t.match(shrink.stderr, /^cairn: .*only grow/m);
  });

  t.test('creating an existing name with another size names the conflict and the fix', async (t) => {
    const again = await cairn('volume', 'create', 'db', '--size', '5GiB');
    t.equal(again.code, 1);
    t.match(again.stderr, /already exists .*choose another name/);
    const same = await cairn('volume', 'create', 'logs', '--size', '512MiB');
    t.equal(same.code, 0, 'the same name and size again is idempotent');
  });

  t.test('volume delete removes a volume; unknown names say how to list', async (t) => {
    const deleted = await cairn('volume', 'delete', 'logs');
    t.equal(deleted.code, 0);
    t.match(deleted.stdout, /volume 'logs' deleted/);
    const missing = await cairn('volume', 'inspect', 'logs');
    t.equal(missing.code, 1);
    t.match(missing.stderr, /no volume named 'logs'; list volumes with: cairn volume list/);
    const missingDelete = await cairn('volume', 'rm', 'logs');
    t.equal(missingDelete.code, 1);
  });

  t.test('status shows the node, the pool and the listeners', async (t) => {
    const human = await cairn('status');
    t.equal(human.code, 0);
    t.match(human.stdout, /^node\s+test \(cairn /m);
    t.match(human.stdout, /^volumes\s+1 \(20 GiB provisioned/m);
    t.match(human.stdout, new RegExp(`127\\.0\\.0\\.1:${daemon.tcpPort}`));
    t.match(human.stdout, /^busy poll\s+up to 200 us per idle period, now \d+ us; \d+ spin\(s\).*, \d+ stopped for a busy CPU, \d+\.\d s spent spinning$/m);
    const json = JSON.parse((await cairn('--json', 'status')).stdout) as StatusView;
    t.match(json.nbd.busyPoll, { maxMicros: 200, windowMicros: Number, spins: Number, hits: Number, timeouts: Number, spinSeconds: Number });
    t.equal(json.volumes, 1);
    t.ok(json.capacityBytes > 0);
    t.equal(json.metadata.mode, 'single-node');
  });

  t.test('bad sizes and invalid names are usage errors', async (t) => {
    const size = await cairn('volume', 'create', 'x', '--size', 'lots');
    t.equal(size.code, 2);
    t.match(size.stderr, /'lots' is not a size; use a number with a binary unit/);
    const name = await cairn('volume', 'create', 'Bad Name', '--size', '1GiB');
    t.equal(name.code, 1);
    t.match(name.stderr, /name/i);
    const missingSize = await cairn('volume', 'create', 'x');
    t.equal(missingSize.code, 2);
    t.match(missingSize.stderr, /--size/);
  });

  t.test('CAIRN_API finds the daemon when --api is absent', async (t) => {
    const result = await runTool(process.execPath, [cairnPath, 'volume', 'list'], { env: { ...process.env, CAIRN_API: `unix:${daemon.apiSocket}` } });
    t.equal(result.code, 0);
    t.match(result.stdout, /^db\s/m);
  });
});

t.test('profiles: create, use, list and delete', async (t) => {
  const daemon = await startDaemon(t);
  const cairn = (...args: string[]) => runTool(process.execPath, [cairnPath, '--api', `unix:${daemon.apiSocket}`, ...args], { timeoutMs: 30_000 });
  // The daemon's event stream: profile.created and profile.deleted, once per change.
  const events: ApiEvent[] = [];
  const ws = new WebSocket(`ws+unix://${daemon.apiSocket}:/v1/events`);
  t.teardown(() => ws.close());
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  ws.on('message', (data: Buffer) => events.push(JSON.parse(data.toString()) as ApiEvent));
  const profileNames = async (): Promise<string[]> => {
    const listed = await cairn('--json', 'profile', 'list');
    if (listed.code !== 0) throw new Error(`cairn profile list exited ${listed.code}: ${listed.stderr}`);
    return (JSON.parse(listed.stdout) as ProfileView[]).map((p) => p.name);
  };

  t.test('profile create makes a profile with 256 MiB extents and says how to use it', async (t) => {
    const result = await cairn('profile', 'create', 'fast', '--extent-size', '256MiB', '--description', 'for databases');
    t.equal(result.code, 0, result.stderr);
    t.match(result.stdout, /^profile 'fast' ready: 1 replica\(s\), 256 MiB extents$/m);
    t.match(result.stdout, /cairn volume create NAME --size 10GiB --profile fast/);
  });

  t.test('the same profile again is idempotent; other properties name the conflict and the fix', async (t) => {
    const same = await cairn('--json', 'profile', 'create', 'fast', '--extent-size', '256MiB', '--description', 'for databases');
    t.equal(same.code, 0, same.stderr);
    t.same(JSON.parse(same.stdout), { name: 'fast', replicas: 1, extentBytes: 256 * 1024 * 1024, description: 'for databases', volumes: 0 });
    const other = await cairn('profile', 'create', 'fast', '--extent-size', '128MiB', '--description', 'for databases');
    t.equal(other.code, 1);
    t.match(other.stderr, /^cairn: profile 'fast' already exists with other properties \(extent size 256 MiB, asked 128 MiB\); choose another name or delete it first$/m);
    const builtIn = await cairn('profile', 'create', 'default');
    t.equal(builtIn.code, 1);
    t.match(builtIn.stderr, /^cairn: profile 'default' is built in; choose another name$/m);
  });

  t.test('volume create --profile uses the profile\'s extent size', async (t) => {
    const created = await cairn('volume', 'create', 'db', '--size', '10GiB', '--profile', 'fast');
    t.equal(created.code, 0, created.stderr);
    t.match(created.stdout, /volume 'db' ready: 10 GiB, 1 replica\(s\)/);
    const inspected = await cairn('volume', 'inspect', 'db');
    t.equal(inspected.code, 0, inspected.stderr);
    t.match(inspected.stdout, /^extent size\s+256 MiB$/m);
    t.match(inspected.stdout, /^profile\s+fast$/m);
    const unknown = await cairn('volume', 'create', 'other', '--size', '1GiB', '--profile', 'nope');
    t.equal(unknown.code, 1);
    t.match(unknown.stderr, /^cairn: profile 'nope' does not exist; 'cairn profile list' shows the profiles$/m);
  });

  t.test('profile list prints a table with the volumes using each, and --json the API view', async (t) => {
    const table = await cairn('profile', 'list');
    t.equal(table.code, 0, table.stderr);
    t.match(table.stdout, /^NAME\s+REPLICAS\s+EXTENT SIZE\s+VOLUMES\s+DESCRIPTION$/m);
    t.match(table.stdout, /^default\s+1\s+64 MiB\s+0\s+built in/m);
    t.match(table.stdout, /^fast\s+1\s+256 MiB\s+1\s+for databases$/m);
    const json = await cairn('--json', 'profile', 'ls');
    t.equal(json.code, 0, json.stderr);
    t.match(JSON.parse(json.stdout), [
      { name: 'default', replicas: 1, extentBytes: 64 * 1024 * 1024, volumes: 0 },
      { name: 'fast', replicas: 1, extentBytes: 256 * 1024 * 1024, description: 'for databases', volumes: 1 },
    ]);
  });

  t.test('a profile in use cannot be deleted; once its volume is gone it can', async (t) => {
    const inUse = await cairn('profile', 'delete', 'fast');
    t.equal(inUse.code, 1);
    t.match(inUse.stderr, /^cairn: profile 'fast' is used by 1 volume \(db\); delete it first \(cairn volume delete db\)$/m);
    t.same(await profileNames(), ['default', 'fast']);
    t.equal((await cairn('volume', 'delete', 'db')).code, 0);
    const deleted = await cairn('profile', 'rm', 'fast');
    t.equal(deleted.code, 0, deleted.stderr);
    t.match(deleted.stdout, /^profile 'fast' deleted$/m);
    t.same(await profileNames(), ['default']);
    const profileEvents = events.filter((event) => event.type.startsWith('profile.'));
    t.match(profileEvents, [{ type: 'profile.created', profile: { name: 'fast', extentBytes: 256 * 1024 * 1024 } }, { type: 'profile.deleted', name: 'fast' }]);
    t.equal(profileEvents.length, 2, 'the idempotent repeat and the refused requests emitted nothing');
  });

  t.test('the built-in profile and unknown profiles cannot be deleted, with clear errors', async (t) => {
    const builtIn = await cairn('profile', 'delete', 'default');
    t.equal(builtIn.code, 1);
    t.match(builtIn.stderr, /^cairn: profile 'default' is built in and cannot be deleted$/m);
    const unknown = await cairn('profile', 'delete', 'fast');
    t.equal(unknown.code, 1);
    t.match(unknown.stderr, /^cairn: profile 'fast' does not exist; 'cairn profile list' shows the profiles$/m);
    const empty = await cairn('profile', 'delete', '');
    t.equal(empty.code, 2, 'an empty name is a usage error, not a request for the collection');
    t.match(empty.stderr, /^cairn: the profile name is empty; 'cairn profile list' shows the names$/m);
    const emptyVolume = await cairn('volume', 'delete', '');
    t.equal(emptyVolume.code, 2);
    t.match(emptyVolume.stderr, /^cairn: the volume name is empty; 'cairn volume list' shows the names$/m);
  });

  t.test('bad extent sizes and replica counts are refused: usage errors exit 2, limits of the daemon exit 1', async (t) => {
    const notPowerOfTwo = await cairn('profile', 'create', 'odd', '--extent-size', '3MiB');
    t.equal(notPowerOfTwo.code, 2);
    t.match(notPowerOfTwo.stderr, /^cairn: --extent-size 3MiB is not a power of two; use e\.g\. 64MiB, 256MiB or 1GiB$/m);
    const unparsable = await cairn('profile', 'create', 'odd', '--extent-size', 'lots');
    t.equal(unparsable.code, 2);
    t.match(unparsable.stderr, /^cairn: --extent-size 'lots' is not a size; use a power of two with a binary unit/m);
    const tooLarge = await cairn('profile', 'create', 'odd', '--extent-size', '2GiB');
    t.equal(tooLarge.code, 1);
    t.match(tooLarge.stderr, /^cairn: extent size 2 GiB \(2147483648 bytes\) is not valid: use a power of two from 1 MiB to 1 GiB$/m);
    const tooSmall = await cairn('profile', 'create', 'odd', '--extent-size', '512KiB');
    t.equal(tooSmall.code, 1);
    t.match(tooSmall.stderr, /power of two from 1 MiB to 1 GiB/);
    for (const replicas of ['0', 'two', '1.5', '-1']) {
      const bad = await cairn('profile', 'create', 'odd', `--replicas=${replicas}`);
      t.equal(bad.code, 2, `--replicas ${replicas}`);
      t.match(bad.stderr, new RegExp(`^cairn: --replicas must be a whole number, at least 1, got '${replicas.replace('.', '\\.')}'$`, 'm'));
    }
    const tooMany = await cairn('profile', 'create', 'odd', '--replicas', '9');
    t.equal(tooMany.code, 1);
    t.match(tooMany.stderr, /^cairn: replicas must be from 1 to 5, not 9$/m);
    const badName = await cairn('profile', 'create', 'Bad Name');
    t.equal(badName.code, 1);
    t.match(badName.stderr, /^cairn: profile name 'Bad Name' is not valid/m);
    t.same(await profileNames(), ['default'], 'no refused request created a profile');
  });
});

t.test('an unreachable daemon exits 3 and says how to start one', async (t) => {
  const result = await runTool(process.execPath, [cairnPath, '--api', `unix:${join(tmpdir(), 'cairn-nowhere.sock')}`, 'status']);
  t.equal(result.code, 3);
  t.match(result.stderr, /^cairn: cannot reach cairnd at unix:.*is it running\? Start it with 'systemctl start cairnd' or 'npm start'/);
  const bad = await runTool(process.execPath, [cairnPath, '--api', 'ftp://x', 'status']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /expected unix:PATH or http:\/\/HOST:PORT/);
});
