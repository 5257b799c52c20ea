// Goal: the Raft safety properties hold under an adversarial network and crashes, and the cluster
// recovers once faults stop.
// Method: for each seed, five RawNodes in one process exchange messages through a queue that
// drops, duplicates, delays and reorders them, with partitions, crashes that lose unpersisted
// state, restarts, compaction with chunked snapshots, membership changes (learner ↔ voter, joint)
// and reads. Fault rates are drawn per seed (swarm testing). After every round we check Election
// Safety, Log Matching, Leader Completeness, State Machine Safety, monotonic commit/apply, and that
// ReadIndex never returns a point older than a commit that happened before the read was asked.
// Finally faults heal and a new proposal must commit everywhere within a bounded number of rounds.
// A failure names the seed; rerun one with RAFT_SEED=<seed>, sweep more with RAFT_SEEDS=<count>
// (and longer runs with RAFT_ROUNDS=<faulty rounds per seed>).
import t from 'tap';
import { ProposalDroppedError } from '../../src/raft/errors';
import { MemoryStorage } from '../../src/raft/memory-storage';
import type { ConfChange, ConfState, Message } from '../../src/raft/types';
import { SeededRandom } from '../../src/util/random';
import { Cluster, type TestNode, encodeState } from './helpers/cluster';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const nodeIds = [1, 2, 3, 4, 5];

interface Rates {
  drop: number;
  duplicate: number;
  delay: number;
  crash: number;
  partition: number;
  propose: number;
  read: number;
  compact: number;
  confChange: number;
}

class Checker {
  readonly leaders = new Map<number, number>();
  /** index → "term:type:data" of every entry any node applied. */
  readonly applied = new Map<number, { term: number; key: string; payload: string | undefined }>();
  readonly commitSeen = new Map<number, number>();
  readonly appliedSeen = new Map<number, number>();
  readonly reads = new Map<string, { node: number; minimum: number }>();
  readsAnswered = 0;
  snapshotsInstalled = 0;
  confChangesApplied = 0;
  constructor(private readonly fail: (message: string) => void) {}

  onLeader(node: TestNode, term: number): void {
    const existing = this.leaders.get(term);
    if (existing !== undefined && existing !== node.id) this.fail(`election safety: ${existing} and ${node.id} both lead term ${term}`);
    this.leaders.set(term, node.id);
    // Leader completeness: every entry applied anywhere is in the new leader's log.
    const log = node.raw.raft.log;
    for (const [index, entry] of this.applied) {
      if (index < log.firstIndex()) continue; // covered by its snapshot
      if (log.term(index) !== entry.term) this.fail(`leader completeness: leader ${node.id} (term ${term}) lacks ${entry.term}/${index}`);
    }
  }

  onApply(node: TestNode, index: number, term: number, type: string, data: Uint8Array): void {
    const key = `${term}:${type}:${Buffer.from(data).toString('hex')}`;
    const existing = this.applied.get(index);
    if (existing !== undefined && existing.key !== key) this.fail(`state machine safety: node ${node.id} applied ${key} at ${index}, another applied ${existing.key}`);
    const payload = type === 'normal' && data.length > 0 ? decoder.decode(data) : undefined;
    this.applied.set(index, { term, key, payload });
  }

  /** Per incarnation: commit and apply never go backwards. */
  checkMonotonic(node: TestNode): void {
    const raft = node.raw.raft;
    const commit = this.commitSeen.get(node.id) ?? 0;
    const applied = this.appliedSeen.get(node.id) ?? 0;
    if (raft.log.committed < commit) this.fail(`node ${node.id}: commit went back from ${commit} to ${raft.log.committed}`);
    if (node.appliedIndex < applied) this.fail(`node ${node.id}: applied went back from ${applied} to ${node.appliedIndex}`);
    this.commitSeen.set(node.id, raft.log.committed);
    this.appliedSeen.set(node.id, node.appliedIndex);
  }

  forget(node: TestNode): void {
    this.commitSeen.delete(node.id);
    this.appliedSeen.delete(node.id);
  }

