/**
 * SimClock: simulated time and the event queue of a discrete-event simulation. Time is a number of
 * nanoseconds that only moves when the next event is taken; nothing here reads a real clock.
 *
 * Fault model it promises: none by itself — it is the total order every other component's faults
 * are scheduled on. Events at the same time run in the order they were scheduled (a sequence
 * number breaks ties), so one seed always produces one order.
 *
 * Invariants: `nowNs` never decreases; an event never runs before its time; a cancelled event never
 * runs; at most `eventsPendingMax` events wait (asserted: a runaway producer is a simulator bug).
 */
import { assert } from '../util/assert';

export const eventsPendingMax = 1_000_000;

export type EventKind =
  | 'tick' | 'deliver' | 'sync' | 'client' | 'nemesis' | 'restart' | 'heal' | 'stall' | 'scenario';

interface ScheduledEvent {
  readonly atNs: number;
  readonly sequence: number;
  readonly kind: EventKind;
  readonly action: () => void;
  cancelled: boolean;
}

/** Handle of a scheduled event, for cancel(). */
export interface EventHandle {
  readonly sequence: number;
}

export class SimClock {
  private now = 0;
  private sequence = 0;
  private readonly heap: ScheduledEvent[] = [];

  get nowNs(): number {
    return this.now;
  }

  get pendingCount(): number {
    return this.heap.length;
  }

  /** Runs `action` at `atNs` (not before now). */
  schedule(atNs: number, kind: EventKind, action: () => void): EventHandle {
    assert(Number.isSafeInteger(atNs), `event time ${atNs} is not an integer number of ns`);
    assert(atNs >= this.now, `event scheduled in the past: ${atNs} < ${this.now}`);
    assert(this.heap.length < eventsPendingMax, `more than ${eventsPendingMax} events pending`);
    const event: ScheduledEvent = { atNs, sequence: this.sequence++, kind, action, cancelled: false };
    this.push(event);
    return event;
  }

  after(delayNs: number, kind: EventKind, action: () => void): EventHandle {
    assert(delayNs >= 0, `negative delay ${delayNs}`);
    return this.schedule(this.now + Math.round(delayNs), kind, action);
  }

  /** Cancels a pending event; a no-op when it already ran or was cancelled. */
  cancel(handle: EventHandle): void {
    (handle as ScheduledEvent).cancelled = true;
  }

  /** Time of the next live event, or undefined when none is pending. */
  peekNs(): number | undefined {
    this.dropCancelled();
    return this.heap[0]?.atNs;
  }

  /**
   * Takes the next event, advances time to it and returns it (run it with `.action()`); undefined
   * when nothing is pending or the next event is after `untilNs`.
   */
  takeNext(untilNs = Infinity): { readonly kind: EventKind; readonly atNs: number; readonly action: () => void } | undefined {
    this.dropCancelled();
    const head = this.heap[0];
    if (head === undefined || head.atNs > untilNs) return undefined;
    this.pop();
    head.cancelled = true; // ran: a later cancel() is a no-op
    assert(head.atNs >= this.now, 'time went backwards');
    this.now = head.atNs;
    return head;
  }

  /** Moves time forward to `atNs` with no event (used when a run ends between events). */
  advanceTo(atNs: number): void {
    assert(atNs >= this.now, `cannot move time back from ${this.now} to ${atNs}`);
    const next = this.peekNs();
    assert(next === undefined || next >= atNs, 'advancing past a pending event');
    this.now = atNs;
  }

  private dropCancelled(): void {
    while (this.heap.length > 0 && (this.heap[0] as ScheduledEvent).cancelled) this.pop();
  }

  // Binary min-heap on (atNs, sequence).
  private push(event: ScheduledEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent] as ScheduledEvent)) break;
      heap[i] = heap[parent] as ScheduledEvent;
      i = parent;
    }
    heap[i] = event;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop() as ScheduledEvent;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right] as ScheduledEvent, heap[left] as ScheduledEvent) ? right : left;
      if (!before(heap[child] as ScheduledEvent, last)) break;
      heap[i] = heap[child] as ScheduledEvent;
      i = child;
    }
    heap[i] = last;
  }
}

function before(a: ScheduledEvent, b: ScheduledEvent): boolean {
  return a.atNs < b.atNs || (a.atNs === b.atNs && a.sequence < b.sequence);
}
