/**
 * Placement: chooses the drives that hold each extent's replicas. Pure and deterministic: the
 * same drives, request and seed give the same answer on every node, which is what lets the
 * cluster map run placement inside `apply` (see cluster-map.ts for why it is done there).
 *
 * Rules, in order:
 * 1. The replicas of one extent go to distinct failure domains. With policy `spread-domains` a
 *    node's domain is its `failureDomain` label, or the node itself when it has none; with
 *    `spread-nodes` every node is its own domain. Either way replicas land on distinct nodes.
 * 2. Among the drives allowed for a replica, one is drawn with probability proportional to its
 *    free space (capacity minus provisioned bytes, in whole MiB), using the seeded PRNG. Each
 *    placed replica provisions `extentBytes` on its drive at once, so later extents of the same
 *    volume see the space earlier ones took. A drive with less than `extentBytes` free is never
 *    chosen (no overcommit: provisioned bytes never exceed capacity).
 * 3. Failures name the cause: fewer usable domains than replicas is CAIRN_NOT_ENOUGH_NODES;
 *    enough domains but too little free space is CAIRN_NO_SPACE.
 *
 * Changing this algorithm changes the replicated state machine: replaying an old log with a new
 * rule would place extents differently on upgraded nodes. A new rule must come with a command
 * field whose default (0) keeps selecting this one.
 */
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import { SeededRandom } from '../util/random';
import { formatBytes, MiB } from '../util/units';
import type { PlacementPolicy, ReplicaLocation } from './types';

/** A drive placement may use: its node is up and the drive is up. */
export interface PlacementDrive {
  readonly nodeId: string;
  readonly driveId: string;
  /** The node's failure domain label ('' = none). */
  readonly failureDomain: string;
  /** Capacity minus provisioned bytes; may be negative after a drive shrank. */
  readonly freeBytes: number;
}

export interface PlacementRequest {
  /** For messages only. */
  readonly volumeName: string;
  readonly firstExtentIndex: number;
  readonly extentCount: number;
  readonly extentBytes: number;
  readonly replicas: number;
  readonly policy: PlacementPolicy;
  /** uint32 carried in the command. */
  readonly seed: number;
}

/** The domain a drive belongs to under a policy. Node-derived domains cannot collide with labels (no ':'). */
export function domainOf(drive: Pick<PlacementDrive, 'nodeId' | 'failureDomain'>, policy: PlacementPolicy): string {
  if (policy === 'spread-domains' && drive.failureDomain !== '') return drive.failureDomain;
  return `node:${drive.nodeId}`;
}

function describeDomains(domains: readonly string[], policy: PlacementPolicy): string {
  const nodePrefix = policy === 'spread-domains' ? 'node ' : '';
  const shown = domains.slice(0, 5).map((domain) => (domain.startsWith('node:') ? nodePrefix + domain.slice(5) : domain));
  return domains.length > shown.length ? `${shown.join(', ')}, …` : shown.join(', ');
}

/**
 * Places `extentCount` extents; returns one replica list per extent, in extent order. Throws
 * CairnError CAIRN_NOT_ENOUGH_NODES or CAIRN_NO_SPACE. `drives` must be sorted by drive id.
 */
