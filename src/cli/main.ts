/**
 * The `cairn` command line. Talks only to the control API (src/api/client): never to the store
 * or the metadata log directly. Human-readable tables by default, `--json` for scripts. Every
 * failure prints one line "cairn: <what went wrong and what to do>" and exits non-zero: 1 for an
 * error reported by the daemon, 2 for bad usage, 3 when the daemon cannot be reached.
 */
import { existsSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ApiClient, ApiError } from '../api/client';
import type { AttachmentView, AttachRequest, BusyPollView, CreateProfileRequest, ProfileView, StatusView, VolumeView } from '../api/types';
import { ApiEndpoint, defaultApiSocketCandidates, parseApiEndpoint } from '../config/config';
import { CairnError } from '../errors/cairn-error';
import { formatBytes, isPowerOfTwo, parseBytes } from '../util/units';
import { formatTable } from './table';

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

const exitUsage = 2;
const exitUnavailable = 3;

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = new Command('cairn')
    .description('Manage Cairn volumes through the cairnd control API')
    .addOption(new Option('--api <endpoint>', 'daemon API: unix:PATH or http://HOST:PORT (default: $CAIRN_API, then /run/cairn/api.sock, then the embedded node\'s socket)'))
    .addOption(new Option('--token <token>', 'API token for an http:// endpoint (default: $CAIRN_API_TOKEN)'))
    .option('--json', 'print machine-readable JSON')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError(false);

  const client = (timeoutMs?: number): ApiClient => {
    const options = program.opts<{ api?: string; token?: string }>();
    return new ApiClient({
      endpoint: resolveEndpoint(options.api, io.env), token: options.token ?? io.env['CAIRN_API_TOKEN'] ?? null,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
    });
  };
  const json = (): boolean => program.opts<{ json?: boolean }>().json === true;
  const print = (value: unknown, human: () => string): void => io.stdout((json() ? JSON.stringify(value, null, 2) : human()) + '\n');

  program.command('status').description('show the node, its pool and its listeners').action(async () => {
    const status = await client().status();
    print(status, () => formatStatus(status));
  });

  const volume = program.command('volume').description('create, list, inspect, resize and delete volumes');
  volume.command('create <name>').description('create a thin volume')
    .requiredOption('--size <size>', 'size, e.g. 10GiB, 512MiB (binary units)')
    .option('--profile <profile>', 'profile that sets replicas and extent size', undefined)
    .option('--read-only', 'create the volume read-only')
    .action(async (name: string, options: { size: string; profile?: string; readOnly?: boolean }) => {
      const sizeBytes = parseSize(options.size);
      const created = await client().createVolume({
        name, sizeBytes, ...(options.profile === undefined ? {} : { profile: options.profile }), ...(options.readOnly ? { readOnly: true } : {}),
      });
      print(created, () => `volume '${created.name}' ready: ${formatBytes(created.sizeBytes)}, ${created.replicas} replica(s)\n${created.nbdUris.map((uri) => `  ${uri}`).join('\n')}`);
    });
  volume.command('list').alias('ls').description('list volumes').action(async () => {
    const volumes = await client().listVolumes();
    print(volumes, () => volumes.length === 0 ? 'no volumes (create one with: cairn volume create NAME --size 10GiB)' : formatVolumes(volumes));
  });
  volume.command('inspect <name>').description('show one volume in detail').action(async (name: string) => {
    const found = await client().getVolume(name);
    print(found, () => formatVolume(found));
  });
  volume.command('resize <name>').description('grow a volume (volumes never shrink)')
    .requiredOption('--size <size>', 'new size, e.g. 20GiB')
    .action(async (name: string, options: { size: string }) => {
      const resized = await client().resizeVolume(name, parseSize(options.size));
      print(resized, () => [`volume '${resized.name}' is now ${formatBytes(resized.sizeBytes)}`,
        ...(resized.attachments ?? []).map((a) => (a.message !== undefined ? `${a.device}: ${a.message}`
          : `${a.device} is now ${formatBytes(a.sizeBytes)}`))].join('\n'));
    });
  volume.command('attach <name>').description('attach a volume to this host as a block device; prints the device (/dev/nbdX)')
    .option('--connections <n>', 'sockets handed to the kernel (default: one per CPU, up to 8)')
    .option('--read-only', 'attach read-only')
    .addOption(new Option('--method <method>', 'kernel interface (default auto: netlink, else ioctls)').choices(['auto', 'netlink', 'ioctl']))
    .option('--io-timeout <seconds>', 'seconds before the kernel retries a request on another socket (0 = never; default 30, ioctl 0)')
    .option('--dead-timeout <seconds>', 'seconds the kernel holds I/O while cairnd restarts (default 120; netlink only)')
    .action(async (name: string, options: { connections?: string; readOnly?: boolean; method?: AttachRequest['method']; ioTimeout?: string; deadTimeout?: string }) => {
      const request: { -readonly [K in keyof AttachRequest]: AttachRequest[K] } = {};
      if (options.connections !== undefined) request.connections = parseCount('--connections', options.connections);
      if (options.readOnly === true) request.readOnly = true;
      if (options.method !== undefined) request.method = options.method;
      if (options.ioTimeout !== undefined) request.ioTimeoutSeconds = parseCount('--io-timeout', options.ioTimeout);
      if (options.deadTimeout !== undefined) request.deadConnTimeoutSeconds = parseCount('--dead-timeout', options.deadTimeout);
      const attachment = await client(attachTimeoutMs).attachVolume(name, request);
      print(attachment, () => attachment.device);
    });
  volume.command('detach <name>').description('flush and detach a volume\'s block device from this host')
    .option('--force', 'detach even if the device is mounted (its users get I/O errors)')
    .action(async (name: string, options: { force?: boolean }) => {
      const result = await client(attachTimeoutMs).detachVolume(name, options.force === true ? { force: true } : {});
      print(result, () => (result.detached ? `volume '${name}' detached from ${result.device}` : `volume '${name}' was not attached`));
    });
  volume.command('delete <name>').alias('rm').description('delete a volume and free its space').action(async (name: string) => {
    await client().deleteVolume(nonEmpty('volume', name));
    print({ deleted: name }, () => `volume '${name}' deleted`);
  });

  const profile = program.command('profile').description('create, list and delete profiles: the replicas and extent size volumes are created with');
  profile.command('create <name>').description('create a profile (the same name and properties again is not an error)')
    .option('--replicas <n>', 'replicas of every extent (default 1)')
    .option('--extent-size <size>', 'extent size: a power of two, e.g. 256MiB (default 64MiB)')
    .option('--description <text>', 'free text shown by profile list')
    .action(async (name: string, options: { replicas?: string; extentSize?: string; description?: string }) => {
      const request: { -readonly [K in keyof CreateProfileRequest]: CreateProfileRequest[K] } = { name };
      if (options.replicas !== undefined) request.replicas = parseCount('--replicas', options.replicas, 1);
      if (options.extentSize !== undefined) request.extentBytes = parseExtentSize(options.extentSize);
      if (options.description !== undefined) request.description = options.description;
      const created = await client().createProfile(request);
      print(created, () => `profile '${created.name}' ready: ${created.replicas} replica(s), ${formatBytes(created.extentBytes)} extents\n` +
        `  use it with: cairn volume create NAME --size 10GiB --profile ${created.name}`);
    });
  profile.command('list').alias('ls').description('list profiles and how many volumes use each').action(async () => {
    const profiles = await client().listProfiles();
    print(profiles, () => formatProfiles(profiles));
  });
  profile.command('delete <name>').alias('rm').description('delete a profile no volume uses').action(async (name: string) => {
    await client().deleteProfile(nonEmpty('profile', name));
    print({ deleted: name }, () => `profile '${name}' deleted`);
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0;
      return error.exitCode === 0 ? 0 : exitUsage;
    }
    if (error instanceof UsageError) {
      io.stderr(`cairn: ${error.message}\n`);
      return exitUsage;
    }
    if (error instanceof ApiError) {
      io.stderr(`cairn: ${error.message}\n`);
      return error.code === 'CAIRN_UNAVAILABLE' ? exitUnavailable : 1;
    }
    if (error instanceof CairnError) {
      io.stderr(`cairn: ${error.message}\n`);
      return exitUsage;
    }
    io.stderr(`cairn: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }
}

class UsageError extends Error {}

/** A name argument the shell passed as '' would address the collection, not one member. */
function nonEmpty(what: string, name: string): string {
  if (name === '') throw new UsageError(`the ${what} name is empty; 'cairn ${what} list' shows the names`);
  return name;
}

/** Attach and detach wait for the kernel (a flush of a busy device can take a while). */
const attachTimeoutMs = 300_000;

/** A whole number of at most nine digits, at least `minimum`; the daemon checks the upper bounds. */
function parseCount(flag: string, text: string, minimum = 0): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < minimum) {
    throw new UsageError(`${flag} must be a whole number${minimum > 0 ? `, at least ${minimum}` : ''}, got '${text}'`);
  }
  return Number(text);
}

function parseSize(text: string): number {
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes <= 0) throw new UsageError(`'${text}' is not a size; use a number with a binary unit, e.g. 10GiB or 512MiB`);
  return bytes;
}

/** A power of two; the range the daemon accepts (limits.extentBytesMin … extentBytesMax) is the daemon's to check. */
function parseExtentSize(text: string): number {
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes <= 0) throw new UsageError(`--extent-size '${text}' is not a size; use a power of two with a binary unit, e.g. 64MiB or 256MiB`);
  if (!isPowerOfTwo(bytes)) throw new UsageError(`--extent-size ${text} is not a power of two; use e.g. 64MiB, 256MiB or 1GiB`);
  return bytes;
}

export function resolveEndpoint(flag: string | undefined, env: NodeJS.ProcessEnv): ApiEndpoint {
  const given = flag ?? env['CAIRN_API'];
  if (given !== undefined && given !== '') {
    try {
      return parseApiEndpoint('--api', given);
    } catch (error) {
      throw new UsageError((error as Error).message.replace(/^config: /, ''));
    }
  }
  const candidates = defaultApiSocketCandidates();
  const found = candidates.find((path) => existsSync(path)) ?? candidates[0] ?? '/run/cairn/api.sock';
  return { kind: 'unix', path: found };
}

function formatVolumes(volumes: readonly VolumeView[]): string {
  // The DEVICE column appears only when some volume is attached to this host.
  const attached = volumes.some((v) => (v.attachments ?? []).length > 0);
  return formatTable(
    ['NAME', 'SIZE', 'ALLOCATED', 'REPLICAS', 'PROFILE', 'STATE', 'CONNECTIONS', ...(attached ? ['DEVICE'] : [])],
    volumes.map((v) => [v.name, formatBytes(v.sizeBytes), formatBytes(v.allocatedBytes), String(v.replicas), v.profile, v.state + (v.readOnly ? ' (ro)' : ''), String(v.connections),
      ...(attached ? [(v.attachments ?? []).map(describeAttachment).join(', ') || '-'] : [])]),
    new Set([1, 2, 3, 6]),
  );
}

function formatProfiles(profiles: readonly ProfileView[]): string {
  return formatTable(
    ['NAME', 'REPLICAS', 'EXTENT SIZE', 'VOLUMES', 'DESCRIPTION'],
    profiles.map((p) => [p.name, String(p.replicas), formatBytes(p.extentBytes), String(p.volumes), p.description === '' ? '-' : p.description]),
    new Set([1, 2, 3]),
  );
}

function describeAttachment(a: AttachmentView): string {
  const device = a.device === '' ? '(none yet)' : a.device;
  return a.state === 'attached' ? device : `${device} (${a.state})`;
}

function formatVolume(v: VolumeView): string {
  const rows: Array<[string, string]> = [
    ['name', v.name], ['id', v.id], ['size', `${formatBytes(v.sizeBytes)} (${v.sizeBytes} bytes)`],
    ['allocated', formatBytes(v.allocatedBytes)], ['extent size', formatBytes(v.extentBytes)],
    ['replicas', String(v.replicas)], ['profile', v.profile], ['state', v.state], ['read-only', v.readOnly ? 'yes' : 'no'],
    ['created', v.createdAt], ['connections', String(v.connections)],
    ...v.nbdUris.map((uri, i): [string, string] => [i === 0 ? 'nbd' : '', uri]),
    ...(v.attachments ?? []).flatMap((a): Array<[string, string]> => [
      ['attached', `${describeAttachment(a)} via ${a.method}, ${a.connections} connection(s)${a.readOnly ? ', read-only' : ''}, since ${a.attachedAt}`],
      ['', `device size ${formatBytes(a.sizeBytes)}, io timeout ${a.ioTimeoutSeconds}s, dead-connection timeout ${a.deadConnTimeoutSeconds}s`],
      ...(a.message === undefined ? [] : [['', a.message] as [string, string]]),
    ]),
  ];
  return rows.map(([key, value]) => `${key.padEnd(12)} ${value}`).join('\n');
}

function formatStatus(s: StatusView): string {
  return [
    `node         ${s.nodeName} (cairn ${s.version}, up ${s.uptimeSeconds}s)`,
    `metadata     ${s.metadata.mode}, applied index ${s.metadata.appliedIndex}`,
    `volumes      ${s.volumes} (${formatBytes(s.provisionedBytes)} provisioned, ${formatBytes(s.allocatedBytes)} allocated)`,
    `pool         ${formatBytes(s.capacityBytes)} capacity, ${formatBytes(s.freeBytes)} free`,
    `nbd          ${[...s.nbd.tcp, ...(s.nbd.socket ? [`unix:${s.nbd.socket}`] : [])].join(', ') || 'no listeners'}; ${s.nbd.connections} connection(s)`,
    `busy poll    ${formatBusyPoll(s.nbd.busyPoll)}`,
  ].join('\n');
}

function formatBusyPoll(poll: BusyPollView | null): string {
  if (poll === null) return 'unknown';
  if (poll.maxMicros === 0) return 'off';
  const hitShare = poll.spins === 0 ? '' : ` (${Math.round((100 * poll.hits) / poll.spins)}% caught the next event)`;
  return `up to ${poll.maxMicros} us per idle period, now ${poll.windowMicros} us; ${poll.spins} spin(s)${hitShare}, ${poll.contended} stopped for a busy CPU, ${poll.spinSeconds.toFixed(1)} s spent spinning`;
}
