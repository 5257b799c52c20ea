/**
 * Running seeds: one full simulation per seed, with anything thrown inside (a Raft core assertion,
 * a simulator assertion) reported as a violation of that seed rather than crashing the sweep, and
 * the exact command that replays it.
 */
import { Simulation, type SimResult, type SimulationSettings } from './simulation';
import { type SimOverrides, drawSimOptions } from './sim-options';

export interface SeedOutcome extends SimResult {
  /** `npm run sim -- …` that replays this seed exactly. */
  readonly replay: string;
  readonly wallMs: number;
}

/** Runs one seed to the end and never throws: thrown errors become violations. */
export function runSeed(seed: number, overrides: SimOverrides = {}, settings: SimulationSettings = {}, clockMs: () => number = () => 0): SeedOutcome {
  const startMs = clockMs();
  const replay = replayCommand(seed, overrides);
  const simulation = new Simulation(drawSimOptions(seed, overrides), settings);
  let result: SimResult;
  try {
    result = simulation.run();
  } catch (error) {
    const described = error instanceof Error ? `${error.name}: ${error.message}\n${(error.stack ?? '').split('\n').slice(1, 8).join('\n')}` : String(error);
    simulation.checker.violation(`exception: ${described}`);
    result = simulation.result();
  }
  return { ...result, replay, wallMs: clockMs() - startMs };
}

export function replayCommand(seed: number, overrides: SimOverrides = {}): string {
  const parts = ['npm run sim --', `--seed ${seed}`];
  if (overrides.nodeCount !== undefined) parts.push(`--nodes ${overrides.nodeCount}`);
  if (overrides.ticksMax !== undefined) parts.push(`--ticks-max ${overrides.ticksMax}`);
  if (overrides.bugs?.disk !== undefined && overrides.bugs.disk !== 'none') parts.push(`--bug ${overrides.bugs.disk}`);
  if (overrides.bugs?.node !== undefined && overrides.bugs.node !== 'none') parts.push(`--bug ${overrides.bugs.node}`);
  return parts.join(' ');
}

/** A failure as printed: the seed, the replay command, the violations and the last events. */
export function formatFailure(outcome: SeedOutcome): string {
  const lines = [`FAILED seed ${outcome.seed} — replay with: ${outcome.replay}`, `  ${outcome.summary}`];
  for (const violation of outcome.violations) lines.push(...violation.split('\n').map((line) => `  ${line}`));
  if (outcome.recentEvents.length > 0) {
    lines.push('  last events:');
    for (const line of outcome.recentEvents) lines.push(`    ${line}`);
  }
  return lines.join('\n');
}