export function placeExtents(drives: readonly PlacementDrive[], request: PlacementRequest): ReplicaLocation[][] {
  assert(Number.isSafeInteger(request.extentCount) && request.extentCount >= 0, 'extentCount must be a count');
  assert(Number.isSafeInteger(request.replicas) && request.replicas >= 1, 'replicas must be at least 1');
  assert(Number.isSafeInteger(request.extentBytes) && request.extentBytes >= MiB, 'extentBytes must be at least 1 MiB');
  assert(Number.isInteger(request.seed) && request.seed >= 0 && request.seed < 2 ** 32, 'seed must be a uint32');
  for (let i = 1; i < drives.length; i++) {
    assert((drives[i - 1] as PlacementDrive).driveId < (drives[i] as PlacementDrive).driveId, 'drives must be sorted by id, ids unique');
  }
  const domains = drives.map((drive) => domainOf(drive, request.policy));
  const unit = request.policy === 'spread-domains' ? 'failure domains' : 'nodes';
  const distinctDomains = [...new Set(domains)].sort();
  if (distinctDomains.length < request.replicas) {
    throw new CairnError(
      'CAIRN_NOT_ENOUGH_NODES',
      `volume '${request.volumeName}' needs ${request.replicas} replicas on distinct ${unit}, but only ${distinctDomains.length} ` +
        `${distinctDomains.length === 1 ? unit.replace(/s$/, '') + ' has' : unit + ' have'} usable drives` +
        `${distinctDomains.length > 0 ? ` (${describeDomains(distinctDomains, request.policy)})` : ''}; add nodes or drives, or use a profile with fewer replicas`,
    );
  }
  const freeBytes = drives.map((drive) => drive.freeBytes);
  const neededBytes = request.extentCount * request.replicas * request.extentBytes;
  const totalFreeBytes = freeBytes.reduce((sum, bytes) => sum + Math.max(0, bytes), 0);
  if (neededBytes > totalFreeBytes) {
    throw new CairnError(
      'CAIRN_NO_SPACE',
      `no room for volume '${request.volumeName}': it needs ${formatBytes(neededBytes)} (${request.extentCount} extents × ` +
        `${request.replicas} replicas × ${formatBytes(request.extentBytes)}), the pool has ${formatBytes(totalFreeBytes)} free; ` +
        `add drives or delete volumes`,
    );
  }
  const random = new SeededRandom(request.seed);
  // Domains as small integers; usedBy[domain] is the last extent that put a replica there.
  const domainNumbers = new Map(distinctDomains.map((domain, number) => [domain, number]));
  const domainOfDrive = Int32Array.from(domains, (domain) => domainNumbers.get(domain) as number);
  const usedBy = new Float64Array(distinctDomains.length).fill(-1);
  const weights = new Float64Array(drives.length);
  const placements: ReplicaLocation[][] = [];
  for (let extent = 0; extent < request.extentCount; extent++) {
    const replicas: ReplicaLocation[] = [];
    for (let replica = 0; replica < request.replicas; replica++) {
      const chosen = pickDrive(domainOfDrive, freeBytes, usedBy, extent, request.extentBytes, weights, random);
      if (chosen < 0) {
        throw new CairnError(
          'CAIRN_NO_SPACE',
          `no room for extent ${request.firstExtentIndex + extent} of volume '${request.volumeName}': ` +
            `found ${formatBytes(request.extentBytes)} free on only ${replica} of the ${request.replicas} distinct ${unit} it needs; ` +
            `add drives or delete volumes`,
        );
      }
      const drive = drives[chosen] as PlacementDrive;
      freeBytes[chosen] = (freeBytes[chosen] as number) - request.extentBytes;
      usedBy[domainOfDrive[chosen] as number] = extent;
      replicas.push({ nodeId: drive.nodeId, driveId: drive.driveId });
    }
    assert(replicas.length === request.replicas);
    placements.push(replicas);
  }
  assert(placements.length === request.extentCount);
  return placements;
}

/**
 * Index of the drive drawn for a replica of `extent`: weighted by free MiB among drives whose
 * domain holds no replica of this extent yet and that have room for one; -1 if none qualifies.
 */
function pickDrive(
  domainOfDrive: Int32Array,
  freeBytes: readonly number[],
  usedBy: Float64Array,
  extent: number,
  extentBytes: number,
  weights: Float64Array,
  random: SeededRandom,
): number {
  let totalWeight = 0;
  for (let i = 0; i < weights.length; i++) {
    const free = freeBytes[i] as number;
    const weight = usedBy[domainOfDrive[i] as number] === extent || free < extentBytes ? 0 : Math.floor(free / MiB);
    weights[i] = weight;
    totalWeight += weight;
  }
  if (totalWeight === 0) return -1;
  assert(Number.isSafeInteger(totalWeight));
  let ticket = random.int(totalWeight);
  for (let i = 0; i < weights.length; i++) {
    const weight = weights[i] as number;
    if (ticket < weight) return i;
    ticket -= weight;
  }
  return unreachableTicket();
}

function unreachableTicket(): never {
  assert(false, 'placement ticket past the total weight');
}
