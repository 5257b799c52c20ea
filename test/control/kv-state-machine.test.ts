// Goal: the replicated KV state machine is deterministic and applies every client request at most
// once: retries return the remembered result, older requests and requests without a session have
// no effect, eviction keeps the session table bounded without reopening old requests, snapshots
// carry all of it and are byte-identical for identical states, and no input bytes crash it.
// Method: apply hand-built command sequences and compare results and snapshots; feed every
// truncation of valid encodings and seeded random bytes to the decoders.
import t from 'tap';
import { CairnError } from '../../src/errors/cairn-error';
import {
  type KvCommand, type KvResult, KvStateMachine, decodeKvCommand, decodeKvResult, encodeKvCommand, encodeKvResult,
} from '../../src/control/kv-state-machine';
import { AssertionError } from '../../src/util/assert';
import { SeededRandom } from '../../src/util/random';

/** Applies commands at consecutive indexes after the current applied index; returns the results. */
function run(kv: KvStateMachine, commands: readonly KvCommand[]): KvResult[] {
  return commands.map((command) => kv.apply(kv.appliedIndex + 1, encodeKvCommand(command)).result);
}

const open = (clientId: number, seq = 1): KvCommand => ({ kind: 'open', clientId, seq });

void t.test('put, get, cas and delete follow map semantics', async (t) => {
  const kv = new KvStateMachine();
  const results = run(kv, [
    open(1),
    { kind: 'get', clientId: 1, seq: 1, key: 'a' },
    { kind: 'put', clientId: 1, seq: 2, key: 'a', value: 'x' },
    { kind: 'get', clientId: 1, seq: 3, key: 'a' },
    { kind: 'cas', clientId: 1, seq: 4, key: 'a', from: 'y', to: 'z' },
    { kind: 'cas', clientId: 1, seq: 5, key: 'a', from: 'x', to: 'z' },
    { kind: 'cas', clientId: 1, seq: 6, key: 'b', from: null, to: 'new' },
    { kind: 'delete', clientId: 1, seq: 7, key: 'a' },
    { kind: 'delete', clientId: 1, seq: 8, key: 'a' },
  ]);
  t.same(results, [
    { kind: 'opened' },
    { kind: 'get', value: null },
    { kind: 'put' },
    { kind: 'get', value: 'x' },
    { kind: 'cas', ok: false, value: 'x' },
    { kind: 'cas', ok: true, value: 'x' },
    { kind: 'cas', ok: true, value: null },
    { kind: 'delete', existed: true },
    { kind: 'delete', existed: false },
  ]);
  t.equal(kv.read('a'), null);
  t.equal(kv.read('b'), 'new');
  t.equal(kv.appliedIndex, 9);
});

void t.test('a retried request is applied once and answered with the remembered result', async (t) => {
  const kv = new KvStateMachine();
  run(kv, [open(7), { kind: 'put', clientId: 7, seq: 1, key: 'k', value: 'v1' }]);
  run(kv, [open(8), { kind: 'put', clientId: 8, seq: 1, key: 'k', value: 'other' }]);
  const retry = kv.apply(kv.appliedIndex + 1, encodeKvCommand({ kind: 'put', clientId: 7, seq: 1, key: 'k', value: 'v1' }));
  t.equal(retry.duplicate, true);
  t.same(retry.result, { kind: 'put' });
  t.equal(kv.read('k'), 'other', 'the retry did not overwrite the later write');
  const casRetry = run(kv, [
    { kind: 'cas', clientId: 7, seq: 2, key: 'k', from: 'other', to: 'mine' },
    { kind: 'cas', clientId: 7, seq: 2, key: 'k', from: 'other', to: 'mine' },
  ]);
  t.same(casRetry, [{ kind: 'cas', ok: true, value: 'other' }, { kind: 'cas', ok: true, value: 'other' }],
    'the retry reports the original success, not a failed comparison');
});

void t.test('an older request of a client that moved on has no effect', async (t) => {
  const kv = new KvStateMachine();
  run(kv, [open(1), { kind: 'put', clientId: 1, seq: 1, key: 'k', value: 'a' }, { kind: 'put', clientId: 1, seq: 2, key: 'k', value: 'b' }]);
  const results = run(kv, [{ kind: 'put', clientId: 1, seq: 1, key: 'k', value: 'a' }]);
  t.same(results, [{ kind: 'stale' }]);
  t.equal(kv.read('k'), 'b');
});

