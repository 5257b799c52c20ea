/**
 * cairnd's entry point: parses flags, loads and validates the config (file, then flags on top),
 * starts the Daemon and stops it on SIGTERM/SIGINT. `--check-config` validates and exits.
 * Exit codes: 0 clean stop, 1 start-up or runtime failure, 2 bad flags or config.
 */
import { Command, CommanderError } from 'commander';
import { ConfigInput, embeddedConfigInput, loadConfigFile, validateConfig, DaemonConfig } from '../config/config';
import { CairnError, isCairnError } from '../errors/cairn-error';
import { createLogger } from '../observe/logger';
import { Daemon } from './daemon';
import { formatBytes } from '../util/units';

interface Flags {
  config?: string;
  dataDir?: string;
  nodeName?: string;
  drive?: string[];
  segmentSize?: string;
  nbdListen?: string[];
  nbdSocket?: string;
  nbdBusyPoll?: string;
  api?: string;
  logLevel?: string;
  logFormat?: string;
  embedded?: boolean;
  checkConfig?: boolean;
}

export function parseFlags(argv: readonly string[]): Flags {
  const program = new Command('cairnd')
    .description('Cairn storage daemon: serves replicated block volumes over NBD')
    .option('--config <file>', 'JSON config file (flags override it)')
    .option('--data-dir <dir>', 'data directory (metadata, lock, default drive)')
    .option('--node-name <name>', 'this node\'s name')
    .option('--drive <dir>', 'a drive directory (repeat for several)', collect, undefined)
    .option('--segment-size <size>', 'volume bytes per file on a drive for new volumes (default 1TiB; 1MiB = one file per extent)')
    .option('--nbd-listen <host:port>', 'NBD TCP listener, loopback only (repeat for several; "none" for no TCP)', collect, undefined)
    .option('--nbd-socket <path>', 'NBD Unix socket ("none" to disable)')
    .option('--nbd-busy-poll <micros>', 'longest event-loop spin for the next request, in microseconds (adaptive; 0 = off)')
    .option('--api <endpoint>', 'control API: unix:PATH or http://HOST:PORT')
    .option('--log-level <level>', 'error, warn, info or debug')
    .option('--log-format <format>', 'json or text')
    .option('--embedded', 'single local node with data under the user state dir and a 1 GiB demo volume')
    .option('--check-config', 'validate the configuration and exit')
    .exitOverride()
    .configureOutput({ writeOut: (text) => process.stdout.write(text), writeErr: (text) => process.stderr.write(text) });
  program.parse(argv, { from: 'user' });
  return program.opts<Flags>();
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function buildConfig(flags: Flags): DaemonConfig {
  const input: ConfigInput = flags.embedded ? embeddedConfigInput() : {};
  if (flags.config !== undefined) Object.assign(input, loadConfigFile(flags.config));
  if (flags.dataDir !== undefined) {
    input.dataDir = flags.dataDir;
    if (flags.embedded) {
      // The embedded defaults put sockets under the state dir; follow the data dir instead.
      delete input.nbd?.socket;
      delete input.api?.listen;
    }
  }
  if (flags.nodeName !== undefined) input.nodeName = flags.nodeName;
  if (flags.drive !== undefined) input.drives = flags.drive;
  if (flags.segmentSize !== undefined) input.segmentSize = flags.segmentSize;
  if (flags.nbdListen !== undefined) input.nbd = { ...input.nbd, listen: flags.nbdListen.filter((entry) => entry !== 'none') };
  if (flags.nbdSocket !== undefined) input.nbd = { ...input.nbd, socket: flags.nbdSocket === 'none' ? null : flags.nbdSocket };
  if (flags.nbdBusyPoll !== undefined) {
    // A number when it reads as one, so validation names the flag's text when it does not.
    const micros = /^\d+$/.test(flags.nbdBusyPoll) ? Number(flags.nbdBusyPoll) : flags.nbdBusyPoll;
    input.nbd = { ...input.nbd, busyPollMicros: micros };
  }
  if (flags.api !== undefined) input.api = { ...input.api, listen: flags.api };
  if (flags.logLevel !== undefined || flags.logFormat !== undefined) {
    input.log = { ...input.log, ...(flags.logLevel === undefined ? {} : { level: flags.logLevel }), ...(flags.logFormat === undefined ? {} : { format: flags.logFormat }) };
  }
  return validateConfig(input);
}

export async function main(argv: readonly string[]): Promise<number> {
  let config: DaemonConfig;
  let flags: Flags;
  try {
    flags = parseFlags(argv);
    config = buildConfig(flags);
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    if (isCairnError(error)) {
      process.stderr.write(`cairnd: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (flags.checkConfig) {
    process.stdout.write(`cairnd: configuration is valid\n${JSON.stringify(config, null, 2)}\n`);
    return 0;
  }
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  const daemon = new Daemon(config, logger);
  try {
    await daemon.start();
  } catch (error) {
    const message = error instanceof CairnError ? error.message : (error as Error).stack ?? String(error);
    process.stderr.write(`cairnd: cannot start: ${message}\n`);
    await daemon.stop().catch(() => undefined);
    return 1;
  }
  if (flags.embedded) printWelcome(daemon, config);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        logger.warn('second signal: exiting now', { signal });
        process.exit(1);
      }
      stopping = true;
      logger.info('stopping', { signal });
      daemon.stop().then(() => {
        logger.info('stopped');
        resolve(0);
      }, (error: unknown) => {
        logger.error('stop failed', { error });
        resolve(1);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

function printWelcome(daemon: Daemon, config: DaemonConfig): void {
  const demo = config.demoVolume;
  if (!demo) return;
  const tcp = daemon.nbdTcpAddresses()[0];
  const uri = tcp ? `nbd://${tcp}/${demo.name}` : `nbd+unix:///${demo.name}?socket=${config.nbd.socket ?? ''}`;
  const api = config.api.endpoint.kind === 'unix' ? `unix:${config.api.endpoint.path}` : `http://${config.api.endpoint.host}:${config.api.endpoint.port}`;
  process.stdout.write([
    '',
    `Cairn is running: one node, data in ${config.dataDir}`,
    `Volume '${demo.name}' (${formatBytes(demo.sizeBytes)}) is served over NBD at:`,
    `  ${uri}`,
    ...(config.nbd.socket ? [`  nbd+unix:///${demo.name}?socket=${config.nbd.socket}`] : []),
    '',
    'Try it from another terminal:',
    `  nbdinfo ${uri}`,
    `  qemu-img info ${uri}`,
    `  bin/cairn --api ${api} volume list`,
    '',
    'Stop with Ctrl-C.',
    '',
  ].join('\n'));
}
