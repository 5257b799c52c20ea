/**
 * Follower and (pre-)candidate behaviour: accepting appends, heartbeats and snapshots from the
 * leader, forwarding requests to it, and counting votes.
 *
 * Invariants: a follower truncates only at a real conflict (never because of a stale or
 * duplicated append); it commits no further than what the message proved to match; it never
 * restores a snapshot at or below its commit index.
 */
import type { Raft } from './raft';
import { handleSnapshotChunk } from './snapshot-transfer';
import { type Message, noNode } from './types';

export function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case 'MsgProp':
      if (r.lead === noNode || !r.config.forwardProposals) throw r.notLeader();
      r.send({ type: 'MsgProp', to: r.lead, from: m.from, entries: m.entries });
      return;
    case 'MsgApp':
      r.electionElapsed = 0;
      r.lead = m.from;
      handleAppendEntries(r, m);
      return;
    case 'MsgHeartbeat':
      r.electionElapsed = 0;
      r.lead = m.from;
      handleHeartbeat(r, m);
      return;
    case 'MsgSnap':
      r.electionElapsed = 0;
      r.lead = m.from;
      handleSnapshotChunk(r, m);
      return;
    case 'MsgTransferLeader':
      if (r.lead === noNode) throw r.notLeader();
      r.send({ type: 'MsgTransferLeader', to: r.lead, target: m.target });
      return;
    case 'MsgTimeoutNow':
      // The leader asks us to campaign now. No pre-vote: we know the leader is alive and steps aside.
      r.hup('transfer');
      return;
    case 'MsgReadIndex':
      if (r.lead === noNode) throw r.notLeader();
      r.send({ type: 'MsgReadIndex', to: r.lead, from: m.from, context: m.context });
      return;
    case 'MsgReadIndexResp':
      r.readStates.push({ index: m.index, context: m.context });
      return;
    default:
      return; // responses and anything else meant for other roles
  }
}

export function stepCandidate(r: Raft, m: Message): void {
  const voteResponse = r.role === 'preCandidate' ? 'MsgPreVoteResp' : 'MsgVoteResp';
  switch (m.type) {
    case 'MsgProp':
    case 'MsgReadIndex':
    case 'MsgTransferLeader':
      throw r.notLeader();
    case 'MsgApp':
      r.becomeFollower(m.term, m.from); // a leader exists in our term (or a later one)
      handleAppendEntries(r, m);
      return;
    case 'MsgHeartbeat':
      r.becomeFollower(m.term, m.from);
      handleHeartbeat(r, m);
      return;
    case 'MsgSnap':
      r.becomeFollower(m.term, m.from);
      handleSnapshotChunk(r, m);
      return;
    case 'MsgVoteResp':
    case 'MsgPreVoteResp': {
      if (m.type !== voteResponse) return;
      const result = r.poll(m.from, !m.reject);
      if (result === 'won') {
        if (r.role === 'preCandidate') r.campaign('election');
        else r.becomeLeader();
      } else if (result === 'lost') {
        // A rejection with a higher term already made us a follower of that term.
        r.becomeFollower(r.term, noNode);
      }
      return;
    }
    default:
      return;
  }
}

/** Entries must follow the message's previous index contiguously, with terms in [logTerm, term]. */
function wellFormedAppend(m: Message): boolean {
  let term = m.logTerm;
  for (let i = 0; i < m.entries.length; i++) {
    const entry = m.entries[i];
    if (entry === undefined || entry.index !== m.index + 1 + i || entry.term < term || entry.term > m.term) return false;
    term = entry.term;
  }
  return true;
}

export function handleAppendEntries(r: Raft, m: Message): void {
  if (!wellFormedAppend(m)) return; // malformed input: drop, never let it touch the log
  if (m.index < r.log.committed) {
    // Everything up to our commit index matches the leader already.
    r.send({ type: 'MsgAppResp', to: m.from, index: r.log.committed });
    return;
  }
  const lastNew = r.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
  if (lastNew !== undefined) {
    r.send({ type: 'MsgAppResp', to: m.from, index: lastNew });
    return;
  }
  // Mismatch at m.index: tell the leader the conflicting term and where it starts in our log so
  // it can skip the whole term in one round trip.
  const hint = r.log.conflictHint(m.index);
  r.send({ type: 'MsgAppResp', to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
}

export function handleHeartbeat(r: Raft, m: Message): void {
  // The leader sends min(our match, its commit): never past what we are known to hold.
  r.log.commitTo(m.commit);
  r.send({ type: 'MsgHeartbeatResp', to: m.from, context: m.context });
}
