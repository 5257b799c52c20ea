/**
 * The command interpreter behind test/raft/testdata/*.txt: one handler per command, each returning
 * the text the script expects. Commands (ids are node ids; `k=v` are options):
 *
 *   add-nodes N [voters=(1,2,3)] [learners=(4)] [index=1] [pre-vote=true] [check-quorum=true]
 *             [forward=false] [election=10] [heartbeat=1] [inflight=256] [inflight-bytes=N]
 *             [max-msg-bytes=N] [uncommitted-bytes=N] [chunk-bytes=N]
 *       nodes with ids after the existing ones; with voters, storage starts from a snapshot at
 *       `index` (term 1) holding that configuration, otherwise empty (a joining node)
 *   campaign ID | propose ID DATA | propose-conf-change ID [transition=implicit|explicit] v4 l5 r2
 *   read-index ID CTX | transfer-leadership ID TARGET | report-unreachable ID TARGET
 *   process-ready ID... | deliver-msgs ID... [drop=true] [duplicate=true] [type=MsgApp] [count=N]
 *   stabilize [ID...] [quiet=true]
 *   tick ID N | tick-election ID (until its election timer fires) | tick-heartbeat ID
 *   partition (1) (2,3) | cut 1->2 | heal | crash ID | restart ID
 *   raft-log ID | raft-state | status ID | state-machine ID | snapshot ID | compact ID INDEX
 *   inject FROM->TO TYPE [term=N] [index=N] [log-term=N] [commit=N]
 *       steps a hand-made message into TO, as a delayed or misbehaving peer would send it
 */
import { RaftError } from '../../../src/raft/errors';
import { MemoryStorage } from '../../../src/raft/memory-storage';
import { type ConfChangeSingle, type ConfChangeTransition, type ConfState, type Message, type MessageType, makeMessage } from '../../../src/raft/types';
import { Cluster, encodeState } from './cluster';
import { confStateText, entryText, hardStateText, messageText, readyText, snapshotText } from './format';

const encoder = new TextEncoder();

interface Command {
  readonly name: string;
  readonly args: string[];
  readonly options: Map<string, string>;
}

function parseCommand(line: string): Command {
  const tokens = line.trim().split(/\s+/);
  const args: string[] = [];
  const options = new Map<string, string>();
  for (const token of tokens.slice(1)) {
    const eq = token.indexOf('=');
    if (eq > 0 && !token.startsWith('(')) options.set(token.slice(0, eq), token.slice(eq + 1));
    else args.push(token);
  }
  return { name: tokens[0] ?? '', args, options };
}

function idList(text: string | undefined): number[] {
  if (text === undefined || text === '()') return [];
  return text.replace(/[()]/g, '').split(',').filter((part) => part !== '').map(Number);
}

function numberArg(value: string | undefined, name: string): number {
  const parsed = Number(value);
  if (value === undefined || !Number.isSafeInteger(parsed)) throw new Error(`${name}: expected an integer, got ${value}`);
  return parsed;
}

export class InteractionEnv {
  readonly cluster = new Cluster(1);

  run(line: string): string {
    const command = parseCommand(line);
    let lines: string[];
    try {
      lines = this.dispatch(command);
    } catch (error) {
      if (error instanceof RaftError) lines = [`error ${error.code}: ${error.message}`];
      else throw error;
    }
    return lines.length === 0 ? 'ok' : lines.join('\n');
  }

  private ids(command: Command): number[] {
    return command.args.length === 0 ? this.cluster.ids() : command.args.map((arg) => numberArg(arg, 'id'));
  }

  private id(command: Command, position = 0): number {
    return numberArg(command.args[position], `${command.name} argument ${position + 1}`);
  }

