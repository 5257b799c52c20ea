// Goal: with `lazyCommitNotices` the leader sends no append whose only news is a higher commit
// index, yet followers still learn every commit — from the next append or from a heartbeat — and
// apply the same entries; without the flag (the default) the commit goes out at once, as before.
// Method: three RawNodes over MemoryStorage in the test cluster, every message delivered; record
// each MsgApp the leader sends after proposals, then tick the leader for one heartbeat.
import t from 'tap';
import { MemoryStorage } from '../../src/raft/memory-storage';
import type { Message } from '../../src/raft/types';
import { Cluster } from './helpers/cluster';

const encoder = new TextEncoder();

function threeNodes(lazyCommitNotices: boolean): { cluster: Cluster; sent: Message[]; settle: () => void } {
  const cluster = new Cluster(11);
  for (const id of [1, 2, 3]) cluster.add(id, { id, lazyCommitNotices }, new MemoryStorage()).raw.bootstrap([1, 2, 3]);
  const sent: Message[] = [];
  const settle = (): void => {
    for (let round = 0; round < 50; round++) {
      for (const id of cluster.ids()) cluster.processReady(id);
      const messages = cluster.inbox;
      cluster.inbox = [];
      sent.push(...messages);
      for (const m of messages) cluster.deliver(m);
    }
  };
  settle();
  cluster.get(1).raw.campaign();
  settle();
  return { cluster, sent, settle };
}

for (const lazy of [true, false]) {
  void t.test(`${lazy ? 'lazy' : 'eager'} commit notices: followers apply every write; ${lazy ? 'no append carries only a commit index' : 'the commit goes out in appends of its own'}`, async (t) => {
    const { cluster, sent, settle } = threeNodes(lazy);
    t.equal(cluster.get(1).raw.status().softState.role, 'leader', 'node 1 leads');
    sent.length = 0;
    for (let i = 0; i < 5; i++) {
      cluster.get(1).raw.propose(encoder.encode(`w${i}`));
      settle();
    }
    const commitOnly = sent.filter((m) => m.from === 1 && m.type === 'MsgApp' && m.entries.length === 0);
    if (lazy) t.equal(commitOnly.length, 0, 'no append without entries');
    else t.ok(commitOnly.length >= 5, `commit-only appends were sent (${commitOnly.length})`);
    const leaderState = cluster.get(1).state;
    t.same(leaderState, ['w0', 'w1', 'w2', 'w3', 'w4'], 'the leader applied every write');
    if (lazy) {
      // Each follower learned commits up to the previous write from the following append; the last one waits for a heartbeat.
      for (const id of [2, 3]) t.same(cluster.get(id).state, ['w0', 'w1', 'w2', 'w3'], `follower ${id} is one write behind before a heartbeat`);
      for (let tick = 0; tick < 2; tick++) cluster.get(1).raw.tick();
      settle();
    }
    for (const id of [2, 3]) t.same(cluster.get(id).state, leaderState, `follower ${id} applied every write`);
  });
}
