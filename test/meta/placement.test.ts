// Goal: placement puts each extent's replicas on distinct nodes and failure domains, weights drives
// by free space, never overfills a drive, is a pure function of (drives, request, seed), and names
// the cause when it cannot place (not enough nodes versus no space).
// Method: call placeExtents on synthetic drive lists and count where replicas landed; a fixed seed
// makes every count exact, so the tolerance checks cannot flake.
import t from 'tap';
import { domainOf, placeExtents, type PlacementDrive, type PlacementRequest } from '../../src/meta/placement';
import { AssertionError } from '../../src/util/assert';
import { GiB, MiB, TiB } from '../../src/util/units';
import { throwsCode } from './helpers/errors';

function drive(driveId: string, nodeId: string, freeBytes: number, failureDomain = ''): PlacementDrive {
  return { driveId, nodeId, freeBytes, failureDomain };
}

function request(fields: Partial<PlacementRequest> = {}): PlacementRequest {
  return { volumeName: 'db', firstExtentIndex: 0, extentCount: 100, extentBytes: 64 * MiB, replicas: 1, policy: 'spread-domains', seed: 7, ...fields };
}

function countByDrive(placements: ReadonlyArray<ReadonlyArray<{ driveId: string }>>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const replicas of placements) for (const replica of replicas) counts.set(replica.driveId, (counts.get(replica.driveId) ?? 0) + 1);
  return counts;
}

void t.test('replicas of one extent land on distinct nodes', async (t) => {
  const drives = [drive('a1', 'n1', TiB), drive('a2', 'n1', TiB), drive('b1', 'n2', TiB), drive('c1', 'n3', TiB)];
  const placements = placeExtents(drives, request({ replicas: 3, extentCount: 500 }));
  t.equal(placements.length, 500);
  for (const replicas of placements) {
    t.equal(replicas.length, 3);
    t.equal(new Set(replicas.map((r) => r.nodeId)).size, 3, 'three nodes');
  }
  const counts = countByDrive(placements);
  t.equal((counts.get('a1') ?? 0) + (counts.get('a2') ?? 0), 500, 'node n1 holds one replica of every extent');
});

void t.test('with failure domains, replicas land on distinct domains; spread-nodes ignores them', async (t) => {
  const drives = [
    drive('d1', 'n1', TiB, 'rack-a'), drive('d2', 'n2', TiB, 'rack-a'), drive('d3', 'n3', TiB, 'rack-b'), drive('d4', 'n4', TiB, 'rack-b'),
  ];
  const domainOfNode = new Map([['n1', 'rack-a'], ['n2', 'rack-a'], ['n3', 'rack-b'], ['n4', 'rack-b']]);
  const spread = placeExtents(drives, request({ replicas: 2, extentCount: 300 }));
  for (const replicas of spread) t.equal(new Set(replicas.map((r) => domainOfNode.get(r.nodeId))).size, 2, 'two racks');
  throwsCode(t, () => placeExtents(drives, request({ replicas: 3 })), 'CAIRN_NOT_ENOUGH_NODES',
    "volume 'db' needs 3 replicas on distinct failure domains, but only 2 failure domains have usable drives (rack-a, rack-b); add nodes or drives, or use a profile with fewer replicas");
  const nodesOnly = placeExtents(drives, request({ replicas: 3, extentCount: 300, policy: 'spread-nodes' }));
  for (const replicas of nodesOnly) t.equal(new Set(replicas.map((r) => r.nodeId)).size, 3);
  t.ok(nodesOnly.some((replicas) => new Set(replicas.map((r) => domainOfNode.get(r.nodeId))).size < 3), 'racks repeat under spread-nodes');
});

void t.test('a node without a failure domain is its own domain, and cannot collide with a label', async (t) => {
  t.equal(domainOf({ nodeId: 'n1', failureDomain: '' }, 'spread-domains'), 'node:n1');
  t.equal(domainOf({ nodeId: 'n1', failureDomain: 'n1' }, 'spread-domains'), 'n1');
  t.equal(domainOf({ nodeId: 'n1', failureDomain: 'rack' }, 'spread-nodes'), 'node:n1');
  const placements = placeExtents([drive('d1', 'n1', TiB, 'n2'), drive('d2', 'n2', TiB)], request({ replicas: 2, extentCount: 10 }));
  for (const replicas of placements) t.same(replicas.map((r) => r.nodeId).sort(), ['n1', 'n2']);
  throwsCode(t, () => placeExtents([drive('d1', 'n1', TiB)], request({ replicas: 2, policy: 'spread-nodes' })), 'CAIRN_NOT_ENOUGH_NODES',
    "volume 'db' needs 2 replicas on distinct nodes, but only 1 node has usable drives (n1); add nodes or drives, or use a profile with fewer replicas");
});

