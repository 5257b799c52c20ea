/**
 * Helpers for callers of the metadata log: turn a CommandResult into the record it carries, or
 * into the CairnError it reports. A result of the wrong kind for the command is a programmer error
 * (AssertionError).
 */
import { CairnError } from '../errors/cairn-error';
import { assert } from '../util/assert';
import type { CommandOutcome, CommandResult, DriveRecord, NodeRecord, ProfileRecord, VolumeRecord } from './types';

export type SuccessfulOutcome = Exclude<CommandOutcome, { kind: 'error' }>;

/** The outcome of a successful command; throws the command's CairnError otherwise. */
export function outcomeOf(result: CommandResult): SuccessfulOutcome {
  const outcome = result.outcome;
  if (outcome.kind === 'error') {
    throw new CairnError(outcome.error.code, outcome.error.message, { retryable: outcome.error.retryable });
  }
  return outcome;
}

export function nodeOf(result: CommandResult): NodeRecord {
  const outcome = outcomeOf(result);
  assert(outcome.kind === 'node', `expected a node result, got '${outcome.kind}'`);
  return outcome.node;
}

export function driveOf(result: CommandResult): DriveRecord {
  const outcome = outcomeOf(result);
  assert(outcome.kind === 'drive', `expected a drive result, got '${outcome.kind}'`);
  return outcome.drive;
}

export function profileOf(result: CommandResult): ProfileRecord {
  const outcome = outcomeOf(result);
  assert(outcome.kind === 'profile', `expected a profile result, got '${outcome.kind}'`);
  return outcome.profile;
}

export function volumeOf(result: CommandResult): VolumeRecord {
  const outcome = outcomeOf(result);
  assert(outcome.kind === 'volume', `expected a volume result, got '${outcome.kind}'`);
  return outcome.volume;
}
