/**
 * InvariantChecker: the Raft safety properties, checked incrementally while a simulation runs —
 * after every step (event) and at every log write, apply, crash and restart — so a violation is
 * reported at the step that caused it.
 *
 * - Election Safety: at most one leader per term (every live node's role after every step).
 * - Log Matching: every entry any node ever wrote is recorded by (index, term); two writes with
 *   the same (index, term) must carry the same entry AND the same term at index − 1. By induction
 *   that is "same index and term ⇒ identical prefixes".
 * - Leader Completeness: an entry is "decided" once any node commits or applies it, remembering
 *   the lowest term of a node that held it committed (the term it was committed in). When a node
 *   is first seen leading term T, every entry decided in a term < T must be in its log (or under
 *   its snapshot).
 * - State Machine Safety: no two nodes apply different entries at one index; committed entries
 *   never change; each node applies indexes in order, and within one incarnation neither its
 *   commit nor its applied index goes backwards.
 * - Applied entries never lost: at a restart, the recovered disk still holds (log or snapshot)
 *   every index the node had applied before the crash, with the decided terms.
 * - Replica agreement: state machine snapshots taken at one index are byte-identical; at the end,
 *   members that applied the same index hold byte-identical state machines.
 * Violations are collected as sentences (the first `violationsMax`); the run stops at the first.
 */
import type { RaftStorage } from '../raft/storage';
import type { Entry, Ready, Snapshot } from '../raft/types';
import type { KvApplyOutcome } from '../control/kv-state-machine';
import { digestBytes } from './trace-hash';
import type { SimNode, SimNodeObserver } from './sim-node';

export const violationsMax = 10;

interface LogRecord {
  readonly digest: number;
  /** Term at index − 1 in the log that wrote it; undefined when compacted away there. */
  prevTerm: number | undefined;
}

interface Decided {
  readonly term: number;
  /** Lowest term of a node seen holding it committed. */
  commitTerm: number;
  /** Digest of the entry, once some node applied it. */
  digest: number | undefined;
}

interface NodeProgress {
  commit: number;
  applied: number;
  /** Highest index whose commit was recorded in `decided` for this incarnation. */
  scannedCommit: number;
}

export interface CheckerStats {
  leadersElected: number;
  maxCommit: number;
  entriesDecided: number;
  restartsChecked: number;
  snapshotsCompared: number;
}

export class InvariantChecker implements SimNodeObserver {
  readonly violations: string[] = [];
  private readonly leaderOfTerm = new Map<number, number>();
  /** index → term → what was written there. */
  private readonly written = new Map<number, Map<number, LogRecord>>();
  private readonly decided = new Map<number, Decided>();
  private readonly progress = new Map<number, NodeProgress>();
  /** Applied index of each node when it crashed. */
  private readonly appliedAtCrash = new Map<number, number>();
  private readonly kvSnapshotDigests = new Map<number, { readonly digest: number; readonly node: number }>();
  readonly stats: CheckerStats = { leadersElected: 0, maxCommit: 0, entriesDecided: 0, restartsChecked: 0, snapshotsCompared: 0 };

  constructor(private readonly now: () => number) {}

  get failed(): boolean {
    return this.violations.length > 0;
  }

  violation(message: string): void {
    if (this.violations.length < violationsMax) this.violations.push(`at ${(this.now() / 1e6).toFixed(3)} ms: ${message}`);
  }

  // ---- per step -------------------------------------------------------------------------------

  /** After every simulation step: leaders, commit progress, monotonicity. */
  afterStep(nodes: Iterable<SimNode>): void {
    for (const node of nodes) {
      if (!node.isUp) continue;
      const raft = node.raw.raft;
      if (raft.role === 'leader') this.checkLeader(node, raft.term);
      const progress = this.progressOf(node);
      const committed = raft.log.committed;
      if (committed < progress.commit) this.violation(`node ${node.id}: commit went back from ${progress.commit} to ${committed}`);
      if (node.appliedIndex < progress.applied) this.violation(`node ${node.id}: applied went back from ${progress.applied} to ${node.appliedIndex}`);
      progress.commit = committed;
      progress.applied = node.appliedIndex;
      if (committed > progress.scannedCommit) this.recordCommitted(node, progress, committed, raft.term);
      if (committed > this.stats.maxCommit) this.stats.maxCommit = committed;
    }
  }

