// Goal: the committed generated code is exactly what src/wire/cairn.proto generates (the same check
// as `npm run verify:proto`, without touching the tree), and the typed wrapper loads it and
// encodes/decodes real messages, including 64-bit fields.
// Method: run gen-proto.sh into a temporary directory and compare bytes; round-trip messages.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pb } from '../../src/wire/messages';

const repositoryRoot = join(__dirname, '..', '..');
const generatedDirectory = join(repositoryRoot, 'src', 'wire', 'generated');

void t.test('the committed generated code matches cairn.proto', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-proto-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  await promisify(execFile)('sh', [join(repositoryRoot, 'src', 'wire', 'gen-proto.sh'), directory], { cwd: repositoryRoot });
  const committed = (await readdir(generatedDirectory)).sort();
  t.same((await readdir(directory)).sort(), committed, 'the same files');
  t.same(committed, ['cairn-static.ts', 'cairn.d.ts']);
  for (const name of committed) {
    const fresh = await readFile(join(directory, name));
    const stored = await readFile(join(generatedDirectory, name));
    t.ok(fresh.equals(stored), `${name} is up to date (run 'npm run gen:proto' if not)`);
  }
});

void t.test('the generated classes encode and decode, 64-bit fields included', async (t) => {
  const bytes = pb.VolumeRecord.encode({ id: 'vol:1', name: 'db', sizeBytes: 2 ** 53 - 1, replicas: 3, state: pb.VolumeState.VOLUME_STATE_READY }).finish();
  const volume = pb.VolumeRecord.decode(bytes);
  t.equal(volume.name, 'db');
  t.equal(volume.replicas, 3);
  t.equal(volume.state, pb.VolumeState.VOLUME_STATE_READY);
  t.equal(String(volume.sizeBytes), String(2 ** 53 - 1));
  const command = pb.Command.decode(pb.Command.encode({ requestId: 'r', deleteVolume: { volume: 'db' } }).finish());
  t.equal(command.kind, 'deleteVolume');
  t.equal(command.deleteVolume?.volume, 'db');
});
