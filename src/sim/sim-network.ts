/**
 * SimNetwork: a simulated message network between numbered endpoints (Raft nodes and clients),
 * scheduling every delivery on the SimClock.
 *
 * Fault model it promises: each message is independently dropped (`dropRate`), duplicated
 * (`duplicateRate`, the copy with its own delay), delayed by a uniform latency in
 * [latencyNsMin, latencyNsMax], and with probability `reorderRate` delayed by up to `reorderNsMax`
 * more, which reorders it behind later messages. Links can be cut one direction at a time, so
 * partitions may be symmetric (both directions between groups) or asymmetric (a node that is heard
 * but hears nobody, or the reverse). A message on a link that is cut when it is sent OR when it
 * would arrive is lost, as with a connection reset. Nothing is ever corrupted: Raft messages are
 * assumed checksummed by the transport. Fault rates are fixed per run (drawn from the seed).
 *
 * Invariants: a message is delivered at most 1 + (duplicated ? 1 : 0) times, never before it was
 * sent, and only to the endpoint it was addressed to; endpoint ids are in [1, endpointsMax).
 */
import { assert } from '../util/assert';
import type { SeededRandom } from '../util/random';
import type { SimClock } from './sim-clock';

export const endpointsMax = 1024;

export interface NetworkFaults {
  readonly dropRate: number;
  readonly duplicateRate: number;
  readonly latencyNsMin: number;
  readonly latencyNsMax: number;
  readonly reorderRate: number;
  readonly reorderNsMax: number;
}

export const quietNetwork: NetworkFaults = {
  dropRate: 0, duplicateRate: 0, latencyNsMin: 100_000, latencyNsMax: 500_000, reorderRate: 0, reorderNsMax: 0,
};

export interface NetworkStats {
  sent: number;
  dropped: number;
  duplicated: number;
  cut: number;
  delivered: number;
}

export type LinkDirection = 'inbound' | 'outbound' | 'both';

export class SimNetwork<Payload> {
  /** Cut links as from * endpointsMax + to. */
  private readonly cut = new Set<number>();
  readonly stats: NetworkStats = { sent: 0, dropped: 0, duplicated: 0, cut: 0, delivered: 0 };
  private faults: NetworkFaults;

  constructor(
    private readonly clock: SimClock,
    private readonly random: SeededRandom,
    faults: NetworkFaults,
    private readonly deliver: (from: number, to: number, payload: Payload) => void,
  ) {
    assertFaults(faults);
    this.faults = faults;
  }

  get currentFaults(): NetworkFaults {
    return this.faults;
  }

  /** Changes the fault rates for messages sent from now on (messages in flight keep their fate). */
  setFaults(faults: NetworkFaults): void {
    assertFaults(faults);
    this.faults = faults;
  }

  send(from: number, to: number, payload: Payload): void {
    assert(validEndpoint(from) && validEndpoint(to), `bad endpoint in ${from} -> ${to}`);
    this.stats.sent++;
    if (this.isCut(from, to)) {
      this.stats.cut++;
      return;
    }
    const faults = this.faults;
    if (faults.dropRate > 0 && this.random.float() < faults.dropRate) {
      this.stats.dropped++;
      return;
    }
    this.schedule(from, to, payload);
    if (faults.duplicateRate > 0 && this.random.float() < faults.duplicateRate) {
      this.stats.duplicated++;
      this.schedule(from, to, payload);
    }
  }

  private schedule(from: number, to: number, payload: Payload): void {
    const faults = this.faults;
    let delayNs = faults.latencyNsMin + this.random.int(faults.latencyNsMax - faults.latencyNsMin + 1);
    if (faults.reorderRate > 0 && this.random.float() < faults.reorderRate) delayNs += this.random.int(faults.reorderNsMax + 1);
    this.clock.after(delayNs, 'deliver', () => {
      if (this.isCut(from, to)) {
        this.stats.cut++;
        return;
      }
      this.stats.delivered++;
      this.deliver(from, to, payload);
    });
  }

  isCut(from: number, to: number): boolean {
    return this.cut.size > 0 && this.cut.has(from * endpointsMax + to);
  }

  get cutLinkCount(): number {
    return this.cut.size;
  }

  cutLink(from: number, to: number): void {
    assert(validEndpoint(from) && validEndpoint(to), `bad link ${from} -> ${to}`);
    if (from !== to) this.cut.add(from * endpointsMax + to);
  }

  /** Cuts every link between different groups, both directions. Endpoints not listed keep their links. */
  partition(groups: readonly (readonly number[])[]): void {
    for (const [i, group] of groups.entries()) {
      for (const [j, other] of groups.entries()) {
        if (i === j) continue;
        for (const from of group) for (const to of other) this.cutLink(from, to);
      }
    }
  }

  /**
   * Cuts `id` off from `peers`: 'inbound' — it hears none of them but they hear it (asymmetric);
   * 'outbound' — they do not hear it; 'both' — a symmetric isolation.
   */
  isolate(id: number, peers: readonly number[], direction: LinkDirection): void {
    for (const peer of peers) {
      if (peer === id) continue;
      if (direction !== 'outbound') this.cutLink(peer, id);
      if (direction !== 'inbound') this.cutLink(id, peer);
    }
  }

  heal(): void {
    this.cut.clear();
  }
}

function validEndpoint(id: number): boolean {
  return Number.isSafeInteger(id) && id >= 1 && id < endpointsMax;
}

function assertFaults(faults: NetworkFaults): void {
  assert(faults.dropRate >= 0 && faults.dropRate < 1, `dropRate ${faults.dropRate} not in [0, 1)`);
  assert(faults.duplicateRate >= 0 && faults.duplicateRate < 1, `duplicateRate ${faults.duplicateRate} not in [0, 1)`);
  assert(faults.reorderRate >= 0 && faults.reorderRate <= 1, `reorderRate ${faults.reorderRate} not in [0, 1]`);
  assert(Number.isSafeInteger(faults.latencyNsMin) && faults.latencyNsMin >= 0, 'latencyNsMin must be a non-negative integer');
  assert(Number.isSafeInteger(faults.latencyNsMax) && faults.latencyNsMax >= faults.latencyNsMin, 'latencyNsMax must be >= latencyNsMin');
  assert(Number.isSafeInteger(faults.reorderNsMax) && faults.reorderNsMax >= 0, 'reorderNsMax must be a non-negative integer');
}