void t.test('requests without a session are refused and open is idempotent', async (t) => {
  const kv = new KvStateMachine();
  t.same(run(kv, [{ kind: 'put', clientId: 3, seq: 1, key: 'k', value: 'v' }]), [{ kind: 'sessionExpired' }]);
  t.equal(kv.read('k'), null);
  run(kv, [open(3), { kind: 'put', clientId: 3, seq: 1, key: 'k', value: 'v' }]);
  t.same(run(kv, [open(3, 1)]), [{ kind: 'opened' }]);
  t.equal(kv.sessionSeq(3), 1, 'a repeated open does not reset the session');
  t.same(run(kv, [{ kind: 'put', clientId: 3, seq: 1, key: 'k', value: 'v' }]), [{ kind: 'put' }]);
  t.equal(kv.sessionCount, 1);
});

void t.test('the session table is bounded: the least recently applied session is evicted', async (t) => {
  const kv = new KvStateMachine({ sessionsMax: 2 });
  run(kv, [open(1), open(2), { kind: 'put', clientId: 1, seq: 1, key: 'k', value: 'one' }, open(3)]);
  t.equal(kv.sessionCount, 2);
  t.equal(kv.sessionSeq(2), undefined, 'client 2 applied least recently');
  t.same(run(kv, [{ kind: 'put', clientId: 2, seq: 1, key: 'k', value: 'two' }]), [{ kind: 'sessionExpired' }]);
  // Client 2 re-opens with its next number; a delayed copy of the request it gave up on stays dead.
  run(kv, [open(2, 2)]);
  t.same(run(kv, [{ kind: 'put', clientId: 2, seq: 1, key: 'k', value: 'two' }]), [{ kind: 'stale' }]);
  t.same(run(kv, [{ kind: 'put', clientId: 2, seq: 2, key: 'k', value: 'two' }]), [{ kind: 'put' }]);
  t.equal(kv.read('k'), 'two');
  t.equal(kv.sessionCount, 2);
});

void t.test('over-long keys and values and a full map are refused without effect', async (t) => {
  const kv = new KvStateMachine({ keysMax: 1, keyBytesMax: 4, valueBytesMax: 4 });
  const results = run(kv, [
    open(1),
    { kind: 'put', clientId: 1, seq: 1, key: 'toolong', value: 'v' },
    { kind: 'put', clientId: 1, seq: 2, key: 'k', value: 'toolong' },
    { kind: 'put', clientId: 1, seq: 3, key: 'k', value: 'v' },
    { kind: 'put', clientId: 1, seq: 4, key: 'k2', value: 'v' },
    { kind: 'cas', clientId: 1, seq: 4, key: 'k2', from: null, to: 'v' },
    { kind: 'put', clientId: 1, seq: 4, key: 'k', value: 'w' },
  ]);
  t.same(results, [
    { kind: 'opened' }, { kind: 'invalid' }, { kind: 'invalid' }, { kind: 'put' }, { kind: 'full' }, { kind: 'full' }, { kind: 'put' },
  ]);
  t.equal(kv.keyCount, 1);
  t.equal(kv.read('k'), 'w', 'a refused request does not consume its sequence number');
});

void t.test('snapshots carry the map and sessions and are identical for identical states', async (t) => {
  const a = new KvStateMachine();
  run(a, [open(1), open(2), { kind: 'put', clientId: 1, seq: 1, key: 'x', value: '1' }, { kind: 'put', clientId: 2, seq: 1, key: 'y', value: '2' }]);
  const b = new KvStateMachine();
  run(b, [open(2), open(1), { kind: 'put', clientId: 2, seq: 1, key: 'y', value: '2' }, { kind: 'put', clientId: 1, seq: 1, key: 'x', value: '1' }]);
  t.not(Buffer.from(a.snapshot()).equals(Buffer.from(b.snapshot())), 'different last indexes per session differ');
  const c = new KvStateMachine();
  c.restore(a.snapshot());
  t.ok(Buffer.from(c.snapshot()).equals(Buffer.from(a.snapshot())), 'restore then snapshot gives the same bytes');
  t.equal(c.appliedIndex, a.appliedIndex);
  // The dedupe table came along: the retry is recognised on the restored replica.
  const retry = c.apply(c.appliedIndex + 1, encodeKvCommand({ kind: 'put', clientId: 1, seq: 1, key: 'x', value: '1' }));
  t.equal(retry.duplicate, true);
  t.throws(() => c.apply(c.appliedIndex, encodeKvCommand(open(9))), AssertionError, 'indexes must increase');
});

