/**
 * Raft: the consensus transition function (internal; applications use RawNode). Owns term, vote,
 * role, the log view, the progress tracker and the outbox. Role behaviour sits behind one function
 * pointer (stepLeader / stepCandidate / stepFollower in raft-leader.ts and raft-follower.ts);
 * this file holds what every role shares: term rules, voting, elections, role transitions, ticks,
 * appending and committing, and switching configurations.
 *
 * Invariants: at most one vote per term (persisted before the vote leaves, see Ready); the leader
 * commits by counting only entries of its own term (§5.4.2); messages are only queued here and
 * leave through Ready after the state they depend on is durable.
 */
import { assert } from '../util/assert';
import type { Random } from '../util/random';
import { isLeaveJoint, jointMode } from './conf-change-codec';
import { type ConfigAndProgress, Changer, restoreConfig } from './confchange';
import { type RaftConfig, type RaftConfigInput, resolveRaftConfig } from './config';
import { NotLeaderError, ProposalDroppedError } from './errors';
import { Inflights } from './inflights';
import { Progress } from './progress';
import { RaftLog } from './raft-log';
import { sendAppend, stepLeader } from './raft-leader';
import { stepCandidate, stepFollower } from './raft-follower';
import { ReadOnlyQueue } from './read-only';
import { SnapshotReceiver, SnapshotSender } from './snapshot-transfer';
import { type RaftStorage, payloadBytes } from './storage';
import { ProgressTracker } from './tracker';
import {
  type ConfChange, type ConfState, type Entry, type HardState, type Message, type RaftRole, type ReadState, type SoftState,
  makeMessage, noNode, voteResponseType,
} from './types';

export type CampaignKind = 'preElection' | 'election' | 'transfer';

const emptyBytes = new Uint8Array(0);

export class Raft {
  readonly id: number;
  readonly config: RaftConfig;
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  term = 0;
  vote = noNode;
  lead = noNode;
  role: RaftRole = 'follower';
  /** This node is a learner in the active configuration. */
  isLearner = false;
  /** Outbox; drained by RawNode.ready(). */
  messages: Message[] = [];
  readStates: ReadState[] = [];
  /** Ticks since the last election timeout reset (followers: since hearing from the leader). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  /** Leadership transfer target while one is in progress. */
  leadTransferee = noNode;
  /** Index of the latest configuration entry this leader may have appended; no new one until applied. */
  pendingConfIndex = 0;
  /** Payload bytes appended by this leader and not yet committed (approximate, never negative). */
  uncommittedBytes = 0;
  readOnly = new ReadOnlyQueue();
  /** Reads that arrived before this leader committed an entry of its term. */
  pendingReadIndexMessages: Message[] = [];
  readonly snapshotSender = new SnapshotSender();
  readonly snapshotReceiver = new SnapshotReceiver();
  /**
   * Appends are not sent the moment they become due but once per Ready (flushAppends), so that
   * the proposals and acknowledgements of one cycle leave as one append per follower carrying the
   * latest commit index. `broadcastPending` means every follower is due.
   */
  broadcastPending = false;
  readonly appendsDue = new Set<number>();
  private stepRole: (m: Message) => void = (m) => stepFollower(this, m);
  private tickRole: () => void = () => this.tickElection();

