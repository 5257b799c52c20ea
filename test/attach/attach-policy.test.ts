/**
 * Goal: the attach policy turns requests into the plans a storage engineer expects (defaults,
 * caps, read-only, ioctl limits) and turns kernel failures into coded errors that say what to do.
 *
 * Method: the pure functions of src/attach/attach-policy.ts with hand-made capabilities and
 * NativeError-shaped errors.
 */
import t from 'tap';
import type { BlockCapabilities } from '../../src/block/block-device';
import {
  attachDefaults, attachErrorOf, backendIdFor, isMissingNetlinkFamily, noNbdDriverMessage, planAttach, reconnectDelayMs, satisfies,
} from '../../src/attach/attach-policy';
import { fakeNativeError } from '../../src/attach/fake-kernel';
import { CairnError } from '../../src/errors/cairn-error';
import { TransmissionFlag } from '../../src/nbd';

const capabilities: BlockCapabilities = {
  canWrite: true, canFlush: true, canTrim: true, canZero: true, canFastZero: true, canMultiConn: true, canCache: true, canExtents: true, fua: 'native',
};
const context = { method: 'netlink' as const, cpuCount: 4, capabilities, volumeReadOnly: false };

void t.test('a netlink plan defaults to one connection per CPU, 30 s I/O and 120 s dead-connection timeouts', async (t) => {
  const plan = planAttach({}, context);
  t.same({ ...plan, serverFlags: undefined }, {
    method: 'netlink', connections: 4, readOnly: false, ioTimeoutSeconds: 30, deadConnTimeoutSeconds: 120, blockBytes: 4096, serverFlags: undefined,
  });
  t.ok(plan.serverFlags & TransmissionFlag.CAN_MULTI_CONN);
  t.ok(plan.serverFlags & TransmissionFlag.SEND_FLUSH);
  t.notOk(plan.serverFlags & TransmissionFlag.SEND_DF, 'no DF: the kernel speaks simple replies only');
  t.equal(planAttach({}, { ...context, cpuCount: 64 }).connections, attachDefaults.connectionsDefaultMax, 'capped');
  t.equal(planAttach({}, { ...context, cpuCount: 0 }).connections, 1, 'at least one');
});

void t.test('explicit values win, and bad ones are refused with the field named', async (t) => {
  const plan = planAttach({ connections: 2, ioTimeoutSeconds: 5, deadConnTimeoutSeconds: 600 }, context);
  t.equal(plan.connections, 2);
  t.equal(plan.ioTimeoutSeconds, 5);
  t.equal(plan.deadConnTimeoutSeconds, 600);
  t.throws(() => planAttach({ connections: 0 }, context), { code: 'CAIRN_INVALID_ARGUMENT', message: /connections must be an integer from 1 to 64/ });
  t.throws(() => planAttach({ connections: 65 }, context), { code: 'CAIRN_INVALID_ARGUMENT' });
  t.throws(() => planAttach({ connections: 1.5 }, context), { code: 'CAIRN_INVALID_ARGUMENT' });
  t.throws(() => planAttach({ ioTimeoutSeconds: -1 }, context), { code: 'CAIRN_INVALID_ARGUMENT', message: /ioTimeoutSeconds/ });
  t.throws(() => planAttach({ deadConnTimeoutSeconds: 1e12 }, context), { code: 'CAIRN_INVALID_ARGUMENT', message: /deadConnTimeoutSeconds/ });
  t.throws(() => planAttach({ connections: 2 }, { ...context, capabilities: { ...capabilities, canMultiConn: false } }),
    { code: 'CAIRN_INVALID_ARGUMENT', message: /no multi-conn/ });
});

void t.test('read-only comes from the request or the volume and shows in the flags', async (t) => {
  for (const plan of [planAttach({ readOnly: true }, context), planAttach({}, { ...context, volumeReadOnly: true })]) {
    t.ok(plan.readOnly);
    t.ok(plan.serverFlags & TransmissionFlag.READ_ONLY);
    t.notOk(plan.serverFlags & TransmissionFlag.SEND_TRIM);
    t.notOk(plan.serverFlags & TransmissionFlag.SEND_FUA);
  }
});

void t.test('an ioctl plan waits instead of timing out and has no dead-connection timeout', async (t) => {
  const plan = planAttach({}, { ...context, method: 'ioctl' });
  t.equal(plan.ioTimeoutSeconds, attachDefaults.ioctlIoTimeoutSeconds);
  t.equal(plan.deadConnTimeoutSeconds, 0);
  t.equal(planAttach({ deadConnTimeoutSeconds: 0 }, { ...context, method: 'ioctl' }).deadConnTimeoutSeconds, 0);
  t.throws(() => planAttach({ deadConnTimeoutSeconds: 10 }, { ...context, method: 'ioctl' }), { message: /ioctl path has no dead-connection timeout/ });
});

void t.test('a repeated request is satisfied only by an attachment with the same options', async (t) => {
  const existing = { method: 'netlink' as const, connections: 2, readOnly: false };
  t.ok(satisfies(existing, {}));
  t.ok(satisfies(existing, { connections: 2, readOnly: false, method: 'auto' }));
  t.ok(satisfies(existing, { method: 'netlink' }));
  t.notOk(satisfies(existing, { connections: 1 }));
  t.notOk(satisfies(existing, { readOnly: true }));
  t.notOk(satisfies(existing, { method: 'ioctl' }));
});

void t.test('backend identifiers name the volume and a cookie, in printable ASCII', async (t) => {
  t.equal(backendIdFor('vol-7', 'abcd'), 'cairn:vol-7:abcd');
  t.throws(() => backendIdFor('bad id', 'abcd'), CairnError);
  t.throws(() => backendIdFor('x'.repeat(250), 'abcd'), CairnError);
});

void t.test('re-connection back-off grows and is capped', async (t) => {
  t.same([0, 1, 2, 3, 4, 5, 50].map(reconnectDelayMs), [100, 250, 500, 1000, 2000, 2000, 2000]);
});

void t.test('kernel failures become coded errors that say what to do', async (t) => {
  const missing = fakeNativeError('ENOENT', 'genl CTRL_CMD_GETFAMILY nbd', 'no family', 2);
  t.ok(isMissingNetlinkFamily(missing));
  t.notOk(isMissingNetlinkFamily(fakeNativeError('ENOENT', 'open', 'no device', 2)));
  t.match(attachErrorOf(missing, 'attach volume \'a\''), { code: 'CAIRN_PLATFORM', message: `cannot attach volume 'a': ${noNbdDriverMessage}` });
  t.match(attachErrorOf(fakeNativeError('EPERM', 'NBD_CMD_CONNECT', 'x'), 'attach'), { code: 'CAIRN_PLATFORM', message: /run cairnd as root/ });
  t.match(attachErrorOf(fakeNativeError('EBUSY', 'NBD_CMD_CONNECT', 'x'), 'attach'), { code: 'CAIRN_UNAVAILABLE', retryable: true });
  t.match(attachErrorOf(fakeNativeError('EIO', 'fsync', 'x'), 'flush'), { code: 'CAIRN_IO', message: /cannot flush: fsync: x/ });
  t.match(attachErrorOf(new Error('plain'), 'attach'), { code: 'CAIRN_IO', message: 'cannot attach: plain' });
  const coded = new CairnError('CAIRN_VOLUME_NOT_FOUND', 'gone');
  t.equal(attachErrorOf(coded, 'attach'), coded, 'coded errors pass through');
});
