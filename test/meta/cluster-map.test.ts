// Goal: the cluster map applies every command as documented — results, every refusal with its
// code and message, idempotent repeats, request-id deduplication, and determinism (the same
// commands give byte-identical snapshots), and it refuses inconsistent stored state.
// Method: apply commands through a small harness on a fresh ClusterMap and inspect results,
// queries and snapshots; for restore, corrupt a valid MapState one field at a time.
import t from 'tap';
import { AssertionError } from '../../src/util/assert';
import { ClusterMap, defaultProfile } from '../../src/meta/cluster-map';
import { outcomeOf, driveOf, nodeOf, profileOf, volumeOf } from '../../src/meta/results';
import type { MapState } from '../../src/meta/types';
import { drivesPerNodeMax, mapExtentsMax, nodesMax, profilesMax, requestIdsRememberedMax, volumeExtentsMax, volumesMax } from '../../src/limits';
import { GiB, MiB, PiB, TiB } from '../../src/util/units';
import { throwsCode } from './helpers/errors';
import { MapHarness, expectError } from './helpers/map-harness';
import { workloadCommand } from './helpers/workload';

/** A harness with three nodes in three domains, one 100 GiB drive each. */
function threeNodes(): MapHarness {
  const h = new MapHarness();
  for (const [node, domain] of [['n1', 'a'], ['n2', 'b'], ['n3', 'c']] as const) {
    nodeOf(h.node(node, domain));
    driveOf(h.drive(`d${node.slice(1)}`, node));
  }
  return h;
}

void t.test('registerNode', async (t) => {
  await t.test('registers a node as up, stamped with the command time, labels sorted', async (t) => {
    const h = new MapHarness();
    const result = h.apply(
      { kind: 'registerNode', nodeId: 'n1', name: 'host-1', addresses: ['10.0.0.1:7400'], labels: [{ key: 'zone', value: 'a' }, { key: 'rack', value: '7' }], failureDomain: 'rack-7' },
      'r1',
      42_000,
    );
    const node = nodeOf(result);
    t.same(node, { id: 'n1', name: 'host-1', addresses: ['10.0.0.1:7400'], labels: [{ key: 'rack', value: '7' }, { key: 'zone', value: 'a' }], failureDomain: 'rack-7', state: 'up', joinedAtMs: 42_000 });
    t.equal(result.changed, true);
    t.equal(result.index, 1);
    t.same(h.map.getNode('n1'), node);
    t.same(h.map.listNodes().map((n) => n.id), ['n1']);
    t.ok(Object.isFrozen(node), 'records are frozen');
  });

  await t.test('re-registering updates addresses and keeps join time; an identical one changes nothing', async (t) => {
    const h = new MapHarness();
    const first = nodeOf(h.node('n1'));
    const same = h.node('n1');
    t.equal(same.changed, false);
    t.equal(nodeOf(same), first);
    const moved = h.apply({ kind: 'registerNode', nodeId: 'n1', name: 'renamed', addresses: ['10.9.9.9:1'], labels: [], failureDomain: 'z' });
    t.equal(moved.changed, true);
    t.same(nodeOf(moved), { ...first, name: 'renamed', addresses: ['10.9.9.9:1'], failureDomain: 'z' });
    nodeOf(h.node('n2', '', 'host-n1'));
    t.pass('the old name is free again after a rename');
  });

  await t.test('refuses malformed input with a message that says what to use', async (t) => {
    const h = new MapHarness();
    const register = (fields: Partial<{ nodeId: string; name: string; addresses: string[]; labels: Array<{ key: string; value: string }>; failureDomain: string }>) =>
      h.apply({ kind: 'registerNode', nodeId: 'n1', name: 'host', addresses: [], labels: [], failureDomain: '', ...fields });
    expectError(t, register({ nodeId: 'N1' }), 'CAIRN_INVALID_ARGUMENT', "node id 'N1' is not valid: use 1–63 characters from a-z 0-9 . _ -, starting with a letter or digit");
    expectError(t, register({ name: '-host' }), 'CAIRN_INVALID_ARGUMENT', /^node name '-host' is not valid/);
    expectError(t, register({ name: 'a'.repeat(64) }), 'CAIRN_INVALID_ARGUMENT', /is not valid: use 1–63 characters/);
    expectError(t, register({ addresses: ['has space:1'] }), 'CAIRN_INVALID_ARGUMENT', /^address 'has space:1' is not valid/);
    expectError(t, register({ addresses: ['a:1', 'a:1'] }), 'CAIRN_INVALID_ARGUMENT', "address 'a:1' is given twice; give each address once");
    expectError(t, register({ addresses: Array.from({ length: 9 }, (_, i) => `a:${i}`) }), 'CAIRN_INVALID_ARGUMENT', 'a node has at most 8 addresses, not 9');
    expectError(t, register({ labels: [{ key: 'zone', value: 'a' }, { key: 'zone', value: 'b' }] }), 'CAIRN_INVALID_ARGUMENT', "label 'zone' is given twice; give each key once");
    expectError(t, register({ labels: [{ key: '', value: 'a' }] }), 'CAIRN_INVALID_ARGUMENT', /^label key '' is not valid/);
    expectError(t, register({ labels: [{ key: 'zone', value: 'a b' }] }), 'CAIRN_INVALID_ARGUMENT', /^label value 'a b' of 'zone' is not valid/);
    expectError(t, register({ labels: Array.from({ length: 33 }, (_, i) => ({ key: `k${i}`, value: '' })) }), 'CAIRN_INVALID_ARGUMENT', 'a node has at most 32 labels, not 33');
    expectError(t, register({ failureDomain: 'rack:1' }), 'CAIRN_INVALID_ARGUMENT', /^failure domain 'rack:1' is not valid/);
    t.same(h.map.listNodes(), [], 'nothing was registered');
  });

  await t.test('refuses a name another node uses', async (t) => {
    const h = new MapHarness();
    nodeOf(h.node('n1', '', 'shared'));
    expectError(t, h.node('n2', '', 'shared'), 'CAIRN_INVALID_ARGUMENT', "node name 'shared' is already used by node 'n1'; choose another name");
  });
});

