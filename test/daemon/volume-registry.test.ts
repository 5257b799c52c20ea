/**
 * Goal: the registry shares one device per volume among its handles, counts NBD connections
 * without the anchors kernel attachments hold, and stays "in use" while any handle (anchor or
 * connection) is out.
 *
 * Method: a real VolumeRegistry over a real extent store; the metadata is a fixed map of one
 * ready volume (the registry only reads it).
 */
import t from 'tap';
import type { MetaLog } from '../../src/meta/meta-log';
import type { VolumeRecord } from '../../src/meta/types';
import { VolumeRegistry } from '../../src/daemon/volume-registry';
import { silentLogger } from '../../src/observe/logger';
import { MiB, openStore } from '../extent/fixtures/extent-fixtures';

const volume: VolumeRecord = {
  id: 'vol:7', name: 'data', sizeBytes: 8 * MiB, extentBytes: MiB, replicas: 1, profile: 'default', state: 'ready',
  createdAtMs: 0, ownerNodeId: '', epoch: 1, readOnly: false, placement: 'spread-nodes',
};

function fixedMeta(): MetaLog {
  const map = {
    getVolume: (nameOrId: string) => (nameOrId === volume.name || nameOrId === volume.id ? volume : undefined),
    listVolumes: () => [volume],
  };
  return { map, propose: () => Promise.reject(new Error('read-only test map')), close: async () => undefined } as unknown as MetaLog;
}

void t.test('anchors keep the device open but are not connections', async (t) => {
  const store = await openStore(t);
  const registry = new VolumeRegistry(fixedMeta(), () => ({ stores: [store], route: new Uint16Array(8) }), silentLogger, () => '');
  const anchor = await registry.anchor('data');
  const first = await registry.open('data');
  const second = await registry.open('data');
  if (anchor === undefined || first === undefined || second === undefined) throw new Error('the ready volume opens');
  t.equal(first.device, anchor.device, 'one device shared by every handle');
  t.equal(second.device, anchor.device);
  t.equal(registry.connections(volume.id), 2, 'two connections, the anchor not counted');
  t.equal(registry.totalConnections(), 2);

  first.release();
  second.release();
  t.equal(registry.connections(volume.id), 0, 'no connections left');
  t.ok(registry.isInUse(volume.id), 'but the anchor keeps the volume in use');
  t.equal(registry.device(volume.id), anchor.device, 'and its device open');

  anchor.release();
  t.notOk(registry.isInUse(volume.id), 'free once the anchor goes (the device stays cached, flushed)');
  t.throws(() => anchor.release(), 'a handle is released once');
  t.equal(await registry.open('missing'), undefined, 'an unknown volume has no handle');
});
