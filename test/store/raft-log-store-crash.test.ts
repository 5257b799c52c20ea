// Goal: kill -9 never loses or half-applies anything the Raft log store acknowledged: after a crash
// the store is exactly the state after the last acknowledged write, or after the one write that was
// in flight — so term and vote never go back, the commit index never goes back, and every
// acknowledged entry (committed or not) is there with its content, unless a later write of the
// same process replaced it.
// Method: a child process (fixtures/raft-crash-child.ts) writes Raft-like updates (new terms and
// votes, appends that overwrite an uncommitted suffix, commits, snapshots with compaction), printing
// each update before writing it and "ack" after. The parent kills it with SIGKILL right after a
// chosen acknowledgement (a few ms later, so usually mid-write), replays the printed updates on a
// small model, reopens the database and compares. Four rounds, each starting from what the
// previous crash left.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HardState } from '../../src/raft';
import { LevelKvStore } from '../../src/store/level-kv-store';
import { RaftLogStore } from '../../src/store/raft-log-store';
import { SeededRandom } from '../../src/util/random';
import { type PrintedUpdate, crashEntryData, crashIdentity, crashSnapshotData } from './fixtures/raft-crash-child';

const childPath = join(__dirname, 'fixtures', 'raft-crash-child.ts');

/** What the store should hold: terms by index, the anchor, hard state and snapshot index. */
interface Model {
  anchor: { index: number; term: number };
  terms: number[];
  hard: HardState;
  snapshotIndex: number;
}

function termAt(model: Model, index: number): number {
  if (index === model.anchor.index) return model.anchor.term;
  const term = model.terms[index - model.anchor.index - 1];
  if (term === undefined) throw new Error(`model has no entry ${index}`);
  return term;
}

function applyUpdate(model: Model, update: PrintedUpdate): Model {
  const next: Model = { anchor: { ...model.anchor }, terms: [...model.terms], hard: model.hard, snapshotIndex: model.snapshotIndex };
  const first = update.entries[0];
  if (first !== undefined) {
    next.terms = next.terms.slice(0, first.index - next.anchor.index - 1).concat(update.entries.map((e) => e.term));
  }
  if (update.hardState !== undefined) next.hard = update.hardState;
  if (update.createdSnapshot !== undefined) next.snapshotIndex = update.createdSnapshot;
  if (update.compactTo !== undefined && update.compactTo > next.anchor.index) {
    const term = termAt(next, update.compactTo);
    next.terms = next.terms.slice(update.compactTo - next.anchor.index);
    next.anchor = { index: update.compactTo, term };
  }
  return next;
}

/** The store's content in the model's shape, checking every entry's and the snapshot's bytes. */
function modelOf(store: RaftLogStore, fail: (message: string) => void): Model {
  const first = store.firstIndex();
  const last = store.lastIndex();
  const entries = last >= first ? store.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
  for (const entry of entries) {
    if (Buffer.compare(entry.data, crashEntryData(entry.index, entry.term)) !== 0) fail(`entry ${entry.index} holds the wrong bytes`);
  }
  const snapshot = store.snapshot();
  if (snapshot.metadata.index > 0 && Buffer.compare(snapshot.data, crashSnapshotData(snapshot.metadata.index)) !== 0) fail('the snapshot holds the wrong bytes');
  return { anchor: { index: first - 1, term: store.term(first - 1) }, terms: entries.map((e) => e.term), hard: store.hardState(), snapshotIndex: snapshot.metadata.index };
}

interface RoundResult {
  /** Every update the child began, in order (acknowledged or not). */
  readonly begun: PrintedUpdate[];
  /** How many of them were acknowledged when the parent decided to kill. */
  readonly ackedAtDecision: number;
}

async function runAndKill(path: string, seed: number, ackTarget: number, extraDelayMs: number): Promise<RoundResult> {
  const child = spawn(process.execPath, [...process.execArgv, childPath, path, String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const begun: PrintedUpdate[] = [];
  let acked = 0;
  let ackedAtDecision = -1;
  let buffered = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Everything the child printed before it died is read, including writes it finished between
  // our decision and the kill: each of them may have landed, so each prefix is a legal outcome.
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line.startsWith('begin ')) begun.push(JSON.parse(line.slice(6)) as PrintedUpdate);
      else if (line === 'ack') acked++;
    }
    if (acked >= ackTarget && ackedAtDecision < 0) {
      ackedAtDecision = acked;
      setTimeout(() => child.kill('SIGKILL'), extraDelayMs);
    }
  });
  const stdoutEnded = new Promise<void>((resolve) => child.stdout.once('end', () => resolve()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  await stdoutEnded;
  clearTimeout(timer);
  if (ackedAtDecision < 0) throw new Error(`the child exited after ${acked} acknowledged writes, before the target ${ackTarget}`);
  return { begun, ackedAtDecision };
}

void t.test('SIGKILL right after an acknowledgement loses nothing acknowledged and leaves no partial write', async (t) => {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-raft-crash-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const path = join(directory, 'db');
  const random = new SeededRandom(4242);
  let before: Model = { anchor: { index: 0, term: 0 }, terms: [], hard: { term: 0, vote: 0, commit: 0 }, snapshotIndex: 0 };
  let ackedTotal = 0;
  let inFlightLanded = 0;
  for (let round = 1; round <= 4; round++) {
    const { begun, ackedAtDecision } = await runAndKill(path, 1000 + round, 40 + random.int(80), random.int(4));
    ackedTotal += ackedAtDecision;
    let expected = before;
    for (const update of begun.slice(0, ackedAtDecision)) expected = applyUpdate(expected, update);
    // Legal outcomes: the acknowledged state, or it plus any prefix of the writes begun after it.
    const candidates = [expected];
    for (const update of begun.slice(ackedAtDecision)) candidates.push(applyUpdate(candidates[candidates.length - 1] as Model, update));
    const kv = await LevelKvStore.open(path);
    try {
      const store = await RaftLogStore.open(kv, crashIdentity);
      const stored = modelOf(store, (message) => t.fail(`round ${round}: ${message}`));
      const match = candidates.findIndex((candidate) => JSON.stringify(candidate) === JSON.stringify(stored));
      if (match > 0) inFlightLanded++;
      if (match < 0) {
        t.same(stored, expected, `round ${round}: the store is the acknowledged state (or that plus the write in flight)`);
      } else {
        t.pass(`round ${round}: after ${ackedAtDecision} acknowledged writes the store holds them and ${match} of the ${candidates.length - 1} begun after`);
      }
      t.ok(stored.hard.term >= expected.hard.term, `round ${round}: term did not go back`);
      t.ok(stored.hard.term > expected.hard.term || stored.hard.vote === expected.hard.vote, `round ${round}: the vote of the term is kept`);
      t.ok(stored.hard.commit >= expected.hard.commit, `round ${round}: commit did not go back`);
      before = stored;
    } finally {
      await kv.close();
    }
  }
  t.ok(ackedTotal > 100, `${ackedTotal} writes were acknowledged over the rounds (in ${inFlightLanded} rounds later writes landed too)`);
  t.ok(before.hard.commit > 0 && before.snapshotIndex > 0, 'the run committed entries and took snapshots');
});
