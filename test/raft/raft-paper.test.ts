// Goal: each rule of the Raft paper (Ongaro & Ousterhout, extended version) holds in the core.
// Method: build the internal Raft state machine in a known state, step messages into it, and
// check its state and outgoing messages; each test ends with the section it verifies.
import t from 'tap';
import { NotLeaderError, ProposalDroppedError } from '../../src/raft/errors';
import { encodeConfChange } from '../../src/raft/conf-change-codec';
import { type Message, noNode } from '../../src/raft/types';
import {
  Network, applyCommitted, entriesWithTerms, entry, memoryStorage, message, newRaft, persist, readMessages, tickElection, voters,
} from './helpers/raft-util';

const encoder = new TextEncoder();
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const types = (messages: Message[]): string[] => messages.map((m) => `${m.to}:${m.type}`);

function caught(run: () => void): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** A leader of term 1 over `peers` whose no-op is committed and applied everywhere. */
function electedLeader(peers = [1, 2, 3]) {
  const net = new Network(peers.map((id) => newRaft(id, peers)));
  net.campaign(1);
  return { net, leader: net.get(1) };
}

// --- §5.1 basics ------------------------------------------------------------------------------

void t.test('every role adopts a higher term from any message and becomes a follower', async (t) => {
  for (const role of ['follower', 'candidate', 'leader'] as const) {
    const r = newRaft(1, [1, 2, 3]);
    if (role === 'follower') r.becomeFollower(1, 2);
    if (role !== 'follower') r.becomeCandidate();
    if (role === 'leader') r.becomeLeader();
    r.step(message({ type: 'MsgApp', from: 3, to: 1, term: 2 }));
    t.equal(r.term, 2, role);
    t.equal(r.role, 'follower', role);
    t.equal(r.lead, 3, role);
  }
  // Reference: §5.1
});

void t.test('a message from an older term is ignored', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.becomeFollower(2, 2);
  r.step(message({ type: 'MsgApp', from: 3, to: 1, term: 1, entries: [entry(1, 1)] }));
  t.equal(r.log.lastIndex(), 0, 'nothing appended');
  t.equal(r.lead, 2);
  t.same(readMessages(r), [], 'no answer without pre-vote or check-quorum');
  // Reference: §5.1
});

// --- §5.2 leader election ---------------------------------------------------------------------

void t.test('nodes start as followers at term 0', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  t.equal(r.role, 'follower');
  t.equal(r.term, 0);
  // Reference: §5.2
});

void t.test('the leader sends a heartbeat to every follower each heartbeat interval', async (t) => {
  const r = newRaft(1, [1, 2, 3], { heartbeatTicks: 2 });
  r.becomeCandidate();
  r.becomeLeader();
  readMessages(r);
  r.tick();
  t.same(readMessages(r), [], 'nothing before the interval ends');
  r.tick();
  const sent = readMessages(r);
  t.same(types(sent), ['2:MsgHeartbeat', '3:MsgHeartbeat']);
  t.ok(sent.every((m) => m.term === 1 && m.commit === 0), 'commit is min(match, committed)');
  // Reference: §5.2
});

void t.test('a follower whose election timeout passes becomes a candidate and asks for votes', async (t) => {
  for (const start of ['follower', 'candidate'] as const) {
    const r = newRaft(1, [1, 2, 3]);
    if (start === 'candidate') r.becomeCandidate();
    const term = r.term;
    tickElection(r);
    t.equal(r.role, 'candidate', start);
    t.equal(r.term, term + 1, `${start}: term raised`);
    t.equal(r.vote, 1, `${start}: voted for itself`);
    const sent = readMessages(r);
    t.same(types(sent), ['2:MsgVote', '3:MsgVote'], start);
    t.ok(sent.every((m) => m.term === term + 1 && m.index === 0 && m.logTerm === 0), start);
  }
  // Reference: §5.2
});

