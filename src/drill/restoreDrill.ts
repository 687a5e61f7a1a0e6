// A restore drill of one restore point (issue 7 §4): restore it to scratch
// storage, boot it in an isolated QEMU, wait for its health signal, report,
// clean up. Nothing of it touches the guest's network or the original: the
// disks are sparse files in a fresh temporary directory, QEMU gets no NIC
// (or one on a restricted user network with only the health port forwarded
// to 127.0.0.1), and the QEMU process and the directory are gone afterwards.
//
// How a guest boots: from its first disk (firmware and its own boot loader),
// except a Xen PV guest, which has none a PC runs: it boots with the kernel
// and ramdisk its cfg names when they exist here, else with the kernel found
// in its image (boot loader config or newest /boot/vmlinuz-*, as pygrub
// does). A PV guest with neither gets a read-only check of every file system
// instead, reported as fsck-only — never as a pass.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { DEFAULT_HEALTH_TIMEOUT_MS, type HealthCheck, describeHealthCheck } from '../health/healthCheck';
import { type HealthResult, waitForHealth } from '../health/waitForHealth';
import { type CommandRunner, ExecFileCommandRunner } from '../hypervisor/commandRunner';
import { configString, parseXlConfig } from '../hypervisor/xen/xlConfig';
import type { Repository } from '../repo/repository';
import type { GuestSpec, GuestSpecDisk, StoredRestorePoint } from '../repo/restorePoint';
import { restoreToDirectory } from '../restore/guestRestore';
import type { DiskTarget } from '../site/guestRewrite';
import { qemuLaunch } from '../site/qemuLaunch';
import type { PipelinePool } from '../workers/pipelinePool';
import type { AcceleratorChoice } from './accelerator';
import { type FoundKernel, type PartitionCheck, checkImageFileSystems, findKernelInImage } from './diskImage';

/** What a drill waits for when the guest's settings name no check (or one a drill cannot run). */
export const DEFAULT_DRILL_HEALTH: HealthCheck = { kind: 'serial', pattern: 'login:' };
const DEFAULT_MAX_MEMORY_MIB = 2048;

export type BootMethod =
  /** The firmware boots the first disk with the guest's own boot loader. */
  | { kind: 'disk' }
  /** QEMU loads the kernel directly (a Xen PV guest). */
  | { kind: 'kernel'; from: 'config' | 'image'; kernel: string; initrd?: string; append: string; source: string };

export interface DrillOptions {
  /** A fresh scratch directory is made in here (and removed afterwards). */
  workDir: string;
  accel: AcceleratorChoice;
  /** The guest's health check from its settings; undefined: DEFAULT_DRILL_HEALTH. */
  health?: HealthCheck;
  healthTimeoutMs?: number;
  /** `scratch`: leave the restored disks and the console log for a look (QEMU is stopped anyway). */
  keep?: 'nothing' | 'scratch';
  qemuBinary?: string;
  /** The guest's memory, at most this (a drill host is rarely as big as the guest's). */
  maxMemoryMiB?: number;
  runner?: CommandRunner;
  /** Each step as it starts, for progress lines. */
  onStep?: (step: string) => void;
}

export interface DrillResult {
  guest: string;
  restorePoint: string;
  time: string;
  /** passed: booted and healthy; failed: see stage and reason; fsck-only: not booted, its file systems checked instead. */
  outcome: 'passed' | 'failed' | 'fsck-only';
  /** Where a failed drill stopped. */
  stage?: 'restore' | 'boot' | 'health' | 'fsck';
  reason?: string;
  restoreMs: number;
  /** Bytes written to the scratch disks (data only: they are sparse). */
  restoredBytes: number;
  boot?: { method: 'disk' | 'kernel-from-config' | 'kernel-from-image'; accel: AcceleratorChoice['accel']; kernelSource?: string; health: HealthResult; bootMs: number };
  fsck?: PartitionCheck[];
  notes: string[];
  /** The scratch directory, when kept. */
  kept?: string;
}

