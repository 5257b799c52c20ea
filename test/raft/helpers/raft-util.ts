/**
 * Helpers for unit tests that drive the internal Raft state machine directly (as etcd's paper
 * tests do): build a node from a known log, read its outbox, persist and apply like a driver,
 * and a tiny synchronous network that delivers until quiet.
 */
import type { RaftConfigInput } from '../../../src/raft/config';
import { MemoryStorage } from '../../../src/raft/memory-storage';
import { Raft } from '../../../src/raft/raft';
import { type ConfState, type Entry, type Message, makeMessage } from '../../../src/raft/types';
import { SeededRandom } from '../../../src/util/random';

const encoder = new TextEncoder();

export function entry(term: number, index: number, data = ''): Entry {
  return { term, index, type: 'normal', data: encoder.encode(data) };
}

/** Entries with the given terms at indexes 1, 2, 3, … */
export function entriesWithTerms(...terms: number[]): Entry[] {
  return terms.map((term, i) => entry(term, i + 1));
}

export function voters(...ids: number[]): ConfState {
  return { voters: ids, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
}

export function memoryStorage(confState: ConfState, entries: readonly Entry[] = [], term = 0): MemoryStorage {
  const storage = new MemoryStorage({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
  storage.append(entries);
  if (term > 0) storage.setHardState({ term, vote: 0, commit: 0 });
  return storage;
}

export function newRaft(
  id: number, peers: readonly number[], options: Partial<RaftConfigInput> & { storage?: MemoryStorage; seed?: number } = {},
): Raft {
  const { storage, seed, ...config } = options;
  return new Raft(
    { id, electionTicks: 10, heartbeatTicks: 1, preVote: false, checkQuorum: false, ...config },
    storage ?? memoryStorage(voters(...peers)),
    new SeededRandom(seed ?? id),
  );
}

/** The outbox, drained (broadcasts flushed first), sorted by recipient for stable assertions. */
export function readMessages(r: Raft): Message[] {
  return r.takeMessages().sort((a, b) => a.to - b.to);
}

export function message(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return makeMessage(fields);
}

/** What a driver does with a Ready's log part: persist unstable entries to `storage`. */
export function persist(r: Raft, storage: MemoryStorage): void {
  const unstable = r.log.unstableEntries();
  storage.append(unstable);
  const last = unstable[unstable.length - 1];
  if (last !== undefined) r.log.stableTo(last);
  storage.setHardState(r.hardState());
}

/** Hands out and marks applied the committed entries, returning them. */
export function applyCommitted(r: Raft): Entry[] {
  const entries = r.log.nextCommittedEntries();
  const last = entries[entries.length - 1];
  if (last !== undefined) r.log.appliedTo(last.index);
  return entries;
}

/** Ticks until the node's election timer fires. */
export function tickElection(r: Raft): void {
  const target = r.role === 'leader' ? r.config.electionTicks : r.randomizedElectionTimeout;
  for (let i = r.electionElapsed; i < target; i++) r.tick();
}

/** Synchronous network of Rafts: delivers every message (except dropped links) until quiet. */
export class Network {
  readonly nodes = new Map<number, Raft>();
  readonly dropped = new Set<string>();

  constructor(rafts: readonly Raft[]) {
    for (const r of rafts) this.nodes.set(r.id, r);
  }

  get(id: number): Raft {
    const r = this.nodes.get(id);
    if (r === undefined) throw new Error(`no node ${id}`);
    return r;
  }

  cut(a: number, b: number): void {
    this.dropped.add(`${a}->${b}`);
    this.dropped.add(`${b}->${a}`);
  }

  isolate(id: number): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cut(id, other);
  }

  recover(): void {
    this.dropped.clear();
  }

  /** Steps the given messages, then everything they cause, until no message is left. */
  send(...messages: Message[]): void {
    const queue = [...messages];
    for (let steps = 0; queue.length > 0; steps++) {
      if (steps > 100_000) throw new Error('network did not quiesce');
      const m = queue.shift() as Message;
      const target = this.nodes.get(m.to);
      if (target !== undefined && !this.dropped.has(`${m.from}->${m.to}`)) {
        target.step(m);
        queue.push(...readMessages(target));
      }
    }
  }

  /** Starts an election on `id` and runs the network until quiet. */
  campaign(id: number): void {
    this.send(message({ type: 'MsgHup', from: id, to: id }));
  }
}
