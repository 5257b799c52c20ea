/**
 * The input rules of the cluster map: names, ids, labels, addresses, paths, sizes. Each check
 * throws CairnError CAIRN_INVALID_ARGUMENT (or the more specific code the rule belongs to) with
 * a message that says what is wrong and what to do. Pure; used by apply (for commands) and by
 * ClusterMap.fromState (for stored records, where a failure means corruption).
 */
import { CairnError } from '../errors/cairn-error';
import {
  addressBytesMax,
  addressesPerNodeMax,
  blockBytes,
  descriptionBytesMax,
  drivePathBytesMax,
  extentBytesMax,
  extentBytesMin,
  labelsPerNodeMax,
  nameBytesMax,
  replicasMax,
  requestIdBytesMax,
  volumeBytesMax,
} from '../limits';
import { assert } from '../util/assert';
import { formatBytes, isPowerOfTwo } from '../util/units';
import type { Label } from './types';

const namePattern = /^[a-z0-9][a-z0-9._-]*$/;
const labelKeyPattern = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;
const labelValuePattern = /^[A-Za-z0-9._-]*$/;
const failureDomainPattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const printablePattern = /^[\x21-\x7e]+$/;
/** C0 and C1 controls, and the bidirectional overrides and isolates that reorder displayed text. */
const controlPattern = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;
/** Volume ids: `vol:` and the index of the entry that created the volume. */
const volumeIdPattern = /^vol:[1-9][0-9]{0,15}$/;

function invalid(message: string): CairnError {
  return new CairnError('CAIRN_INVALID_ARGUMENT', message);
}