export async function drillRestorePoint(repo: Repository, pool: PipelinePool, rp: StoredRestorePoint, options: DrillOptions): Promise<DrillResult> {
  const runner = options.runner ?? new ExecFileCommandRunner();
  const scratch = fs.mkdtempSync(path.join(path.resolve(options.workDir), `ferry-drill-${rp.guest.replace(/[^A-Za-z0-9_.-]/g, '_')}-`));
  const result: DrillResult = { guest: rp.guest, restorePoint: rp.id, time: rp.time, outcome: 'failed', restoreMs: 0, restoredBytes: 0, notes: [] };
  let stopQemu: (() => Promise<void>) | undefined;
  try {
    options.onStep?.(`restoring ${rp.guest} (${rp.id.slice(0, 8)}, ${rp.time}) into ${scratch}`);
    const diskDir = path.join(scratch, 'disks');
    const started = performance.now();
    try {
      const files = await restoreToDirectory(repo, pool, rp, diskDir);
      result.restoredBytes = files.reduce((n, f) => n + f.writtenBytes, 0);
    } catch (err) {
      return fail(result, 'restore', (err as Error).message);
    } finally {
      result.restoreMs = Math.round(performance.now() - started);
    }

    const spec = drillSpec(rp);
    const diskPaths = new Map(spec.disks.map((d) => [d.name, path.join(diskDir, d.name)]));
    const boot = await chooseBoot(rp, spec, diskPaths, scratch, runner, result.notes);
    if (boot === 'fsck-only') {
      options.onStep?.(`${rp.guest}: no way to boot it here; checking its file systems instead`);
      result.fsck = [];
      for (const d of spec.disks) result.fsck.push(...await checkImageFileSystems(runner, diskPaths.get(d.name)!, d.name));
      const damaged = result.fsck.filter((c) => c.result === 'errors');
      if (damaged.length > 0) return fail(result, 'fsck', damaged.map((c) => `${c.disk} partition ${c.partition}: ${c.detail}`).join('; '));
      result.outcome = 'fsck-only';
      return result;
    }

    const { check, notes } = drillHealth(options.health, spec);
    result.notes.push(...notes);
    const forward = check.kind === 'tcp' ? await forwardFor(check, spec) : undefined;
    const startBoot = (accel: AcceleratorChoice['accel']) => {
      const runDir = path.join(scratch, `run-${accel}`);
      fs.mkdirSync(runDir);
      const launch = qemuLaunch(rp.guest, { ...spec, nics: [], memoryMiB: Math.min(spec.memoryMiB ?? 512, options.maxMemoryMiB ?? DEFAULT_MAX_MEMORY_MIB) }, {
        disks: new Map([...diskPaths].map(([name, p]): [string, DiskTarget] => [name, { path: p, format: 'raw', storage: 'file' }])),
        runDir,
        accel,
        ...(options.qemuBinary ? { qemuBinary: options.qemuBinary } : {}),
      });
      const argv = [
        ...launch.argv,
        '-no-reboot',
        ...(forward ? forward.args : ['-nic', 'none']),
        ...(boot.kind === 'kernel' ? ['-kernel', boot.kernel, ...(boot.initrd ? ['-initrd', boot.initrd] : []), '-append', boot.append] : []),
      ];
      options.onStep?.(`booting ${rp.guest} (${accel}${boot.kind === 'kernel' ? `, kernel from ${boot.source}` : ''}); waiting for ${describeHealthCheck(check)}`);
      const qemu = startQemu(argv);
      stopQemu = qemu.stop;
      return { launch, qemu };
    };
    const waitHealthy = (qemu: { exited: AbortSignal }, serialLog: string) =>
      waitForHealth(forward ? forward.check : check, {
        timeoutMs: options.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS,
        serial: { kind: 'file', path: serialLog },
        signal: qemu.exited,
        tcpProof: 'first-byte',
      });
    let accel = options.accel.accel;
    let { launch, qemu } = startBoot(accel);
    result.notes.push(...launch.notes.filter((n) => !/memory size|vCPU count/.test(n)));
    let health = await waitHealthy(qemu, launch.serialLog);
    if (health.status !== 'passed' && accel === 'kvm' && qemu.kvmFailure()) {
      // A vCPU that ran the probe can still fail at the guest's first instruction KVM must emulate
      // (nested virtualisation without unrestricted guests): QEMU stops the guest and says so.
      result.notes.push(`KVM failed while booting (${qemu.kvmFailure()}): booted again with TCG`);
      await qemu.stop();
      accel = 'tcg';
      ({ launch, qemu } = startBoot(accel));
      health = await waitHealthy(qemu, launch.serialLog);
    }
    result.boot = {
      method: boot.kind === 'disk' ? 'disk' : boot.from === 'config' ? 'kernel-from-config' : 'kernel-from-image',
      accel,
      ...(boot.kind === 'kernel' ? { kernelSource: boot.source } : {}),
      health,
      bootMs: health.elapsedMs,
    };
    if (health.status !== 'passed') {
      return fail(result, qemu.exited.aborted ? 'boot' : 'health', `${describeHealthCheck(check)} ${health.status === 'timed-out' ? `not seen within ${Math.round(health.elapsedMs / 1000)} s: ${health.reason}` : `failed: ${health.reason}`}${consoleTail(launch.serialLog)}`);
    }
    result.outcome = 'passed';
    return result;
  } finally {
    await stopQemu?.();
    if (options.keep === 'scratch') result.kept = scratch;
    else fs.rmSync(scratch, { recursive: true, force: true });
  }
}