void t.test('addDrive', async (t) => {
  await t.test('adds a drive as up with nothing provisioned; re-adding with a new capacity updates it', async (t) => {
    const h = new MapHarness();
    nodeOf(h.node('n1'));
    const drive = driveOf(h.drive('d1', 'n1', 10 * GiB));
    t.same(drive, { id: 'd1', nodeId: 'n1', path: '/srv/d1', capacityBytes: 10 * GiB, state: 'up', addedAtMs: drive.addedAtMs });
    t.same(h.map.driveUsage('d1'), { capacityBytes: 10 * GiB, provisionedBytes: 0 });
    const again = h.drive('d1', 'n1', 10 * GiB);
    t.equal(again.changed, false);
    const grown = h.drive('d1', 'n1', 20 * GiB);
    t.equal(grown.changed, true);
    t.same(driveOf(grown), { ...drive, capacityBytes: 20 * GiB });
    t.same(h.map.poolUsage(), { capacityBytes: 20 * GiB, provisionedBytes: 0 });
    t.equal(h.map.driveUsage('nope'), undefined);
  });

  await t.test('refuses unknown nodes, bad paths, tiny drives and reused ids or paths', async (t) => {
    const h = new MapHarness();
    nodeOf(h.node('n1'));
    nodeOf(h.node('n2'));
    expectError(t, h.drive('d1', 'ghost'), 'CAIRN_INVALID_ARGUMENT', "node 'ghost' is not registered; register the node before adding its drives");
    expectError(t, h.drive('d1', 'n1', GiB, 'relative/path'), 'CAIRN_INVALID_ARGUMENT', /^drive path 'relative\/path' is not valid: give an absolute path/);
    expectError(t, h.drive('d1', 'n1', GiB, '/srv/\u0000x'), 'CAIRN_INVALID_ARGUMENT', /is not valid: give an absolute path/);
    expectError(t, h.drive('d1', 'n1', 4096), 'CAIRN_INVALID_ARGUMENT', 'drive capacity 4096 bytes is not valid: a drive needs at least 1 MiB');
    expectError(t, h.drive('D1', 'n1'), 'CAIRN_INVALID_ARGUMENT', /^drive id 'D1' is not valid/);
    driveOf(h.drive('d1', 'n1'));
    expectError(t, h.drive('d1', 'n2'), 'CAIRN_INVALID_ARGUMENT', "drive 'd1' is already registered on node 'n1' at /srv/d1; every drive needs its own id");
    expectError(t, h.drive('d1', 'n1', GiB, '/srv/other'), 'CAIRN_INVALID_ARGUMENT', /already registered on node 'n1' at \/srv\/d1/);
    expectError(t, h.drive('d9', 'n1', GiB, '/srv/d1'), 'CAIRN_INVALID_ARGUMENT', "node 'n1' already has drive 'd1' at /srv/d1; add each path once");
  });

  await t.test(`refuses more than ${drivesPerNodeMax} drives on one node`, async (t) => {
    const h = new MapHarness();
    nodeOf(h.node('n1'));
    for (let i = 0; i < drivesPerNodeMax; i++) driveOf(h.drive(`d${i}`, 'n1'));
    expectError(t, h.drive('one-more', 'n1'), 'CAIRN_NO_SPACE', `node 'n1' already has ${drivesPerNodeMax} drives, the most a node may have`);
  });
});

