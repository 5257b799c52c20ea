// Goal: the log view stitched from storage and the unstable tail answers terms and slices across
// the boundary, appends only at conflicts, never commits past what a message proved, and the
// MemoryStorage write side (append, snapshot, compaction) keeps its contract.
// Method: small logs built by hand; each case states the rule it checks.
import t from 'tap';
import { CompactedError, SnapshotOutOfDateError, UnavailableError } from '../../src/raft/errors';
import { RaftLog } from '../../src/raft/raft-log';
import { entryBytes } from '../../src/raft/storage';
import { AssertionError } from '../../src/util/assert';
import { entriesWithTerms, entry, memoryStorage, voters } from './helpers/raft-util';

const terms = (log: RaftLog) => log.slice(log.firstIndex(), log.lastIndex() + 1, Infinity).map((e) => e.term);

void t.test('a follower never commits past the last entry the append covered', async (t) => {
  // Subtle bug 4: our log diverges after index 2 (stale term-1 entries); the leader's empty
  // append matches at 2 and carries commit 5. Committing to our own last index would commit the
  // stale entries.
  const log = new RaftLog(memoryStorage(voters(1), entriesWithTerms(1, 1, 1, 1, 1)), 1024);
  t.equal(log.maybeAppend(2, 1, 5, []), 2);
  t.equal(log.committed, 2);
  t.equal(log.maybeAppend(2, 1, 5, [entry(2, 3)]), 3);
  t.equal(log.committed, 3, 'min(leader commit, last new index)');
  t.same(terms(log), [1, 1, 2], 'the conflicting suffix was replaced');
});

void t.test('an append that matches does not truncate, one that conflicts replaces the suffix', async (t) => {
  const log = new RaftLog(memoryStorage(voters(1), entriesWithTerms(1, 2, 2)), 1024);
  t.equal(log.maybeAppend(0, 0, 0, [entry(1, 1)]), 1, 'a stale prefix is accepted');
  t.same(terms(log), [1, 2, 2], 'and nothing is cut');
  t.equal(log.maybeAppend(1, 2, 0, []), undefined, 'mismatch at the previous entry');
  log.commitTo(2);
  t.throws(() => log.maybeAppend(1, 1, 0, [entry(3, 2)]), AssertionError, 'a conflict at or below commit is a broken invariant');
});

void t.test('terms and slices span storage and the unstable tail, with size limits', async (t) => {
  const storage = memoryStorage(voters(1), entriesWithTerms(1, 1, 2));
  const log = new RaftLog(storage, 1024);
  log.append([entry(3, 4, 'abc'), entry(3, 5, 'defg')]);
  t.same([log.term(0), log.term(3), log.term(5), log.term(6)], [0, 2, 3, undefined]);
  t.same(log.slice(2, 6, Infinity).map((e) => e.index), [2, 3, 4, 5]);
  const two = entryBytes(entry(1, 1)) + entryBytes(entry(1, 2));
  t.same(log.slice(1, 6, two).map((e) => e.index), [1, 2], 'limited to the bytes asked for');
  t.same(log.slice(5, 6, 1).map((e) => e.index), [5], 'at least one entry');
  t.same(log.unstableEntries().map((e) => e.index), [4, 5]);
  storage.append(log.unstableEntries());
  log.stableTo({ index: 5, term: 3 });
  t.same(log.unstableEntries(), []);
  t.same(log.slice(4, 6, Infinity).map((e) => e.index), [4, 5], 'now read from storage');
});

void t.test('a truncation between Ready and advance keeps the rewritten entries unstable', async (t) => {
  const log = new RaftLog(memoryStorage(voters(1)), 1024);
  log.append([entry(1, 1), entry(1, 2)]);
  log.append([entry(2, 2)]); // a new leader replaced index 2 before the first write finished
  log.stableTo({ index: 2, term: 1 });
  t.same(log.unstableEntries().map((e) => `${e.term}/${e.index}`), ['1/1', '2/2'], 'nothing was marked stable');
});

void t.test('the up-to-date check compares last term, then length', async (t) => {
  const log = new RaftLog(memoryStorage(voters(1), entriesWithTerms(1, 2, 2)), 1024);
  t.ok(log.isUpToDate(3, 2));
  t.ok(log.isUpToDate(1, 3));
  t.notOk(log.isUpToDate(2, 2));
  t.notOk(log.isUpToDate(9, 1));
});

void t.test('rejection hints name the conflicting term and where it starts', async (t) => {
  const log = new RaftLog(memoryStorage(voters(1), entriesWithTerms(1, 2, 2, 2, 3)), 1024);
  t.same(log.conflictHint(4), { term: 2, index: 2 });
  t.same(log.conflictHint(9), { term: 0, index: 6 }, 'too short: resume after our last entry');
  log.commitTo(2);
  t.same(log.conflictHint(4), { term: 2, index: 3 }, 'never below commit + 1');
  t.equal(log.lastIndexOfTerm(2, 5), 4);
  t.equal(log.lastIndexOfTerm(4, 5), undefined);
});

void t.test('committed entries are handed out once, in bounded batches', async (t) => {
  const log = new RaftLog(memoryStorage(voters(1), entriesWithTerms(1, 1, 1, 1)), entryBytes(entry(1, 1)) * 2);
  log.commitTo(3);
  const first = log.nextCommittedEntries();
  t.same(first.map((e) => e.index), [1, 2]);
  log.acceptApplying(2);
  t.same(log.nextCommittedEntries().map((e) => e.index), [3]);
  t.throws(() => log.commitTo(9), AssertionError, 'commit beyond the log is a broken invariant');
  t.throws(() => log.appliedTo(4), AssertionError, 'applied beyond commit');
});

void t.test('memory storage: append overwrites a suffix, snapshots and compaction keep the contract', async (t) => {
  const storage = memoryStorage(voters(1), entriesWithTerms(1, 1, 1));
  storage.append([entry(2, 3), entry(2, 4)]);
  t.same(storage.entries(1, 5, Infinity).map((e) => e.term), [1, 1, 2, 2]);
  t.throws(() => storage.append([entry(2, 9)]), AssertionError, 'a gap');
  t.throws(() => storage.term(5), UnavailableError);
  t.throws(() => storage.compact(2), AssertionError, 'compaction past the snapshot');
  storage.createSnapshot(3, voters(1), new Uint8Array([7]));
  t.throws(() => storage.createSnapshot(2, voters(1), new Uint8Array(0)), SnapshotOutOfDateError);
  storage.compact(3);
  t.same([storage.firstIndex(), storage.lastIndex(), storage.term(3)], [4, 4, 2]);
  t.throws(() => storage.entries(3, 5, Infinity), CompactedError);
  t.throws(() => storage.compact(3), CompactedError);
  storage.append([entry(1, 2), entry(2, 3), entry(3, 4)]);
  t.same(storage.entries(4, 5, Infinity).map((e) => e.term), [3], 'compacted entries in an append are skipped');
  t.throws(() => storage.applySnapshot({ metadata: { index: 3, term: 2, confState: voters(1) }, data: new Uint8Array(0) }), SnapshotOutOfDateError);
  storage.applySnapshot({ metadata: { index: 10, term: 5, confState: voters(1, 2) }, data: new Uint8Array(0) });
  t.same([storage.firstIndex(), storage.lastIndex(), storage.term(10)], [11, 10, 5]);
  t.same(storage.initialState().confState.voters, [1, 2]);
});