function fail(result: DrillResult, stage: NonNullable<DrillResult['stage']>, reason: string): DrillResult {
  result.outcome = 'failed';
  result.stage = stage;
  result.reason = reason;
  return result;
}

/** The spec to boot: the restore point's, or one made from its disks (older restore points have none); disks in device order (xvda first). */
function drillSpec(rp: StoredRestorePoint): GuestSpec {
  const disks: GuestSpecDisk[] = rp.spec?.disks.length
    ? rp.spec.disks
    : rp.disks.map((d) => ({ name: d.name, origin: d.sourcePath, format: 'raw', storage: 'file', readOnly: false }));
  const byDevice = [...disks].sort((a, b) => (a.device ?? '\uffff').localeCompare(b.device ?? '\uffff', 'en', { numeric: true }));
  return { ...(rp.spec ?? { nics: [], bootGroup: 0, bootPriority: 0 }), disks: byDevice.map((d) => ({ ...d, device: undefined, format: 'raw' })) };
}

/** How the guest boots here, or fsck-only when it cannot. */
async function chooseBoot(rp: StoredRestorePoint, spec: GuestSpec, diskPaths: Map<string, string>, scratch: string, runner: CommandRunner, notes: string[]): Promise<BootMethod | 'fsck-only'> {
  if (rp.spec?.hypervisor !== 'xen') return { kind: 'disk' };
  const text = rp.config ? Buffer.from(rp.config.content, 'base64').toString('utf8') : undefined;
  let cfg: ReturnType<typeof parseXlConfig> | undefined;
  try {
    if (text !== undefined && rp.config) cfg = parseXlConfig(text, rp.config.fileName);
  } catch (err) {
    notes.push(`its xl cfg cannot be read (${(err as Error).message}); looking for a kernel in its image`);
  }
  const setting = (key: string) => (cfg ? configString(cfg, key) : undefined);
  if (setting('type') === 'hvm' || setting('builder') === 'hvm') return { kind: 'disk' };
  const kernel = setting('kernel');
  if (kernel !== undefined && fs.existsSync(kernel)) {
    const ramdisk = setting('ramdisk');
    if (ramdisk !== undefined && !fs.existsSync(ramdisk)) notes.push(`the ramdisk its cfg names, ${ramdisk}, is not on this host: booting without it`);
    const cmdline = setting('cmdline') ?? [setting('root') !== undefined ? `root=${setting('root')}` : undefined, setting('extra')].filter(Boolean).join(' ');
    return { kind: 'kernel', from: 'config', kernel, ...(ramdisk && fs.existsSync(ramdisk) ? { initrd: ramdisk } : {}), append: qemuAppend(cmdline), source: `its cfg (${kernel})` };
  }
  if (kernel !== undefined) notes.push(`the kernel its cfg names, ${kernel}, is not on this host: looking in its image`);
  const outDir = path.join(scratch, 'kernel');
  fs.mkdirSync(outDir);
  for (const [i, d] of spec.disks.entries()) {
    const found: FoundKernel | undefined = await findKernelInImage(runner, diskPaths.get(d.name)!, d.name, outDir);
    if (!found) continue;
    const letter = String.fromCharCode(97 + i);
    const args = found.args ?? (found.rootPartition !== undefined ? `root=/dev/vd${letter}${found.rootPartition || ''} ro` : '');
    return { kind: 'kernel', from: 'image', kernel: found.kernel, ...(found.initrd ? { initrd: found.initrd } : {}), append: qemuAppend(args), source: found.source };
  }
  notes.push('no kernel in its cfg that exists here and none in its image');
  return 'fsck-only';
}

/** A Xen PV command line for QEMU: xvd disks are virtio vd disks here, and the console is the first serial port. */
function qemuAppend(args: string): string {
  const mapped = args.replace(/\/dev\/xvd/g, '/dev/vd').replace(/(^|\s)console=\S+/g, '').trim();
  return `${mapped} console=ttyS0`.trim();
}

