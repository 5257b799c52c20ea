// Goal: history files on disk read back exactly what was written, bad files are refused with the
// file and line named (never a crash, never unbounded memory), and the checker's command line
// reports one verdict per file and key with the documented exit status.
// Method: real files in a temporary directory (removed on teardown): round trips, lines crossing
// the reader's 64 KiB chunks, broken bytes and bounds; main() run in-process with captured output.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { exitLinearizable, exitUndecided, exitUsage, exitViolation, main } from '../../src/check/cli';
import type { CheckCliIo } from '../../src/check/cli';
import { formatHistory, historyLineBytesMax } from '../../src/check/history';
import type { HistoryOperation } from '../../src/check/history';
import { listHistoryFiles, readHistoryFile, writeHistoryFile } from '../../src/check/history-file';
import { SeededRandom } from '../../src/util/random';
import { generateHistory, read, write } from './helpers/histories';

async function temporaryDirectory(t: Test): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'cairn-check-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

function capture(env: NodeJS.ProcessEnv = {}): CheckCliIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: (text) => void (out += text),
    stderr: (text) => void (err += text),
    env,
    out: () => out,
    err: () => err,
  };
}

t.test('a written history reads back equal, including lines that cross read chunks', async (t) => {
  const directory = await temporaryDirectory(t);
  const history: HistoryOperation[] = generateHistory(new SeededRandom(5), { clients: 4, operations: 300, keys: ['a', 'b'], values: [], unknownRate: 0.1, failRate: 0.1, durationNsMax: 30 });
  // Values of 50 KB put line ends at every offset relative to the 64 KiB chunks.
  for (let i = 0; i < 5; i++) history.push(write(9, `${i}`.repeat(50_000 + i * 777), 10_000 + i, 10_001 + i));
  const path = join(directory, 'run.jsonl');
  await writeHistoryFile(path, history);
  t.same(await readHistoryFile(path), history);
});

t.test('a last line without newline, CRLF endings and blank lines are read', async (t) => {
  const directory = await temporaryDirectory(t);
  const path = join(directory, 'crlf.jsonl');
  const text = formatHistory([write(1, 'a', 0, 1), read(2, 'a', 2, 3)]).replace(/\n/g, '\r\n');
  await writeFile(path, `\r\n${text}\n${formatHistory([read(3, 'a', 4, 5)]).trimEnd()}`);
  t.same(await readHistoryFile(path), [write(1, 'a', 0, 1), read(2, 'a', 2, 3), read(3, 'a', 4, 5)]);
});