void t.test('one round of votes: a majority of grants wins, a majority of rejections loses', async (t) => {
  const cases: { size: number; votes: Record<number, boolean>; role: string }[] = [
    { size: 1, votes: {}, role: 'leader' },
    { size: 3, votes: { 2: true, 3: true }, role: 'leader' },
    { size: 3, votes: { 2: true }, role: 'leader' },
    { size: 5, votes: { 2: true, 3: true, 4: true, 5: true }, role: 'leader' },
    { size: 5, votes: { 2: true, 3: true }, role: 'leader' },
    { size: 3, votes: {}, role: 'candidate' },
    { size: 5, votes: { 2: true }, role: 'candidate' },
    { size: 5, votes: { 2: false, 3: false }, role: 'candidate' },
    { size: 3, votes: { 2: false, 3: false }, role: 'follower' },
    { size: 5, votes: { 2: false, 3: false, 4: false }, role: 'follower' },
  ];
  for (const { size, votes, role } of cases) {
    const peers = Array.from({ length: size }, (_, i) => i + 1);
    const r = newRaft(1, peers);
    r.step(message({ type: 'MsgHup', from: 1 }));
    for (const [from, granted] of Object.entries(votes)) {
      r.step(message({ type: 'MsgVoteResp', from: Number(from), to: 1, term: r.term, reject: !granted }));
    }
    t.equal(r.role, role, `${size} voters, votes ${JSON.stringify(votes)}`);
    t.equal(r.term, 1);
  }
  // Reference: §5.2
});

void t.test('a follower votes at most once per term, first come first served', async (t) => {
  const cases = [
    { vote: noNode, candidate: 2, granted: true },
    { vote: noNode, candidate: 3, granted: true },
    { vote: 2, candidate: 2, granted: true },
    { vote: 3, candidate: 3, granted: true },
    { vote: 2, candidate: 3, granted: false },
    { vote: 3, candidate: 2, granted: false },
  ];
  for (const { vote, candidate, granted } of cases) {
    const r = newRaft(1, [1, 2, 3]);
    r.term = 1;
    r.vote = vote;
    r.step(message({ type: 'MsgVote', from: candidate, to: 1, term: 1 }));
    const [reply] = readMessages(r);
    t.equal(reply?.reject, !granted, `voted ${vote}, asked by ${candidate}`);
    t.equal(r.vote, granted ? candidate : vote, 'the vote sticks');
  }
  // Reference: §5.2
});

void t.test('a candidate that hears from a leader of its term becomes its follower', async (t) => {
  for (const type of ['MsgApp', 'MsgHeartbeat'] as const) {
    const r = newRaft(1, [1, 2, 3]);
    r.step(message({ type: 'MsgHup', from: 1 }));
    r.step(message({ type, from: 2, to: 1, term: r.term }));
    t.equal(r.role, 'follower', type);
    t.equal(r.lead, 2, type);
    t.equal(r.term, 1, type);
  }
  // Reference: §5.2
});

