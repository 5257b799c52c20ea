/**
 * Process entry of a KV node (kv-node.ts), for the multi-process tests and the benchmark:
 *
 *   node dist/src/control/kv-node-main.js --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
 *        --data-dir /tmp/n1 --client-listen 127.0.0.1:7101 [--cluster-id kv] [--tick-ms 100]
 *        [--election-ticks 10] [--snapshot-entries 10000] [--compaction-lag 1000] [--log-level info]
 *
 * `--peers` lists every member with the Raft address the others dial, this node included (it
 * listens on its own entry); a brand-new data directory bootstraps a cluster of exactly these
 * members. When both ports are bound the node prints one line to stdout:
 *   {"event":"ready","nodeId":1,"clientPort":7101,"raftPort":7001}
 * SIGTERM / SIGINT stop it gracefully (exit 0); a failed driver exits 1 at once (the data on
 * disk is consistent: restart it). Bad flags print the reason and exit 2.
 */
import { createLogger, type LogLevel } from '../observe/logger';
import type { PeerAddress } from '../transport/peer-link';
import { KvNode, type KvNodeOptions } from './kv-node';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface KvNodeArguments extends Omit<KvNodeOptions, 'logger' | 'onFatal'> {
  readonly logLevel: LogLevel;
}

/** "host:port" with a port in 0..65535. */
export function parseAddress(text: string, flag: string): PeerAddress {
  const match = /^(.+):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || !Number.isInteger(port) || port > 65535) throw new UsageError(`${flag}: expected host:port, got '${text}'`);
  return { host: (match[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
}

function parseCount(text: string | undefined, flag: string, minimum: number): number {
  const value = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < minimum) {
    throw new UsageError(`${flag}: expected an integer >= ${minimum}, got '${text ?? ''}'`);
  }
  return value;
}

export function parseArguments(argv: readonly string[]): KvNodeArguments {
  const flags = new Map<string, string>();
  const known = ['--id', '--peers', '--data-dir', '--client-listen', '--cluster-id', '--tick-ms', '--election-ticks', '--snapshot-entries', '--compaction-lag', '--log-level'];
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] as string;
    const value = argv[i + 1];
    if (!known.includes(flag)) throw new UsageError(`unknown flag '${flag}'`);
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    if (flags.has(flag)) throw new UsageError(`${flag} given twice`);
    flags.set(flag, value);
  }
  for (const required of ['--id', '--peers', '--data-dir', '--client-listen']) {
    if (!flags.has(required)) throw new UsageError(`${required} is required`);
  }
  const nodeId = parseCount(flags.get('--id'), '--id', 1);
  const members = new Map<number, PeerAddress>();
  for (const item of (flags.get('--peers') as string).split(',')) {
    const separator = item.indexOf('=');
    if (separator < 0) throw new UsageError(`--peers: expected id=host:port, got '${item}'`);
    const id = parseCount(item.slice(0, separator), '--peers id', 1);
    if (members.has(id)) throw new UsageError(`--peers: node ${id} listed twice`);
    members.set(id, parseAddress(item.slice(separator + 1), '--peers'));
  }
  if (!members.has(nodeId)) throw new UsageError(`--peers must include this node (${nodeId})`);
  const logLevel = flags.get('--log-level') ?? 'info';
  if (!['error', 'warn', 'info', 'debug'].includes(logLevel)) throw new UsageError(`--log-level: unknown level '${logLevel}'`);
  const optional = (flag: string, minimum: number): number | undefined => (flags.has(flag) ? parseCount(flags.get(flag), flag, minimum) : undefined);
  const tickMs = optional('--tick-ms', 1);
  const electionTicks = optional('--election-ticks', 2);
  const snapshotEntries = optional('--snapshot-entries', 1);
  const compactionLagEntries = optional('--compaction-lag', 0);
  return {
    clusterId: flags.get('--cluster-id') ?? 'cairn-kv',
    nodeId,
    members,
    dataDir: flags.get('--data-dir') as string,
    clientListen: parseAddress(flags.get('--client-listen') as string, '--client-listen'),
    logLevel: logLevel as LogLevel,
    ...(tickMs === undefined ? {} : { tickMs }),
    ...(electionTicks === undefined ? {} : { electionTicks }),
    ...(snapshotEntries === undefined ? {} : { snapshotEntries }),
    ...(compactionLagEntries === undefined ? {} : { compactionLagEntries }),
  };
}

export async function main(argv: readonly string[]): Promise<number> {
  let parsed: KvNodeArguments;
  try {
    parsed = parseArguments(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`kv-node: ${error.message}\n`);
    return 2;
  }
  const { logLevel, ...options } = parsed;
  const logger = createLogger({ level: logLevel, format: 'text' }, `kv-node.${options.nodeId}`);
  const node = await KvNode.start({
    ...options,
    logger,
    onFatal: (error) => {
      logger.error('fatal error; exiting so the node restarts from disk', { error });
      process.exit(1);
    },
  });
  process.stdout.write(`${JSON.stringify({ event: 'ready', nodeId: options.nodeId, clientPort: node.clientPort, raftPort: node.raftPort })}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  logger.info('stopping');
  await node.stop();
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`kv-node: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