void t.test('profiles', async (t) => {
  await t.test("the built-in 'default' profile exists, cannot be created or deleted", async (t) => {
    const h = new MapHarness();
    t.equal(h.map.getProfile('default'), defaultProfile);
    t.same(h.map.listProfiles().map((p) => p.name), ['default']);
    t.equal(defaultProfile.replicas, 1);
    t.equal(defaultProfile.extentBytes, 64 * MiB);
    expectError(t, h.profile('default'), 'CAIRN_PROFILE_EXISTS', "profile 'default' is built in; choose another name");
    expectError(t, h.apply({ kind: 'deleteProfile', name: 'default' }), 'CAIRN_INVALID_ARGUMENT', "profile 'default' is built in and cannot be deleted");
  });

  await t.test('creates a profile; the same again is idempotent, a different one is refused', async (t) => {
    const h = new MapHarness();
    const created = h.profile('fast', { replicas: 2, extentBytes: 32 * MiB, iopsMax: 1000, bandwidthBytesPerSecondMax: 50 * MiB, placement: 'spread-nodes', filesystem: 'xfs', description: 'SSD' });
    const profile = profileOf(created);
    t.same(profile, { name: 'fast', replicas: 2, extentBytes: 32 * MiB, iopsMax: 1000, bandwidthBytesPerSecondMax: 50 * MiB, placement: 'spread-nodes', filesystem: 'xfs', description: 'SSD', createdAtMs: profile.createdAtMs });
    const again = h.profile('fast', { replicas: 2, extentBytes: 32 * MiB, iopsMax: 1000, bandwidthBytesPerSecondMax: 50 * MiB, placement: 'spread-nodes', filesystem: 'xfs', description: 'SSD' });
    t.equal(again.changed, false);
    t.equal(profileOf(again), profile);
    const fast = { replicas: 2, extentBytes: 32 * MiB, iopsMax: 1000, bandwidthBytesPerSecondMax: 50 * MiB, placement: 'spread-nodes', filesystem: 'xfs', description: 'SSD' } as const;
    expectError(t, h.profile('fast', { ...fast, replicas: 3 }), 'CAIRN_PROFILE_EXISTS', "profile 'fast' already exists with other properties (replicas 2, asked 3); choose another name or delete it first");
    expectError(t, h.profile('fast', { ...fast, extentBytes: 64 * MiB, filesystem: 'ext4', description: 'disk' }), 'CAIRN_PROFILE_EXISTS',
      'profile \'fast\' already exists with other properties (extent size 32 MiB, asked 64 MiB; filesystem "xfs", asked "ext4"; description "SSD", asked "disk"); choose another name or delete it first');
    expectError(t, h.profile('fast', { ...fast, iopsMax: 0, bandwidthBytesPerSecondMax: 0, placement: 'spread-domains' }), 'CAIRN_PROFILE_EXISTS',
      "profile 'fast' already exists with other properties (IOPS limit 1000, asked unlimited; bandwidth limit 50 MiB/s, asked unlimited; placement spread-nodes, asked spread-domains); choose another name or delete it first");
    t.same(h.map.listProfiles().map((p) => p.name), ['default', 'fast']);
  });

  await t.test('refuses invalid profile properties', async (t) => {
    const h = new MapHarness();
    expectError(t, h.profile('Bad'), 'CAIRN_INVALID_ARGUMENT', /^profile name 'Bad' is not valid/);
    expectError(t, h.profile('p', { replicas: 0 }), 'CAIRN_INVALID_ARGUMENT', 'replicas must be from 1 to 5, not 0');
    expectError(t, h.profile('p', { replicas: 6 }), 'CAIRN_INVALID_ARGUMENT', 'replicas must be from 1 to 5, not 6');
    expectError(t, h.profile('p', { extentBytes: 3 * MiB }), 'CAIRN_INVALID_ARGUMENT', `extent size 3 MiB (${3 * MiB} bytes) is not valid: use a power of two from 1 MiB to 1 GiB`);
    expectError(t, h.profile('p', { extentBytes: 512 * 1024 }), 'CAIRN_INVALID_ARGUMENT', /is not valid: use a power of two/);
    expectError(t, h.profile('p', { extentBytes: 2 * GiB }), 'CAIRN_INVALID_ARGUMENT', /is not valid: use a power of two/);
    expectError(t, h.profile('p', { iopsMax: -1 }), 'CAIRN_INVALID_ARGUMENT', 'iopsMax must be a whole number, 0 for unlimited, not -1');
    expectError(t, h.profile('p', { bandwidthBytesPerSecondMax: 1.5 }), 'CAIRN_INVALID_ARGUMENT', /^bandwidthBytesPerSecondMax must be a whole number/);
    expectError(t, h.profile('p', { description: 'x'.repeat(257) }), 'CAIRN_INVALID_ARGUMENT', 'description is not valid: use at most 256 bytes without control characters');
    for (const control of ['\u0007', '\u009b', '\u202e', '\u2066']) {
      expectError(t, h.profile('p', { description: `a${control}b` }), 'CAIRN_INVALID_ARGUMENT', /^description is not valid/);
    }
    expectError(t, h.profile('p'.repeat(1000)), 'CAIRN_INVALID_ARGUMENT', /^profile name 'p{80}…' is not valid/);
    t.same(h.map.listProfiles().map((p) => p.name), ['default']);
  });

  await t.test('deleting: unknown profiles and profiles in use are refused', async (t) => {
    const h = threeNodes();
    profileOf(h.profile('two', { replicas: 2 }));
    volumeOf(h.volume('db', GiB, 'two'));
    expectError(t, h.apply({ kind: 'deleteProfile', name: 'nope' }), 'CAIRN_PROFILE_NOT_FOUND', "profile 'nope' does not exist; 'cairn profile list' shows the profiles");
    expectError(t, h.apply({ kind: 'deleteProfile', name: 'two' }), 'CAIRN_PROFILE_IN_USE', "profile 'two' is used by 1 volume (db); delete it first (cairn volume delete db)");
    volumeOf(h.delete('db'));
    const deleted = profileOf(h.apply({ kind: 'deleteProfile', name: 'two' }));
    t.equal(deleted.name, 'two');
    t.equal(h.map.getProfile('two'), undefined);
  });
});

