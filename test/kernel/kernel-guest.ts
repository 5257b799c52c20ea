/**
 * Goal: prove kernel attach in a real kernel. This host's kernel has no nbd driver, so a qemu
 * guest boots Debian's kernel with nbd.ko, node and the built project in an initramfs, runs
 * cairnd inside, and attaches a volume through the real driver: netlink and ioctls, 1 and 4
 * connections, O_DIRECT pattern I/O, blkdiscard, ext4 + e2fsck, resize while attached, and a
 * kill -9 (then a SIGTERM) of cairnd under a running dd that must finish without an I/O error.
 *
 * Method: test/kernel/build-initramfs.sh builds the initramfs in a temp dir; the guest's /init
 * (guest-init.sh) prints one `CAIRN-STEP name ok|fail seconds detail` line per step on the serial
 * console and a final `CAIRN-VERDICT`; this file boots the guest, turns each line into an
 * assertion and reports the wall time. No network: the guest has no NIC, cairnd and its
 * clients talk over Unix sockets inside it. TCG by default; KVM only if a probe shows the guest
 * really reaching /init under it (nested hypervisors often hang in early boot).
 *
 * Run with `npm run test:kernel` (not part of `npm test`: it takes minutes). Needs the tools
 * .ci/install-kernel-test-tools installs. CAIRN_KERNEL_ACCEL=tcg|kvm|auto (default auto),
 * CAIRN_KERNEL_KEEP=1 keeps the temp dir.
 */
import t from 'tap';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repoRoot = resolve(__dirname, '..', '..');
/** The whole guest run must end within this (the CI budget is 15 minutes for this test). */
const guestTimeoutMs = 12 * 60_000;
/** How long a KVM guest may take to reach /init before KVM counts as not booting. */
const kvmProbeMs = 20_000;
const expectedSteps = [
  'boot', 'modules', 'cairnd-start', 'volume-create',
  'netlink-1-attach', 'netlink-1-io', 'netlink-1-detach',
  'netlink-4-attach', 'netlink-4-io', 'netlink-4-ext4', 'netlink-4-detach',
  'ioctl-1-attach', 'ioctl-1-io', 'ioctl-1-detach',
  'ioctl-4-attach', 'ioctl-4-io', 'ioctl-4-detach',
  'restart-attach', 'resize', 'kill9-restart', 'sigterm-restart', 'restart-detach', 'cairnd-stop',
];

interface GuestRun {
  readonly accel: string;
  readonly wallMs: number;
  readonly serial: string;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
}

t.setTimeout(15 * 60_000);

const work = mkdtempSync(join(tmpdir(), 'cairn-kernel-'));
t.teardown(() => {
  if (process.env['CAIRN_KERNEL_KEEP'] === '1') t.comment(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
});

void t.test('the attach path works in a real kernel (qemu guest)', async (t) => {
  for (const tool of ['qemu-system-x86_64', 'cpio', 'mke2fs', 'e2fsck']) {
    t.ok(which(tool), `${tool} is installed (bash .ci/install-kernel-test-tools)`);
  }
  t.ok(existsSync('/bin/busybox'), 'busybox-static is installed');
  const buildStarted = Date.now();
  const build = spawnSync('bash', [join(repoRoot, 'test', 'kernel', 'build-initramfs.sh'), work], { encoding: 'utf8' });
  t.equal(build.status, 0, `initramfs built: ${build.stdout.trim()} ${build.stderr.trim()}`);
  if (build.status !== 0) return;
  t.comment(`${build.stdout.trim()} in ${((Date.now() - buildStarted) / 1000).toFixed(1)} s`);
  const kernel = readFileSync(join(work, 'kernel.version'), 'utf8').trim();

  const run = await bootGuest(kernel);
  t.comment(`guest (${run.accel}) ran ${(run.wallMs / 1000).toFixed(1)} s wall${run.timedOut ? ', TIMED OUT' : ''}, qemu exit ${run.exitCode}`);
  const steps = new Map<string, { result: string; seconds: string; detail: string }>();
  for (const line of run.serial.split(/\r?\n/)) {
    const match = /^CAIRN-STEP (\S+) (ok|fail) (\S+) ?(.*)$/.exec(line.trim());
    if (match !== null) steps.set(match[1] ?? '', { result: match[2] ?? '', seconds: match[3] ?? '', detail: match[4] ?? '' });
  }
  for (const name of expectedSteps) {
    const step = steps.get(name);
    t.equal(step?.result, 'ok', `${name}: ${step === undefined ? 'did not run' : `${step.seconds} s, ${step.detail}`}`);
  }
  const verdict = /CAIRN-VERDICT (PASS|FAIL)/.exec(run.serial)?.[1];
  t.equal(verdict, 'PASS', 'the guest reports PASS');
  t.notOk(run.timedOut, 'the guest powered off by itself');
  if (verdict !== 'PASS') t.comment(`serial console (last 6000 characters):\n${run.serial.slice(-6000)}`);
});

function which(tool: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((directory) => {
    try {
      accessSync(join(directory, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function bootGuest(kernel: string): Promise<GuestRun> {
  const accel = process.env['CAIRN_KERNEL_ACCEL'] ?? 'auto';
  if (accel === 'kvm' || (accel === 'auto' && kvmUsable())) {
    const probe = await runQemu(kernel, 'kvm', accel === 'kvm' ? guestTimeoutMs : kvmProbeMs);
    if (/CAIRN-GUEST init/.test(probe.serial) || accel === 'kvm') return probe;
    t.comment(`KVM did not reach /init (${probe.timedOut ? `no sign within ${kvmProbeMs / 1000} s` : `qemu exited ${probe.exitCode}`}); using TCG`);
  }
  return runQemu(kernel, 'tcg', guestTimeoutMs);
}

/**
 * Boots the guest; with accel kvm and a probe deadline, the deadline only applies until /init
 * has spoken (then the full guest timeout applies).
 */
function runQemu(kernel: string, accel: 'kvm' | 'tcg', firstDeadlineMs: number): Promise<GuestRun> {
  const args = [
    ...(accel === 'kvm' ? ['-accel', 'kvm'] : ['-accel', 'tcg,thread=multi']),
    '-m', '2048', '-smp', '2', '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', `/boot/vmlinuz-${kernel}`, '-initrd', join(work, 'initrd.cpio.gz'),
    '-append', 'console=ttyS0 panic=-1 quiet',
  ];
  const started = Date.now();
  const log = createWriteStream(join(work, `serial-${accel}.log`));
  return new Promise((resolvePromise) => {
    const child: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let serial = '';
    let timedOut = false;
    const onOutput = (chunk: Buffer): void => {
      const text = chunk.toString('latin1');
      serial += text;
      log.write(chunk);
      if (accel === 'kvm' && firstDeadlineMs < guestTimeoutMs && /CAIRN-GUEST init/.test(serial)) {
        clearTimeout(timer);
        timer = setTimeout(expire, guestTimeoutMs - (Date.now() - started));
      }
    };
    const expire = (): void => {
      timedOut = true;
      child.kill('SIGKILL');
    };
    let timer = setTimeout(expire, firstDeadlineMs);
    child.stdout?.on('data', onOutput);
    child.stderr?.on('data', onOutput);
    child.on('close', (exitCode) => {
      clearTimeout(timer);
      log.end();
      resolvePromise({ accel, wallMs: Date.now() - started, serial, exitCode, timedOut });
    });
  });
}
