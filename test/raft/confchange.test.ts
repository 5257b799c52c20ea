// Goal: membership changes follow joint consensus rules and keep the tracker invariants, and the
// configuration-change encoding round-trips and rejects malformed bytes without throwing anything
// but ConfChangeError.
// Method: apply change sequences with the pure Changer and compare the resulting ConfState;
// encode/decode tables plus truncated and corrupted inputs.
import t from 'tap';
import { decodeConfChange, encodeConfChange, jointMode } from '../../src/raft/conf-change-codec';
import { Changer, type ConfigAndProgress, restoreConfig } from '../../src/raft/confchange';
import { ConfChangeError } from '../../src/raft/errors';
import { confStateOf } from '../../src/raft/tracker';
import type { ConfChange, ConfChangeSingle, ConfState } from '../../src/raft/types';

const limits = { inflightMessagesMax: 4, inflightBytesMax: 1024 };
const empty: ConfigAndProgress = { config: { voters: [new Set(), new Set()], learners: new Set(), learnersNext: new Set(), autoLeave: false }, progress: new Map() };
const v = (nodeId: number): ConfChangeSingle => ({ type: 'addNode', nodeId });
const l = (nodeId: number): ConfChangeSingle => ({ type: 'addLearner', nodeId });
const r = (nodeId: number): ConfChangeSingle => ({ type: 'removeNode', nodeId });
const changer = (base: ConfigAndProgress) => new Changer(base, limits, 10);
const state = (base: ConfigAndProgress) => confStateOf(base.config);
const start = (...voters: number[]) => restoreConfig({ voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false }, limits, 10);

void t.test('simple changes add and remove one voter at a time and manage learners', async (t) => {
  let current = changer(empty).simple([v(1)]);
  current = changer(current).simple([v(2)]);
  current = changer(current).simple([l(3)]);
  t.same(state(current), { voters: [1, 2], votersOutgoing: [], learners: [3], learnersNext: [], autoLeave: false });
  current = changer(current).simple([v(3)]);
  t.same(state(current).voters, [1, 2, 3], 'a learner is promoted');
  t.equal(current.progress.get(3)?.isLearner, false);
  current = changer(current).simple([l(1)]);
  t.same([state(current).voters, state(current).learners], [[2, 3], [1]], 'a voter is demoted');
  t.throws(() => changer(current).simple([v(4), v(5)]), ConfChangeError, 'two voters at once need joint consensus');
  t.throws(() => changer(start(1)).simple([r(1)]), ConfChangeError, 'removing every voter');
});

void t.test('entering and leaving a joint configuration', async (t) => {
  const base = start(1, 2, 3);
  const joint = changer(base).enterJoint(true, [r(1), v(4), l(3)]);
  t.same(state(joint), { voters: [2, 4], votersOutgoing: [1, 2, 3], learners: [], learnersNext: [3], autoLeave: true });
  t.ok(joint.progress.has(1), 'outgoing voters keep their progress');
  t.throws(() => changer(joint).enterJoint(false, [v(5)]), ConfChangeError, 'already joint');
  t.throws(() => changer(joint).simple([v(5)]), ConfChangeError, 'no simple change while joint');
  const left = changer(joint).leaveJoint();
  t.same(state(left), { voters: [2, 4], votersOutgoing: [], learners: [3], learnersNext: [], autoLeave: false });
  t.notOk(left.progress.has(1), 'the removed voter is gone');
  t.equal(left.progress.get(3)?.isLearner, true);
  t.throws(() => changer(left).leaveJoint(), ConfChangeError, 'not joint');
  t.same(state(base).voters, [1, 2, 3], 'the input is never mutated');
});

void t.test('a ConfState restores to the same configuration, joint ones included', async (t) => {
  const states: ConfState[] = [
    { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false },
    { voters: [1, 2, 3], votersOutgoing: [1, 2, 4, 6], learners: [5], learnersNext: [4], autoLeave: true },
    { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false },
  ];
  for (const confState of states) t.same(state(restoreConfig(confState, limits, 10)), confState);
});

void t.test('new members start probing at the leader\'s last index', async (t) => {
  const added = changer(start(1)).simple([v(2)]);
  t.same([added.progress.get(2)?.match, added.progress.get(2)?.next, added.progress.get(2)?.state], [0, 10, 'probe']);
});

void t.test('conf changes round-trip through their encoding', async (t) => {
  const changes: ConfChange[] = [
    { transition: 'auto', changes: [], context: new Uint8Array(0) },
    { transition: 'explicit', changes: [v(1), l(2 ** 40), r(7)], context: new Uint8Array([1, 2, 3]) },
    { transition: 'implicit', changes: [v(Number.MAX_SAFE_INTEGER)], context: new Uint8Array(0) },
  ];
  for (const change of changes) t.same(decodeConfChange(encodeConfChange(change)), change);
  t.same(jointMode(changes[0] as ConfChange), { joint: false, autoLeave: false });
  t.same(jointMode(changes[1] as ConfChange), { joint: true, autoLeave: false });
  t.same(jointMode(changes[2] as ConfChange), { joint: true, autoLeave: true });
  t.throws(() => encodeConfChange({ transition: 'auto', changes: [v(0)], context: new Uint8Array(0) }), ConfChangeError);
});

void t.test('malformed conf change bytes are rejected with ConfChangeError, never a crash', async (t) => {
  const good = encodeConfChange({ transition: 'explicit', changes: [v(1), l(2)], context: new Uint8Array([9]) });
  for (let length = 0; length < good.length; length++) {
    t.throws(() => decodeConfChange(good.subarray(0, length)), ConfChangeError, `truncated to ${length}`);
  }
  const corrupt = (offset: number, value: number) => {
    const copy = good.slice();
    copy[offset] = value;
    return copy;
  };
  t.throws(() => decodeConfChange(corrupt(0, 9)), ConfChangeError, 'version');
  t.throws(() => decodeConfChange(corrupt(1, 9)), ConfChangeError, 'transition');
  t.throws(() => decodeConfChange(corrupt(5, 200)), ConfChangeError, 'count beyond the data');
  t.throws(() => decodeConfChange(corrupt(6, 9)), ConfChangeError, 'change type');
  t.throws(() => decodeConfChange(corrupt(7, 0xff)), ConfChangeError, 'id beyond 2^53');
  t.throws(() => decodeConfChange(new Uint8Array([...good, 0])), ConfChangeError, 'trailing bytes');
});
