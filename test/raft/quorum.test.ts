// Goal: the quorum arithmetic is right for majority and joint configurations, including the
// empty-configuration conventions that let a simple configuration act as a joint one.
// Method: tables of acknowledged indexes and votes, checked against hand-computed answers.
import t from 'tap';
import { jointCommittedIndex, jointVoteResult, majorityCommittedIndex, majorityVoteResult } from '../../src/raft/quorum';

const set = (...ids: number[]) => new Set(ids);
const acked = (indexes: Record<number, number>) => (id: number) => indexes[id];

void t.test('the majority commit index is the highest index a majority holds', async (t) => {
  t.equal(majorityCommittedIndex(set(1), acked({ 1: 5 })), 5);
  t.equal(majorityCommittedIndex(set(1, 2, 3), acked({ 1: 5, 2: 3, 3: 1 })), 3);
  t.equal(majorityCommittedIndex(set(1, 2, 3, 4), acked({ 1: 5, 2: 5, 3: 1, 4: 1 })), 1, 'four voters need three');
  t.equal(majorityCommittedIndex(set(1, 2, 3), acked({ 1: 7 })), 0, 'unknown voters count as 0');
  t.equal(majorityCommittedIndex(set(), acked({})), Number.POSITIVE_INFINITY, 'an empty config agrees to everything');
});

void t.test('a majority vote is won, lost or still pending', async (t) => {
  const votes = (entries: [number, boolean][]) => new Map(entries);
  t.equal(majorityVoteResult(set(1, 2, 3), votes([[1, true], [2, true]])), 'won');
  t.equal(majorityVoteResult(set(1, 2, 3), votes([[1, true], [2, false]])), 'pending');
  t.equal(majorityVoteResult(set(1, 2, 3), votes([[2, false], [3, false]])), 'lost');
  t.equal(majorityVoteResult(set(1, 2, 3, 4), votes([[1, true], [2, true]])), 'pending', 'half is not a majority');
  t.equal(majorityVoteResult(set(1, 2, 3), votes([[7, true], [8, true]])), 'pending', 'non-voters do not count');
  t.equal(majorityVoteResult(set(), votes([])), 'won');
});

void t.test('a joint configuration needs both halves', async (t) => {
  const voters = [set(1, 2, 3), set(3, 4, 5)] as const;
  t.equal(jointCommittedIndex(voters, acked({ 1: 9, 2: 9, 3: 4, 4: 2, 5: 1 })), 2);
  t.equal(jointCommittedIndex([set(1, 2, 3), set()], acked({ 1: 9, 2: 9, 3: 4 })), 9, 'empty outgoing half');
  const votes = (entries: [number, boolean][]) => new Map(entries);
  t.equal(jointVoteResult(voters, votes([[1, true], [2, true], [3, true], [4, true]])), 'won');
  t.equal(jointVoteResult(voters, votes([[1, true], [2, true]])), 'pending');
  t.equal(jointVoteResult(voters, votes([[1, true], [2, true], [4, false], [5, false]])), 'lost', 'a lost half loses');
});
