/**
 * The shared coded-error assertions (test/helpers/assertions.ts), also accepting a string: the
 * whole message must equal it, so a test pins the exact wording users see.
 */
import type { Test } from 'tap';
import type { ErrorCode } from '../../../src/errors/cairn-error';
import { rejectsCode as rejectsCodeMatching, throwsCode as throwsCodeMatching } from '../../helpers/assertions';

type Asserter = Pick<Test, 'fail' | 'equal' | 'match'>;

/** A RegExp that matches exactly `text`. */
export function exactly(text: string): RegExp {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

function pattern(message: RegExp | string | undefined): RegExp | undefined {
  return typeof message === 'string' ? exactly(message) : message;
}

export function throwsCode(t: Asserter, run: () => unknown, code: ErrorCode, message?: RegExp | string): void {
  throwsCodeMatching(t, run, code, pattern(message));
}

export async function rejectsCode(t: Asserter, run: () => Promise<unknown>, code: ErrorCode, message?: RegExp | string): Promise<void> {
  await rejectsCodeMatching(t, run, code, pattern(message));
}
