// Goal: each safety checker of the simulator fires on the violation it names and stays quiet on a
// legal history — so a clean sweep means something.
// Method: drive the InvariantChecker by hand with stand-in nodes (only the fields it reads) whose
// logs, roles and terms are set to legal and illegal situations.
import t from 'tap';
import { MemoryStorage } from '../../src/raft/memory-storage';
import type { Entry, Ready } from '../../src/raft/types';
import { InvariantChecker } from '../../src/sim/invariants';
import type { SimNode } from '../../src/sim/sim-node';

const entry = (index: number, term: number, text = `e${index}`): Entry => ({ index, term, type: 'normal', data: new TextEncoder().encode(text) });

interface FakeNode {
  id: number;
  isUp: boolean;
  appliedIndex: number;
  disk: { storage: MemoryStorage };
  raw: { raft: { role: string; term: number; log: { committed: number; firstIndex(): number; lastIndex(): number; term(index: number): number | undefined } } };
}

/** A node whose log holds `terms[i]` at index i + 1. */
function fakeNode(id: number, terms: number[], fields: { role?: string; term?: number; committed?: number; applied?: number } = {}): FakeNode & SimNode {
  const storage = new MemoryStorage();
  storage.append(terms.map((term, i) => entry(i + 1, term)));
  const node: FakeNode = {
    id,
    isUp: true,
    appliedIndex: fields.applied ?? 0,
    disk: { storage },
    raw: {
      raft: {
        role: fields.role ?? 'follower',
        term: fields.term ?? terms[terms.length - 1] ?? 0,
        log: {
          committed: fields.committed ?? 0,
          firstIndex: () => 1,
          lastIndex: () => terms.length,
          term: (index) => (index === 0 ? 0 : terms[index - 1]),
        },
      },
    },
  };
  return node as FakeNode & SimNode;
}

const ready = (entries: Entry[]): Ready => ({ entries, committedEntries: [], messages: [], readStates: [], mustSync: true });

void t.test('a legal history raises nothing', async (t) => {
  const checker = new InvariantChecker(() => 0);
  const a = fakeNode(1, [1, 1, 2], { role: 'leader', term: 2, committed: 3 });
  const b = fakeNode(2, [1, 1, 2], { term: 2, committed: 3 });
  checker.onWritten(a, ready([entry(1, 1), entry(2, 1), entry(3, 2)]));
  checker.onWritten(b, ready([entry(1, 1), entry(2, 1), entry(3, 2)]));
  checker.afterStep([a, b]);
  for (const index of [1, 2, 3]) {
    checker.onApply(a, entry(index, index === 3 ? 2 : 1), undefined);
    checker.onApply(b, entry(index, index === 3 ? 2 : 1), undefined);
  }
  checker.onKvSnapshot(a, 3, Uint8Array.of(1));
  checker.onKvSnapshot(b, 3, Uint8Array.of(1));
  t.same(checker.violations, []);
});

void t.test('two leaders in one term break election safety', async (t) => {
  const checker = new InvariantChecker(() => 0);
  checker.afterStep([fakeNode(1, [1], { role: 'leader', term: 3 }), fakeNode(2, [1], { role: 'leader', term: 3 })]);
  t.match(checker.violations, [/election safety: nodes 1 and 2 both lead term 3/]);
});

void t.test('two different entries at one index and term break log matching', async (t) => {
  const checker = new InvariantChecker(() => 0);
  checker.onWritten(fakeNode(1, [1]), ready([entry(1, 1, 'x')]));
  checker.onWritten(fakeNode(2, [1]), ready([entry(1, 1, 'y')]));
  t.match(checker.violations, [/log matching: node 2 wrote a different entry at index 1 term 1/]);
});

void t.test('logs that agree on an entry but not on the one before it break log matching', async (t) => {
  const checker = new InvariantChecker(() => 0);
  const a = fakeNode(1, [1, 2]);
  const b = fakeNode(2, [1, 3]);
  checker.onWritten(a, ready([entry(1, 1), entry(2, 2), entry(3, 4)]));
  checker.onWritten(b, ready([entry(1, 1), entry(2, 3), entry(3, 4)]));
  t.match(checker.violations, [/log matching: logs agree on index 3 term 4 but node 2 has term 3 at 2, another log term 2/]);
});

void t.test('applying different entries at one index breaks state machine safety', async (t) => {
  const checker = new InvariantChecker(() => 0);
  checker.onApply(fakeNode(1, [1]), entry(1, 1, 'x'), undefined);
  checker.onApply(fakeNode(2, [1]), entry(1, 1, 'y'), undefined);
  checker.onApply(fakeNode(3, [2]), entry(1, 2, 'x'), undefined);
  t.match(checker.violations, [/state machine safety: node 2 applied a different entry at 1/, /state machine safety: node 3 has term 2 committed at 1/]);
});

void t.test('commit going backwards within one incarnation is flagged, across a crash it is not', async (t) => {
  const checker = new InvariantChecker(() => 0);
  const node = fakeNode(1, [1, 1, 1], { committed: 3 });
  checker.afterStep([node]);
  node.raw.raft.log.committed = 1;
  checker.onCrash(node);
  checker.afterStep([node]);
  t.same(checker.violations, [], 'a restarted node may know less');
  node.raw.raft.log.committed = 3;
  checker.afterStep([node]);
  node.raw.raft.log.committed = 2;
  checker.afterStep([node]);
  t.match(checker.violations, [/node 1: commit went back from 3 to 2/]);
});

void t.test('a new leader without an entry committed in an earlier term breaks leader completeness', async (t) => {
  const checker = new InvariantChecker(() => 0);
  const old = fakeNode(1, [1, 2, 2], { role: 'leader', term: 2, committed: 3 });
  checker.afterStep([old]);
  old.raw.raft.role = 'follower';
  const usurper = fakeNode(2, [1, 2], { role: 'leader', term: 3 });
  checker.afterStep([old, usurper]);
  t.match(checker.violations, [/leader completeness: node 2 leads term 3 without entry 3 \(term 2, committed in term 2\)/]);
});

void t.test('a restart that lost applied entries is flagged', async (t) => {
  const checker = new InvariantChecker(() => 0);
  const node = fakeNode(1, [1, 1, 1], { applied: 3 });
  checker.onCrash(node);
  node.disk.storage = new MemoryStorage();
  node.disk.storage.append([entry(1, 1)]);
  checker.onRestart(node);
  t.match(checker.violations, [/applied entries lost: node 1 applied up to 3 before its crash but recovered a log ending at 1/]);
});

void t.test('different state machine snapshots at one index break replica agreement', async (t) => {
  const checker = new InvariantChecker(() => 0);
  checker.onKvSnapshot(fakeNode(1, [1]), 5, Uint8Array.of(1, 2));
  checker.onKvSnapshot(fakeNode(2, [1]), 5, Uint8Array.of(1, 3));
  t.match(checker.violations, [/replica agreement: nodes 1 and 2 hold different state machines at index 5/]);
});
