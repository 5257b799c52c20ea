/**
 * The history checker's command line: checks every `*.jsonl` history in the directories (or the
 * files) given — by default $CAIRN_HISTORY_DIR — and prints one verdict per file and per key,
 * with an explanation for every key that is not linearizable.
 *
 *   node dist/src/check/cli.js [--steps-max N] [DIR|FILE]...
 *
 * Exit status: 0 every key linearizable; 1 a violation, or a history that cannot be read;
 * 2 usage error; 3 no violation, but some key's search ran out of budget (not proven).
 */
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { checkHistory, formatCount, formatKeyVerdict, stepsMaxPerKeyDefault } from './check-history';
import type { Verdict } from './check-history';
import { listHistoryFiles, readHistoryFile } from './history-file';
import { searchStepsLimit } from './linearizability';

export interface CheckCliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

export const exitLinearizable = 0;
export const exitViolation = 1;
export const exitUsage = 2;
export const exitUndecided = 3;

const usage = `usage: check-history [--steps-max N] [DIR|FILE]...
Checks every *.jsonl history in each DIR (default: $CAIRN_HISTORY_DIR) for linearizability, per key.
  --steps-max N   search steps per key before its verdict is "unknown" (default ${stepsMaxPerKeyDefault}, at most ${searchStepsLimit})
exit status: 0 linearizable, 1 violation or unreadable history, 2 usage, 3 search budget exhausted
`;

const processIo: CheckCliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs the checker on `argv` (without node and script); resolves to the exit status. */
export async function main(argv: readonly string[], io: CheckCliIo = processIo): Promise<number> {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions(argv, io.env);
  } catch (error) {
    io.stderr(`check-history: ${(error as Error).message}\n${usage}`);
    return exitUsage;
  }
  if (parsed === 'help') {
    io.stdout(usage);
    return exitLinearizable;
  }

  let files: string[] = [];
  try {
    for (const path of parsed.paths) files = files.concat((await stat(path)).isDirectory() ? await listHistoryFiles(path) : [path]);
  } catch (error) {
    io.stderr(`check-history: ${(error as Error).message}\n`);
    return exitViolation;
  }
  if (files.length === 0) {
    io.stderr(`check-history: no *.jsonl histories in ${parsed.paths.join(', ')}\n`);
    return exitViolation;
  }

  const verdicts: Array<Verdict | 'unreadable'> = [];
  for (const file of files) {
    let operations;
    try {
      operations = await readHistoryFile(file);
    } catch (error) {
      io.stdout(`${file}: UNREADABLE — ${(error as Error).message}\n`);
      verdicts.push('unreadable');
      continue;
    }
    const verdict = checkHistory(operations, { stepsMaxPerKey: parsed.stepsMax });
    const label = verdict.verdict === 'linearizable' ? 'linearizable' : verdict.verdict === 'illegal' ? 'NOT LINEARIZABLE' : 'UNKNOWN';
    io.stdout(`${file}: ${label} — ${formatCount(verdict.keys.length, 'key')}, ${formatCount(operations.length, 'operation')}\n`);
    for (const key of verdict.keys) io.stdout(`${indent(formatKeyVerdict(key))}\n`);
    verdicts.push(verdict.verdict);
  }
  if (verdicts.some((v) => v === 'illegal' || v === 'unreadable')) return exitViolation;
  return verdicts.includes('unknown') ? exitUndecided : exitLinearizable;
}

function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): 'help' | { paths: string[]; stepsMax: number } {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { 'steps-max': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help === true) return 'help';
  const stepsText = values['steps-max'];
  const stepsMax = stepsText === undefined ? stepsMaxPerKeyDefault : Number(stepsText);
  if (!/^\d+$/.test(stepsText ?? '1') || !Number.isSafeInteger(stepsMax) || stepsMax < 1 || stepsMax > searchStepsLimit) {
    throw new Error(`--steps-max must be an integer from 1 to ${searchStepsLimit}, got ${JSON.stringify(stepsText)}`);
  }
  const fallback = env['CAIRN_HISTORY_DIR'];
  const paths = positionals.length > 0 ? positionals : fallback !== undefined && fallback !== '' ? [fallback] : [];
  if (paths.length === 0) throw new Error('no history directory: pass DIR or set CAIRN_HISTORY_DIR');
  return { paths, stepsMax };
}

function indent(text: string): string {
  return text.replace(/^/gm, '  ');
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