/** The check the drill runs: a command needs the guest's own network, which a drill does not give it. */
function drillHealth(check: HealthCheck | undefined, spec: GuestSpec): { check: HealthCheck; notes: string[] } {
  if (!check) return { check: DEFAULT_DRILL_HEALTH, notes: [`no health check set for this guest: waiting for ${describeHealthCheck(DEFAULT_DRILL_HEALTH)}`] };
  if (check.kind === 'command') return { check: DEFAULT_DRILL_HEALTH, notes: [`its ${describeHealthCheck(check)} needs the guest's own network, which a drill does not give it: waiting for ${describeHealthCheck(DEFAULT_DRILL_HEALTH)} instead`] };
  if (check.kind === 'tcp' && !net.isIPv4(check.host)) return { check: DEFAULT_DRILL_HEALTH, notes: [`its ${describeHealthCheck(check)} names no IPv4 address to forward to: waiting for ${describeHealthCheck(DEFAULT_DRILL_HEALTH)} instead`] };
  if (check.kind === 'tcp' && spec.nics.length === 0) return { check: DEFAULT_DRILL_HEALTH, notes: [`its ${describeHealthCheck(check)} needs a NIC, and the restore point records none: waiting for ${describeHealthCheck(DEFAULT_DRILL_HEALTH)} instead`] };
  return { check, notes: [] };
}

/**
 * A private user network for a TCP check: the guest's first NIC (its MAC and
 * model) on a QEMU user network with restrict=on — nothing leaves it — whose
 * subnet is the /24 of the checked address, and the port forwarded to a free
 * port on 127.0.0.1. QEMU accepts the forwarded connection before the guest
 * does, so the check counts the port up at the guest's first byte.
 */
async function forwardFor(check: Extract<HealthCheck, { kind: 'tcp' }>, spec: GuestSpec): Promise<{ args: string[]; check: HealthCheck }> {
  const octets = check.host.split('.').map(Number);
  const net24 = `${octets.slice(0, 3).join('.')}.0/24`;
  const hostAddress = `${octets.slice(0, 3).join('.')}.${octets[3] === 2 ? 3 : 2}`;
  const port = await freeLocalPort();
  const nic = spec.nics[0]!;
  const model = ({ virtio: 'virtio-net-pci', 'virtio-net': 'virtio-net-pci' } as Record<string, string>)[nic.model ?? 'virtio'] ?? (/^[A-Za-z0-9_-]+$/.test(nic.model ?? '') ? nic.model! : 'virtio-net-pci');
  return {
    args: [
      '-netdev', `user,id=drill0,restrict=on,net=${net24},host=${hostAddress},hostfwd=tcp:127.0.0.1:${port}-${check.host}:${check.port}`,
      '-device', `${model},netdev=drill0${nic.mac ? `,mac=${nic.mac}` : ''}`,
    ],
    check: { kind: 'tcp', host: '127.0.0.1', port },
  };
}

function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * QEMU in the foreground as a child: `exited` aborts when it ends, or when
 * KVM fails inside the guest (QEMU then stops the guest and stays up), and
 * the health wait fails at once; `kvmFailure` says what KVM said; `stop` ends it.
 */
function startQemu(argv: string[]): { exited: AbortSignal; stop: () => Promise<void>; kvmFailure: () => string | undefined } {
  const controller = new AbortController();
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let kvmFailure: string | undefined;
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr = (stderr + s).slice(-4096);
    const failed = /KVM internal error[^\n]*/.exec(stderr);
    if (failed && !kvmFailure) {
      kvmFailure = `${failed[0].trim()}${/emulation failure/.test(stderr) ? ', emulation failure' : ''}`;
      controller.abort(new Error(`QEMU stopped the guest: ${kvmFailure}`));
    }
  });
  const closed = new Promise<void>((resolve) => {
    child.on('error', (err) => { controller.abort(new Error(`cannot start ${argv[0]}: ${err.message}`)); resolve(); });
    child.on('close', (code, signal) => {
      const said = stderr.trim().split('\n').filter((l) => !/warning:/i.test(l)).pop()?.trim();
      controller.abort(new Error(`QEMU exited ${signal ? `on ${signal}` : `with ${code}`} before the guest was healthy${said ? `: ${said}` : ''}`));
      resolve();
    });
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await closed;
      clearTimeout(timer);
    }
  };
  return { exited: controller.signal, stop, kvmFailure: () => kvmFailure };
}

/** The last console lines, for a failure's reason: what the guest said last. */
function consoleTail(serialLog: string): string {
  if (!fs.existsSync(serialLog)) return '; no console output';
  const lines = fs.readFileSync(serialLog, 'utf8').replace(/\r/g, '').split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length === 0 ? '; no console output' : `; console ended with: ${JSON.stringify(lines.slice(-2).join(' | ').slice(-300))}`;
}
