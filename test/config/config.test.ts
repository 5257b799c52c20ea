// Goal: config validation fills defaults and names the field, the bad value and the fix for every
// rejection. Method: valid inputs with expected results; invalid inputs with expected messages.
import t from 'tap';
import { embeddedConfigInput, isLoopbackHost, parseApiEndpoint, parseHostPort, validateConfig } from '../../src/config/config';
import { throwsCode } from '../helpers/assertions';

t.test('defaults: loopback NBD on 10809, a socket and API socket in the data dir, one drive', async (t) => {
  const config = validateConfig({ nodeName: 'n1', dataDir: '/srv/cairn' });
  t.same(config.nbd.listen, [{ host: '127.0.0.1', port: 10809 }]);
  t.equal(config.nbd.socket, '/srv/cairn/nbd.sock');
  t.same(config.api.endpoint, { kind: 'unix', path: '/srv/cairn/api.sock' });
  t.same(config.drives, ['/srv/cairn/drives/0']);
  t.equal(config.demoVolume, null);
  t.equal(config.nbd.busyPollMicros, 200, 'the event loop spins up to 200 us by default');
  t.equal(validateConfig({ nbd: { busyPollMicros: 0 } }).nbd.busyPollMicros, 0, '0 turns busy polling off');
  t.equal(validateConfig({ nbd: { busyPollMicros: 10_000 } }).nbd.busyPollMicros, 10_000);
  t.equal(config.segmentBytes, null, 'segment size: the store\'s default');
  t.equal(validateConfig({ segmentSize: '64GiB' }).segmentBytes, 64 * 1024 ** 3);
  t.equal(validateConfig({ segmentSize: 1024 ** 2 }).segmentBytes, 1024 ** 2, 'a number of bytes; 1 MiB keeps one file per extent');
});

t.test('the embedded default validates and has a 1 GiB demo volume', async (t) => {
  const config = validateConfig(embeddedConfigInput());
  t.same(config.demoVolume, { name: 'demo', sizeBytes: 1024 ** 3 });
  t.match(config.dataDir, /cairn$/);
});

const rejections: Array<[string, object, RegExp]> = [
  ['unknown keys', { nodeNmae: 'x' }, /nodeNmae: unknown setting/],
  ['bad node names', { nodeName: 'Node_1' }, /nodeName: 'Node_1' must be lower-case/],
  ['non-loopback NBD addresses', { nbd: { listen: ['0.0.0.0:10809'] } }, /not a loopback address; NBD without TLS/],
  ['malformed listen addresses', { nbd: { listen: ['10809'] } }, /expected HOST:PORT/],
  ['ports past 65535', { nbd: { listen: ['127.0.0.1:70000'] } }, /out of range/],
  ['host names other than localhost', { nbd: { listen: ['example.com:10809'] } }, /not an IP address/],
  ['no listener at all', { nbd: { listen: [], socket: null } }, /neither a TCP listener nor a socket/],
  ['a TCP API without a token', { api: { listen: 'http://127.0.0.1:9000' } }, /needs a token/],
  ['a bad API endpoint', { api: { listen: 'ftp://x' } }, /expected unix:PATH or http/],
  ['an empty drive list', { drives: [] }, /drives: expected a non-empty list/],
  ['duplicate drives', { drives: ['/a', '/a'] }, /same directory twice/],
  ['a bad log level', { log: { level: 'loud' } }, /log.level: expected error, warn, info or debug/],
  ['a bad demo size', { demoVolume: { name: 'd', size: 'big' } }, /demoVolume.size/],
  ['a bad shutdown timeout', { shutdownTimeoutSeconds: -1 }, /shutdownTimeoutSeconds/],
  ['a segment size that is no size', { segmentSize: 'huge' }, /segmentSize: expected a power of two from 1MiB to 1PiB .*got "huge"/],
  ['a segment size that is no power of two', { segmentSize: '3MiB' }, /segmentSize: expected a power of two/],
  ['a segment size below 1 MiB', { segmentSize: '512KiB' }, /segmentSize: expected a power of two/],
  ['a segment size past 1 PiB', { segmentSize: '2PiB' }, /segmentSize: expected a power of two/],
  ['a non-string data dir', { dataDir: 5 }, /dataDir: expected a non-empty string/],
  ['unknown NBD settings', { nbd: { busyPoll: 5 } }, /nbd.busyPoll: unknown setting \(known: listen, socket, busyPollMicros\)/],
  ['a negative busy poll', { nbd: { busyPollMicros: -1 } }, /nbd.busyPollMicros: expected an integer number of microseconds in \[0, 10000\] \(0 turns busy polling off\), got -1/],
  ['a fractional busy poll', { nbd: { busyPollMicros: 1.5 } }, /nbd.busyPollMicros: .*got 1.5/],
  ['a busy poll past 10 ms', { nbd: { busyPollMicros: 10_001 } }, /nbd.busyPollMicros: .*got 10001/],
  ['a busy poll given as text', { nbd: { busyPollMicros: '200us' } }, /nbd.busyPollMicros: .*got "200us"/],
];
for (const [what, input, message] of rejections) {
  t.test(`rejects ${what} with a clear message`, async (t) => {
    throwsCode(t, () => validateConfig(input), 'CAIRN_CONFIG', message);
  });
}

t.test('host:port forms', async (t) => {
  t.same(parseHostPort('x', '[::1]:10809'), { host: '::1', port: 10809 });
  t.same(parseHostPort('x', ':0'), { host: '127.0.0.1', port: 0 });
  t.same(parseApiEndpoint('x', 'unix:/run/x.sock'), { kind: 'unix', path: '/run/x.sock' });
  t.same(parseApiEndpoint('x', 'http://127.0.0.1:8080'), { kind: 'tcp', host: '127.0.0.1', port: 8080 });
  t.ok(isLoopbackHost('127.0.0.2'));
  t.ok(isLoopbackHost('::1'));
  t.notOk(isLoopbackHost('10.0.0.1'));
});
