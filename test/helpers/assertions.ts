/** Assertions shared by tests: coded errors checked by code AND message. */
import type { Test } from 'tap';
import { CairnError, ErrorCode } from '../../src/errors/cairn-error';

type Asserter = Pick<Test, 'fail' | 'equal' | 'match'>;

export function throwsCode(t: Asserter, run: () => unknown, code: ErrorCode, message?: RegExp): void {
  try {
    run();
  } catch (error) {
    checkCode(t, error, code, message);
    return;
  }
  t.fail(`expected ${code} to be thrown`);
}

export async function rejectsCode(t: Asserter, run: () => Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  try {
    await run();
  } catch (error) {
    checkCode(t, error, code, message);
    return;
  }
  t.fail(`expected ${code} to be rejected`);
}

function checkCode(t: Asserter, error: unknown, code: ErrorCode, message?: RegExp): void {
  if (!(error instanceof CairnError)) {
    t.fail(`expected CairnError ${code}, got ${String(error)}`);
    return;
  }
  t.equal(error.code, code);
  if (message) t.match(error.message, message);
}