void t.test('createVolume', async (t) => {
  await t.test("places a volume with the 'default' profile on a single node", async (t) => {
    const h = new MapHarness();
    nodeOf(h.node('n1'));
    driveOf(h.drive('d1', 'n1', 100 * GiB));
    const result = h.volume('db', 10 * GiB);
    const volume = volumeOf(result);
    t.same(volume, {
      id: `vol:${result.index}`, name: 'db', sizeBytes: 10 * GiB, extentBytes: 64 * MiB, replicas: 1, profile: 'default', state: 'ready',
      createdAtMs: volume.createdAtMs, ownerNodeId: '', epoch: 0, readOnly: false, placement: 'spread-domains',
    });
    t.equal(h.map.getVolume('db'), volume);
    t.equal(h.map.getVolume(volume.id), volume);
    const extents = h.map.listExtents('db');
    t.equal(extents.length, 160);
    t.same(extents[159], { volumeId: volume.id, index: 159, replicas: [{ nodeId: 'n1', driveId: 'd1' }], inSyncDriveIds: ['d1'] });
    t.same(h.map.extentPlacement(volume.id, 0), extents[0]);
    t.equal(h.map.extentPlacement('db', 160), undefined);
    t.equal(h.map.extentPlacement('nope', 0), undefined);
    t.same(h.map.driveUsage('d1'), { capacityBytes: 100 * GiB, provisionedBytes: 10 * GiB });
  });

  await t.test('the same create again returns the existing volume (as CSI needs); different properties are refused', async (t) => {
    const h = threeNodes();
    const first = h.volume('db', 10 * GiB);
    const again = h.volume('db', 10 * GiB, 'default', { seed: 99 });
    t.equal(again.changed, false);
    t.equal(volumeOf(again), volumeOf(first));
    expectError(t, h.volume('db', 5 * GiB), 'CAIRN_VOLUME_EXISTS', "volume 'db' already exists (10 GiB); choose another name");
    profileOf(h.profile('other'));
    expectError(t, h.volume('db', 10 * GiB, 'other'), 'CAIRN_VOLUME_EXISTS', "volume 'db' already exists with profile 'default', not 'other'; choose another name");
    expectError(t, h.volume('db', 10 * GiB, '', { readOnly: true }), 'CAIRN_VOLUME_EXISTS', "volume 'db' already exists and is read-write; choose another name");
    t.same(h.map.driveUsage('d1')!.provisionedBytes + h.map.driveUsage('d2')!.provisionedBytes + h.map.driveUsage('d3')!.provisionedBytes, 10 * GiB);
  });

  await t.test('refuses bad names and sizes, with the size to use', async (t) => {
    const h = threeNodes();
    expectError(t, h.volume('DB', GiB), 'CAIRN_INVALID_ARGUMENT', "volume name 'DB' is not valid: use 1–63 characters from a-z 0-9 . _ -, starting with a letter or digit");
    expectError(t, h.volume('vol:3', GiB), 'CAIRN_INVALID_ARGUMENT', /^volume name 'vol:3' is not valid/);
    expectError(t, h.volume('db', 1000), 'CAIRN_INVALID_ARGUMENT', 'volume size 1000 bytes is not a multiple of 4 KiB; use 4096 bytes');
    expectError(t, h.volume('db', 0), 'CAIRN_INVALID_ARGUMENT', 'volume size 0 bytes is not valid: give a positive whole number of bytes');
    expectError(t, h.volume('db', 2 * PiB), 'CAIRN_OUT_OF_RANGE', 'volume size 2 PiB exceeds the largest volume, 1 PiB');
    expectError(t, h.volume('db', GiB, '', { seed: 2 ** 32 }), 'CAIRN_INVALID_ARGUMENT', `placement seed ${2 ** 32} is not valid: use a whole number from 0 to 2^32 - 1`);
    expectError(t, h.volume('db', GiB, '', { seed: 0.5 }), 'CAIRN_INVALID_ARGUMENT', /^placement seed 0.5 is not valid/);
    expectError(t, h.volume('db', GiB, 'ghost'), 'CAIRN_PROFILE_NOT_FOUND', "profile 'ghost' does not exist; 'cairn profile list' shows the profiles");
    expectError(t, h.volume('db', 32 * TiB), 'CAIRN_OUT_OF_RANGE',
      `a 32 TiB volume with 64 MiB extents needs 524288 extents, more than the ${volumeExtentsMax} one volume may have; use a profile with larger extents`);
    t.same(h.map.listVolumes(), []);
  });

  await t.test('refuses volumes that need more failure domains or more space than the pool has', async (t) => {
    const h = threeNodes();
    profileOf(h.profile('four', { replicas: 4 }));
    expectError(t, h.volume('db', GiB, 'four'), 'CAIRN_NOT_ENOUGH_NODES',
      "volume 'db' needs 4 replicas on distinct failure domains, but only 3 failure domains have usable drives (a, b, c); add nodes or drives, or use a profile with fewer replicas");
    expectError(t, h.volume('db', 400 * GiB), 'CAIRN_NO_SPACE', /^no room for volume 'db': it needs 400 GiB \(6400 extents × 1 replicas × 64 MiB\), the pool has 300 GiB free; add drives or delete volumes$/);
    const empty = new MapHarness();
    expectError(t, empty.volume('db', GiB), 'CAIRN_NOT_ENOUGH_NODES', /needs 1 replicas on distinct failure domains, but only 0 failure domains have usable drives; add nodes/);
    t.same(h.map.poolUsage().provisionedBytes, 0, 'a refused create provisions nothing');
  });
});