  constructor(configInput: RaftConfigInput, storage: RaftStorage, private readonly random: Random) {
    this.config = resolveRaftConfig(configInput);
    this.id = this.config.id;
    this.log = new RaftLog(storage, this.config.committedBytesPerReadyMax);
    this.tracker = new ProgressTracker(this.config.inflightMessagesMax, this.config.inflightBytesMax);
    const { hardState, confState } = storage.initialState();
    this.switchToConfig(restoreConfig(confState, this.tracker, this.log.lastIndex()));
    if (hardState.term !== 0 || hardState.vote !== noNode || hardState.commit !== 0) this.loadState(hardState);
    if (this.config.applied > 0) this.log.appliedTo(this.config.applied);
    this.becomeFollower(this.term, noNode);
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  private loadState(state: HardState): void {
    assert(
      state.commit >= this.log.committed && state.commit <= this.log.lastIndex(),
      `node ${this.id}: hard state commit ${state.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`,
    );
    this.log.committed = state.commit;
    this.term = state.term;
    this.vote = state.vote;
  }

  // --- outbox ---------------------------------------------------------------------------------

  send(fields: Partial<Message> & Pick<Message, 'type' | 'to'>): void {
    const type = fields.type;
    if (type === 'MsgVote' || type === 'MsgVoteResp' || type === 'MsgPreVote' || type === 'MsgPreVoteResp') {
      assert(fields.term !== undefined && fields.term !== 0, `node ${this.id}: ${type} must carry a term`);
      this.messages.push(makeMessage({ ...fields, from: this.id }));
    } else if (type === 'MsgProp' || type === 'MsgReadIndex') {
      // Forwarded requests carry no term: the leader treats them like local requests.
      this.messages.push(makeMessage({ ...fields, from: fields.from ?? this.id, term: 0 }));
    } else {
      this.messages.push(makeMessage({ ...fields, from: this.id, term: this.term }));
    }
  }

  /** Sends the appends that became due, then drains the outbox. */
  takeMessages(): Message[] {
    this.flushAppends();
    const messages = this.messages;
    this.messages = [];
    return messages;
  }

  scheduleAppend(id: number): void {
    this.appendsDue.add(id);
  }

  flushAppends(): void {
    if (!this.broadcastPending && this.appendsDue.size === 0) return;
    const ids = this.broadcastPending ? this.tracker.ids() : [...this.appendsDue].sort((a, b) => a - b);
    this.broadcastPending = false;
    this.appendsDue.clear();
    if (this.role !== 'leader') return;
    for (const id of ids) {
      if (id !== this.id) sendAppend(this, id);
    }
  }

  // --- role transitions -----------------------------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = noNode;
    }
    this.lead = noNode;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.config.electionTicks + this.random.int(this.config.electionTicks);
    this.leadTransferee = noNode;
    this.tracker.resetVotes();
    const lastIndex = this.log.lastIndex();
    for (const [id, pr] of this.tracker.progress) {
      this.tracker.progress.set(id, new Progress({
        match: id === this.id ? lastIndex : 0, next: lastIndex + 1, isLearner: pr.isLearner, recentActive: id === this.id,
        inflights: new Inflights(this.config.inflightMessagesMax, this.config.inflightBytesMax),
      }));
    }
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly = new ReadOnlyQueue();
    this.pendingReadIndexMessages = [];
    this.snapshotSender.clear();
    this.snapshotReceiver.clear();
    this.broadcastPending = false;
    this.appendsDue.clear();
  }

  becomeFollower(term: number, lead: number): void {
    this.stepRole = (m) => stepFollower(this, m);
    this.tickRole = () => this.tickElection();
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
  }

  becomePreCandidate(): void {
    assert(this.role !== 'leader', `node ${this.id}: invalid transition [leader -> preCandidate]`);
    // Neither term nor vote change: a pre-election must leave no trace if it fails.
    this.stepRole = (m) => stepCandidate(this, m);
    this.tickRole = () => this.tickElection();
    this.tracker.resetVotes();
    this.lead = noNode;
    this.role = 'preCandidate';
  }

  becomeCandidate(): void {
    assert(this.role !== 'leader', `node ${this.id}: invalid transition [leader -> candidate]`);
    this.stepRole = (m) => stepCandidate(this, m);
    this.tickRole = () => this.tickElection();
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  becomeLeader(): void {
    assert(this.role !== 'follower', `node ${this.id}: invalid transition [follower -> leader]`);
    this.stepRole = (m) => stepLeader(this, m);
    this.tickRole = () => this.tickHeartbeat();
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.tracker.progress.get(this.id);
    assert(self !== undefined, `node ${this.id}: became leader without being in the configuration`);
    self.becomeReplicate();
    self.recentActive = true;
    // The no-op of §8: commits everything before it once it commits.
    const appended = this.appendEntries([{ term: 0, index: 0, type: 'normal', data: emptyBytes }]);
    assert(appended, `node ${this.id}: the leader's empty entry was refused`);
    // Entries from earlier terms may hold configuration changes. No change may be proposed until
    // all of them AND this term's no-op are applied: the 2015 fix for single-server changes (a
    // leader proposes no change before an entry of its own term is committed).
    this.pendingConfIndex = this.log.lastIndex();
  }

  // --- time -----------------------------------------------------------------------------------

  tick(): void {
    this.tickRole();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(makeMessage({ type: 'MsgHup', from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) this.step(makeMessage({ type: 'MsgCheckQuorum', from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === 'leader' && this.leadTransferee !== noNode) this.leadTransferee = noNode;
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.step(makeMessage({ type: 'MsgBeat', from: this.id }));
    }
  }

  /** Can this node campaign? A voter in the active configuration, not mid-snapshot-install. */
  promotable(): boolean {
    const pr = this.tracker.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.hasPendingSnapshot();
  }

  // --- step -----------------------------------------------------------------------------------

  /**
   * Feeds one message. Local requests (MsgProp / MsgReadIndex / MsgTransferLeader from this node)
   * throw ProposalDroppedError when refused; the same refusals of forwarded requests are silent
   * (the remote proposer times out and retries).
   */
  step(m: Message): void {
    try {
      this.stepInner(m);
    } catch (error) {
      if (error instanceof ProposalDroppedError && m.from !== this.id) return;
      throw error;
    }
  }

  private stepInner(m: Message): void {
    if (m.term > this.term && m.term !== 0) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        // Leader lease (thesis §4.2.3): a node that heard from a live leader within the minimum
        // election timeout ignores votes, so a disruptive server cannot depose a healthy leader.
        const inLease = this.config.checkQuorum && this.lead !== noNode && this.electionElapsed < this.config.electionTicks;
        if (!m.leaderTransfer && inLease) return;
      }
      if (m.type === 'MsgPreVote') {
        // never change term for a pre-vote
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // a granted pre-vote carries the future term; the term rises only when the quorum grants
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, noNode);
      }
    } else if (m.term < this.term && m.term !== 0) {
      if ((this.config.checkQuorum || this.config.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // A leader of an older term. Our term may have risen while we were partitioned; with
        // check-quorum or pre-vote that term never reaches the others through votes, so tell the
        // old leader directly (it steps down on the higher term and a fresh election follows).
        this.send({ to: m.from, type: 'MsgAppResp' });
      } else if (m.type === 'MsgPreVote') {
        this.send({ to: m.from, term: this.term, type: 'MsgPreVoteResp', reject: true });
      }
      return; // ignore every other stale message
    }

    switch (m.type) {
      case 'MsgHup':
        this.hup(m.leaderTransfer ? 'transfer' : this.config.preVote ? 'preElection' : 'election');
        return;
      case 'MsgVote':
      case 'MsgPreVote':
        this.handleVoteRequest(m, m.type);
        return;
      default:
        this.stepRole(m);
    }
  }

  private handleVoteRequest(m: Message, type: 'MsgVote' | 'MsgPreVote'): void {
    // We vote again for the same candidate (a retransmission), or vote when we have neither voted
    // nor seen a leader this term, or grant a pre-vote for a future term.
    const canVote = this.vote === m.from
      || (this.vote === noNode && this.lead === noNode)
      || (type === 'MsgPreVote' && m.term > this.term);
    const responseType = voteResponseType(type);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // The response carries the request's term: a pre-vote grant does not raise our term.
      this.send({ to: m.from, term: m.term, type: responseType });
      if (type === 'MsgVote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ to: m.from, term: this.term, type: responseType, reject: true });
    }
  }

  // --- elections ------------------------------------------------------------------------------

  hup(kind: CampaignKind): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return; // the configuration we would lead is not known yet
    this.campaign(kind);
  }

  private hasUnappliedConfChanges(): boolean {
    let lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const hi = this.log.committed + 1;
    while (lo < hi) {
      const entries = this.log.slice(lo, hi, this.config.committedBytesPerReadyMax);
      if (entries.some((entry) => entry.type === 'confChange')) return true;
      lo += entries.length;
    }
    return false;
  }

  campaign(kind: CampaignKind): void {
    let term: number;
    let type: 'MsgVote' | 'MsgPreVote';
    if (kind === 'preElection') {
      this.becomePreCandidate();
      type = 'MsgPreVote';
      term = this.term + 1; // the term we would campaign in; ours does not change yet
    } else {
      this.becomeCandidate();
      type = 'MsgVote';
      term = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      // A single-voter configuration: we won by our own vote.
      if (kind === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const last = this.log.lastEntryId();
    for (const id of this.tracker.voterIds()) {
      if (id === this.id) continue;
      this.send({ to: id, term, type, index: last.index, logTerm: last.term, leaderTransfer: kind === 'transfer' });
    }
  }

  poll(id: number, granted: boolean): 'pending' | 'lost' | 'won' {
    return this.tracker.recordVote(id, granted).result;
  }

  // --- log ------------------------------------------------------------------------------------

  /** Leader: assigns term and index, appends, counts itself. False when over the uncommitted bound. */
  appendEntries(entries: readonly Entry[]): boolean {
    assert(this.role === 'leader', `node ${this.id}: only the leader appends proposals`);
    const lastIndex = this.log.lastIndex();
    const stamped = entries.map((entry, i): Entry => ({ ...entry, term: this.term, index: lastIndex + 1 + i }));
    const bytes = payloadBytes(stamped);
    if (this.uncommittedBytes > 0 && bytes > 0 && this.uncommittedBytes + bytes > this.config.uncommittedBytesMax) return false;
    this.uncommittedBytes += bytes;
    const newLast = this.log.append(stamped);
    const self = this.tracker.progress.get(this.id);
    assert(self !== undefined, `node ${this.id}: leader has no progress for itself`);
    self.maybeUpdate(newLast);
    this.maybeCommit();
    this.broadcastPending = true;
    return true;
  }

  /** Leader: advances commit to the quorum's match index if that entry is from this term. */
  maybeCommit(): boolean {
    const index = this.tracker.committed();
    assert(Number.isFinite(index), `node ${this.id}: commit index computed over an empty configuration`);
    return this.log.maybeCommit(index, this.term);
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  reduceUncommittedBytes(entries: readonly Entry[]): void {
    if (this.role !== 'leader') return;
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - payloadBytes(entries));
  }

  /** Refusal for a local request made while not leader. */
  notLeader(): NotLeaderError {
    return new NotLeaderError(this.lead, this.id);
  }

  // --- configuration --------------------------------------------------------------------------

  /** Applies a committed configuration change; throws ConfChangeError (configuration unchanged). */
  applyConfChange(change: ConfChange): ConfState {
    const changer = new Changer(this.tracker, this.tracker, this.log.lastIndex());
    if (isLeaveJoint(change)) return this.switchToConfig(changer.leaveJoint());
    const mode = jointMode(change);
    return this.switchToConfig(mode.joint ? changer.enterJoint(mode.autoLeave, change.changes) : changer.simple(change.changes));
  }

  switchToConfig(next: ConfigAndProgress): ConfState {
    this.tracker.config = next.config;
    this.tracker.progress = next.progress;
    for (const id of this.snapshotSender.targets()) {
      if (!next.progress.has(id)) this.snapshotSender.finish(id);
    }
    const confState = this.tracker.confState();
    const self = next.progress.get(this.id);
    this.isLearner = self?.isLearner ?? false;
    if ((self === undefined || self.isLearner) && this.role === 'leader') {
      // Removed (or demoted) by a configuration that is now applied: step down, so the
      // remaining voters elect a leader among themselves.
      this.becomeFollower(this.term, noNode);
      return confState;
    }
    if (this.role !== 'leader' || confState.voters.length === 0) return confState;
    this.maybeCommit(); // a smaller quorum may commit more
    this.broadcastPending = true; // new members are probed at once; commit news goes out
    if (this.leadTransferee !== noNode && !this.tracker.isVoter(this.leadTransferee)) this.leadTransferee = noNode;
    return confState;
  }
}
