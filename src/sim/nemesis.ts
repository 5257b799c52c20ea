/**
 * Nemesis: the fault injector of a swarm run. Every `intervalNs` it rolls, with the per-seed
 * probabilities of NemesisRates, for: crashing a node (the leader with probability `crashLeader`)
 * and restarting it after a random down time; cutting the network (a random split, isolating a
 * node symmetrically, asymmetric isolation inbound or outbound, or a handful of one-way links) and
 * healing it after a while; a membership change proposed to the leader (add a learner, promote a
 * learner, remove a learner or — while more than three voters remain — a voter or the leader
 * itself, or replace a voter by a learner in one joint change); a leadership transfer; a
 * compaction on a random node; a disk stall. Nodes also compact on their own every
 * `compactEveryEntries` applied entries when the seed says so.
 *
 * It only uses the Simulation's public controls, so everything it does a scripted scenario can do
 * too. It never crashes a node while more than half are down (so a majority is down only
 * sometimes, briefly), and it keeps at least three voters in the configuration, so that liveness
 * can be required once it stops.
 */
import { assert } from '../util/assert';
import type { SeededRandom } from '../util/random';
import type { EventHandle } from './sim-clock';
import type { SimNode } from './sim-node';
import { type NemesisRates, tickNs } from './sim-options';
import type { Simulation } from './simulation';

export class Nemesis {
  private active = false;
  private partitionHealTimer: EventHandle | undefined;

  constructor(private readonly sim: Simulation, private readonly rates: NemesisRates, private readonly random: SeededRandom) {}

  get isActive(): boolean {
    return this.active;
  }

  start(): void {
    if (this.active) return;
    this.active = true;
    this.schedule();
  }

  stop(): void {
    this.active = false;
    if (this.partitionHealTimer !== undefined) this.sim.clock.cancel(this.partitionHealTimer);
    this.partitionHealTimer = undefined;
  }

  private schedule(): void {
    this.sim.clock.after(this.rates.intervalNs, 'nemesis', () => {
      if (!this.active) return;
      this.step();
      this.schedule();
    });
  }

  private step(): void {
    const rates = this.rates;
    const random = this.random;
    if (random.float() < rates.crash) this.crashSomeone();
    if (random.float() < rates.partition) this.cutNetwork();
    if (random.float() < rates.membership) this.changeMembership();
    if (random.float() < rates.transfer) this.transferLeadership();
    if (random.float() < rates.compact) {
      const up = this.sim.nodes.filter((node) => node.isUp);
      const target = up[random.int(Math.max(1, up.length))];
      if (target !== undefined && this.sim.compact(target.id, random.int(rates.compactKeepEntriesMax + 1))) this.sim.counters.nemesisCompactions++;
    }
    if (random.float() < rates.stall) {
      const target = this.sim.nodes[random.int(this.sim.nodes.length)] as SimNode;
      this.sim.stallDisk(target.id, tickNs * (1 + random.int(rates.stallTicksMax)));
    }
    if (rates.compactEveryEntries > 0) {
      for (const node of this.sim.nodes) {
        if (node.isUp && node.appliedIndex - node.disk.storage.snapshot().metadata.index >= rates.compactEveryEntries) {
          this.sim.compact(node.id, random.int(rates.compactKeepEntriesMax + 1));
        }
      }
    }
  }

  private crashSomeone(): void {
    const random = this.random;
    const up = this.sim.nodes.filter((node) => node.isUp);
    const downCount = this.sim.nodes.length - up.length;
    if (up.length === 0 || downCount > Math.floor(this.sim.nodes.length / 2)) return;
    const leader = this.sim.leader();
    const target = leader !== undefined && random.float() < this.rates.crashLeader ? leader : (up[random.int(up.length)] as SimNode);
    this.sim.crash(target.id);
    const downNs = tickNs * (1 + random.int(this.rates.restartTicksMax));
    this.sim.clock.after(downNs, 'restart', () => {
      if (this.active) this.sim.restart(target.id);
    });
  }

  private cutNetwork(): void {
    const random = this.random;
    if (this.sim.network.cutLinkCount > 0) {
      this.sim.heal();
      return;
    }
    const ids = this.sim.nodes.map((node) => node.id);
    const leader = this.sim.leader();
    const target = leader !== undefined && random.int(2) === 0 ? leader.id : (ids[random.int(ids.length)] as number);
    switch (random.int(5)) {
      case 0: {
        const shuffled = shuffle(ids, random);
        const cut = 1 + random.int(ids.length - 1);
        this.sim.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
        break;
      }
      case 1:
        this.sim.isolate(target, 'both');
        break;
      case 2:
        this.sim.isolate(target, 'inbound');
        break;
      case 3:
        this.sim.isolate(target, 'outbound');
        break;
      default:
        for (let links = 1 + random.int(ids.length); links > 0; links--) {
          const from = ids[random.int(ids.length)] as number;
          const to = ids[random.int(ids.length)] as number;
          if (from !== to) this.sim.cutLink(from, to);
        }
        this.sim.counters.partitions++;
    }
    const healNs = tickNs * (1 + random.int(this.rates.partitionTicksMax));
    this.partitionHealTimer = this.sim.clock.after(healNs, 'heal', () => {
      this.partitionHealTimer = undefined;
      if (this.active) this.sim.heal();
    });
  }

  private changeMembership(): void {
    const random = this.random;
    const leader = this.sim.leader();
    if (leader === undefined) return;
    const conf = leader.confState;
    if (conf.votersOutgoing.length > 0) return; // joint: the leader leaves it on its own
    const voters = conf.voters;
    const learners = conf.learners;
    const nonMembers = this.sim.nodes.map((node) => node.id).filter((id) => !voters.includes(id) && !learners.includes(id));
    const choices: Array<() => boolean> = [];
    if (nonMembers.length > 0) choices.push(() => this.sim.addLearner(pick(nonMembers, random)));
    if (learners.length > 0) {
      choices.push(() => this.sim.promote(pick(learners, random)));
      choices.push(() => this.sim.remove(pick(learners, random)));
    }
    if (voters.length > 3) {
      choices.push(() => this.sim.remove(pick(voters, random)));
      choices.push(() => this.sim.remove(leader.id));
    }
    if (learners.length > 0 && voters.length >= 3) choices.push(() => this.sim.replace(pick(learners, random), pick(voters, random)));
    if (choices.length > 0) (choices[random.int(choices.length)] as () => boolean)();
  }

  private transferLeadership(): void {
    const leader = this.sim.leader();
    if (leader === undefined) return;
    const others = leader.confState.voters.filter((id) => id !== leader.id);
    if (others.length > 0) this.sim.transferLeader(pick(others, this.random));
  }
}

function pick<T>(items: readonly T[], random: SeededRandom): T {
  assert(items.length > 0, 'pick from an empty list');
  return items[random.int(items.length)] as T;
}

function shuffle<T>(items: readonly T[], random: SeededRandom): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
