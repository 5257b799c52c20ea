// Goal: every error code is mapped to the wire and documented, in both directions, and the NBD
// errno translation covers host errors. If a code is added without a mapping, tsc fails; without
// a description, this test fails.
import t from 'tap';
import { CairnError, errorDescriptions, errorWire, nbdErrnoOf, NbdErrno, httpStatusOf } from '../../src/errors/cairn-error';

t.test('every code has a wire mapping and a description, and nothing else does', async (t) => {
  t.same(Object.keys(errorDescriptions).sort(), Object.keys(errorWire).sort());
  for (const [code, description] of Object.entries(errorDescriptions)) t.ok(description.length > 10, code);
});

t.test('nbdErrnoOf maps CairnError codes and host errno codes', async (t) => {
  t.equal(nbdErrnoOf(new CairnError('CAIRN_NO_SPACE', 'x')), NbdErrno.ENOSPC);
  t.equal(nbdErrnoOf(new CairnError('CAIRN_READ_ONLY', 'x')), NbdErrno.EPERM);
  t.equal(nbdErrnoOf(new CairnError('CAIRN_SHUTTING_DOWN', 'x')), NbdErrno.ESHUTDOWN);
  t.equal(nbdErrnoOf(Object.assign(new Error('full'), { code: 'EDQUOT' })), NbdErrno.ENOSPC);
  t.equal(nbdErrnoOf(Object.assign(new Error('ro'), { code: 'EROFS' })), NbdErrno.EPERM);
  t.equal(nbdErrnoOf(new Error('anything else')), NbdErrno.EIO);
  t.equal(nbdErrnoOf(undefined), NbdErrno.EIO);
  t.equal(httpStatusOf(new CairnError('CAIRN_VOLUME_NOT_FOUND', 'x')), 404);
  t.equal(httpStatusOf(new Error('x')), 500);
});

t.test('CairnError keeps its cause and retryable label', async (t) => {
  const cause = new Error('root');
  const error = new CairnError('CAIRN_UNAVAILABLE', 'peer down', { cause, retryable: true });
  t.equal(error.cause, cause);
  t.equal(error.retryable, true);
  t.equal(new CairnError('CAIRN_IO', 'x').retryable, false);
});
