/**
 * Text renderings of Raft values for scripted tests: one line per entry or message, stable and
 * short, so expected traces read like the protocol.
 */
import { decodeConfChange, describeConfChange } from '../../../src/raft/conf-change-codec';
import type { ConfState, Entry, HardState, Message, Ready, Snapshot } from '../../../src/raft/types';

const decoder = new TextDecoder();

export function bytesText(bytes: Uint8Array): string {
  return JSON.stringify(decoder.decode(bytes));
}

export function entryText(entry: Entry): string {
  if (entry.type === 'confChange') return `${entry.term}/${entry.index} conf(${describeConfChange(decodeConfChange(entry.data))})`;
  return `${entry.term}/${entry.index} ${bytesText(entry.data)}`;
}

export function confStateText(confState: ConfState): string {
  let text = `voters=(${confState.voters.join(' ')})`;
  if (confState.votersOutgoing.length > 0) text += `&&(${confState.votersOutgoing.join(' ')})`;
  if (confState.learners.length > 0) text += ` learners=(${confState.learners.join(' ')})`;
  if (confState.learnersNext.length > 0) text += ` learners_next=(${confState.learnersNext.join(' ')})`;
  if (confState.autoLeave) text += ' autoleave';
  return text;
}

export function snapshotText(snapshot: Snapshot): string {
  const { index, term, confState } = snapshot.metadata;
  return `index=${index} term=${term} ${confStateText(confState)} data=${bytesText(snapshot.data)}`;
}

export function hardStateText(hardState: HardState): string {
  return `term=${hardState.term} vote=${hardState.vote} commit=${hardState.commit}`;
}

export function messageText(m: Message): string {
  let text = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'MsgApp':
      text += ` log=${m.logTerm}/${m.index} commit=${m.commit}`;
      if (m.entries.length > 0) text += ` entries=[${m.entries.map(entryText).join(', ')}]`;
      break;
    case 'MsgAppResp':
      text += ` index=${m.index}`;
      if (m.reject) text += ` reject hint=${m.logTerm}/${m.rejectHint}`;
      break;
    case 'MsgVote':
    case 'MsgPreVote':
      text += ` log=${m.logTerm}/${m.index}`;
      if (m.leaderTransfer) text += ' transfer';
      break;
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      if (m.reject) text += ' reject';
      break;
    case 'MsgHeartbeat':
      text += ` commit=${m.commit}`;
      break;
    case 'MsgProp':
      text += ` entries=[${m.entries.map((entry) => entry.type === 'confChange' ? 'conf' : bytesText(entry.data)).join(', ')}]`;
      break;
    case 'MsgReadIndexResp':
      text += ` index=${m.index}`;
      break;
    case 'MsgTransferLeader':
      text += ` target=${m.target}`;
      break;
    case 'MsgSnap':
    case 'MsgSnapResp': {
      const chunk = m.snapshot;
      if (chunk !== undefined) {
        text += ` snapshot=${chunk.metadata.term}/${chunk.metadata.index} offset=${chunk.offset}/${chunk.totalBytes}`;
        if (m.type === 'MsgSnap') text += ` bytes=${chunk.data.length}`;
      }
      if (m.reject) text += ' reject';
      break;
    }
    default:
      break;
  }
  if (m.context.length > 0) text += ` ctx=${bytesText(m.context)}`;
  return text;
}

export function readyText(ready: Ready): string[] {
  const lines: string[] = [];
  if (ready.softState !== undefined) lines.push(`role=${ready.softState.role} lead=${ready.softState.lead}`);
  if (ready.hardState !== undefined) lines.push(`hardState ${hardStateText(ready.hardState)}`);
  if (ready.snapshot !== undefined) lines.push(`snapshot ${snapshotText(ready.snapshot)}`);
  if (ready.entries.length > 0) lines.push(`entries: ${ready.entries.map(entryText).join(', ')}`);
  if (ready.committedEntries.length > 0) lines.push(`committed: ${ready.committedEntries.map(entryText).join(', ')}`);
  for (const state of ready.readStates) lines.push(`readState index=${state.index} ctx=${bytesText(state.context)}`);
  for (const m of ready.messages) lines.push(messageText(m));
  if (ready.mustSync) lines.push('mustSync');
  return lines;
}
