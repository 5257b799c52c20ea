// Goal: the single-node metadata log keeps the MetaLog contract: proposals are applied in call
// order with consecutive indexes, durably (fsync) before they resolve, grouped into batches of at
// most batchMax; refused commands resolve with an error outcome; unencodable ones reject without
// taking an index; the queue is bounded (CAIRN_UNAVAILABLE, retryable); close drains; a failed
// write fails everything in flight and after it.
// Method: a real LevelDB in a temporary directory behind a KvStore wrapper that records batches
// and can fail one; proposals fired without awaiting to fill the queue.
import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SingleNodeLog } from '../../src/control/single-node-log';
import { volumeOf } from '../../src/meta/results';
import type { Command, CommandBody } from '../../src/meta/types';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { MapStore } from '../../src/store/map-store';
import { CairnError } from '../../src/errors/cairn-error';
import { GiB } from '../../src/util/units';
import { rejectsCode } from '../meta/helpers/errors';
import { workloadCommand } from '../meta/helpers/workload';
import { InstrumentedKvStore } from '../store/helpers/instrumented-kv-store';

async function setup(t: Test, options: ConstructorParameters<typeof SingleNodeLog>[1] = {}): Promise<{ path: string; level: LevelKvStore; kv: InstrumentedKvStore; log: SingleNodeLog }> {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-log-'));
  const path = join(directory, 'db');
  const level = await LevelKvStore.open(path);
  t.teardown(async () => {
    await level.close();
    await rm(directory, { recursive: true, force: true });
  });
  const kv = new InstrumentedKvStore(level);
  const log = new SingleNodeLog(await MapStore.open(kv), options);
  return { path, level, kv, log };
}

let requestCount = 0;
function command(body: CommandBody): Command {
  return { timestampMs: 1_700_000_000_000, requestId: `log-test-${++requestCount}`, body };
}

const singleNode: CommandBody[] = [
  { kind: 'registerNode', nodeId: 'n1', name: 'host-1', addresses: ['127.0.0.1:7400'], labels: [], failureDomain: '' },
  { kind: 'addDrive', driveId: 'd1', nodeId: 'n1', path: '/srv/cairn', capacityBytes: 100 * GiB },
];

void t.test('a proposal resolves once applied and durable, with its result', async (t) => {
  const { path, level, kv, log } = await setup(t);
  for (const body of singleNode) await log.propose(command(body));
  const result = await log.propose(command({ kind: 'createVolume', name: 'db', sizeBytes: 10 * GiB, profile: '', readOnly: false, placementSeed: 3 }));
  const volume = volumeOf(result);
  t.equal(result.index, 3);
  t.equal(log.appliedIndex, 3);
  t.equal(log.map.getVolume('db'), volume, 'the map view sees it at once');
  t.ok(kv.batches.every((batch) => batch.sync), 'every batch was written with fsync');
  await log.close();
  await level.close();
  const reopened = await LevelKvStore.open(path);
  try {
    t.same((await MapStore.open(reopened)).map.getVolume('db'), volume, 'it is on disk');
  } finally {
    await reopened.close();
  }
});

void t.test('concurrent proposals apply in call order, with consecutive indexes, grouped into few batches', async (t) => {
  const { kv, log } = await setup(t, { batchMax: 16 });
  const proposals = Array.from({ length: 100 }, (_, i) => log.propose(workloadCommand(4, i + 1)));
  const results = await Promise.all(proposals);
  t.equal(log.appliedIndex, 100);
  // Call i got index i + 1; a retried request id answers with the index that first applied it.
  const misplaced = results.filter((result, i) => (result.deduplicated ? result.index >= i + 1 : result.index !== i + 1));
  t.same(misplaced, [], 'indexes follow call order');
  t.ok(results.some((result) => result.deduplicated), 'the workload retried some request ids');
  t.ok(kv.batches.length < 100 && kv.batches.length >= 100 / 16, `${kv.batches.length} batches for 100 proposals`);
  t.ok(kv.batches.every((batch) => batch.operations >= 1), 'no empty batch');
  t.equal(log.queuedCount, 0);
});

void t.test('a refused command resolves with its error and still takes an index; an unencodable one rejects', async (t) => {
  const { log } = await setup(t);
  const refused = await log.propose(command({ kind: 'deleteVolume', volume: 'ghost' }));
  t.equal(refused.index, 1);
  t.equal(refused.outcome.kind, 'error');
  t.throws(() => volumeOf(refused), new CairnError('CAIRN_VOLUME_NOT_FOUND', "volume 'ghost' does not exist; 'cairn volume list' shows the volumes"));
  await rejectsCode(t, () => log.propose(command({ kind: 'createVolume', name: 'db', sizeBytes: 1.5, profile: '', readOnly: false, placementSeed: 0 })),
    'CAIRN_INVALID_ARGUMENT', 'sizeBytes must be a whole number from 0 to 2^53 - 1, not 1.5');
  t.equal(log.appliedIndex, 1, 'the unencodable command took no index');
  t.equal((await log.propose(command({ kind: 'noOp' }))).index, 2);
});

void t.test('past queuedMax waiting proposals, propose rejects at once with a retryable CAIRN_UNAVAILABLE', async (t) => {
  const { log } = await setup(t, { queuedMax: 4 });
  // The first proposal goes straight into the batch being written; the next four wait.
  const accepted = Array.from({ length: 5 }, () => log.propose(command({ kind: 'noOp' })));
  t.equal(log.queuedCount, 4);
  const refused = log.propose(command({ kind: 'noOp' }));
  await rejectsCode(t, () => refused, 'CAIRN_UNAVAILABLE', 'the metadata log has 4 proposals waiting; retry later with the same request id');
  await refused.catch((error: unknown) => t.equal((error as CairnError).retryable, true));
  t.same((await Promise.all(accepted)).map((result) => result.index), [1, 2, 3, 4, 5]);
});

void t.test('close applies what was accepted, refuses what comes after', async (t) => {
  const { log } = await setup(t);
  const accepted = [log.propose(command({ kind: 'noOp' })), log.propose(command({ kind: 'noOp' }))];
  const closed = log.close();
  await rejectsCode(t, () => log.propose(command({ kind: 'noOp' })), 'CAIRN_SHUTTING_DOWN', 'the metadata log is closing; no new proposals are accepted');
  await closed;
  t.same((await Promise.all(accepted)).map((result) => result.index), [1, 2]);
  await rejectsCode(t, () => log.propose(command({ kind: 'noOp' })), 'CAIRN_CLOSED', 'the metadata log is closed');
  await log.close();
  t.pass('closing twice is fine');
});

void t.test('a failed write rejects the batch in flight and everything queued, then every later proposal', async (t) => {
  const { path, level, kv, log } = await setup(t);
  await log.propose(command({ kind: 'noOp' }));
  kv.failNextBatch = true;
  const inFlight = log.propose(command({ kind: 'noOp' }));
  const queued = log.propose(command({ kind: 'noOp' }));
  await rejectsCode(t, () => inFlight, 'CAIRN_IO', 'disk on fire');
  await rejectsCode(t, () => queued, 'CAIRN_IO', 'the metadata log failed before this proposal was applied: disk on fire');
  await rejectsCode(t, () => log.propose(command({ kind: 'noOp' })), 'CAIRN_IO', 'the metadata log failed and must be restarted: disk on fire');
  await log.close();
  await level.close();
  const reopened = await LevelKvStore.open(path);
  try {
    t.equal((await SingleNodeLog.open(reopened)).appliedIndex, 1, 'after a restart the log continues from the last good write');
  } finally {
    await reopened.close();
  }
});
