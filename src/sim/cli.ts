/**
 * `npm run sim -- …`: runs simulator seeds and exits non-zero on any violation.
 *
 *   --seeds N         run N seeds (default 100) starting at --first-seed (default 1)
 *   --first-seed S
 *   --seed S          run exactly one seed (a replay), printing its summary and trace fingerprint
 *   --nodes N         fix the cluster size (3..7; default: drawn per seed)
 *   --ticks-max T     ticks of the faulty phase (default 400; one tick is 10 ms simulated)
 *   --bug NAME        inject a deliberate bug (forget-vote, sync-lies, local-reads, lossy-apply) to watch the checkers fail
 *   --trace N         keep the last N events for failure reports (default 50)
 *   --verbose         print every seed's summary
 *
 * Exit codes: 0 no violation, 1 a violation (each failing seed prints its violations and the exact
 * replay command — the same command replays the same run, event for event), 2 usage error.
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { DiskBug } from './sim-disk';
import type { NodeBug } from './sim-node';
import { type SimOverrides, nodesMax, nodesMin } from './sim-options';
import { formatFailure, runSeed } from './run-seed';

const diskBugs: readonly DiskBug[] = ['forget-vote', 'sync-lies'];
const nodeBugs: readonly NodeBug[] = ['local-reads', 'lossy-apply'];
const usageLine = `usage: npm run sim -- [--seeds N] [--first-seed S] [--seed S] [--nodes ${nodesMin}..${nodesMax}] [--ticks-max T] [--bug NAME] [--trace N] [--verbose]`;

class UsageError extends Error {}

function integer(name: string, text: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,16}$/.test(text)) throw new UsageError(`--${name} must be an integer, got ${JSON.stringify(text)}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`--${name} must be in [${min}, ${max}], got ${text}`);
  return value;
}

interface Plan {
  readonly seeds: number[];
  readonly single: boolean;
  readonly overrides: SimOverrides;
  readonly traceLines: number;
  readonly verbose: boolean;
}

function plan(args: readonly string[]): Plan {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: {
        seeds: { type: 'string' }, 'first-seed': { type: 'string' }, seed: { type: 'string' }, nodes: { type: 'string' },
        'ticks-max': { type: 'string' }, bug: { type: 'string' }, trace: { type: 'string' }, verbose: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const values = parsed.values;
  const single = integer('seed', values.seed, 0);
  const count = integer('seeds', values.seeds, 1, 100_000_000) ?? 100;
  const first = integer('first-seed', values['first-seed'], 0) ?? 1;
  const nodeCount = integer('nodes', values.nodes, nodesMin, nodesMax);
  const ticksMax = integer('ticks-max', values['ticks-max'], 1, 10_000_000);
  const traceLines = integer('trace', values.trace, 0, 100_000) ?? 50;
  let bugs: SimOverrides['bugs'];
  if (values.bug !== undefined) {
    const bug = values.bug;
    if ((diskBugs as readonly string[]).includes(bug)) bugs = { disk: bug as DiskBug };
    else if ((nodeBugs as readonly string[]).includes(bug)) bugs = { node: bug as NodeBug };
    else throw new UsageError(`unknown --bug ${JSON.stringify(bug)} (one of ${[...diskBugs, ...nodeBugs].join(', ')})`);
  }
  if (single !== undefined && (values.seeds !== undefined || values['first-seed'] !== undefined)) {
    throw new UsageError('--seed runs one seed; it cannot be combined with --seeds or --first-seed');
  }
  const overrides: SimOverrides = {
    ...(nodeCount === undefined ? {} : { nodeCount }),
    ...(ticksMax === undefined ? {} : { ticksMax }),
    ...(bugs === undefined ? {} : { bugs }),
  };
  const seeds = single === undefined ? Array.from({ length: count }, (_, i) => first + i) : [single];
  return { seeds, single: single !== undefined, overrides, traceLines, verbose: values.verbose === true };
}

/** Runs the command line `args`; returns the exit code. */
export function runSimCli(args: readonly string[], write: (text: string) => void): number {
  let parsedPlan: Plan;
  try {
    parsedPlan = plan(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    write(`sim: ${error.message}\n${usageLine}\n`);
    return 2;
  }
  const { seeds, single, overrides, traceLines, verbose } = parsedPlan;
  const startMs = performance.now();
  const failures: number[] = [];
  for (const seed of seeds) {
    const outcome = runSeed(seed, overrides, { traceLines }, () => performance.now());
    if (!outcome.ok) {
      failures.push(seed);
      write(`${formatFailure(outcome)}\n`);
    } else if (verbose || single) {
      write(`ok ${outcome.summary} [${outcome.wallMs.toFixed(0)} ms]\n`);
    }
    if (single) write(`trace ${outcome.traceHash} (${outcome.events} events)\n`);
  }
  const seconds = (performance.now() - startMs) / 1000;
  write(`${seeds.length} seeds in ${seconds.toFixed(1)} s (${(seeds.length / Math.max(seconds, 1e-9)).toFixed(1)} seeds/s): ` +
    `${failures.length === 0 ? 'no violations' : `${failures.length} FAILED (${failures.join(', ')})`}\n`);
  return failures.length === 0 ? 0 : 1;
}

if (require.main === module) {
  process.exitCode = runSimCli(process.argv.slice(2), (text) => process.stdout.write(text));
}
