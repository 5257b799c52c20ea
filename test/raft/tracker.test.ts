// Goal: the flow-control pieces behave: the inflights window is bounded by count and bytes and
// frees in order; Progress moves between probe, replicate and snapshot as documented and ignores
// stale responses.
// Method: drive Inflights and Progress directly and compare with expected states.
import t from 'tap';
import { Inflights } from '../../src/raft/inflights';
import { Progress } from '../../src/raft/progress';
import { AssertionError } from '../../src/util/assert';

const progress = (match: number, next: number, capacity = 4, bytesMax = 1000) =>
  new Progress({ match, next, isLearner: false, recentActive: true, inflights: new Inflights(capacity, bytesMax) });

void t.test('the inflights window fills by count or by bytes and frees acknowledged messages in order', async (t) => {
  const window = new Inflights(3, 100);
  window.add(5, 10);
  window.add(7, 10);
  t.notOk(window.full());
  window.add(9, 10);
  t.ok(window.full(), 'three messages fill a window of three');
  t.throws(() => window.add(10, 1), AssertionError);
  window.freeLE(7);
  t.equal(window.count, 1);
  t.equal(window.bytes, 10);
  window.add(12, 95);
  t.ok(window.full(), '105 bytes reach the 100-byte bound');
  const copy = window.clone();
  window.freeLE(100);
  t.equal(window.count, 0);
  t.equal(copy.count, 2, 'a clone is independent');
  t.throws(() => copy.add(11, 1), AssertionError, 'indexes must increase');
});

void t.test('the inflights ring wraps around', async (t) => {
  const window = new Inflights(2, 1000);
  for (let index = 1; index <= 10; index++) {
    window.freeLE(index - 2); // keep the newest one, make room for this one
    window.add(index, 1);
    t.equal(window.count, Math.min(index, 2));
  }
});

void t.test('replicate state advances next optimistically and pauses when the window is full', async (t) => {
  const pr = progress(5, 6, 2);
  pr.becomeReplicate();
  t.ok(pr.canSendEntries(10));
  pr.sentAppend(3, 30, 0);
  t.equal(pr.next, 9);
  pr.sentAppend(2, 20, 0);
  t.ok(pr.isPaused());
  t.notOk(pr.canSendEntries(12));
  t.ok(pr.maybeUpdate(8));
  pr.inflights.freeLE(8);
  t.notOk(pr.isPaused());
  t.notOk(pr.maybeUpdate(7), 'a stale acknowledgement changes nothing');
  t.equal(pr.match, 8);
});

void t.test('probe state sends one append per heartbeat round', async (t) => {
  const pr = progress(0, 6);
  t.ok(pr.shouldSendAppend(10, 0));
  pr.sentAppend(4, 40, 0);
  t.equal(pr.next, 6, 'probe does not advance next');
  t.notOk(pr.shouldSendAppend(10, 0));
  pr.probeSent = false; // a heartbeat response arrived
  t.ok(pr.shouldSendAppend(10, 0));
});

void t.test('rejections move next back only when they are not stale', async (t) => {
  const probing = progress(3, 10);
  t.notOk(probing.maybeDecrTo(7, 5), 'not the index we probed');
  t.ok(probing.maybeDecrTo(9, 5));
  t.equal(probing.next, 5);
  t.ok(probing.maybeDecrTo(4, 1));
  t.equal(probing.next, 4, 'never below match + 1');
  const replicating = progress(6, 7);
  replicating.becomeReplicate();
  replicating.sentAppend(3, 3, 0);
  t.notOk(replicating.maybeDecrTo(5, 1), 'already acknowledged');
  t.ok(replicating.maybeDecrTo(8, 1));
  t.equal(replicating.next, 7, 'replicate falls back to match + 1');
});

void t.test('after a snapshot the follower is probed from after the snapshot', async (t) => {
  const pr = progress(2, 3);
  pr.becomeSnapshot(20);
  t.ok(pr.isPaused());
  t.notOk(pr.shouldSendAppend(30, 30));
  pr.maybeUpdate(20);
  pr.becomeProbe();
  t.equal(pr.next, 21);
  t.equal(pr.pendingSnapshot, 0);
  t.match(pr.describe(), /^probe match=20 next=21/);
});

void t.test('a commit-only append goes out when the follower may not know the commit index', async (t) => {
  const pr = progress(5, 6);
  pr.becomeReplicate();
  t.ok(pr.canBumpCommit(5));
  pr.sentAppend(0, 0, 5);
  t.notOk(pr.canBumpCommit(5));
  t.notOk(pr.shouldSendAppend(5, 5), 'nothing new to say');
});