  private progressOf(node: SimNode): NodeProgress {
    let progress = this.progress.get(node.id);
    if (progress === undefined) {
      progress = { commit: 0, applied: 0, scannedCommit: 0 };
      this.progress.set(node.id, progress);
    }
    return progress;
  }

  private checkLeader(node: SimNode, term: number): void {
    const existing = this.leaderOfTerm.get(term);
    if (existing === node.id) return;
    if (existing !== undefined) {
      this.violation(`election safety: nodes ${existing} and ${node.id} both lead term ${term}`);
      return;
    }
    this.leaderOfTerm.set(term, node.id);
    this.stats.leadersElected++;
    // Leader completeness: everything decided in an earlier term is in the new leader's log.
    const log = node.raw.raft.log;
    const firstIndex = log.firstIndex();
    const lastIndex = log.lastIndex();
    for (const [index, decided] of this.decided) {
      if (decided.commitTerm >= term || index < firstIndex) continue;
      const held = index > lastIndex ? undefined : log.term(index);
      if (held !== decided.term) {
        const holds = held === undefined ? 'nothing' : `term ${held}`;
        this.violation(`leader completeness: node ${node.id} leads term ${term} without entry ${index} ` +
          `(term ${decided.term}, committed in term ${decided.commitTerm}); it holds ${holds} there`);
        return;
      }
    }
  }

  private recordCommitted(node: SimNode, progress: NodeProgress, committed: number, term: number): void {
    const log = node.raw.raft.log;
    const from = Math.max(progress.scannedCommit + 1, log.firstIndex());
    for (let index = from; index <= committed; index++) {
      const entryTerm = log.term(index);
      if (entryTerm === undefined) {
        this.violation(`node ${node.id}: committed index ${index} is not in its log (first ${log.firstIndex()}, last ${log.lastIndex()})`);
        break;
      }
      this.decide(node, index, entryTerm, term, undefined);
    }
    progress.scannedCommit = committed;
  }

  private decide(node: SimNode, index: number, term: number, commitTerm: number, digest: number | undefined): void {
    const existing = this.decided.get(index);
    if (existing === undefined) {
      this.decided.set(index, { term, commitTerm, digest });
      this.stats.entriesDecided++;
      return;
    }
    if (existing.term !== term) {
      this.violation(`state machine safety: node ${node.id} has term ${term} committed at ${index}, where term ${existing.term} was committed`);
      return;
    }
    if (digest !== undefined && existing.digest !== undefined && digest !== existing.digest) {
      this.violation(`state machine safety: node ${node.id} applied a different entry at ${index} (term ${term}) than another node`);
      return;
    }
    if (commitTerm < existing.commitTerm) existing.commitTerm = commitTerm;
    if (existing.digest === undefined) existing.digest = digest;
  }

  // ---- observer hooks -------------------------------------------------------------------------

  onReady(_node: SimNode, _ready: Ready): void {
    // Checks run once the batch is written (onWritten).
  }

  onWritten(node: SimNode, ready: Ready): void {
    const storage = node.disk.storage;
    let prevTerm = ready.entries.length > 0 ? termAt(storage, (ready.entries[0] as Entry).index - 1) : undefined;
    for (const entry of ready.entries) {
      this.recordWritten(node, entry, prevTerm);
      prevTerm = entry.term;
    }
    if (ready.snapshot !== undefined) {
      const { index, term } = ready.snapshot.metadata;
      this.decide(node, index, term, node.raw.raft.term, undefined);
    }
  }

