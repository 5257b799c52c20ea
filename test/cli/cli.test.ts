// Goal: every `cairn` command works against a real daemon, prints a readable table or exact JSON,
// and every failure prints one line naming the problem and the fix, with the documented exit code
// (1 daemon refused, 2 usage, 3 daemon unreachable). Method: bin/cairn as a child process.
import t from 'tap';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { cairnPath, startDaemon } from '../helpers/daemon';
import { runTool } from '../helpers/tools';
import type { StatusView, VolumeView } from '../../src/api/types';

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
    t.match(human.stdout, /^busy poll\s+up to 200 us per idle period, now \d+ us; \d+ spin\(s\).*, \d+\.\d s of CPU spent spinning$/m);
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

t.test('an unreachable daemon exits 3 and says how to start one', async (t) => {
  const result = await runTool(process.execPath, [cairnPath, '--api', `unix:${join(tmpdir(), 'cairn-nowhere.sock')}`, 'status']);
  t.equal(result.code, 3);
  t.match(result.stderr, /^cairn: cannot reach cairnd at unix:.*is it running\? Start it with 'systemctl start cairnd' or 'npm start'/);
  const bad = await runTool(process.execPath, [cairnPath, '--api', 'ftp://x', 'status']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /expected unix:PATH or http:\/\/HOST:PORT/);
});