void t.test('resizeVolume', async (t) => {
  await t.test('grows a volume, keeps the placement of its existing extents and places the new ones', async (t) => {
    const h = threeNodes();
    profileOf(h.profile('two', { replicas: 2 }));
    const volume = volumeOf(h.volume('db', GiB, 'two'));
    const before = h.map.listExtents('db');
    const resized = h.resize(volume.id, 2 * GiB);
    t.equal(resized.changed, true);
    t.same(volumeOf(resized), { ...volume, sizeBytes: 2 * GiB });
    const after = h.map.listExtents('db');
    t.equal(after.length, 32);
    t.same(after.slice(0, 16), before);
    for (const extent of after) t.equal(new Set(extent.replicas.map((r) => r.nodeId)).size, 2, 'replicas on distinct nodes');
    t.equal(h.map.poolUsage().provisionedBytes, 4 * GiB);
  });

  await t.test('a resize to the same size changes nothing; a smaller one is refused', async (t) => {
    const h = threeNodes();
    volumeOf(h.volume('db', 10 * GiB));
    const same = h.resize('db', 10 * GiB);
    t.equal(same.changed, false);
    expectError(t, h.resize('db', 5 * GiB), 'CAIRN_SHRINK_REFUSED', "volumes only grow: 'db' is 10 GiB, asked for 5 GiB");
    expectError(t, h.resize('ghost', 5 * GiB), 'CAIRN_VOLUME_NOT_FOUND', "volume 'ghost' does not exist; 'cairn volume list' shows the volumes");
    expectError(t, h.resize('db', 10 * GiB + 1), 'CAIRN_INVALID_ARGUMENT', /is not a multiple of 4 KiB/);
    expectError(t, h.resize('db', 20 * GiB, -1), 'CAIRN_INVALID_ARGUMENT', /^placement seed -1 is not valid/);
    expectError(t, h.resize('db', 1000 * GiB), 'CAIRN_NO_SPACE', /^no room for volume 'db'/);
    t.equal(h.map.getVolume('db')!.sizeBytes, 10 * GiB);
  });

  await t.test('a read-only volume cannot grow', async (t) => {
    const h = threeNodes();
    volumeOf(h.volume('golden', GiB, '', { readOnly: true }));
    expectError(t, h.resize('golden', 2 * GiB), 'CAIRN_READ_ONLY', "volume 'golden' is read-only; it cannot grow");
  });

  await t.test('a partial last extent is provisioned whole, and growing into it adds no extent', async (t) => {
    const h = threeNodes();
    volumeOf(h.volume('db', 4096));
    t.equal(h.map.listExtents('db').length, 1);
    t.equal(h.map.poolUsage().provisionedBytes, 64 * MiB);
    volumeOf(h.resize('db', 64 * MiB));
    t.equal(h.map.listExtents('db').length, 1);
    t.equal(h.map.poolUsage().provisionedBytes, 64 * MiB);
  });
});