void t.test('election timeouts are drawn uniformly from [election, 2 × election)', async (t) => {
  const seen = new Set<number>();
  for (let seed = 0; seed < 400; seed++) {
    const r = newRaft(1, [1, 2, 3], { seed });
    seen.add(r.randomizedElectionTimeout);
  }
  t.same([...seen].sort((a, b) => a - b), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  // Reference: §5.2
});

void t.test('randomized timeouts rarely make two followers start an election at the same tick', async (t) => {
  let conflicts = 0;
  for (let trial = 0; trial < 500; trial++) {
    const rafts = [1, 2, 3, 4, 5].map((id) => newRaft(id, [1, 2, 3, 4, 5], { seed: trial * 10 + id }));
    let candidates = 0;
    for (let tick = 0; tick < 20 && candidates === 0; tick++) {
      for (const r of rafts) r.tick();
      candidates = rafts.filter((r) => r.role === 'candidate').length;
    }
    if (candidates > 1) conflicts++;
  }
  t.ok(conflicts / 500 < 0.3, `${conflicts} of 500 trials had simultaneous candidates`);
  // Reference: §5.2
});

// --- §5.3 log replication ---------------------------------------------------------------------

void t.test('the leader appends a proposal to its log and sends it to every follower', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.becomeCandidate();
  r.becomeLeader();
  for (const id of [2, 3]) r.step(message({ type: 'MsgAppResp', from: id, to: 1, term: 1, index: 1 }));
  readMessages(r);
  r.step(message({ type: 'MsgProp', from: 1, entries: [entry(0, 0, 'some data')] }));
  t.equal(r.log.lastIndex(), 2);
  const sent = readMessages(r);
  t.same(types(sent), ['2:MsgApp', '3:MsgApp']);
  for (const m of sent) {
    t.equal(m.index, 1, 'previous index');
    t.equal(m.logTerm, 1, 'previous term');
    t.same(m.entries.map((e) => [e.term, e.index, text(e.data)]), [[1, 2, 'some data']]);
  }
  // Reference: §5.3
});

void t.test('the leader commits an entry stored on a majority and hands it out for applying', async (t) => {
  const { net, leader } = electedLeader();
  applyCommitted(leader);
  net.dropped.add('1->3');
  net.send(message({ type: 'MsgProp', from: 1, to: 1, entries: [entry(0, 0, 'x')] }));
  t.equal(leader.log.committed, 2, 'one follower is enough in three');
  t.same(applyCommitted(leader).map((e) => text(e.data)), ['x']);
  // Reference: §5.3
});

void t.test('the leader needs acknowledgements from a majority, itself included', async (t) => {
  const cases = [
    { size: 1, acks: [], committed: true },
    { size: 3, acks: [], committed: false },
    { size: 3, acks: [2], committed: true },
    { size: 5, acks: [2], committed: false },
    { size: 5, acks: [2, 3], committed: true },
  ];
  for (const { size, acks, committed } of cases) {
    const peers = Array.from({ length: size }, (_, i) => i + 1);
    const r = newRaft(1, peers);
    r.becomeCandidate();
    r.becomeLeader();
    for (const id of peers.slice(1)) r.step(message({ type: 'MsgAppResp', from: id, to: 1, term: 1, index: 1 }));
    r.step(message({ type: 'MsgProp', from: 1, entries: [entry(0, 0, 'x')] }));
    for (const id of acks) r.step(message({ type: 'MsgAppResp', from: id, to: 1, term: 1, index: 2 }));
    t.equal(r.log.committed === 2, committed, `${size} voters, acks from ${JSON.stringify(acks)}`);
  }
  // Reference: §5.3
});

void t.test('committing an entry commits every entry before it, including earlier leaders\' entries', async (t) => {
  const storage = memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 2), 2);
  const r = newRaft(1, [1, 2, 3], { storage });
  r.becomeCandidate();
  r.becomeLeader(); // term 3, no-op at 3
  r.step(message({ type: 'MsgProp', from: 1, entries: [entry(0, 0, 'x')] }));
  for (const id of [2, 3]) r.step(message({ type: 'MsgAppResp', from: id, to: 1, term: 3, index: 4 }));
  t.equal(r.log.committed, 4);
  t.same(applyCommitted(r).map((e) => `${e.term}/${e.index}`), ['1/1', '2/2', '3/3', '3/4']);
  // Reference: §5.3
});

void t.test('a follower commits and applies up to the leader commit it learns from appends', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.becomeFollower(1, 2);
  r.step(message({ type: 'MsgApp', from: 2, to: 1, term: 1, index: 0, logTerm: 0, commit: 1, entries: [entry(1, 1, 'a'), entry(1, 2, 'b')] }));
  t.equal(r.log.committed, 1);
  t.same(applyCommitted(r).map((e) => text(e.data)), ['a']);
  // Reference: §5.3
});