  /** The state machine equals the applied payloads up to its applied index. */
  checkState(node: TestNode): void {
    const expected: string[] = [];
    for (const index of [...this.applied.keys()].sort((a, b) => a - b)) {
      if (index > node.appliedIndex) break;
      const payload = this.applied.get(index)?.payload;
      if (payload !== undefined) expected.push(payload);
    }
    if (JSON.stringify(expected) !== JSON.stringify(node.state)) {
      this.fail(`node ${node.id}: state at ${node.appliedIndex} is ${JSON.stringify(node.state)}, expected ${JSON.stringify(expected)}`);
    }
  }
}

/** Log Matching: two logs that agree on an entry's term agree on everything before it. */
function checkLogMatching(cluster: Cluster, fail: (message: string) => void): void {
  const live = cluster.ids().map((id) => cluster.get(id)).filter((node) => node.node !== undefined);
  for (const [i, a] of live.entries()) {
    for (const b of live.slice(i + 1)) {
      const logA = a.raw.raft.log;
      const logB = b.raw.raft.log;
      const first = Math.max(logA.firstIndex(), logB.firstIndex());
      let high = Math.min(logA.lastIndex(), logB.lastIndex());
      while (high >= first && logA.term(high) !== logB.term(high)) high--;
      if (high < first) continue;
      const entriesA = logA.slice(first, high + 1, Number.MAX_SAFE_INTEGER);
      const entriesB = logB.slice(first, high + 1, Number.MAX_SAFE_INTEGER);
      for (const [k, entryA] of entriesA.entries()) {
        const entryB = entriesB[k];
        if (entryB === undefined || entryA.term !== entryB.term || Buffer.compare(entryA.data, entryB.data) !== 0) {
          fail(`log matching: nodes ${a.id} and ${b.id} agree on ${high} but differ at ${entryA.index}`);
          return;
        }
      }
    }
  }
}

function drawRates(random: SeededRandom): Rates {
  const pick = (max: number): number => random.float() * max;
  return {
    drop: pick(0.3), duplicate: pick(0.1), delay: pick(0.3), crash: 0.01 + pick(0.06), partition: 0.01 + pick(0.08),
    propose: 0.2 + pick(0.5), read: pick(0.2), compact: 0.02 + pick(0.1), confChange: pick(0.08),
  };
}