void t.test('deleteVolume frees its space, and the name can be reused with a new id', async (t) => {
  const h = threeNodes();
  const volume = volumeOf(h.volume('db', 10 * GiB));
  const deleted = h.delete('db');
  t.same(volumeOf(deleted), volume);
  t.equal(h.map.getVolume('db'), undefined);
  t.equal(h.map.getVolume(volume.id), undefined);
  t.same(h.map.listExtents(volume.id), []);
  t.equal(h.map.poolUsage().provisionedBytes, 0);
  expectError(t, h.delete('db'), 'CAIRN_VOLUME_NOT_FOUND', "volume 'db' does not exist; 'cairn volume list' shows the volumes");
  const again = volumeOf(h.volume('db', GiB));
  t.not(again.id, volume.id);
  t.equal(volumeOf(h.delete(again.id)).name, 'db', 'delete by id');
});

void t.test('the map bounds every collection keyed by input: nodes, profiles, volumes, extents', async (t) => {
  const h = new MapHarness();
  for (let i = 0; i < nodesMax; i++) nodeOf(h.node(`n${i}`));
  expectError(t, h.node('one-more'), 'CAIRN_NO_SPACE', `the cluster already has ${nodesMax} nodes, the most it supports`);
  t.equal(h.node('n0', '', 'renamed').changed, true, 'known nodes can still re-register');
  for (let i = 0; i < profilesMax; i++) profileOf(h.profile(`p${i}`, { extentBytes: MiB }));
  expectError(t, h.profile('one-more'), 'CAIRN_NO_SPACE', `the cluster already has ${profilesMax} profiles, the most it supports; delete unused ones`);
  driveOf(h.drive('d0', 'n0', 1024 * TiB));
  // The whole map: mapExtentsMax / volumeExtentsMax volumes of the largest size fill it.
  const largest = volumeExtentsMax * MiB;
  for (let i = 0; i < mapExtentsMax / volumeExtentsMax; i++) volumeOf(h.volume(`big-${i}`, largest, 'p0'));
  expectError(t, h.volume('one-more', MiB, 'p0'), 'CAIRN_NO_SPACE',
    `volume 'one-more' needs 1 more extents; the cluster map holds ${mapExtentsMax} of at most ${mapExtentsMax}; delete volumes or use profiles with larger extents`);
  volumeOf(h.delete('big-0'));
  // Volumes: fill up to volumesMax with one-extent volumes.
  const existing = h.map.listVolumes().length;
  for (let i = existing; i < volumesMax; i++) volumeOf(h.volume(`v${i}`, MiB, 'p0'));
  expectError(t, h.volume('one-more', MiB, 'p0'), 'CAIRN_NO_SPACE', `the cluster already has ${volumesMax} volumes, the most it supports`);
});

void t.test('listVolumes sorts by name; names and ids never collide', async (t) => {
  const h = threeNodes();
  for (const name of ['web', 'db', 'cache']) volumeOf(h.volume(name, GiB));
  t.same(h.map.listVolumes().map((v) => v.name), ['cache', 'db', 'web']);
  for (const volume of h.map.listVolumes()) {
    t.match(volume.id, /^vol:\d+$/);
    t.equal(h.map.getVolume(volume.id), volume);
  }
});

void t.test('noOp applies nothing but consumes its index', async (t) => {
  const h = threeNodes();
  const before = h.map.state();
  const result = h.apply({ kind: 'noOp' });
  t.same(result.outcome, { kind: 'none' });
  t.same(outcomeOf(result), { kind: 'none' });
  t.equal(h.map.appliedIndex, before.appliedIndex + 1);
});