void t.test('a follower rejects an append whose previous entry it does not hold, with a hint', async (t) => {
  const cases = [
    { index: 2, logTerm: 2, reject: false, hint: undefined },
    { index: 2, logTerm: 3, reject: true, hint: { term: 2, index: 2 } }, // conflict: skip our term 2
    { index: 3, logTerm: 3, reject: true, hint: { term: 0, index: 3 } }, // our log is too short
  ];
  for (const { index, logTerm, reject, hint } of cases) {
    const r = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 2), 2) });
    r.becomeFollower(2, 2);
    r.step(message({ type: 'MsgApp', from: 2, to: 1, term: 2, index, logTerm }));
    const [reply] = readMessages(r);
    t.equal(reply?.reject, reject, `prev ${logTerm}/${index}`);
    if (hint !== undefined) t.same({ term: reply?.logTerm, index: reply?.rejectHint }, hint, `hint for ${logTerm}/${index}`);
  }
  // Reference: §5.3
});

void t.test('a follower deletes conflicting entries and appends new ones, and only those', async (t) => {
  const cases = [
    { index: 2, logTerm: 2, entries: [entry(3, 3)], want: [1, 2, 3] },
    { index: 1, logTerm: 1, entries: [entry(3, 2), entry(4, 3)], want: [1, 3, 4] },
    { index: 0, logTerm: 0, entries: [entry(1, 1)], want: [1, 2] }, // a match truncates nothing
    { index: 0, logTerm: 0, entries: [entry(3, 1)], want: [3] },
  ];
  for (const { index, logTerm, entries, want } of cases) {
    const r = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 2), 2) });
    r.becomeFollower(4, 2);
    r.step(message({ type: 'MsgApp', from: 2, to: 1, term: 4, index, logTerm, entries }));
    t.same(r.log.slice(1, r.log.lastIndex() + 1, Infinity).map((e) => e.term), want, `append after ${logTerm}/${index}`);
  }
  // Reference: §5.3
});

void t.test('the leader makes every divergent follower log identical to its own (figure 7)', async (t) => {
  const leaderTerms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followers = [
    [1, 1, 1, 4, 4, 5, 5, 6, 6],
    [1, 1, 1, 4],
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    [1, 1, 1, 4, 4, 4, 4],
    [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  ];
  for (const [i, followerTerms] of followers.entries()) {
    const leader = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(...leaderTerms), 7) });
    const follower = newRaft(2, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(...followerTerms), 7) });
    leader.step(message({ type: 'MsgHup', from: 1 }));
    readMessages(leader);
    leader.step(message({ type: 'MsgVoteResp', from: 3, to: 1, term: 8 }));
    t.equal(leader.role, 'leader');
    const net = new Network([leader, follower]);
    net.send(...readMessages(leader));
    net.send(message({ type: 'MsgBeat', from: 1, to: 1 }));
    const log = (r: typeof leader) => r.log.slice(1, r.log.lastIndex() + 1, Infinity).map((e) => `${e.term}/${e.index}`);
    t.same(log(follower), log(leader), `follower ${String.fromCharCode(97 + i)}`);
  }
  // Reference: §5.3
});

// --- §5.4 safety ------------------------------------------------------------------------------

void t.test('vote requests carry the candidate\'s last log term and index', async (t) => {
  const r = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 2), 2) });
  tickElection(r);
  for (const m of readMessages(r)) t.same([m.type, m.term, m.logTerm, m.index], ['MsgVote', 3, 2, 2]);
  // Reference: §5.4.1
});

