// Goal: the failure stories Raft implementations are known to get wrong, each scripted step by
// step on the simulator with the real RawNode, KV state machine and client workload, with every
// invariant checked after every step and the history checked for linearizability at the end.
// Method: a quiet world (scenarioOptions: no random faults) where the script injects each fault —
// crashes at chosen moments, stalled disks, partitions, membership changes, transfers — then
// finish() heals, requires liveness, drains the clients and checks replicas and history.
import t, { type Test } from 'tap';
import { type ScenarioSettings, electionTicks, scenarioOptions, tickNs } from '../../src/sim/sim-options';
import { Simulation, type SimResult } from '../../src/sim/simulation';
import type { SimNode } from '../../src/sim/sim-node';

const electionNs = electionTicks * tickNs;

function cluster(seed: number, settings: ScenarioSettings = {}): Simulation {
  return new Simulation(scenarioOptions(seed, settings), { traceLines: 40 });
}

/** Runs until `predicate` holds, failing the test (with the cluster's state) if it does not in time. */
function waitFor(t: Test, sim: Simulation, what: string, predicate: () => boolean, limitNs = 20 * electionNs): void {
  const held = sim.runUntil(predicate, limitNs);
  t.ok(held, `${what} (${sim.describeNodes()})${sim.checker.violations.length > 0 ? `: ${sim.checker.violations.join('; ')}` : ''}`);
}

function leaderOf(t: Test, sim: Simulation): SimNode {
  waitFor(t, sim, 'a leader is elected', () => sim.leader() !== undefined);
  return sim.leader() as SimNode;
}

function expectClean(t: Test, result: SimResult): void {
  t.same(result.violations, [], `no violation (${result.summary})`);
  t.ok(result.stats.operationsOk > 0, 'clients completed operations');
}

void t.test('recovery: leader crashes with unsynced entries during a membership change', async (t) => {
  const sim = cluster(11, { nodeCount: 5, initialVoters: 3 });
  sim.startClients();
  const leader = leaderOf(t, sim);
  waitFor(t, sim, 'the leader accepts adding node 4 as a learner', () => sim.addLearner(4));
  waitFor(t, sim, 'node 4 joins as a learner and catches up', () => leader.confState.learners.includes(4) && sim.node(4).appliedIndex >= leader.appliedIndex);
  // The leader's disk stalls: the promotion is written to its log but never synced, so — entries
  // leave only after their sync — nobody else ever sees it.
  sim.stallDisk(leader.id, 100 * electionNs);
  t.ok(sim.promote(4), 'the leader appends the promotion');
  sim.runFor(tickNs);
  const report = sim.crash(leader.id);
  t.ok((report?.lost ?? 0) >= 1, 'the crash lost the unsynced promotion');
  const next = leaderOf(t, sim);
  t.not(next.id, leader.id, 'the survivors elect another leader');
  sim.restart(leader.id);
  sim.runFor(5 * electionNs);
  t.ok(sim.latestConfState().learners.includes(4), 'the lost promotion left node 4 a learner');
  t.notOk(sim.latestConfState().voters.includes(4));
  expectClean(t, sim.finish());
});

void t.test('recovery: every node loses power at once and comes back with everything it acknowledged', async (t) => {
  const sim = cluster(12, { nodeCount: 3, disk: { unsyncedSurvivalRate: 0.5, tornWriteRate: 1, syncNsMin: 1_000_000, syncNsMax: 4_000_000 } });
  sim.startClients();
  leaderOf(t, sim);
  sim.runFor(20 * electionNs);
  const okBefore = sim.stats().operationsOk;
  let lost = 0;
  for (const node of sim.nodes) lost += sim.crash(node.id)?.lost ?? 0;
  sim.runFor(electionNs);
  for (const node of sim.nodes) sim.restart(node.id);
  t.ok(okBefore > 20, `clients had ${okBefore} acknowledged operations`);
  t.ok(lost > 0, `the power loss cost ${lost} unsynced writes`);
  // Linearizability at the end proves no acknowledged write was lost.
  expectClean(t, sim.finish());
});