void t.test('request ids', async (t) => {
  await t.test('a retried command is answered with the first result and not applied again', async (t) => {
    const h = threeNodes();
    const first = h.volume('db', GiB);
    t.equal(first.deduplicated, false);
    volumeOf(h.delete('db'));
    const retried = h.apply({ kind: 'createVolume', name: 'db', sizeBytes: GiB, profile: '', readOnly: false, placementSeed: 1 }, 'request-7');
    t.equal(retried.deduplicated, true);
    t.same(retried.outcome, first.outcome);
    t.equal(retried.index, first.index, 'the answer names the entry that applied it');
    t.equal(h.map.getVolume('db'), undefined, 'the retry did not recreate the deleted volume');
    t.equal(h.map.rememberedRequest('request-7')?.result, first);
  });

  await t.test('errors are remembered too, and a request id reused for another kind of command is refused', async (t) => {
    const h = threeNodes();
    const refused = h.apply({ kind: 'deleteVolume', volume: 'ghost' }, 'same-id');
    expectError(t, refused, 'CAIRN_VOLUME_NOT_FOUND', /does not exist/);
    volumeOf(h.volume('ghost', GiB));
    const retried = h.apply({ kind: 'deleteVolume', volume: 'ghost' }, 'same-id');
    t.equal(retried.deduplicated, true);
    t.same(retried.outcome, refused.outcome);
    t.ok(h.map.getVolume('ghost'), 'the retry did not delete the new volume');
    expectError(t, h.apply({ kind: 'noOp' }, 'same-id'), 'CAIRN_INVALID_ARGUMENT',
      `request id 'same-id' was already used by a deleteVolume command (entry ${refused.index}); use a new request id for every change`);
  });

  await t.test('malformed request ids and timestamps are refused and never remembered', async (t) => {
    const h = new MapHarness();
    expectError(t, h.apply({ kind: 'noOp' }, ''), 'CAIRN_INVALID_ARGUMENT', "request id '' is not valid: use 1–64 printable ASCII characters without spaces");
    expectError(t, h.apply({ kind: 'noOp' }, 'a b'), 'CAIRN_INVALID_ARGUMENT', /^request id 'a b' is not valid/);
    expectError(t, h.apply({ kind: 'noOp' }, 'x'.repeat(65)), 'CAIRN_INVALID_ARGUMENT', /is not valid: use 1–64/);
    expectError(t, h.apply({ kind: 'noOp' }, 'ok', -1), 'CAIRN_INVALID_ARGUMENT', 'timestamp -1 is not valid: use milliseconds since 1970 as a whole number');
    t.same(h.map.state().requests, []);
    t.equal(h.map.appliedIndex, 4);
  });

  await t.test(`the table keeps the ${requestIdsRememberedMax} most recent ids and forgets the oldest`, async (t) => {
    const h = new MapHarness();
    for (let i = 0; i <= requestIdsRememberedMax; i++) h.apply({ kind: 'noOp' }, `id-${i}`);
    t.equal(h.map.state().requests.length, requestIdsRememberedMax);
    t.equal(h.map.rememberedRequest('id-0'), undefined);
    t.ok(h.map.rememberedRequest('id-1'));
    t.equal(h.apply({ kind: 'noOp' }, 'id-0').deduplicated, false, 'a forgotten id is applied again');
    t.equal(h.apply({ kind: 'noOp' }, `id-${requestIdsRememberedMax}`).deduplicated, true);
  });
});

void t.test('a refused command changes nothing but the applied index and the request table', async (t) => {
  const h = threeNodes();
  volumeOf(h.volume('db', GiB));
  const before = h.map.state();
  expectError(t, h.resize('db', 1000 * GiB), 'CAIRN_NO_SPACE', /no room/);
  const after = h.map.state();
  t.same({ ...after, appliedIndex: 0, requests: [] }, { ...before, appliedIndex: 0, requests: [] });
  t.equal(after.requests.length, before.requests.length + 1);
});

void t.test('apply requires increasing indexes and accepts bigint ones', async (t) => {
  const map = ClusterMap.empty();
  map.apply(5n, { timestampMs: 0, requestId: 'a', body: { kind: 'noOp' } });
  t.equal(map.appliedIndex, 5);
  t.throws(() => map.apply(5, { timestampMs: 0, requestId: 'b', body: { kind: 'noOp' } }), AssertionError);
  t.throws(() => map.apply(0, { timestampMs: 0, requestId: 'c', body: { kind: 'noOp' } }), AssertionError);
  t.throws(() => map.apply(2n ** 60n, { timestampMs: 0, requestId: 'd', body: { kind: 'noOp' } }), AssertionError);
  map.apply(9, { timestampMs: 0, requestId: 'e', body: { kind: 'noOp' } });
  t.equal(map.appliedIndex, 9, 'gaps are allowed');
});

void t.test('determinism: the same commands give byte-identical snapshots, and restore reproduces them', async (t) => {
  const run = (seed: number): ClusterMap => {
    const map = ClusterMap.empty();
    for (let i = 1; i <= 400; i++) map.apply(i, workloadCommand(seed, i));
    return map;
  };
  const first = run(11);
  const second = run(11);
  const bytes = first.snapshot();
  t.ok(Buffer.from(bytes).equals(Buffer.from(second.snapshot())), 'two runs agree byte for byte');
  t.ok(first.listVolumes().length > 0, 'the workload created volumes');
  const restored = ClusterMap.restore(bytes);
  t.ok(Buffer.from(restored.snapshot()).equals(Buffer.from(bytes)), 'restore then snapshot gives the same bytes');
  t.same(restored.listVolumes(), first.listVolumes());
  t.same(restored.poolUsage(), first.poolUsage());
  // The restored map goes on exactly like the original.
  const next = workloadCommand(11, 401);
  t.same(restored.apply(401, next), first.apply(401, next));
  t.ok(Buffer.from(restored.snapshot()).equals(Buffer.from(first.snapshot())));
  t.notOk(Buffer.from(run(12).snapshot()).equals(Buffer.from(bytes)), 'another seed gives another map');
});