  private dispatch(command: Command): string[] {
    const cluster = this.cluster;
    switch (command.name) {
      case 'add-nodes': return this.addNodes(command);
      case 'campaign': cluster.get(this.id(command)).raw.campaign(); return [];
      case 'propose': return this.propose(command);
      case 'propose-conf-change': return this.proposeConfChange(command);
      case 'read-index': cluster.get(this.id(command)).raw.readIndex(encoder.encode(command.args[1] ?? '')); return [];
      case 'transfer-leadership': cluster.get(this.id(command)).raw.transferLeadership(this.id(command, 1)); return [];
      case 'report-unreachable': cluster.get(this.id(command)).raw.reportUnreachable(this.id(command, 1)); return [];
      case 'process-ready': return this.ids(command).flatMap((id) => this.processReady(id));
      case 'deliver-msgs': return this.deliverMessages(command);
      case 'stabilize': return this.stabilize(command);
      case 'tick': return this.tick(this.id(command), this.id(command, 1));
      case 'tick-election': return this.tickElection(this.id(command));
      case 'tick-heartbeat': return this.tick(this.id(command), cluster.get(this.id(command)).raw.raft.config.heartbeatTicks);
      case 'partition': cluster.partition(command.args.map(idList)); return [];
      case 'cut': {
        const [from, to] = (command.args[0] ?? '').split('->').map(Number);
        cluster.blocked.add(`${from}->${to}`);
        return [];
      }
      case 'heal': cluster.heal(); return [];
      case 'inject': return this.inject(command);
      case 'crash': cluster.crash(this.id(command)); return [];
      case 'restart': cluster.restart(this.id(command)); return [];
      case 'raft-log': return this.raftLog(this.id(command));
      case 'raft-state': return this.raftState();
      case 'status': return this.status(this.id(command));
      case 'state-machine': {
        const node = cluster.get(this.id(command));
        return [`applied=${node.appliedIndex} state=${JSON.stringify(node.state)}`];
      }
      case 'snapshot': {
        const node = cluster.get(this.id(command));
        return [snapshotText(node.storage.createSnapshot(node.appliedIndex, node.confState, encodeState(node.state)))];
      }
      case 'compact': {
        const node = cluster.get(this.id(command));
        node.storage.compact(this.id(command, 1));
        return [`first index ${node.storage.firstIndex()}`];
      }
      default:
        throw new Error(`unknown command ${command.name}`);
    }
  }

  private addNodes(command: Command): string[] {
    const count = this.id(command);
    const voters = idList(command.options.get('voters'));
    const learners = idList(command.options.get('learners'));
    const index = numberArg(command.options.get('index') ?? '1', 'index');
    const flag = (name: string, fallback: boolean): boolean => (command.options.get(name) ?? String(fallback)) === 'true';
    const option = (name: string, fallback: number): number => numberArg(command.options.get(name) ?? String(fallback), name);
    const first = Math.max(0, ...this.cluster.ids()) + 1;
    const lines: string[] = [];
    for (let id = first; id < first + count; id++) {
      const confState: ConfState = { voters, votersOutgoing: [], learners, learnersNext: [], autoLeave: false };
      const storage = voters.length === 0
        ? new MemoryStorage()
        : new MemoryStorage({ metadata: { index, term: 1, confState }, data: encodeState([]) });
      this.cluster.add(id, {
        id,
        preVote: flag('pre-vote', true),
        checkQuorum: flag('check-quorum', true),
        forwardProposals: flag('forward', false),
        electionTicks: option('election', 10),
        heartbeatTicks: option('heartbeat', 1),
        inflightMessagesMax: option('inflight', 256),
        inflightBytesMax: option('inflight-bytes', 32 * 1024 * 1024),
        messageBytesMax: option('max-msg-bytes', 1024 * 1024),
        uncommittedBytesMax: option('uncommitted-bytes', 64 * 1024 * 1024),
        snapshotChunkBytes: option('chunk-bytes', 1024 * 1024),
      }, storage);
      lines.push(`node ${id}: ${voters.length === 0 ? 'empty' : `${confStateText(confState)} index=${index}`}`);
    }
    return lines;
  }

  private propose(command: Command): string[] {
    const id = this.cluster.get(this.id(command)).raw.propose(encoder.encode(command.args[1] ?? ''));
    return [id === undefined ? 'forwarded' : `accepted at ${id.term}/${id.index}`];
  }

  private proposeConfChange(command: Command): string[] {
    const kinds = { v: 'addNode', l: 'addLearner', r: 'removeNode' } as const;
    const changes = command.args.slice(1).map((token): ConfChangeSingle => {
      const kind = kinds[token[0] as keyof typeof kinds];
      if (kind === undefined) throw new Error(`conf change token ${token}: use vN, lN or rN`);
      return { type: kind, nodeId: numberArg(token.slice(1), token) };
    });
    const transition = (command.options.get('transition') ?? 'auto') as ConfChangeTransition;
    const raw = this.cluster.get(this.id(command)).raw;
    const id = raw.proposeConfChange({ transition, changes, context: new Uint8Array(0) });
    return [id === undefined ? 'forwarded' : `accepted at ${id.term}/${id.index}`];
  }

