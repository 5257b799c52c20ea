/**
 * Leader behaviour: heartbeats and check-quorum, proposals (with the configuration-change and
 * uncommitted-size rules), replication with flow control and fast back-tracking, ReadIndex, and
 * leadership transfer.
 *
 * Invariants: a configuration change is accepted only when every earlier one is applied
 * (pendingConfIndex <= applied) and it is valid against the current configuration; no proposal is
 * accepted during a leadership transfer; reads are answered only after this leader has committed
 * an entry of its term AND a quorum acknowledged a heartbeat sent after the read arrived.
 */
import { assert } from '../util/assert';
import { decodeConfChange, isLeaveJoint, jointMode } from './conf-change-codec';
import { Changer } from './confchange';
import { ConfChangeError, type DropReason, ProposalDroppedError } from './errors';
import type { Progress } from './progress';
import type { Raft } from './raft';
import { handleSnapshotResponse, retransmitStalledSnapshot, startSnapshot } from './snapshot-transfer';
import { entryBytes } from './storage';
import { isJoint } from './tracker';
import { type Entry, type Message, noNode } from './types';

export function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case 'MsgBeat':
      broadcastHeartbeat(r, r.readOnly.lastContext());
      return;
    case 'MsgCheckQuorum':
      if (!r.tracker.quorumActive()) {
        r.becomeFollower(r.term, noNode); // cannot reach a quorum: stop acting as leader
        return;
      }
      for (const [id, pr] of r.tracker.progress) if (id !== r.id) pr.recentActive = false;
      return;
    case 'MsgProp':
      propose(r, m);
      return;
    case 'MsgReadIndex':
      readIndex(r, m);
      return;
    case 'MsgTransferLeader':
      transferLeadership(r, m.target);
      return;
    default:
      break;
  }
  const pr = r.tracker.progress.get(m.from);
  if (pr === undefined) return; // not (or no longer) a member
  switch (m.type) {
    case 'MsgAppResp':
      handleAppendResponse(r, m, pr);
      return;
    case 'MsgHeartbeatResp':
      handleHeartbeatResponse(r, m, pr);
      return;
    case 'MsgSnapResp':
      pr.recentActive = true;
      handleSnapshotResponse(r, m, pr);
      return;
    case 'MsgUnreachable':
      if (pr.state === 'replicate') pr.becomeProbe(); // stop pipelining into the void
      return;
    default:
      return;
  }
}

// --- proposals --------------------------------------------------------------------------------

function drop(reason: DropReason, message: string): ProposalDroppedError {
  return new ProposalDroppedError(reason, message);
}

function propose(r: Raft, m: Message): void {
  if (m.entries.length === 0) return; // malformed: nothing to append
  if (!r.tracker.progress.has(r.id)) throw drop('removed', `node ${r.id} is no longer a member`);
  if (r.leadTransferee !== noNode) {
    throw drop('leadership-transfer', `node ${r.id} is transferring leadership to ${r.leadTransferee}`);
  }
  let pendingConfIndex = r.pendingConfIndex;
  const entries: Entry[] = [];
  for (const [i, entry] of m.entries.entries()) {
    if (entry.type === 'confChange') {
      checkConfChange(r, entry.data, pendingConfIndex);
      pendingConfIndex = r.log.lastIndex() + i + 1;
    }
    entries.push({ term: 0, index: 0, type: entry.type, data: entry.data });
  }
  if (!r.appendEntries(entries)) {
    throw drop('uncommitted-limit', `node ${r.id}: ${r.uncommittedBytes} uncommitted bytes reach the limit of ${r.config.uncommittedBytesMax}`);
  }
  r.pendingConfIndex = pendingConfIndex;
}