t.test('bad bytes, long lines and too many operations are refused with the line number', async (t) => {
  const directory = await temporaryDirectory(t);
  const valid = formatHistory([write(1, 'a', 0, 1)]);
  const broken = join(directory, 'broken.jsonl');
  await writeFile(broken, Buffer.concat([Buffer.from(valid + valid), Buffer.from('{"client":1,"op":"write","key":"k","value":"\xff\xfe'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]));
  await t.rejects(readHistoryFile(broken), { message: `${broken}:3: not valid UTF-8` });

  const long = join(directory, 'long.jsonl');
  await writeFile(long, valid + 'x'.repeat(historyLineBytesMax + 1) + '\n');
  await t.rejects(readHistoryFile(long), { message: `${long}:2: line is longer than ${historyLineBytesMax} bytes` });

  const many = join(directory, 'many.jsonl');
  await writeFile(many, valid.repeat(11));
  await t.rejects(readHistoryFile(many, 10), { message: `${many}:11: more than 10 operations in one file` });
  t.equal((await readHistoryFile(many, 11)).length, 11);

  const invalid = join(directory, 'invalid.jsonl');
  await writeFile(invalid, valid + '{"client":1,"op":"read","key":"k","call":5,"return":4,"value":null}\n');
  await t.rejects(readHistoryFile(invalid), { message: `${invalid}:2: "return" (4) is before "call" (5)` });
  await t.rejects(readHistoryFile(join(directory, 'missing.jsonl')), { code: 'ENOENT' });
});

t.test('only *.jsonl files of a directory are histories, in name order', async (t) => {
  const directory = await temporaryDirectory(t);
  for (const name of ['b.jsonl', 'a.jsonl', 'notes.txt', 'c.jsonl.tmp']) await writeFile(join(directory, name), '');
  t.same(await listHistoryFiles(directory), [join(directory, 'a.jsonl'), join(directory, 'b.jsonl')]);
});

t.test('the command line prints per-file and per-key verdicts and exits 0 when all are linearizable', async (t) => {
  const directory = await temporaryDirectory(t);
  await writeHistoryFile(join(directory, 'one.jsonl'), [write(1, 'a', 0, 10, 'ok', 'x'), read(2, 'a', 20, 30, 'ok', 'x'), read(2, null, 20, 30, 'ok', 'y')]);
  await writeHistoryFile(join(directory, 'two.jsonl'), [write(1, 'b', 0, 10, 'unknown', 'x')]);
  const io = capture();
  t.equal(await main([directory], io), exitLinearizable);
  t.match(io.out(), new RegExp(`^${escapeRegExp(join(directory, 'one.jsonl'))}: linearizable — 2 keys, 3 operations\\n  key "x": linearizable \\(2 operations, 0 dropped, \\d+ steps\\)\\n  key "y": linearizable`));
  t.match(io.out(), new RegExp(`${escapeRegExp(join(directory, 'two.jsonl'))}: linearizable — 1 key, 1 operation`));
  t.equal(io.err(), '');
});

t.test('a violation, an unreadable file or an empty directory exits 1 with the reason', async (t) => {
  const directory = await temporaryDirectory(t);
  await writeHistoryFile(join(directory, 'bad.jsonl'), [write(1, 'a', 0, 10), write(1, 'b', 20, 30), read(2, 'a', 40, 50)]);
  await writeFile(join(directory, 'broken.jsonl'), '{"client":1}\n');
  const io = capture();
  t.equal(await main([directory], io), exitViolation);
  t.match(io.out(), /bad\.jsonl: NOT LINEARIZABLE — 1 key, 3 operations\n  key "k": NOT LINEARIZABLE/);
  t.match(io.out(), /its only write, client 1 write "a"/);
  t.match(io.out(), /broken\.jsonl: UNREADABLE — .*broken\.jsonl:1: "op" must be/);

  const empty = await temporaryDirectory(t);
  const quiet = capture();
  t.equal(await main([empty], quiet), exitViolation);
  t.match(quiet.err(), /no \*\.jsonl histories in/);
  const missing = capture();
  t.equal(await main([join(empty, 'nope')], missing), exitViolation);
  t.match(missing.err(), /ENOENT/);
});

t.test('an exhausted search budget exits 3, and a file may be named directly', async (t) => {
  const directory = await temporaryDirectory(t);
  const history: HistoryOperation[] = Array.from({ length: 10 }, (_, client) => write(client, `v${client}`, 0, 100));
  history.push(read(20, 'v3', 200, 210), read(20, 'v5', 220, 230), write(21, 'v3', 0, 100));
  const path = join(directory, 'hard.jsonl');
  await writeHistoryFile(path, history);
  const io = capture();
  t.equal(await main(['--steps-max', '5', path], io), exitUndecided);
  t.match(io.out(), /hard\.jsonl: UNKNOWN — 1 key, 13 operations\n  key "k": UNKNOWN — search budget of 5 steps exhausted/);
});

t.test('the directory defaults to CAIRN_HISTORY_DIR; usage errors exit 2', async (t) => {
  const directory = await temporaryDirectory(t);
  await writeHistoryFile(join(directory, 'run.jsonl'), [write(1, 'a', 0, 10)]);
  const fromEnv = capture({ CAIRN_HISTORY_DIR: directory });
  t.equal(await main([], fromEnv), exitLinearizable);
  t.match(fromEnv.out(), /run\.jsonl: linearizable/);

  for (const argv of [[], ['--steps-max', '0', directory], ['--steps-max', '1e3', directory], ['--steps-max', '99999999999', directory], ['--bogus', directory]]) {
    const io = capture();
    t.equal(await main(argv, io), exitUsage, argv.join(' '));
    t.match(io.err(), /^check-history: .*\nusage: check-history/s);
  }
  const help = capture();
  t.equal(await main(['--help'], help), exitLinearizable);
  t.match(help.out(), /^usage: check-history/);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