function runSeed(seed: number): { failures: string[]; stats: string } {
  const random = new SeededRandom(seed);
  const rates = drawRates(random);
  if (process.env.RAFT_TRACE === "1") console.error(JSON.stringify(rates));
  const failures: string[] = [];
  const fail = (message: string): void => {
    if (failures.length < 5) failures.push(message);
  };
  const checker = new Checker(fail);
  const cluster = new Cluster(seed);
  const withLearners = random.int(2) === 0;
  const confState: ConfState = withLearners
    ? { voters: [1, 2, 3], votersOutgoing: [], learners: [4, 5], learnersNext: [], autoLeave: false }
    : { voters: nodeIds, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  const preVote = random.int(4) !== 0;
  const checkQuorum = random.int(4) !== 0;
  for (const id of nodeIds) {
    cluster.add(id, {
      id, preVote, checkQuorum, electionTicks: 10, heartbeatTicks: 1 + random.int(2), forwardProposals: random.int(2) === 0,
      inflightMessagesMax: 2 + random.int(6), messageBytesMax: 64 + random.int(256), snapshotChunkBytes: 16 + random.int(64),
      uncommittedBytesMax: 4096, inflightBytesMax: 512,
    }, new MemoryStorage({ metadata: { index: 1, term: 1, confState }, data: encodeState([]) }));
  }
  cluster.onReady = (node, ready) => {
    if (ready.softState?.role === 'leader') checker.onLeader(node, node.raw.raft.term);
    if (ready.snapshot !== undefined) checker.snapshotsInstalled++;
    checker.confChangesApplied += ready.committedEntries.filter((entry) => entry.type === 'confChange').length;
    for (const state of ready.readStates) {
      const key = decoder.decode(state.context);
      const read = checker.reads.get(key);
      if (read === undefined) continue; // a coalesced duplicate
      if (state.index < read.minimum) fail(`stale read: ${key} on node ${node.id} got index ${state.index} < ${read.minimum}`);
      checker.reads.delete(key);
      checker.readsAnswered++;
    }
  };
  cluster.onApply = ({ node, entry }) => checker.onApply(node, entry.index, entry.term, entry.type, entry.data);

  let proposals = 0;
  let readCount = 0;
  const live = (): TestNode[] => cluster.ids().map((id) => cluster.get(id)).filter((node) => node.node !== undefined);
  const leader = (): TestNode | undefined => live().find((node) => node.raw.raft.role === 'leader');
  const maxCommitted = (): number => Math.max(0, ...live().map((node) => node.raw.raft.log.committed));

  const deliverRound = (faulty: boolean): void => {
    const batch = cluster.inbox;
    cluster.inbox = [];
    const kept: Message[] = [];
    for (let i = batch.length - 1; i > 0; i--) {
      const j = random.int(i + 1);
      [batch[i], batch[j]] = [batch[j] as Message, batch[i] as Message];
    }
    for (const m of batch) {
      if (faulty && random.float() < rates.delay) { kept.push(m); continue; }
      if (faulty && random.float() < rates.drop) continue;
      cluster.deliver(m);
      if (faulty && random.float() < rates.duplicate) kept.push(m);
    }
    cluster.inbox.push(...kept);
  };

  const round = (faulty: boolean): void => {
    if (faulty) injectFault();
    for (const node of live()) node.raw.tick();
    for (let pass = 0; pass < 3; pass++) {
      for (const node of live()) cluster.processReady(node.id);
      deliverRound(faulty);
    }
    for (const node of live()) {
      checker.checkMonotonic(node);
      checker.checkState(node);
    }
    checkLogMatching(cluster, fail);
  };

  const injectFault = (): void => {
    const nodes = live();
    // Half the time the leader is the one hit: leader failures are the interesting ones.
    const target = random.int(2) === 0 ? (leader() ?? nodes[random.int(nodes.length)]) : nodes[random.int(nodes.length)];
    if (random.float() < rates.propose && target !== undefined) {
      try {
        target.raw.propose(encoder.encode(`s${seed}-p${proposals++}`));
      } catch (error) {
        if (!(error instanceof ProposalDroppedError)) throw error;
      }
    }
    if (random.float() < rates.read && target !== undefined) {
      const key = `s${seed}-r${readCount++}`;
      try {
        checker.reads.set(key, { node: target.id, minimum: maxCommitted() });
        target.raw.readIndex(encoder.encode(key));
      } catch (error) {
        checker.reads.delete(key);
        if (!(error instanceof ProposalDroppedError)) throw error;
      }
    }
    if (random.float() < rates.crash) {
      const down = cluster.ids().filter((id) => cluster.get(id).node === undefined);
      if (down.length > 0 && random.int(2) === 0) {
        const id = down[random.int(down.length)] as number;
        cluster.restart(id);
        checker.forget(cluster.get(id));
      } else if (target !== undefined && down.length < 2) {
        cluster.crash(target.id);
        checker.forget(target);
      }
    }
    if (random.float() < rates.partition) {
      if (cluster.blocked.size > 0) cluster.heal();
      else if (random.int(3) === 0 && target !== undefined) {
        // asymmetric: the target hears nobody, but everyone hears it
        for (const id of nodeIds) if (id !== target.id) cluster.blocked.add(`${id}->${target.id}`);
      } else {
        const shuffled = [...nodeIds].sort(() => random.float() - 0.5);
        const cut = 1 + random.int(nodeIds.length - 1);
        cluster.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
      }
    }
    if (random.float() < rates.compact && target !== undefined) {
      const snapshotIndex = target.storage.snapshot().metadata.index;
      if (target.appliedIndex > snapshotIndex + 3) {
        target.storage.createSnapshot(target.appliedIndex, target.confState, encodeState(target.state));
        const compactTo = target.appliedIndex - random.int(3);
        if (compactTo >= target.storage.firstIndex()) target.storage.compact(compactTo);
      }
    }
    const lead = leader();
    if (random.float() < rates.confChange && lead !== undefined) proposeConfChange(lead);
  };

  const proposeConfChange = (lead: TestNode): void => {
    const config = lead.raw.raft.tracker.config;
    const id = 4 + random.int(2);
    const isVoter = config.voters[0].has(id);
    const other = id === 4 ? 5 : 4;
    let change: ConfChange;
    if (random.int(3) === 0) {
      // two changes at once: joint consensus with automatic leave
      change = { transition: 'auto', context: new Uint8Array(0), changes: [
        { type: isVoter ? 'addLearner' : 'addNode', nodeId: id },
        { type: config.voters[0].has(other) ? 'addLearner' : 'addNode', nodeId: other },
      ] };
    } else {
      change = { transition: 'auto', context: new Uint8Array(0), changes: [{ type: isVoter ? 'addLearner' : 'addNode', nodeId: id }] };
    }
    try {
      lead.raw.proposeConfChange(change);
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error;
    }
  };

  const faultyRounds = Number(process.env.RAFT_ROUNDS ?? 300);
  const trace = process.env.RAFT_TRACE === '1';
  const describe = (): string => cluster.ids().map((id) => {
    const node = cluster.get(id).node;
    if (node === undefined) return `${id}:down`;
    const raft = node.raft;
    return `${id}:${raft.role[0]}${raft.term}/l${raft.lead}/c${raft.log.committed}/a${cluster.get(id).appliedIndex}`;
  }).join(' ') + ` blocked=${cluster.blocked.size} inbox=${cluster.inbox.length}`;
  for (let i = 0; i < faultyRounds && failures.length === 0; i++) {
    round(true);
    if (trace && i % 10 === 0) console.error(`round ${i}: ${describe()}`);
  }

  // Heal everything and require progress.
  cluster.heal();
  for (const id of cluster.ids()) {
    if (cluster.get(id).node === undefined) {
      cluster.restart(id);
      checker.forget(cluster.get(id));
    }
  }
  const marker = `s${seed}-final`;
  let committedEverywhere = false;
  let recoveryRounds = 0;
  for (; recoveryRounds < 300 && failures.length === 0 && !committedEverywhere; recoveryRounds++) {
    const lead = leader();
    if (lead !== undefined && !lead.state.includes(marker) && recoveryRounds % 20 === 0) {
      try {
        lead.raw.propose(encoder.encode(marker));
      } catch (error) {
        if (!(error instanceof ProposalDroppedError)) throw error;
      }
    }
    round(false);
    if (trace && recoveryRounds % 10 === 0) console.error(`recovery ${recoveryRounds}: ${describe()}`);
    committedEverywhere = live().every((node) => node.state.includes(marker));
  }
  if (failures.length === 0 && !committedEverywhere) fail(`liveness: "${marker}" not applied everywhere after ${recoveryRounds} healed rounds`);
  const maxApplied = Math.max(...live().map((node) => node.appliedIndex));
  return {
    failures,
    stats: `seed ${seed}: ${checker.leaders.size} terms with a leader, applied ${maxApplied}, ${checker.readsAnswered} reads answered, ${checker.snapshotsInstalled} snapshots installed, ${checker.confChangesApplied} conf changes applied, recovered in ${recoveryRounds} rounds`,
  };
}

// RAFT_SEED=n replays one seed; RAFT_SEEDS=n runs seeds 1..n (a longer sweep than the default).
const only = process.env.RAFT_SEED;
const seedCount = Number(process.env.RAFT_SEEDS ?? 40);
const seeds = only === undefined ? Array.from({ length: seedCount }, (_, i) => i + 1) : [Number(only)];

void t.test('safety holds and the cluster recovers under a faulty network, for every seed', async (t) => {
  let terms = 0;
  for (const seed of seeds) {
    const { failures, stats } = runSeed(seed);
    t.same(failures, [], `seed ${seed} (replay: RAFT_SEED=${seed})`);
    terms += Number(/(\d+) terms/.exec(stats)?.[1] ?? 0);
    if (only !== undefined) t.comment(stats);
  }
  t.ok(terms > seeds.length, 'elections actually happened');
});