void t.test('recovery: a node that forgets its vote in a crash lets two leaders share a term', async (t) => {
  for (const bug of ['none', 'forget-vote'] as const) {
    const sim = cluster(7, { nodeCount: 3, clients: 0, bugs: { disk: bug } });
    sim.partition([[1], [2]]); // 1 and 2 cannot talk; 3 hears both
    sim.node(1).campaign();
    waitFor(t, sim, 'node 1 wins with node 3\'s vote', () => sim.node(1).isLeader);
    const term = sim.node(1).raw.raft.term;
    sim.isolate(1, 'both'); // its first append never reaches node 3
    sim.runFor(tickNs); // node 3's vote is synced
    sim.crash(3);
    sim.restart(3);
    t.equal(sim.node(3).raw.raft.vote, bug === 'none' ? 1 : 0, `node 3 ${bug === 'none' ? 'remembers' : 'forgot'} its vote after the crash`);
    sim.node(2).campaign(); // node 2 asks node 3 for a vote in the same term
    sim.runUntil(() => sim.node(2).isLeader || sim.checker.failed, 5 * electionNs);
    if (bug === 'none') {
      t.notOk(sim.node(2).isLeader && sim.node(2).raw.raft.term === term, 'node 2 cannot win the same term');
      t.same(sim.checker.violations, []);
    } else {
      t.match(sim.checker.violations, [new RegExp(`election safety: nodes 1 and 2 both lead term ${term}`)], 'the checker sees two leaders in one term');
    }
  }
});

void t.test('stale reads: a leader cut off from the majority answers no read with old data', async (t) => {
  const sim = cluster(13, { nodeCount: 5, initialVoters: 5, clients: 4, workload: { spreadReadFraction: 1, readFraction: 0.5 } });
  sim.startClients();
  const old = leaderOf(t, sim);
  sim.runFor(5 * electionNs);
  sim.isolate(old.id, 'both'); // clients still reach it, its peers do not
  waitFor(t, sim, 'the majority elects a new leader', () => {
    const leader = sim.leader();
    return leader !== undefined && leader.id !== old.id;
  });
  const servedBefore = old.stats.readsServed;
  const requestedBefore = old.stats.readsRequested;
  sim.runFor(10 * electionNs);
  t.notOk(old.isLeader, 'check-quorum made the old leader step down');
  t.ok(old.stats.readsRequested > requestedBefore, `clients asked the cut-off node for ${old.stats.readsRequested - requestedBefore} reads`);
  t.equal(old.stats.readsServed, servedBefore, 'it served none of them');
  sim.heal();
  expectClean(t, sim.finish());
});

void t.test('asymmetric partition: a node that hears nobody does not depose a stable leader', async (t) => {
  const sim = cluster(14, { nodeCount: 3, clients: 2 });
  sim.startClients();
  const leader = leaderOf(t, sim);
  const term = leader.raw.raft.term;
  const follower = sim.nodes.find((node) => node.id !== leader.id) as SimNode;
  sim.isolate(follower.id, 'inbound'); // it is heard by all, hears no one
  sim.runFor(20 * electionNs);
  t.ok(leader.isLeader, 'the leader keeps leading');
  t.equal(leader.raw.raft.term, term, 'no term was raised: pre-vote and the leader lease held');
  t.equal(sim.checker.stats.leadersElected, 1, 'no other election succeeded');
  sim.heal();
  expectClean(t, sim.finish());
});

void t.test('membership: removing the leader hands leadership to the remaining voters', async (t) => {
  const sim = cluster(15, { nodeCount: 4, initialVoters: 3 });
  sim.startClients();
  leaderOf(t, sim);
  waitFor(t, sim, 'the leader accepts node 4 as a learner', () => sim.addLearner(4));
  waitFor(t, sim, 'node 4 is a learner', () => sim.latestConfState().learners.includes(4));
  waitFor(t, sim, 'the leader accepts the promotion of node 4', () => sim.promote(4));
  waitFor(t, sim, 'four voters', () => sim.latestConfState().voters.length === 4);
  sim.runFor(5 * electionNs); // clients work with four voters
  const removed = leaderOf(t, sim).id;
  waitFor(t, sim, 'the leader accepts its own removal', () => sim.remove(removed));
  waitFor(t, sim, 'a remaining voter leads', () => {
    const next = sim.leader();
    return next !== undefined && next.id !== removed && !sim.latestConfState().voters.includes(removed);
  });
  t.ok(sim.node(removed).stats.removedWhileLeading >= 1, 'the removed leader applied its removal and stepped down');
  t.same(sim.latestConfState().voters.slice().sort(), [1, 2, 3, 4].filter((id) => id !== removed));
  expectClean(t, sim.finish());
});

