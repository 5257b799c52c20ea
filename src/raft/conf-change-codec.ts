/**
 * Binary encoding of a ConfChange for the data of a `confChange` log entry, so storage and wire
 * treat every entry as opaque bytes. Layout (big-endian):
 *   u8 version (1) | u8 transition | u32 change count | count × (u8 type | u32 id-high | u32 id-low)
 *   | u32 context length | context bytes
 * Decoding checks every length against the remaining bytes before reading or allocating and throws
 * ConfChangeError on any malformed input.
 */
import { ConfChangeError } from './errors';
import type { ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType } from './types';

const version = 1;
const transitions: readonly ConfChangeTransition[] = ['auto', 'implicit', 'explicit'];
const changeTypes: readonly ConfChangeType[] = ['addNode', 'addLearner', 'removeNode'];
const headerBytes = 1 + 1 + 4;
const changeBytes = 1 + 4 + 4;

export function encodeConfChange(change: ConfChange): Uint8Array {
  const bytes = new Uint8Array(headerBytes + change.changes.length * changeBytes + 4 + change.context.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, version);
  view.setUint8(1, transitions.indexOf(change.transition));
  view.setUint32(2, change.changes.length);
  let offset = headerBytes;
  for (const single of change.changes) {
    if (!Number.isSafeInteger(single.nodeId) || single.nodeId <= 0) {
      throw new ConfChangeError(`conf change node id must be a positive safe integer, got ${single.nodeId}`);
    }
    view.setUint8(offset, changeTypes.indexOf(single.type));
    view.setUint32(offset + 1, Math.floor(single.nodeId / 2 ** 32));
    view.setUint32(offset + 5, single.nodeId % 2 ** 32);
    offset += changeBytes;
  }
  view.setUint32(offset, change.context.length);
  bytes.set(change.context, offset + 4);
  return bytes;
}

export function decodeConfChange(bytes: Uint8Array): ConfChange {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < headerBytes) throw new ConfChangeError(`conf change too short: ${bytes.length} bytes`);
  if (view.getUint8(0) !== version) throw new ConfChangeError(`conf change version ${view.getUint8(0)} unsupported`);
  const transition = transitions[view.getUint8(1)];
  if (transition === undefined) throw new ConfChangeError(`conf change transition ${view.getUint8(1)} unknown`);
  const count = view.getUint32(2);
  if (count > (bytes.length - headerBytes - 4) / changeBytes) {
    throw new ConfChangeError(`conf change claims ${count} changes in ${bytes.length} bytes`);
  }
  const changes: ConfChangeSingle[] = [];
  let offset = headerBytes;
  for (let i = 0; i < count; i++) {
    const type = changeTypes[view.getUint8(offset)];
    if (type === undefined) throw new ConfChangeError(`conf change type ${view.getUint8(offset)} unknown`);
    const high = view.getUint32(offset + 1);
    const nodeId = high * 2 ** 32 + view.getUint32(offset + 5);
    if (!Number.isSafeInteger(nodeId) || nodeId <= 0) throw new ConfChangeError(`conf change node id ${nodeId} invalid`);
    changes.push({ type, nodeId });
    offset += changeBytes;
  }
  const contextLength = view.getUint32(offset);
  if (contextLength !== bytes.length - offset - 4) {
    throw new ConfChangeError(`conf change context length ${contextLength} does not match the ${bytes.length - offset - 4} bytes left`);
  }
  return { transition, changes, context: bytes.slice(offset + 4) };
}

/** An empty change: leaves a joint configuration. */
export function isLeaveJoint(change: ConfChange): boolean {
  return change.changes.length === 0;
}

/** Whether the change goes through a joint configuration, and whether it is left automatically. */
export function jointMode(change: ConfChange): { joint: boolean; autoLeave: boolean } {
  if (change.transition === 'auto' && change.changes.length <= 1) return { joint: false, autoLeave: false };
  return { joint: true, autoLeave: change.transition !== 'explicit' };
}

export function describeConfChange(change: ConfChange): string {
  if (change.changes.length === 0) return 'leave-joint';
  const prefix = { addNode: 'v', addLearner: 'l', removeNode: 'r' } as const;
  const text = change.changes.map((single) => `${prefix[single.type]}${single.nodeId}`).join(' ');
  return change.transition === 'auto' ? text : `${text} (${change.transition})`;
}