/** Throws ProposalDroppedError unless the encoded change may be appended now. */
function checkConfChange(r: Raft, data: Uint8Array, pendingConfIndex: number): void {
  if (pendingConfIndex > r.log.applied) {
    throw drop('conf-change-pending', `configuration changes wait until index ${pendingConfIndex} is applied (applied ${r.log.applied})`);
  }
  try {
    const change = decodeConfChange(data);
    const joint = isJoint(r.tracker.config);
    const leave = isLeaveJoint(change);
    if (joint && !leave) throw new ConfChangeError('must leave the joint configuration first');
    if (!joint && leave) throw new ConfChangeError('not in a joint configuration');
    // Dry run against the configuration the change will apply to (all earlier ones are applied).
    const changer = new Changer(r.tracker, r.tracker, r.log.lastIndex());
    if (leave) changer.leaveJoint();
    else {
      const mode = jointMode(change);
      if (mode.joint) changer.enterJoint(mode.autoLeave, change.changes);
      else changer.simple(change.changes);
    }
  } catch (error) {
    if (error instanceof ConfChangeError) throw drop('conf-change-invalid', error.message);
    throw error;
  }
}

// --- replication ------------------------------------------------------------------------------

/** Sends as many appends to `to` as flow control allows (pipelining in replicate state). */
export function sendAppend(r: Raft, to: number): void {
  const bound = r.config.inflightMessagesMax + 2;
  for (let sent = 0; maybeSendAppend(r, to); sent++) {
    assert(sent <= bound, `node ${r.id}: append loop to ${to} did not stop after ${sent} messages`);
  }
}

function maybeSendAppend(r: Raft, to: number): boolean {
  const pr = r.tracker.progress.get(to);
  if (pr === undefined) return false;
  const lastIndex = r.log.lastIndex();
  const commit = r.log.committed;
  // With lazy commit notices a new commit index alone is no reason to send (it rides along).
  if (!pr.shouldSendAppend(lastIndex, r.config.lazyCommitNotices ? 0 : commit)) return false;
  const prevIndex = pr.next - 1;
  const prevTerm = r.log.term(prevIndex);
  if (prevTerm === undefined) {
    assert(prevIndex < r.log.firstIndex(), `node ${r.id}: no term for ${prevIndex} though it is not compacted`);
    return startSnapshot(r, to, pr); // the entries this follower needs are compacted
  }
  const entries = pr.canSendEntries(lastIndex) ? r.log.entries(pr.next, r.config.messageBytesMax) : [];
  let bytes = 0;
  for (const entry of entries) bytes += entryBytes(entry);
  r.send({ type: 'MsgApp', to, index: prevIndex, logTerm: prevTerm, entries, commit });
  pr.sentAppend(entries.length, bytes, commit);
  return true;
}

function handleAppendResponse(r: Raft, m: Message, pr: Progress): void {
  pr.recentActive = true;
  if (m.reject) {
    // Fast back-tracking: if we hold entries of the follower's conflicting term, resume after our
    // last one of that term; otherwise skip the follower's whole term.
    let nextHint = m.rejectHint;
    if (m.logTerm > 0) {
      const last = r.log.lastIndexOfTerm(m.logTerm, m.index);
      if (last !== undefined) nextHint = last + 1;
    }
    if (pr.maybeDecrTo(m.index, nextHint)) {
      if (pr.state === 'replicate') pr.becomeProbe();
      r.scheduleAppend(m.from);
    }
    return;
  }
  if (pr.state === 'snapshot') {
    pr.maybeUpdate(m.index);
    // Either the follower installed the snapshot (or already had it: it answers with its commit
    // index, which is then >= the snapshot index), or it caught up from the log some other way.
    if (m.index < pr.pendingSnapshot && pr.match + 1 < r.log.firstIndex()) return;
    r.snapshotSender.finish(m.from);
    pr.becomeProbe();
    if (pr.match + 1 >= r.log.firstIndex()) pr.becomeReplicate();
  } else {
    const updated = pr.maybeUpdate(m.index);
    if (!updated && !(pr.state === 'probe' && pr.match === m.index)) return; // stale
    if (pr.state === 'probe') pr.becomeReplicate();
    else pr.inflights.freeLE(m.index);
  }
  if (r.maybeCommit()) {
    releasePendingReads(r);
    r.broadcastPending = true;
  }
  r.scheduleAppend(m.from); // keep the pipeline full
  if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) {
    r.send({ type: 'MsgTimeoutNow', to: m.from }); // the target is caught up: let it campaign now
  }
}