void t.test('snapshots: a learner added after compaction catches up through a chunked snapshot', async (t) => {
  const sim = cluster(16, { nodeCount: 4, initialVoters: 3, bootstrap: 'log', raft: { snapshotChunkBytes: 32 } });
  sim.startClients();
  leaderOf(t, sim);
  sim.runFor(10 * electionNs);
  for (const id of [1, 2, 3]) sim.compact(id, 0);
  t.ok(sim.node(1).disk.storage.firstIndex() > 1, 'the log prefix is gone, bootstrap entries included');
  waitFor(t, sim, 'the leader accepts node 4', () => sim.addLearner(4));
  waitFor(t, sim, 'node 4 catches up', () => {
    const leader = sim.leader();
    return leader !== undefined && sim.node(4).appliedIndex >= leader.disk.storage.snapshot().metadata.index && sim.node(4).appliedIndex > 0;
  });
  t.ok(sim.node(4).stats.snapshotsRestored >= 1, 'node 4 installed a snapshot');
  expectClean(t, sim.finish());
});

void t.test('leader transfer: clients keep working through a transfer to a follower', async (t) => {
  const sim = cluster(17, { nodeCount: 3, clients: 3 });
  sim.startClients();
  const leader = leaderOf(t, sim);
  sim.runFor(5 * electionNs);
  const target = sim.nodes.find((node) => node.id !== leader.id) as SimNode;
  t.ok(sim.transferLeader(target.id));
  waitFor(t, sim, `node ${target.id} takes over`, () => target.isLeader);
  t.ok(target.raw.raft.term > leader.raw.raft.term - 1, 'in a later term');
  sim.runFor(5 * electionNs);
  expectClean(t, sim.finish());
});

void t.test('torn write: the last write tears in a crash and the node recovers from what is durable', async (t) => {
  const sim = cluster(18, { nodeCount: 3, disk: { tornWriteRate: 1 } });
  sim.startClients();
  const leader = leaderOf(t, sim);
  sim.runFor(5 * electionNs);
  const follower = sim.nodes.find((node) => node.id !== leader.id) as SimNode;
  sim.stallDisk(follower.id, 100 * electionNs);
  waitFor(t, sim, 'the follower has an unsynced write', () => follower.disk.unsyncedCount > 0);
  const report = sim.crash(follower.id);
  t.type(report?.tornTail, 'string', `recovery detected the torn write (${report?.tornTail})`);
  sim.restart(follower.id);
  waitFor(t, sim, 'the follower catches up', () => follower.appliedIndex >= leader.appliedIndex);
  expectClean(t, sim.finish());
});

void t.test('joint consensus: replacing a voter survives a leader crash in the middle of the change', async (t) => {
  const sim = cluster(19, { nodeCount: 4, initialVoters: 3 });
  sim.startClients();
  leaderOf(t, sim);
  sim.runFor(5 * electionNs);
  waitFor(t, sim, 'node 4 is added as a learner', () => sim.addLearner(4));
  waitFor(t, sim, 'node 4 is a learner', () => sim.latestConfState().learners.includes(4));
  const leader = leaderOf(t, sim);
  const outgoing = [1, 2, 3].find((id) => id !== leader.id) as number;
  waitFor(t, sim, 'the leader accepts the replacement', () => sim.replace(4, outgoing));
  waitFor(t, sim, 'the joint configuration is applied', () => sim.latestConfState().votersOutgoing.length > 0, 5 * electionNs);
  sim.crash(leader.id);
  waitFor(t, sim, 'a new leader finishes the change', () => {
    const conf = sim.latestConfState();
    return conf.votersOutgoing.length === 0 && conf.voters.includes(4) && !conf.voters.includes(outgoing);
  });
  sim.restart(leader.id);
  expectClean(t, sim.finish());
});
