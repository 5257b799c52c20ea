// Goal: the simulated network keeps its fault model — drop and duplicate rates as configured,
// latency within bounds, reordering only when asked for, cut links (symmetric and asymmetric)
// lose messages both at send and in flight, and heal restores everything.
// Method: send numbered messages between endpoints on a SimClock and inspect what arrives when.
import t from 'tap';
import { SimClock } from '../../src/sim/sim-clock';
import { type NetworkFaults, SimNetwork, quietNetwork } from '../../src/sim/sim-network';
import { SeededRandom } from '../../src/util/random';

interface Arrival {
  readonly from: number;
  readonly to: number;
  readonly payload: number;
  readonly atNs: number;
}

function setup(faults: NetworkFaults, seed = 1): { clock: SimClock; network: SimNetwork<number>; arrivals: Arrival[]; drain: () => void } {
  const clock = new SimClock();
  const arrivals: Arrival[] = [];
  const network = new SimNetwork<number>(clock, new SeededRandom(seed), faults, (from, to, payload) => arrivals.push({ from, to, payload, atNs: clock.nowNs }));
  const drain = (): void => {
    for (let event = clock.takeNext(); event !== undefined; event = clock.takeNext()) event.action();
  };
  return { clock, network, arrivals, drain };
}

void t.test('a quiet network delivers every message once, within its latency bounds', async (t) => {
  const { network, arrivals, drain } = setup(quietNetwork);
  for (let i = 0; i < 200; i++) network.send(1, 2, i);
  drain();
  t.equal(arrivals.length, 200);
  t.same(new Set(arrivals.map((a) => a.payload)).size, 200, 'no duplicates');
  t.ok(arrivals.every((a) => a.atNs >= quietNetwork.latencyNsMin && a.atNs <= quietNetwork.latencyNsMax), 'latency within bounds');
});

void t.test('drop and duplicate rates hold over many messages', async (t) => {
  const faults: NetworkFaults = { ...quietNetwork, dropRate: 0.3, duplicateRate: 0.1 };
  const { network, arrivals, drain } = setup(faults, 7);
  const sent = 20_000;
  for (let i = 0; i < sent; i++) network.send(1, 2, i);
  drain();
  const dropped = network.stats.dropped / sent;
  const duplicated = network.stats.duplicated / (sent - network.stats.dropped);
  t.ok(dropped > 0.28 && dropped < 0.32, `drop fraction ${dropped}`);
  t.ok(duplicated > 0.085 && duplicated < 0.115, `duplicate fraction ${duplicated}`);
  t.equal(arrivals.length, sent - network.stats.dropped + network.stats.duplicated);
});

void t.test('messages keep their order unless reordering is on', async (t) => {
  const fixed: NetworkFaults = { ...quietNetwork, latencyNsMin: 1000, latencyNsMax: 1000 };
  const inOrder = setup(fixed);
  for (let i = 0; i < 100; i++) inOrder.network.send(1, 2, i);
  inOrder.drain();
  t.same(inOrder.arrivals.map((a) => a.payload), Array.from({ length: 100 }, (_, i) => i));

  const shuffled = setup({ ...fixed, reorderRate: 0.3, reorderNsMax: 50_000 });
  for (let i = 0; i < 100; i++) {
    shuffled.network.send(1, 2, i);
    shuffled.clock.after(100, 'scenario', () => undefined); // space the sends out
    shuffled.clock.takeNext()?.action();
  }
  shuffled.drain();
  const order = shuffled.arrivals.map((a) => a.payload);
  t.equal(order.length, 100);
  t.ok(order.some((payload, i) => i > 0 && payload < (order[i - 1] as number)), 'some message overtook another');
});

void t.test('an asymmetric cut: the isolated node is heard but hears nobody', async (t) => {
  const { network, arrivals, drain } = setup(quietNetwork);
  network.isolate(1, [1, 2, 3], 'inbound');
  network.send(2, 1, 21);
  network.send(3, 1, 31);
  network.send(1, 2, 12);
  network.send(1, 3, 13);
  network.send(2, 3, 23);
  drain();
  t.same(arrivals.map((a) => a.payload).sort(), [12, 13, 23]);
  t.equal(network.stats.cut, 2);
});

void t.test('a partition cuts both directions between groups, in flight too, until healed', async (t) => {
  const { network, arrivals, drain, clock } = setup(quietNetwork);
  network.send(1, 3, 1); // in flight when the partition starts
  network.partition([[1, 2], [3]]);
  network.send(3, 2, 2);
  network.send(1, 2, 3); // same side
  drain();
  t.same(arrivals.map((a) => a.payload), [3], 'only the message within a group arrives');
  network.heal();
  network.send(3, 2, 4);
  network.send(1, 3, 5);
  drain();
  t.same(arrivals.map((a) => a.payload).slice(1).sort(), [4, 5]);
  t.ok(clock.nowNs > 0);
});