void t.test('every truncation of a valid encoding is refused with CAIRN_CORRUPT', async (t) => {
  const commands: KvCommand[] = [
    open(2 ** 40 + 5, 17),
    { kind: 'put', clientId: 1, seq: 2, key: 'kéy', value: 'välue' },
    { kind: 'get', clientId: 1, seq: 3, key: '' },
    { kind: 'cas', clientId: 1, seq: 4, key: 'k', from: null, to: 't' },
    { kind: 'cas', clientId: 1, seq: 5, key: 'k', from: 'f', to: 't' },
    { kind: 'delete', clientId: 1, seq: 6, key: 'k' },
  ];
  for (const command of commands) {
    const bytes = encodeKvCommand(command);
    t.same(decodeKvCommand(bytes), command, `${command.kind} round-trips`);
    for (let length = 0; length < bytes.length; length++) {
      t.throws(() => decodeKvCommand(bytes.subarray(0, length)), { code: 'CAIRN_CORRUPT' });
    }
    t.throws(() => decodeKvCommand(Uint8Array.from([...bytes, 0])), { code: 'CAIRN_CORRUPT' }, 'trailing bytes');
  }
  const results: KvResult[] = [
    { kind: 'opened' }, { kind: 'put' }, { kind: 'get', value: null }, { kind: 'get', value: 'v' }, { kind: 'cas', ok: true, value: 'x' },
    { kind: 'cas', ok: false, value: null }, { kind: 'delete', existed: true }, { kind: 'sessionExpired' }, { kind: 'stale' },
    { kind: 'invalid' }, { kind: 'full' },
  ];
  for (const result of results) t.same(decodeKvResult(encodeKvResult(result)), result, `result ${result.kind} round-trips`);
  t.throws(() => encodeKvCommand({ kind: 'open', clientId: 0, seq: 1 }), { code: 'CAIRN_INVALID_ARGUMENT' });
  t.throws(() => encodeKvCommand({ kind: 'open', clientId: 1, seq: 1.5 }), { code: 'CAIRN_INVALID_ARGUMENT' });
});

void t.test('random bytes never crash decoding, apply or restore', async (t) => {
  const random = new SeededRandom(4242);
  const kv = new KvStateMachine();
  run(kv, [open(1), { kind: 'put', clientId: 1, seq: 1, key: 'k', value: 'v' }]);
  const before = kv.snapshot();
  const valid = encodeKvCommand({ kind: 'cas', clientId: 1, seq: 2, key: 'k', from: 'v', to: 'w' });
  let invalid = 0;
  const surprises: string[] = [];
  for (let i = 0; i < 2000; i++) {
    // Half pure noise, half a valid command with a few bytes flipped.
    const bytes = i % 2 === 0 ? random.fill(Buffer.alloc(random.int(40))) : Buffer.from(valid);
    if (i % 2 === 1) for (let flips = 1 + random.int(3); flips > 0; flips--) bytes[random.int(bytes.length)] = random.int(256);
    try {
      decodeKvCommand(bytes);
    } catch (error) {
      if (!(error instanceof CairnError && error.code === 'CAIRN_CORRUPT')) surprises.push(`decode threw ${String(error)}`);
      const probe = new KvStateMachine();
      probe.restore(before);
      const outcome = probe.apply(probe.appliedIndex + 1, bytes);
      if (outcome.result.kind !== 'invalid') surprises.push(`undecodable bytes applied as ${outcome.result.kind}`);
      if (probe.read('k') !== 'v' || probe.keyCount !== 1) surprises.push('invalid bytes changed the map');
      invalid++;
    }
    try {
      const probe = new KvStateMachine();
      probe.restore(bytes);
    } catch (error) {
      if (!(error instanceof CairnError && error.code === 'CAIRN_CORRUPT')) surprises.push(`restore threw ${String(error)}`);
    }
  }
  t.same(surprises, [], 'only CAIRN_CORRUPT, and refused bytes have no effect');
  t.ok(invalid > 1000, 'most random inputs are refused');
  const snapshot = kv.snapshot();
  let refused = 0;
  for (let length = 0; length < snapshot.length; length++) {
    try {
      kv.restore(snapshot.subarray(0, length));
    } catch (error) {
      if (error instanceof CairnError && error.code === 'CAIRN_CORRUPT') refused++;
    }
  }
  t.equal(refused, snapshot.length, 'every truncated snapshot is refused with CAIRN_CORRUPT');
  t.ok(Buffer.from(kv.snapshot()).equals(Buffer.from(before)), 'a refused restore leaves the state unchanged');
});
