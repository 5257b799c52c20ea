/**
 * A deterministic stream of cluster-map commands for tests: command number i (1-based) depends
 * only on (seed, i), so a parent process and a child it killed agree on what entry i was. The
 * stream starts with a fixed setup (four nodes over three failure domains, drives, profiles), then
 * mixes creates (repeated names hit the idempotent and "exists" paths), resizes (some shrink and
 * fail), deletes, no-ops, re-registrations and retried request ids.
 */
import type { Command, CommandBody } from '../../../src/meta/types';
import { SeededRandom } from '../../../src/util/random';
import { GiB, MiB } from '../../../src/util/units';

const setup: CommandBody[] = [
  { kind: 'registerNode', nodeId: 'n1', name: 'host-1', addresses: ['127.0.0.1:7400'], labels: [{ key: 'zone', value: 'a' }], failureDomain: 'a' },
  { kind: 'registerNode', nodeId: 'n2', name: 'host-2', addresses: ['127.0.0.2:7400'], labels: [{ key: 'zone', value: 'b' }], failureDomain: 'b' },
  { kind: 'registerNode', nodeId: 'n3', name: 'host-3', addresses: ['127.0.0.3:7400'], labels: [{ key: 'zone', value: 'c' }], failureDomain: 'c' },
  { kind: 'registerNode', nodeId: 'n4', name: 'host-4', addresses: ['127.0.0.4:7400'], labels: [], failureDomain: 'c' },
  { kind: 'addDrive', driveId: 'd1', nodeId: 'n1', path: '/srv/cairn/1', capacityBytes: 64 * GiB },
  { kind: 'addDrive', driveId: 'd2', nodeId: 'n2', path: '/srv/cairn/1', capacityBytes: 64 * GiB },
  { kind: 'addDrive', driveId: 'd3', nodeId: 'n3', path: '/srv/cairn/1', capacityBytes: 32 * GiB },
  { kind: 'addDrive', driveId: 'd4', nodeId: 'n4', path: '/srv/cairn/1', capacityBytes: 32 * GiB },
  { kind: 'addDrive', driveId: 'd5', nodeId: 'n1', path: '/srv/cairn/2', capacityBytes: 16 * GiB },
  {
    kind: 'createProfile', name: 'triple', replicas: 3, extentBytes: 16 * MiB, iopsMax: 0, bandwidthBytesPerSecondMax: 0,
    placement: 'spread-domains', filesystem: 'xfs', description: 'three replicas on three zones',
  },
  {
    kind: 'createProfile', name: 'pair', replicas: 2, extentBytes: 32 * MiB, iopsMax: 5000, bandwidthBytesPerSecondMax: 100 * MiB,
    placement: 'spread-nodes', filesystem: '', description: '',
  },
];

export const workloadSetupCount = setup.length;

const names = ['db', 'logs', 'cache', 'web', 'queue', 'mail', 'git', 'ci'];
const profiles = ['', 'triple', 'pair', 'default'];

function mix(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(index, 0x85ebca6b)) >>> 0;
}

/** The body of command i (1-based). */
export function workloadBody(seed: number, index: number): CommandBody {
  const fixed = setup[index - 1];
  if (fixed !== undefined) return fixed;
  const random = new SeededRandom(mix(seed, index));
  const name = names[random.int(names.length)] as string;
  const draw = random.int(100);
  if (draw < 40) {
    return {
      kind: 'createVolume',
      name,
      sizeBytes: (1 + random.int(64)) * 16 * MiB,
      profile: profiles[random.int(profiles.length)] as string,
      readOnly: random.int(10) === 0,
      placementSeed: random.int(2 ** 32),
    };
  }
  if (draw < 60) return { kind: 'resizeVolume', volume: name, sizeBytes: (1 + random.int(96)) * 16 * MiB, placementSeed: random.int(2 ** 32) };
  if (draw < 80) return { kind: 'deleteVolume', volume: name };
  if (draw < 85) {
    const node = 1 + random.int(4);
    return { kind: 'registerNode', nodeId: `n${node}`, name: `host-${node}`, addresses: [`127.0.0.${node}:${7400 + random.int(3)}`], labels: [], failureDomain: node === 4 ? 'c' : 'abc'[node - 1] as string };
  }
  if (draw < 90) return { kind: 'noOp' };
  if (draw < 95) return { kind: 'createProfile', name: `p${random.int(3)}`, replicas: 1 + random.int(2), extentBytes: 8 * MiB, iopsMax: 0, bandwidthBytesPerSecondMax: 0, placement: 'spread-nodes', filesystem: 'ext4', description: '' };
  return { kind: 'deleteProfile', name: `p${random.int(3)}` };
}

/** Command i: every 7th command after the setup retries the request id of an earlier one. */
export function workloadCommand(seed: number, index: number): Command {
  const body = workloadBody(seed, index);
  let requestIndex = index;
  if (index > setup.length && index % 7 === 0) {
    const random = new SeededRandom(mix(seed, index) ^ 0xabcdef);
    requestIndex = index - 1 - random.int(Math.min(20, index - 1));
    return { timestampMs: 1_700_000_000_000 + index, requestId: `req-${seed}-${requestIndex}`, body: workloadBody(seed, requestIndex) };
  }
  return { timestampMs: 1_700_000_000_000 + index, requestId: `req-${seed}-${requestIndex}`, body };
}