void t.test('a voter refuses candidates whose log is less up to date than its own', async (t) => {
  const cases = [
    { logTerm: 1, index: 1, granted: false }, // same last term, shorter
    { logTerm: 1, index: 2, granted: true }, // same
    { logTerm: 1, index: 3, granted: true }, // longer
    { logTerm: 2, index: 1, granted: true }, // higher last term wins even if shorter
    { logTerm: 0, index: 5, granted: false }, // lower last term loses even if longer
  ];
  for (const { logTerm, index, granted } of cases) {
    const r = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 1)) });
    r.step(message({ type: 'MsgVote', from: 2, to: 1, term: 3, logTerm, index }));
    t.equal(readMessages(r)[0]?.reject, !granted, `candidate log ${logTerm}/${index}`);
  }
  // Reference: §5.4.1
});

void t.test('a leader does not commit an earlier term\'s entry by counting replicas (figure 8)', async (t) => {
  for (const [acked, committed] of [[1, 0], [2, 0], [3, 3]] as const) {
    const r = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 2), 2) });
    r.becomeCandidate();
    r.becomeLeader(); // term 3; its no-op is entry 3
    r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 3, index: acked }));
    t.equal(r.log.committed, committed, `a majority holds index ${acked}`);
  }
  // Reference: §5.4.2
});

// --- §5.5 follower and candidate crashes ------------------------------------------------------

void t.test('appends are idempotent: a duplicate or stale append never truncates the log', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.becomeFollower(1, 2);
  const full = message({ type: 'MsgApp', from: 2, to: 1, term: 1, index: 0, logTerm: 0, entries: [entry(1, 1), entry(1, 2), entry(1, 3)] });
  r.step(full);
  r.step(full);
  r.step(message({ type: 'MsgApp', from: 2, to: 1, term: 1, index: 0, logTerm: 0, entries: [entry(1, 1)] }));
  t.equal(r.log.lastIndex(), 3, 'the stale prefix did not shorten the log');
  t.same(readMessages(r).map((m) => m.index), [3, 3, 1], 'each answer covers only what its message proved');
  // Reference: §5.5
});

void t.test('the leader keeps retrying a crashed follower until it answers, then catches it up', async (t) => {
  const { net, leader } = electedLeader();
  net.isolate(3);
  for (const data of ['a', 'b']) net.send(message({ type: 'MsgProp', from: 1, to: 1, entries: [entry(0, 0, data)] }));
  net.recover();
  for (let i = 0; i < 3; i++) net.send(message({ type: 'MsgBeat', from: 1, to: 1 }));
  t.equal(net.get(3).log.lastIndex(), leader.log.lastIndex());
  t.equal(net.get(3).log.committed, leader.log.committed);
  // Reference: §5.5
});

// --- §5.6 timing ------------------------------------------------------------------------------

void t.test('a follower that keeps hearing heartbeats never starts an election', async (t) => {
  const r = newRaft(2, [1, 2, 3]);
  r.becomeFollower(1, 1);
  for (let tick = 0; tick < 100; tick++) {
    r.tick();
    r.step(message({ type: 'MsgHeartbeat', from: 1, to: 2, term: 1 }));
  }
  t.equal(r.role, 'follower');
  t.equal(r.term, 1);
  // Reference: §5.6
});

// --- §6 membership changes --------------------------------------------------------------------

void t.test('in a joint configuration an entry commits only with majorities of both halves', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.becomeCandidate();
  r.becomeLeader();
  r.applyConfChange({ transition: 'explicit', context: new Uint8Array(0), changes: [
    { type: 'removeNode', nodeId: 2 }, { type: 'removeNode', nodeId: 3 }, { type: 'addNode', nodeId: 4 }, { type: 'addNode', nodeId: 5 },
  ] });
  r.step(message({ type: 'MsgProp', from: 1, entries: [entry(0, 0, 'x')] }));
  for (const id of [4, 5]) r.step(message({ type: 'MsgAppResp', from: id, to: 1, term: 1, index: 2 }));
  t.equal(r.log.committed, 0, 'the new half agrees but the old one does not');
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 1, index: 2 }));
  t.equal(r.log.committed, 2, 'both halves now hold it');
  // Reference: §6
});

