// Goal: `npm run sim` runs seeds, prints one line per failure with the replay command, exits 0
// when clean, 1 on any violation and 2 on a usage error.
// Method: the CLI entry point in-process with captured output, and once as the compiled script
// that `npm run sim` starts (`npm test` builds dist/ first).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { runSimCli } from '../../src/sim/cli';

function cli(...args: string[]): { code: number; output: string } {
  let output = '';
  const code = runSimCli(args, (text) => (output += text));
  return { code, output };
}

void t.test('clean seeds exit 0 and report the rate', async (t) => {
  const { code, output } = cli('--seeds', '3', '--first-seed', '10', '--ticks-max', '60');
  t.equal(code, 0, output);
  t.match(output, /^3 seeds in [\d.]+ s \([\d.]+ seeds\/s\): no violations$/m);
});

void t.test('one seed prints its summary and trace fingerprint', async (t) => {
  const { code, output } = cli('--seed', '5', '--ticks-max', '60', '--nodes', '4');
  t.equal(code, 0, output);
  t.match(output, /^ok seed 5: 4 nodes/m);
  t.match(output, /^trace [0-9a-f]{16} \(\d+ events\)$/m);
});

void t.test('a violation exits 1 and names the seed with its replay command', async (t) => {
  const { code, output } = cli('--seeds', '4', '--ticks-max', '100', '--bug', 'lossy-apply');
  t.equal(code, 1);
  t.match(output, /^FAILED seed \d+ — replay with: npm run sim -- --seed \d+ --ticks-max 100 --bug lossy-apply$/m);
  t.match(output, /FAILED \([\d, ]+\)$/m);
});

void t.test('usage errors exit 2 with the usage line', async (t) => {
  for (const args of [['--nodes', '9'], ['--seeds', 'x'], ['--bogus'], ['--bug', 'nope'], ['--seed', '1', '--seeds', '2'], ['extra']]) {
    const { code, output } = cli(...args);
    t.equal(code, 2, `${args.join(' ')} → ${output.split('\n')[0] ?? ''}`);
    t.match(output, /^usage: npm run sim --/m);
  }
});

void t.test('the compiled script behind `npm run sim` runs a seed', async (t) => {
  const script = join(__dirname, '..', '..', 'dist', 'src', 'sim', 'cli.js');
  const result = spawnSync(process.execPath, [script, '--seed', '2', '--ticks-max', '40'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(result.status, 0, result.stderr);
  t.match(result.stdout, /^trace [0-9a-f]{16}/m);
});
