/** Test harness for ClusterMap: applies command bodies at increasing indexes with fresh request ids. */
import type { Test } from 'tap';
import { ClusterMap } from '../../../src/meta/cluster-map';
import type { CommandBody, CommandResult, ProfileRecord } from '../../../src/meta/types';
import type { ErrorCode } from '../../../src/errors/cairn-error';
import { GiB, MiB } from '../../../src/util/units';

export class MapHarness {
  index = 0;
  private requestCount = 0;

  constructor(readonly map: ClusterMap = ClusterMap.empty()) {
    this.index = map.appliedIndex;
  }

  apply(body: CommandBody, requestId = `request-${++this.requestCount}`, timestampMs = 1_000 + this.index): CommandResult {
    this.index++;
    return this.map.apply(this.index, { timestampMs, requestId, body });
  }

  node(id: string, failureDomain = '', name = `host-${id}`): CommandResult {
    return this.apply({ kind: 'registerNode', nodeId: id, name, addresses: [`${id}.example:7400`], labels: [], failureDomain });
  }

  drive(id: string, nodeId: string, capacityBytes = 100 * GiB, path = `/srv/${id}`): CommandResult {
    return this.apply({ kind: 'addDrive', driveId: id, nodeId, path, capacityBytes });
  }

  profile(name: string, fields: Partial<Omit<ProfileRecord, 'name' | 'createdAtMs'>> = {}): CommandResult {
    return this.apply({
      kind: 'createProfile',
      name,
      replicas: fields.replicas ?? 1,
      extentBytes: fields.extentBytes ?? 64 * MiB,
      iopsMax: fields.iopsMax ?? 0,
      bandwidthBytesPerSecondMax: fields.bandwidthBytesPerSecondMax ?? 0,
      placement: fields.placement ?? 'spread-domains',
      filesystem: fields.filesystem ?? 'ext4',
      description: fields.description ?? '',
    });
  }

  volume(name: string, sizeBytes: number, profile = '', options: { readOnly?: boolean; seed?: number } = {}): CommandResult {
    return this.apply({ kind: 'createVolume', name, sizeBytes, profile, readOnly: options.readOnly ?? false, placementSeed: options.seed ?? 1 });
  }

  resize(volume: string, sizeBytes: number, seed = 2): CommandResult {
    return this.apply({ kind: 'resizeVolume', volume, sizeBytes, placementSeed: seed });
  }

  delete(volume: string): CommandResult {
    return this.apply({ kind: 'deleteVolume', volume });
  }
}

type Asserter = Pick<Test, 'equal' | 'match' | 'fail'>;

/** Checks that a result is an error with this code and a message matching `message`. */
export function expectError(t: Asserter, result: CommandResult, code: ErrorCode, message: RegExp | string): void {
  if (result.outcome.kind !== 'error') {
    t.fail(`expected ${code}, got outcome '${result.outcome.kind}'`);
    return;
  }
  t.equal(result.outcome.error.code, code);
  if (typeof message === 'string') t.equal(result.outcome.error.message, message);
  else t.match(result.outcome.error.message, message);
  t.equal(result.changed, false, 'an error changes nothing');
}
