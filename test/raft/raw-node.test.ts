// Goal: the public RawNode contract: bootstrap, the Ready/advance cycle (what is in a Ready, when
// mustSync is set, one outstanding Ready), typed errors for bad input, restart from storage, and
// that a node joining later learns the initial membership from the log.
// Method: drive RawNodes over MemoryStorage by hand and through the test cluster.
import t from 'tap';
import { decodeConfChange } from '../../src/raft/conf-change-codec';
import { RaftConfigError, StepError } from '../../src/raft/errors';
import { MemoryStorage } from '../../src/raft/memory-storage';
import { RawNode } from '../../src/raft/raw-node';
import { type Ready, makeMessage } from '../../src/raft/types';
import { AssertionError } from '../../src/util/assert';
import { SeededRandom } from '../../src/util/random';
import { Cluster } from './helpers/cluster';

const encoder = new TextEncoder();

function persist(storage: MemoryStorage, ready: Ready): void {
  if (ready.snapshot !== undefined) storage.applySnapshot(ready.snapshot);
  storage.append(ready.entries);
  if (ready.hardState !== undefined) storage.setHardState(ready.hardState);
}

void t.test('a bootstrapped single node elects itself and commits a proposal in one Ready', async (t) => {
  const storage = new MemoryStorage();
  const node = new RawNode({ id: 1 }, storage, new SeededRandom(1));
  node.bootstrap([1]);
  let ready = node.ready();
  t.same(ready.entries.map((e) => [e.index, e.type]), [[1, 'confChange']]);
  t.same(ready.committedEntries.map((e) => e.index), [1]);
  t.same(ready.hardState, { term: 1, vote: 0, commit: 1 });
  t.ok(ready.mustSync);
  persist(storage, ready);
  node.applyConfChange(decodeConfChange((ready.committedEntries[0] as { data: Uint8Array }).data));
  node.advance(ready);
  t.notOk(node.hasReady(), 'nothing left to do');

  node.campaign();
  const id = node.propose(encoder.encode('x'));
  t.same(id, { term: 2, index: 3 });
  ready = node.ready();
  t.same(ready.softState, { lead: 1, role: 'leader' });
  t.same(ready.entries.map((e) => e.index), [2, 3]);
  t.same(ready.committedEntries.map((e) => e.index), [2, 3], 'commit needs nobody else');
  t.same(ready.messages, []);
  t.throws(() => node.ready(), AssertionError, 'one outstanding Ready at a time');
  persist(storage, ready);
  node.advance(ready);
  t.equal(node.status().applied, 3);
});

void t.test('mustSync is set for term, vote, entries and snapshots, not for a commit-only change', async (t) => {
  const storage = new MemoryStorage({ metadata: { index: 1, term: 1, confState: { voters: [1, 2], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } }, data: new Uint8Array(0) });
  const node = new RawNode({ id: 2, preVote: false }, storage, new SeededRandom(2));
  node.step(makeMessage({ type: 'MsgApp', from: 1, to: 2, term: 2, index: 1, logTerm: 1, entries: [{ term: 2, index: 2, type: 'normal', data: new Uint8Array(0) }] }));
  let ready = node.ready();
  t.ok(ready.mustSync, 'new term and entry');
  persist(storage, ready);
  node.advance(ready);
  node.step(makeMessage({ type: 'MsgHeartbeat', from: 1, to: 2, term: 2, commit: 2 }));
  ready = node.ready();
  t.same(ready.hardState, { term: 2, vote: 0, commit: 2 });
  t.notOk(ready.mustSync, 'only the commit index moved');
  node.advance(ready);
});

void t.test('bad input is refused with typed errors', async (t) => {
  const node = new RawNode({ id: 1 }, new MemoryStorage(), new SeededRandom(1));
  node.bootstrap([1, 2]);
  const codeOf = (run: () => void): string | undefined => {
    try {
      run();
    } catch (error) {
      return error instanceof StepError ? error.code : String(error);
    }
    return undefined;
  };
  t.equal(codeOf(() => node.step(makeMessage({ type: 'MsgHup', from: 2, to: 1, term: 1 }))), 'RAFT_STEP_LOCAL_MESSAGE');
  node.step(makeMessage({ type: 'MsgApp', from: 2, to: 1, term: 0, index: 0, logTerm: 0 }));
  t.equal(node.status().softState.lead, 0, 'a message without a term is dropped');
  t.equal(codeOf(() => node.step(makeMessage({ type: 'MsgAppResp', from: 9, to: 1, term: 1 }))), 'RAFT_STEP_PEER_NOT_FOUND');
  t.throws(() => node.readIndex(new Uint8Array(0)), TypeError);
  t.throws(() => new RawNode({ id: 1, heartbeatTicks: 10, electionTicks: 10 }, new MemoryStorage(), new SeededRandom(1)), RaftConfigError);
  t.throws(() => new RawNode({ id: 0 }, new MemoryStorage(), new SeededRandom(1)), RaftConfigError);
  t.throws(() => node.bootstrap([1]), AssertionError, 'bootstrapping twice');
});

void t.test('a restarted node resumes term, vote and commit from storage and replays what it had not applied', async (t) => {
  const storage = new MemoryStorage();
  const node = new RawNode({ id: 1 }, storage, new SeededRandom(1));
  node.bootstrap([1]);
  const first = node.ready();
  t.throws(() => node.advance({ ...first }), AssertionError, 'advance takes the outstanding Ready itself');
  persist(storage, first);
  node.applyConfChange({ transition: 'auto', changes: [{ type: 'addNode', nodeId: 1 }], context: new Uint8Array(0) });
  node.advance(first);
  t.equal(node.status().applied, 1);
  node.campaign();
  node.propose(encoder.encode('x'));
  const ready = node.ready();
  persist(storage, ready);
  const restarted = new RawNode({ id: 1 }, storage, new SeededRandom(1));
  const status = restarted.status();
  t.same(status.hardState, { term: 2, vote: 1, commit: 3 });
  t.equal(status.softState.role, 'follower');
  t.same(restarted.ready().committedEntries.map((e) => e.index), [1, 2, 3], 'applied was 0: everything is replayed');
});

void t.test('a node that joins later learns the initial membership from the bootstrapped log', async (t) => {
  const cluster = new Cluster(7);
  for (const id of [1, 2, 3]) {
    cluster.add(id, { id }, new MemoryStorage()).raw.bootstrap([1, 2, 3]);
  }
  cluster.add(4, { id: 4 }, new MemoryStorage());
  const settle = () => {
    for (let round = 0; round < 50; round++) {
      for (const id of cluster.ids()) cluster.processReady(id);
      const messages = cluster.inbox;
      cluster.inbox = [];
      for (const m of messages) cluster.deliver(m);
    }
  };
  settle(); // apply the bootstrap entries first: no campaign while conf changes are unapplied
  cluster.get(1).raw.campaign();
  settle();
  cluster.get(1).raw.proposeConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: 4 }], context: new Uint8Array(0) });
  settle();
  t.same(cluster.get(4).confState, { voters: [1, 2, 3], votersOutgoing: [], learners: [4], learnersNext: [], autoLeave: false });
  t.equal(cluster.get(4).raw.status().softState.lead, 1);
});