void t.test('fromState refuses inconsistent state as CAIRN_CORRUPT', async (t) => {
  const h = threeNodes();
  profileOf(h.profile('two', { replicas: 2 }));
  volumeOf(h.volume('db', 256 * MiB, 'two'));
  const good = h.map.state();
  t.ok(ClusterMap.fromState(good), 'the valid state loads');
  const [n1, n2] = good.nodes;
  const [d1] = good.drives;
  const [volume] = good.volumes;
  const run = good.placements[0]!;
  const set = run.sets[0]!;
  const [first, second] = set.replicas;
  const withSet = (replicas: typeof set.replicas, inSyncDriveIds = set.inSyncDriveIds): Partial<MapState> =>
    ({ placements: [{ ...run, sets: [{ replicas, inSyncDriveIds }, ...run.sets.slice(1)] }] });
  const cases: Array<[string, Partial<MapState>, RegExp]> = [
    ['nodes out of order', { nodes: [n2!, n1!] }, /node 'n1' is out of order or repeated/],
    ['a duplicated node name', { nodes: [n1!, { ...n2!, name: n1!.name }] }, /node name 'host-n1' is used twice/],
    ['a malformed node id', { nodes: [{ ...n1!, id: 'N1' }] }, /node id 'N1' is not valid/],
    ['a drive on an unknown node', { drives: [{ ...d1!, nodeId: 'ghost' }] }, /drive 'd1' is on unknown node 'ghost'/],
    ['the built-in profile stored', { profiles: [{ ...defaultProfile }] }, /profile 'default' is stored, but it is built in/],
    ['a volume with an unknown profile', { volumes: [{ ...volume!, profile: 'ghost' }] }, /uses unknown profile 'ghost'/],
    ['a volume newer than the applied index', { appliedIndex: 3 }, /was created after the applied index 3/],
    ['no extents at all', { placements: [] }, /volume 'db' has 0 extents, its size needs 4/],
    ['a run that starts late', { placements: [{ ...run, firstIndex: 1 }] }, /extents of volume 'db' from 1 are out of order or repeated \(expected 0\)/],
    ['too few extents', { placements: [{ ...run, extentSets: Array.from(run.extentSets).slice(0, 2) }] }, /volume 'db' has 2 extents, its size needs 4/],
    ['too many extents', { placements: [{ ...run, extentSets: [...Array.from(run.extentSets), 0] }] }, /volume 'db' has more extents than its size needs \(4\)/],
    ['a run of an unknown volume', { placements: [{ ...run, volumeId: 'vol:99' }] }, /extents from 0 belong to unknown volume 'vol:99'/],
    ['an unknown set number', { placements: [{ ...run, extentSets: [0, 0, 0, 7] }] }, /extent 3 of volume 'db' names unknown replica set 7/],
    ['a replica on an unknown drive', withSet([{ nodeId: 'n1', driveId: 'd9' }, second!]), /replica set 0 of volume 'db' \(extents from 0\) is on unknown drive 'd9'/],
    ['a replica naming the wrong node', withSet([{ nodeId: 'n9', driveId: first!.driveId }, second!]), /names node 'n9' for drive/],
    ['two replicas on one node', withSet([first!, first!]), /has two replicas on node/],
    ['an in-sync drive without a replica', withSet(set.replicas, ['zz']), /lists drive 'zz' in sync, but no replica is on it/],
    ['in-sync drives out of order', withSet(set.replicas, [...set.inSyncDriveIds].reverse()), /lists its in-sync drives out of order or twice/],
    ['a wrong replica count', withSet([first!]), /has 1 replicas, the volume 2/],
    ['a remembered request newer than the applied index', { requests: [{ ...good.requests[0]!, result: { ...good.requests[0]!.result, index: 999 } }] }, /is newer than the applied index/],
  ];
  for (const [name, patch, message] of cases) {
    throwsCode(t, () => ClusterMap.fromState({ ...good, ...patch }), 'CAIRN_CORRUPT', new RegExp(`^cluster map: .*${message.source}`));
    t.comment(name);
  }
});

void t.test('an undecodable snapshot is CAIRN_CORRUPT', async (t) => {
  throwsCode(t, () => ClusterMap.restore(Uint8Array.from([0xff, 0xff, 0xff])), 'CAIRN_CORRUPT', /^map snapshot: not a valid MapSnapshot message/);
});