void t.test('drives are chosen in proportion to their free space', async (t) => {
  // 3:1 free space; 4000 extents of 64 MiB (250 GiB) barely dent 4 TiB, so weights stay near 3:1.
  const placements = placeExtents([drive('big', 'n1', 3 * TiB), drive('small', 'n2', TiB)], request({ extentCount: 4000 }));
  const counts = countByDrive(placements);
  const ratio = (counts.get('big') ?? 0) / (counts.get('small') ?? 1);
  t.ok(ratio > 2.6 && ratio < 3.4, `big:small = ${ratio.toFixed(2)}, expected about 3`);
});

void t.test('placement accounts for the space it already took and never overfills a drive', async (t) => {
  // 1 GiB + 3 GiB free, 64 extents of 64 MiB = 4 GiB: everything must fit exactly.
  const placements = placeExtents([drive('a', 'n1', GiB), drive('b', 'n2', 3 * GiB)], request({ extentCount: 64 }));
  const counts = countByDrive(placements);
  t.equal(counts.get('a'), 16);
  t.equal(counts.get('b'), 48);
  t.same(countByDrive(placeExtents([drive('a-full', 'n1', 63 * MiB), drive('b', 'n2', GiB)], request({ extentCount: 16 }))), new Map([['b', 16]]), 'a drive with less than one extent free gets nothing');
  t.same(countByDrive(placeExtents([drive('a-shrunk', 'n1', -5 * GiB), drive('b', 'n2', GiB)], request({ extentCount: 1 }))), new Map([['b', 1]]), 'a drive past its capacity gets nothing');
});

void t.test('too little space is CAIRN_NO_SPACE: for the whole volume, or for one extent across domains', async (t) => {
  throwsCode(t, () => placeExtents([drive('a', 'n1', GiB)], request({ extentCount: 17 })), 'CAIRN_NO_SPACE',
    "no room for volume 'db': it needs 1.06 GiB (17 extents × 1 replicas × 64 MiB), the pool has 1 GiB free; add drives or delete volumes");
  // Enough bytes in total, but only one domain has them once the small one fills up.
  throwsCode(t, () => placeExtents([drive('a', 'n1', 10 * GiB), drive('b', 'n2', 128 * MiB)], request({ replicas: 2, extentCount: 3, firstExtentIndex: 40 })), 'CAIRN_NO_SPACE',
    "no room for extent 42 of volume 'db': found 64 MiB free on only 1 of the 2 distinct failure domains it needs; add drives or delete volumes");
});

void t.test('the same drives, request and seed give the same placement; another seed another one', async (t) => {
  const drives = [drive('d1', 'n1', TiB), drive('d2', 'n2', 2 * TiB), drive('d3', 'n3', TiB), drive('d4', 'n4', 3 * TiB)];
  const first = placeExtents(drives, request({ replicas: 2, seed: 1234 }));
  t.same(placeExtents(drives, request({ replicas: 2, seed: 1234 })), first);
  t.notSame(placeExtents(drives, request({ replicas: 2, seed: 1235 })), first);
  t.same(placeExtents(drives, request({ extentCount: 0 })), [], 'nothing to place is fine');
});

void t.test('programmer errors are assertions: unsorted drives, bad counts, bad seeds', async (t) => {
  t.throws(() => placeExtents([drive('b', 'n1', TiB), drive('a', 'n2', TiB)], request()), AssertionError);
  t.throws(() => placeExtents([drive('a', 'n1', TiB), drive('a', 'n2', TiB)], request()), AssertionError);
  t.throws(() => placeExtents([drive('a', 'n1', TiB)], request({ replicas: 0 })), AssertionError);
  t.throws(() => placeExtents([drive('a', 'n1', TiB)], request({ seed: 2 ** 32 })), AssertionError);
  t.throws(() => placeExtents([drive('a', 'n1', TiB)], request({ extentBytes: 4096 })), AssertionError);
});