  private inject(command: Command): string[] {
    const [from, to] = (command.args[0] ?? '').split('->').map((id) => numberArg(id, 'inject link'));
    const field = (name: string): number => numberArg(command.options.get(name) ?? '0', name);
    const m = makeMessage({
      type: command.args[1] as MessageType, from: from ?? 0, to: to ?? 0, term: field('term'), index: field('index'), logTerm: field('log-term'), commit: field('commit'),
    });
    this.cluster.get(m.to).raw.step(m);
    return [messageText(m)];
  }

  private processReady(id: number): string[] {
    const ready = this.cluster.processReady(id);
    if (ready === undefined) return [];
    return [`> ${id} handling Ready`, ...readyText(ready).map((line) => `  ${line}`)];
  }

  private deliverMessages(command: Command): string[] {
    const drop = command.options.get('drop') === 'true';
    const duplicate = command.options.get('duplicate') === 'true';
    const type = command.options.get('type');
    const count = command.options.has('count') ? numberArg(command.options.get('count'), 'count') : Number.POSITIVE_INFINITY;
    const lines: string[] = [];
    for (const id of this.ids(command)) {
      const all = this.cluster.takeMessagesTo(id);
      const selected = all.filter((m) => type === undefined || m.type === type).slice(0, count);
      this.cluster.inbox.push(...all.filter((m) => !selected.includes(m)));
      if (selected.length === 0) continue;
      lines.push(drop ? `> ${id} dropping messages` : `> ${id} receiving messages`);
      for (const m of selected) lines.push(`  ${this.deliverOne(m, drop)}`);
      // Duplicates arrive again later, after everything queued so far: a reordered old copy.
      if (duplicate) this.cluster.inbox.push(...selected);
    }
    return lines;
  }

  private deliverOne(m: Message, drop: boolean): string {
    if (drop) return messageText(m);
    return this.cluster.deliver(m) ? messageText(m) : `${messageText(m)} (lost)`;
  }

  private stabilize(command: Command): string[] {
    const ids = this.ids(command);
    const quiet = command.options.get('quiet') === 'true';
    const lines: string[] = [];
    for (let round = 0; ; round++) {
      if (round > 500) throw new Error('stabilize: no fixpoint after 500 rounds');
      let progressed = false;
      for (const id of ids) {
        const output = this.processReady(id);
        if (output.length > 0) progressed = true;
        lines.push(...output);
      }
      for (const id of ids) {
        const messages = this.cluster.takeMessagesTo(id);
        if (messages.length === 0) continue;
        progressed = true;
        lines.push(`> ${id} receiving messages`);
        for (const m of messages) lines.push(`  ${this.deliverOne(m, false)}`);
      }
      if (!progressed) break;
    }
    return quiet ? [] : lines;
  }

  private tick(id: number, count: number): string[] {
    const raw = this.cluster.get(id).raw;
    for (let i = 0; i < count; i++) raw.tick();
    return [];
  }

  private tickElection(id: number): string[] {
    const raft = this.cluster.get(id).raw.raft;
    const timeout = raft.role === 'leader' ? raft.config.electionTicks : raft.randomizedElectionTimeout;
    return this.tick(id, Math.max(1, timeout - raft.electionElapsed));
  }

  private raftLog(id: number): string[] {
    const log = this.cluster.get(id).raw.raft.log;
    const first = log.firstIndex();
    const last = log.lastIndex();
    const lines = first > 1 ? [`(compacted through ${first - 1})`] : [];
    if (last < first) return [...lines, 'log is empty'];
    return [...lines, ...log.slice(first, last + 1, Number.MAX_SAFE_INTEGER).map(entryText)];
  }

  private raftState(): string[] {
    return this.cluster.ids().map((id) => {
      const node = this.cluster.get(id).node;
      if (node === undefined) return `${id}: down`;
      const { role, lead } = node.raft.softState();
      return `${id}: ${role} term=${node.raft.term} lead=${lead}${node.raft.isLearner ? ' (learner)' : ''}`;
    });
  }

  private status(id: number): string[] {
    const status = this.cluster.get(id).raw.status();
    const lines = [
      `${status.softState.role} lead=${status.softState.lead} ${hardStateText(status.hardState)} applied=${status.applied}`,
      status.config,
    ];
    if (status.leadTransferee !== 0) lines.push(`transferring to ${status.leadTransferee}`);
    const tracker = this.cluster.get(id).raw.raft.tracker;
    for (const peer of tracker.ids()) {
      if (status.progress.size > 0) lines.push(`${peer}: ${tracker.progress.get(peer)?.describe() ?? ''}`);
    }
    return lines;
  }
}
