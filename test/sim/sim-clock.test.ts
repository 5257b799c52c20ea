// Goal: simulated time is a total order — events run by time, ties in scheduling order, cancelled
// events never run, and time never moves backwards.
// Method: schedule events out of order, with ties and cancellations, and record the run order.
import t from 'tap';
import { SimClock } from '../../src/sim/sim-clock';
import { AssertionError } from '../../src/util/assert';

void t.test('events run in time order and ties in the order they were scheduled', async (t) => {
  const clock = new SimClock();
  const ran: string[] = [];
  const at = (timeNs: number, name: string): void => {
    clock.schedule(timeNs, 'scenario', () => ran.push(`${name}@${clock.nowNs}`));
  };
  at(30, 'c');
  at(10, 'a1');
  at(20, 'b');
  at(10, 'a2');
  at(10, 'a3');
  for (let event = clock.takeNext(); event !== undefined; event = clock.takeNext()) event.action();
  t.same(ran, ['a1@10', 'a2@10', 'a3@10', 'b@20', 'c@30']);
  t.equal(clock.nowNs, 30);
});

void t.test('a cancelled event never runs and an event may schedule more', async (t) => {
  const clock = new SimClock();
  const ran: number[] = [];
  const doomed = clock.after(5, 'scenario', () => ran.push(5));
  clock.after(1, 'scenario', () => {
    ran.push(1);
    clock.after(1, 'scenario', () => ran.push(2));
  });
  clock.cancel(doomed);
  for (let event = clock.takeNext(); event !== undefined; event = clock.takeNext()) event.action();
  t.same(ran, [1, 2]);
  t.equal(clock.peekNs(), undefined);
});

void t.test('takeNext stops at a time limit and the past cannot be scheduled', async (t) => {
  const clock = new SimClock();
  clock.schedule(100, 'scenario', () => undefined);
  t.equal(clock.takeNext(50), undefined, 'nothing before 50');
  clock.advanceTo(50);
  t.equal(clock.nowNs, 50);
  t.throws(() => clock.schedule(40, 'scenario', () => undefined), AssertionError);
  t.throws(() => clock.advanceTo(150), AssertionError, 'cannot jump over a pending event');
  const event = clock.takeNext();
  t.equal(event?.atNs, 100);
  t.equal(clock.nowNs, 100);
});

void t.test('a thousand random events come out sorted', async (t) => {
  const clock = new SimClock();
  const times: number[] = [];
  let x = 12345;
  for (let i = 0; i < 1000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    clock.schedule(x % 10_000, 'scenario', () => times.push(clock.nowNs));
  }
  for (let event = clock.takeNext(); event !== undefined; event = clock.takeNext()) event.action();
  t.equal(times.length, 1000);
  t.ok(times.every((time, i) => i === 0 || time >= (times[i - 1] as number)), 'non-decreasing');
});
