/**
 * Goal: on a kernel without nbd (this host's), `cairn volume attach` fails with the clear
 * message and changes nothing: no record, no open handle (the volume stays deletable), no device;
 * the attach and detach routes validate their bodies; detach of a volume that is not attached
 * is not an error.
 *
 * Method: a real cairnd (test/helpers/daemon.ts) and the real `cairn` CLI and API client. The
 * test asserts the host really lacks nbd, so it cannot pass vacuously on a host that has it.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { cairnPath, startDaemon } from '../helpers/daemon';
import { runTool } from '../helpers/tools';

const noDriver = 'this kernel has no nbd driver: load it with `modprobe nbd`';

function post(socketPath: string, path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => { text += chunk.toString(); });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

void t.test('attach on a kernel without nbd fails with the modprobe message and changes nothing', async (t) => {
  t.notOk(existsSync('/sys/module/nbd') || existsSync('/dev/nbd0'), 'this host has no nbd driver (the premise of this test)');
  const daemon = await startDaemon(t);
  await daemon.api.createVolume({ name: 'v', sizeBytes: 64 * 1024 * 1024 });
  const records = join(daemon.dataDir, 'attachments.json');

  const cli = await runTool(process.execPath, [cairnPath, '--api', `unix:${daemon.apiSocket}`, 'volume', 'attach', 'v']);
  t.equal(cli.code, 1, 'the CLI exits 1');
  t.equal(cli.stdout, '', 'no device printed');
  t.equal(cli.stderr.trim(), `cairn: ${noDriver}`);
  for (const method of ['netlink', 'ioctl']) {
    await t.rejects(daemon.api.attachVolume('v', { method: method as 'netlink' | 'ioctl', connections: 2 }),
      { code: 'CAIRN_PLATFORM', status: 501, message: new RegExp(noDriver.replace(/[`.*+?^${}()|[\]\\]/g, '\\$&')) });
  }

  t.notOk(existsSync(records), 'no attachment record was written');
  const volume = await daemon.api.getVolume('v');
  t.same(volume.attachments, [], 'not attached');
  t.equal(volume.connections, 0, 'no export handle left open');
  const status = await daemon.api.status();
  t.equal(status.nbd.connections, 0);
  t.same(await daemon.api.detachVolume('v'), { detached: false, device: '' }, 'detach of a volume not attached is not an error');
  const detach = await runTool(process.execPath, [cairnPath, '--api', `unix:${daemon.apiSocket}`, 'volume', 'detach', 'v']);
  t.equal(detach.stdout.trim(), "volume 'v' was not attached");
  await daemon.api.deleteVolume('v');
  t.same(await daemon.api.listVolumes(), [], 'the volume could be deleted: nothing held it');
  t.match(daemon.log, /cairnd started .*attached=0/);
});

void t.test('the attach and detach routes validate their bodies', async (t) => {
  const daemon = await startDaemon(t);
  await daemon.api.createVolume({ name: 'v', sizeBytes: 64 * 1024 * 1024 });
  const cases: Array<[string, string, RegExp]> = [
    ['/v1/volumes/v/attach', '[]', /expected a JSON object/],
    ['/v1/volumes/v/attach', '{"connections": -1}', /connections must be a non-negative integer/],
    ['/v1/volumes/v/attach', '{"connections": 1.5}', /connections must be a non-negative integer/],
    ['/v1/volumes/v/attach', '{"readOnly": "yes"}', /readOnly must be a boolean/],
    ['/v1/volumes/v/attach', '{"method": "nbd-client"}', /method must be auto, netlink or ioctl/],
    ['/v1/volumes/v/attach', '{"ioTimeoutSeconds": "10"}', /ioTimeoutSeconds must be a non-negative integer/],
    ['/v1/volumes/v/detach', '{"force": 1}', /force must be a boolean/],
    ['/v1/volumes/v/detach', '"x"', /expected a JSON object/],
  ];
  for (const [path, body, message] of cases) {
    const response = await post(daemon.apiSocket, path, body);
    t.equal(response.status, 400, `${path} ${body}: 400`);
    t.match(response.body, message);
  }
  const unknown = await post(daemon.apiSocket, '/v1/volumes/nope/attach', '{}');
  t.equal(unknown.status, 404, 'an unknown volume is 404');
  const usage = await runTool(process.execPath, [cairnPath, '--api', `unix:${daemon.apiSocket}`, 'volume', 'attach', 'v', '--connections', 'many']);
  t.equal(usage.code, 2, 'a bad flag is a usage error');
  t.match(usage.stderr, /--connections must be a whole number/);
});