  private recordWritten(node: SimNode, entry: Entry, prevTerm: number | undefined): void {
    const digest = entryDigest(entry);
    let terms = this.written.get(entry.index);
    if (terms === undefined) {
      terms = new Map();
      this.written.set(entry.index, terms);
    }
    const existing = terms.get(entry.term);
    if (existing === undefined) {
      terms.set(entry.term, { digest, prevTerm });
      return;
    }
    if (existing.digest !== digest) {
      this.violation(`log matching: node ${node.id} wrote a different entry at index ${entry.index} term ${entry.term} than another log`);
    } else if (prevTerm !== undefined && existing.prevTerm !== undefined && prevTerm !== existing.prevTerm) {
      this.violation(`log matching: logs agree on index ${entry.index} term ${entry.term} but node ${node.id} has term ${prevTerm} ` +
        `at ${entry.index - 1}, another log term ${existing.prevTerm}`);
    } else if (existing.prevTerm === undefined) {
      existing.prevTerm = prevTerm;
    }
  }

  /** Applied in order: SimNode asserts contiguity itself; here the entry must match every other node's. */
  onApply(node: SimNode, entry: Entry, _outcome: KvApplyOutcome | undefined): void {
    this.decide(node, entry.index, entry.term, node.raw.raft.term, entryDigest(entry));
  }

  onSnapshotRestored(node: SimNode, snapshot: Snapshot): void {
    const decided = this.decided.get(snapshot.metadata.index);
    if (decided !== undefined && decided.term !== snapshot.metadata.term) {
      this.violation(`state machine safety: node ${node.id} restored a snapshot at ${snapshot.metadata.index} term ${snapshot.metadata.term}, decided term is ${decided.term}`);
    }
  }

  onKvSnapshot(node: SimNode, index: number, data: Uint8Array): void {
    const digest = digestBytes(data);
    const existing = this.kvSnapshotDigests.get(index);
    this.stats.snapshotsCompared++;
    if (existing === undefined) this.kvSnapshotDigests.set(index, { digest, node: node.id });
    else if (existing.digest !== digest) {
      this.violation(`replica agreement: nodes ${existing.node} and ${node.id} hold different state machines at index ${index}`);
    }
  }

  // ---- crashes --------------------------------------------------------------------------------

  onCrash(node: SimNode): void {
    this.appliedAtCrash.set(node.id, node.appliedIndex);
    this.progress.delete(node.id);
  }

  /** After a restart: the disk still covers everything the node applied before its crash. */
  onRestart(node: SimNode): void {
    this.stats.restartsChecked++;
    const applied = this.appliedAtCrash.get(node.id) ?? 0;
    const storage = node.disk.storage;
    if (storage.lastIndex() < applied) {
      this.violation(`applied entries lost: node ${node.id} applied up to ${applied} before its crash but recovered a log ending at ${storage.lastIndex()}`);
      return;
    }
    for (let index = storage.firstIndex(); index <= applied; index++) {
      const decided = this.decided.get(index);
      const term = storage.term(index);
      if (decided !== undefined && decided.term !== term) {
        this.violation(`applied entries lost: node ${node.id} recovered term ${term} at ${index}, where it had applied term ${decided.term}`);
        return;
      }
    }
  }

  // ---- end of run -----------------------------------------------------------------------------

  /** Members that applied the same index hold identical state machines. */
  checkReplicasAgree(nodes: readonly SimNode[]): void {
    const byIndex = new Map<number, { readonly digest: number; readonly node: number }>();
    for (const node of nodes) {
      if (!node.isUp) continue;
      const digest = digestBytes(node.kv.snapshot());
      const existing = byIndex.get(node.appliedIndex);
      if (existing === undefined) byIndex.set(node.appliedIndex, { digest, node: node.id });
      else if (existing.digest !== digest) {
        this.violation(`replica agreement: nodes ${existing.node} and ${node.id} applied up to ${node.appliedIndex} but hold different state machines`);
      }
    }
  }
}

function termAt(storage: RaftStorage, index: number): number | undefined {
  if (index < storage.firstIndex() - 1 || index > storage.lastIndex()) return undefined;
  return storage.term(index);
}

function entryDigest(entry: Entry): number {
  return digestBytes(entry.data, (entry.term * 31 + (entry.type === 'normal' ? 1 : 2)) >>> 0);
}
