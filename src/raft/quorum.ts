/**
 * Quorum arithmetic, pure: the commit index and the election outcome for a majority
 * configuration and for a joint one (a decision needs a majority of BOTH halves).
 *
 * Conventions: an empty majority configuration agrees to everything (committed index +Infinity,
 * vote won) so that a non-joint configuration can be modelled as joint with an empty outgoing half.
 */

export type VoteResult = 'pending' | 'lost' | 'won';

/** Voters of a joint configuration: [incoming, outgoing]; outgoing is empty when not joint. */
export type JointVoters = readonly [ReadonlySet<number>, ReadonlySet<number>];

/**
 * The largest index acknowledged by a majority of `voters`. `acked(id)` gives a voter's matched
 * index; voters it does not know count as 0.
 */
export function majorityCommittedIndex(voters: ReadonlySet<number>, acked: (id: number) => number | undefined): number {
  if (voters.size === 0) return Number.POSITIVE_INFINITY;
  const indexes: number[] = [];
  for (const id of voters) indexes.push(acked(id) ?? 0);
  indexes.sort((a, b) => b - a);
  // Sorted descending: the entry at position quorum-1 is held by at least `quorum` voters.
  const quorum = Math.floor(voters.size / 2) + 1;
  return indexes[quorum - 1] as number;
}

/** Election outcome given the votes received so far (true = granted, false = rejected). */
export function majorityVoteResult(voters: ReadonlySet<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const quorum = Math.floor(voters.size / 2) + 1;
  if (granted >= quorum) return 'won';
  if (granted + missing >= quorum) return 'pending';
  return 'lost';
}

export function jointCommittedIndex(voters: JointVoters, acked: (id: number) => number | undefined): number {
  return Math.min(majorityCommittedIndex(voters[0], acked), majorityCommittedIndex(voters[1], acked));
}

export function jointVoteResult(voters: JointVoters, votes: ReadonlyMap<number, boolean>): VoteResult {
  const incoming = majorityVoteResult(voters[0], votes);
  const outgoing = majorityVoteResult(voters[1], votes);
  if (incoming === outgoing) return incoming;
  if (incoming === 'lost' || outgoing === 'lost') return 'lost';
  return 'pending';
}

/** Every voter of both halves, ascending. */
export function jointVoterIds(voters: JointVoters): number[] {
  return [...new Set([...voters[0], ...voters[1]])].sort((a, b) => a - b);
}