void t.test('a leader removed by a configuration change steps down once the change is applied', async (t) => {
  const { leader } = electedLeader();
  leader.applyConfChange({ transition: 'auto', context: new Uint8Array(0), changes: [{ type: 'removeNode', nodeId: 1 }] });
  t.equal(leader.role, 'follower');
  t.notOk(leader.promotable(), 'a removed node never campaigns');
  // Reference: §6
});

void t.test('a learner gets the log but never campaigns and never counts toward a commit', async (t) => {
  const storage = memoryStorage({ voters: [1, 2], votersOutgoing: [], learners: [3], learnersNext: [], autoLeave: false });
  const learner = newRaft(3, [], { storage });
  tickElection(learner);
  learner.tick();
  t.equal(learner.role, 'follower', 'no election from a learner');
  const leader = newRaft(1, [], { storage: memoryStorage({ voters: [1, 2], votersOutgoing: [], learners: [3], learnersNext: [], autoLeave: false }) });
  leader.step(message({ type: 'MsgHup', from: 1 }));
  t.same(types(readMessages(leader)), ['2:MsgVote'], 'the learner is not asked for a vote');
  leader.step(message({ type: 'MsgVoteResp', from: 2, to: 1, term: 1 }));
  t.same(types(readMessages(leader)), ['2:MsgApp', '3:MsgApp'], 'the learner is replicated to');
  leader.step(message({ type: 'MsgAppResp', from: 3, to: 1, term: 1, index: 1 }));
  t.equal(leader.log.committed, 0, 'a learner ack does not commit');
  // Reference: §6
});

void t.test('a node that heard from its leader within the minimum election timeout ignores vote requests', async (t) => {
  const r = newRaft(2, [1, 2, 3], { checkQuorum: true });
  r.becomeFollower(1, 1);
  r.step(message({ type: 'MsgVote', from: 3, to: 2, term: 2, logTerm: 1, index: 5 }));
  t.equal(r.term, 1, 'the disruptive candidate did not raise our term');
  t.same(readMessages(r), []);
  tickElection(r);
  // Our own timer fired and we campaigned: past the lease, requests are considered again.
  t.equal(r.role, 'candidate');
  // Reference: §6
});

void t.test('a leader accepts no configuration change while an earlier one is unapplied', async (t) => {
  const { leader } = electedLeader();
  applyCommitted(leader);
  const change = (nodeId: number) => encodeConfChange({ transition: 'auto', context: new Uint8Array(0), changes: [{ type: 'addLearner', nodeId }] });
  leader.step(message({ type: 'MsgProp', from: 1, entries: [{ term: 0, index: 0, type: 'confChange', data: change(4) }] }));
  const error = caught(() => leader.step(message({ type: 'MsgProp', from: 1, entries: [{ term: 0, index: 0, type: 'confChange', data: change(5) }] })));
  t.ok(error instanceof ProposalDroppedError && error.reason === 'conf-change-pending', String(error));
  // Reference: §6
});

// --- §7 log compaction ------------------------------------------------------------------------

void t.test('the leader sends its snapshot to a follower that needs compacted entries', async (t) => {
  const storage = memoryStorage(voters(1, 2), entriesWithTerms(1, 1, 1, 1));
  storage.setHardState({ term: 1, vote: 0, commit: 4 });
  storage.createSnapshot(3, voters(1, 2), encoder.encode('state@3'));
  storage.compact(3);
  const leader = newRaft(1, [1, 2], { storage });
  leader.step(message({ type: 'MsgHup', from: 1 }));
  readMessages(leader);
  leader.step(message({ type: 'MsgVoteResp', from: 2, to: 1, term: 2 }));
  readMessages(leader);
  leader.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 2, index: 4, reject: true, rejectHint: 1, logTerm: 0 }));
  const [snap] = readMessages(leader);
  t.equal(snap?.type, 'MsgSnap');
  t.same([snap?.snapshot?.metadata.index, text(snap?.snapshot?.data ?? new Uint8Array(0))], [3, 'state@3']);
  t.equal(leader.tracker.progress.get(2)?.state, 'snapshot');
  // Reference: §7
});