/** UTF-8 length of a string, without node:buffer (meta is pure). */
export function utf8Bytes(text: string): number {
  let bytes = 0;
  for (const character of text) {
    const codePoint = character.codePointAt(0) as number;
    bytes += codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/** Volume, profile and node names; node and drive ids follow the same rule. */
export function checkName(what: string, name: string): void {
  if (name.length === 0 || name.length > nameBytesMax || !namePattern.test(name)) {
    const shown = name.length > 80 ? `${name.slice(0, 80)}…` : name;
    throw invalid(`${what} '${shown}' is not valid: use 1–${nameBytesMax} characters from a-z 0-9 . _ -, starting with a letter or digit`);
  }
}

export function isVolumeId(text: string): boolean {
  return volumeIdPattern.test(text);
}

/** The index a volume id was made from; `id` must be a volume id. */
export function volumeIdIndex(id: string): number {
  assert(isVolumeId(id), `'${id}' is not a volume id`);
  return Number(id.slice(4));
}

export function volumeIdFor(index: number): string {
  return `vol:${index}`;
}

export function checkRequestId(requestId: string): void {
  if (requestId.length === 0 || requestId.length > requestIdBytesMax || !printablePattern.test(requestId)) {
    throw invalid(`request id '${requestId}' is not valid: use 1–${requestIdBytesMax} printable ASCII characters without spaces`);
  }
}

export function checkTimestamp(timestampMs: number): void {
  if (!Number.isSafeInteger(timestampMs) || timestampMs < 0) {
    throw invalid(`timestamp ${timestampMs} is not valid: use milliseconds since 1970 as a whole number`);
  }
}

/** Labels must be valid and keys unique; returns them sorted by key. */
export function checkLabels(labels: readonly Label[]): readonly Label[] {
  if (labels.length > labelsPerNodeMax) throw invalid(`a node has at most ${labelsPerNodeMax} labels, not ${labels.length}`);
  const sorted = [...labels].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (let i = 0; i < sorted.length; i++) {
    const label = sorted[i] as Label;
    if (label.key.length > nameBytesMax || !labelKeyPattern.test(label.key)) {
      throw invalid(`label key '${label.key}' is not valid: use 1–${nameBytesMax} characters from A-Z a-z 0-9 . _ / -, starting with a letter or digit`);
    }
    if (label.value.length > nameBytesMax || !labelValuePattern.test(label.value)) {
      throw invalid(`label value '${label.value}' of '${label.key}' is not valid: use up to ${nameBytesMax} characters from A-Z a-z 0-9 . _ -`);
    }
    if (i > 0 && (sorted[i - 1] as Label).key === label.key) throw invalid(`label '${label.key}' is given twice; give each key once`);
  }
  return Object.freeze(sorted.map((label) => Object.freeze({ key: label.key, value: label.value })));
}

export function checkFailureDomain(failureDomain: string): void {
  if (failureDomain === '') return;
  if (failureDomain.length > nameBytesMax || !failureDomainPattern.test(failureDomain)) {
    throw invalid(`failure domain '${failureDomain}' is not valid: use 1–${nameBytesMax} characters from A-Z a-z 0-9 . _ -, or '' for none`);
  }
}

export function checkAddresses(addresses: readonly string[]): void {
  if (addresses.length > addressesPerNodeMax) throw invalid(`a node has at most ${addressesPerNodeMax} addresses, not ${addresses.length}`);
  const seen = new Set<string>();
  for (const address of addresses) {
    if (address.length > addressBytesMax || !printablePattern.test(address)) {
      throw invalid(`address '${address}' is not valid: use 1–${addressBytesMax} printable ASCII characters without spaces, like 10.0.0.5:7400`);
    }
    if (seen.has(address)) throw invalid(`address '${address}' is given twice; give each address once`);
    seen.add(address);
  }
}

export function checkDrivePath(path: string): void {
  if (!path.startsWith('/') || utf8Bytes(path) > drivePathBytesMax || controlPattern.test(path)) {
    throw invalid(`drive path '${path}' is not valid: give an absolute path of at most ${drivePathBytesMax} bytes without control characters`);
  }
}

export function checkCapacity(capacityBytes: number): void {
  if (!Number.isSafeInteger(capacityBytes) || capacityBytes < extentBytesMin) {
    throw invalid(`drive capacity ${capacityBytes} bytes is not valid: a drive needs at least ${formatBytes(extentBytesMin)}`);
  }
}

export function checkDescription(description: string): void {
  if (utf8Bytes(description) > descriptionBytesMax || controlPattern.test(description)) {
    throw invalid(`description is not valid: use at most ${descriptionBytesMax} bytes without control characters`);
  }
}

export function checkReplicas(replicas: number): void {
  if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > replicasMax) {
    throw invalid(`replicas must be from 1 to ${replicasMax}, not ${replicas}`);
  }
}

export function checkExtentBytes(extentBytes: number): void {
  if (!isPowerOfTwo(extentBytes) || extentBytes < extentBytesMin || extentBytes > extentBytesMax) {
    throw invalid(`extent size ${formatBytes(extentBytes)} (${extentBytes} bytes) is not valid: use a power of two from ${formatBytes(extentBytesMin)} to ${formatBytes(extentBytesMax)}`);
  }
}

export function checkPlacementSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw invalid(`placement seed ${seed} is not valid: use a whole number from 0 to 2^32 - 1`);
}

export function checkLimit(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`${what} must be a whole number, 0 for unlimited, not ${value}`);
}

/** Volume sizes: positive multiples of the block size, at most volumeBytesMax. */
export function checkVolumeSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    throw invalid(`volume size ${sizeBytes} bytes is not valid: give a positive whole number of bytes`);
  }
  if (sizeBytes % blockBytes !== 0) {
    const roundedBytes = Math.ceil(sizeBytes / blockBytes) * blockBytes;
    throw invalid(`volume size ${sizeBytes} bytes is not a multiple of ${formatBytes(blockBytes)}; use ${roundedBytes} bytes`);
  }
  if (sizeBytes > volumeBytesMax) {
    throw new CairnError('CAIRN_OUT_OF_RANGE', `volume size ${formatBytes(sizeBytes)} exceeds the largest volume, ${formatBytes(volumeBytesMax)}`);
  }
}