function handleHeartbeatResponse(r: Raft, m: Message, pr: Progress): void {
  pr.recentActive = true;
  pr.probeSent = false; // one more probe (or empty append) may go out per heartbeat round
  if (pr.state === 'snapshot') retransmitStalledSnapshot(r, m.from);
  else r.scheduleAppend(m.from);
  if (m.context.length === 0) return;
  const acks = r.readOnly.recordAck(m.from, m.context);
  if (acks === undefined) return;
  if (r.tracker.voteResult(new Map([...acks].map((id) => [id, true]))) !== 'won') return;
  for (const request of r.readOnly.release(m.context)) deliverReadState(r, request.from, request.index, request.context);
}

function broadcastHeartbeat(r: Raft, context: Uint8Array | undefined): void {
  for (const [id, pr] of r.tracker.progress) {
    if (id === r.id) continue;
    // Never move a follower's commit past what it is known to hold.
    const commit = Math.min(pr.match, r.log.committed);
    r.send({ type: 'MsgHeartbeat', to: id, commit, ...(context === undefined ? {} : { context }) });
  }
}

// --- reads ------------------------------------------------------------------------------------

function readIndex(r: Raft, m: Message): void {
  if (m.context.length === 0) return; // malformed
  if (!r.committedEntryInCurrentTerm()) {
    // Our commit index may lag the previous leader's until our no-op commits (§8).
    if (r.pendingReadIndexMessages.length >= r.config.pendingReadsMax) throw drop('read-queue-full', 'too many reads waiting for the first commit');
    r.pendingReadIndexMessages.push(m);
    return;
  }
  answerReadIndex(r, m);
}

function answerReadIndex(r: Raft, m: Message): void {
  if (r.tracker.isSingleton()) {
    deliverReadState(r, m.from, r.log.committed, m.context);
    return;
  }
  if (r.readOnly.size >= r.config.pendingReadsMax && !r.readOnly.has(m.context)) {
    throw drop('read-queue-full', `${r.readOnly.size} reads are waiting for a heartbeat quorum`);
  }
  r.readOnly.add(r.log.committed, m.from, m.context);
  r.readOnly.recordAck(r.id, m.context);
  broadcastHeartbeat(r, m.context);
}

function releasePendingReads(r: Raft): void {
  if (r.pendingReadIndexMessages.length === 0 || !r.committedEntryInCurrentTerm()) return;
  const waiting = r.pendingReadIndexMessages;
  r.pendingReadIndexMessages = [];
  for (const m of waiting) {
    try {
      answerReadIndex(r, m);
    } catch (error) {
      if (!(error instanceof ProposalDroppedError)) throw error; // a full queue drops the read
    }
  }
}

function deliverReadState(r: Raft, from: number, index: number, context: Uint8Array): void {
  if (from === r.id || from === noNode) r.readStates.push({ index, context });
  else r.send({ type: 'MsgReadIndexResp', to: from, index, context });
}

// --- leadership transfer ----------------------------------------------------------------------

function transferLeadership(r: Raft, target: number): void {
  const pr = r.tracker.progress.get(target);
  if (pr === undefined || pr.isLearner) return; // only a voter can take over
  if (r.leadTransferee !== noNode) {
    if (r.leadTransferee === target) return; // already under way
    r.leadTransferee = noNode; // abort the previous one for the new target
  }
  if (target === r.id) return; // already leader
  // The transfer must finish within an election timeout (tickHeartbeat aborts it otherwise).
  r.electionElapsed = 0;
  r.leadTransferee = target;
  if (pr.match === r.log.lastIndex()) r.send({ type: 'MsgTimeoutNow', to: target });
  else r.scheduleAppend(target);
}