void t.test('a follower replaces a conflicting log with a snapshot but keeps entries after a matching one', async (t) => {
  const snapshotAt3 = (term: number) => ({ metadata: { index: 3, term, confState: voters(1, 2) }, totalBytes: 1, offset: 0, data: encoder.encode('s') });
  for (const [term, last, restored] of [[1, 5, false], [2, 3, true]] as const) {
    const storage = memoryStorage(voters(1, 2), entriesWithTerms(1, 1, 1, 1, 1), 1);
    const r = newRaft(2, [1, 2], { storage });
    r.becomeFollower(2, 1);
    r.step(message({ type: 'MsgSnap', from: 1, to: 2, term: 2, snapshot: snapshotAt3(term) }));
    t.equal(r.log.lastIndex(), last, `snapshot term ${term}`);
    t.equal(r.log.committed, 3);
    t.equal(r.log.hasPendingSnapshot(), restored);
    persist(r, storage);
  }
  // Reference: §7
});

// --- §8 client interaction --------------------------------------------------------------------

void t.test('a new leader appends an empty entry of its term at once', async (t) => {
  const r = newRaft(1, [1, 2, 3], { storage: memoryStorage(voters(1, 2, 3), entriesWithTerms(1, 1), 1) });
  r.becomeCandidate();
  r.becomeLeader();
  t.same(r.log.slice(3, 4, Infinity).map((e) => [e.term, e.data.length]), [[2, 0]]);
  // Reference: §8
});

void t.test('ReadIndex waits for a commit in the leader\'s term and a heartbeat quorum', async (t) => {
  const r = newRaft(1, [1, 2, 3]);
  r.becomeCandidate();
  r.becomeLeader();
  readMessages(r);
  r.step(message({ type: 'MsgReadIndex', from: 1, context: encoder.encode('r1') }));
  t.same(readMessages(r), [], 'queued until the no-op commits');
  r.step(message({ type: 'MsgAppResp', from: 2, to: 1, term: 1, index: 1 }));
  const heartbeats = readMessages(r).filter((m) => m.type === 'MsgHeartbeat');
  t.same(heartbeats.map((m) => text(m.context)), ['r1', 'r1'], 'a heartbeat round confirms leadership');
  t.same(r.readStates, [], 'no answer before a quorum acknowledges');
  r.step(message({ type: 'MsgHeartbeatResp', from: 3, to: 1, term: 1, context: encoder.encode('r1') }));
  t.same(r.readStates.map((s) => [s.index, text(s.context)]), [[1, 'r1']]);
  // Reference: §8
});

void t.test('a follower forwards ReadIndex to the leader and serves the index it returns', async (t) => {
  const { net } = electedLeader();
  net.send(message({ type: 'MsgReadIndex', from: 2, to: 2, context: encoder.encode('f') }));
  t.same(net.get(2).readStates.map((s) => [s.index, text(s.context)]), [[1, 'f']]);
  // Reference: §8
});

void t.test('a follower refuses proposals naming the leader, or forwards them when configured', async (t) => {
  const { net } = electedLeader();
  const error = caught(() => net.get(2).step(message({ type: 'MsgProp', from: 2, entries: [entry(0, 0, 'x')] })));
  t.ok(error instanceof NotLeaderError && error.leaderId === 1 && error.code === 'RAFT_NOT_LEADER', String(error));
  const forwarding = newRaft(2, [1, 2], { forwardProposals: true });
  forwarding.becomeFollower(1, 1);
  forwarding.step(message({ type: 'MsgProp', from: 2, entries: [entry(0, 0, 'x')] }));
  t.same(types(readMessages(forwarding)), ['1:MsgProp']);
  // Reference: §8
});
