// Real libvirt guests for tests: libvirtd started by scripts/testbed/libvirtd.sh,
// the tiny writing guest from scripts/testbed/guest.sh booted directly from
// its kernel and initrd under TCG (type='qemu'), each test with its own
// writable disk copies. Everything is undone in the scratch clean-up, also
// when a test failed: domains destroyed and undefined with their checkpoint
// metadata, the daemons stopped if this file started them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mustRun, runCommand } from './system';
import type { Scratch } from './scratch';
import type { RecordedReply } from './recordedRunner';

const REPO = path.resolve(__dirname, '..', '..');
export const LIBVIRT_URI = 'qemu:///system';

const FIXTURES = path.join(REPO, 'tests', 'fixtures', 'libvirt');

/** A RecordedCommandRunner reply for `virsh -c qemu:///system ARGS` with fixture NAME's recorded stdout, stderr and exit code. */
export function recordedVirsh(args: string[], name: string, extra: Partial<RecordedReply> = {}): RecordedReply {
  const read = (ext: string) => {
    const file = path.join(FIXTURES, `${name}.${ext}`);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  };
  return { cmd: 'virsh', args: ['-c', LIBVIRT_URI, ...args], stdout: read('stdout'), stderr: read('stderr'), code: Number(read('code').trim() || '0'), ...extra };
}

export function virsh(...args: string[]): Promise<string> {
  return mustRun('virsh', ['-c', LIBVIRT_URI, ...args], { timeoutMs: 120_000 });
}

/** Starts (or reuses) libvirtd; stops it at clean-up if it was started here. */
export async function useLibvirtd(scratch: Scratch): Promise<void> {
  const dir = scratch.mkdir('libvirtd');
  scratch.defer(() => mustRun('bash', [path.join(REPO, 'scripts/testbed/libvirtd.sh'), 'stop', dir]));
  await mustRun('bash', [path.join(REPO, 'scripts/testbed/libvirtd.sh'), 'start', dir], { timeoutMs: 180_000 });
}

export interface GuestFiles {
  kernel: string;
  initrd: string;
  /** Sparse raw image with an empty ext4 file system; copy it, never boot it. */
  disk: string;
}

/** Kernel, initrd and an empty disk image from scripts/testbed/guest.sh (cached after the first build). */
export async function buildGuestFiles(scratch: Scratch): Promise<GuestFiles> {
  const dir = scratch.mkdir('guest-build');
  await mustRun('bash', [path.join(REPO, 'scripts/testbed/guest.sh'), 'build', dir], { timeoutMs: 300_000 });
  const kernel = ['vmlinux', 'vmlinuz'].map((k) => path.join(dir, k)).find((k) => fs.existsSync(k));
  if (!kernel) throw new Error(`guest.sh build left no kernel in ${dir}`);
  return { kernel, initrd: path.join(dir, 'initrd.img'), disk: path.join(dir, 'disk.img') };
}

/** A writable copy of the guest's empty disk: sparse raw, or qcow2 (which libvirt checkpoints need). */
export async function copyDisk(files: GuestFiles, to: string, format: 'raw' | 'qcow2'): Promise<string> {
  if (format === 'raw') await mustRun('cp', ['--sparse=always', files.disk, to]);
  else await mustRun('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', files.disk, to]);
  return to;
}

export interface DomainSpec {
  name: string;
  files: GuestFiles;
  disks: { path: string; format: 'raw' | 'qcow2' }[];
  /** The serial console goes to this file; the guest prints its markers there. */
  consoleLog: string;
  memoryMiB?: number;
  /** A virtio channel for the QEMU guest agent (no agent runs in this guest). */
  agentChannel?: boolean;
  mac?: string;
  /** An IDE CD-ROM drive with no medium, as many real domains have. */
  emptyCdrom?: boolean;
  /** Seconds between the guest's writes. */
  tick?: number;
}

export function domainXml(spec: DomainSpec): string {
  const letters = 'abcdefghijklmnop';
  const disks = spec.disks
    .map((d, i) => `
    <disk type='file' device='disk'>
      <driver name='qemu' type='${d.format}'/>
      <source file='${d.path}'/>
      <target dev='vd${letters[i]}' bus='virtio'/>
    </disk>`)
    .join('');
  return `<domain type='qemu'>
  <name>${spec.name}</name>
  <memory unit='MiB'>${spec.memoryMiB ?? 192}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${spec.files.kernel}</kernel>
    <initrd>${spec.files.initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet loglevel=3 ferry.tick=${spec.tick ?? 0.1}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <!-- QEMU runs as root for this test domain: the scratch directories are 0700
       and libvirt must not chown the shared, cached kernel. -->
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>${disks}
    <interface type='user'>
      <mac address='${spec.mac ?? '52:54:00:fe:00:01'}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='${spec.consoleLog}'/><target port='0'/></serial>${spec.agentChannel ? `
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>` : ''}
${spec.emptyCdrom ? `
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/><readonly/></disk>` : ''}
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/** Defines the domain (undefined again at clean-up, with its checkpoint metadata). */
export async function defineDomain(scratch: Scratch, spec: DomainSpec): Promise<void> {
  const xmlFile = scratch.path(`${spec.name}.xml`);
  fs.writeFileSync(xmlFile, domainXml(spec));
  scratch.defer(() => removeDomain(spec.name));
  await virsh('define', xmlFile);
}

/** Destroys and undefines a domain, whatever state it is in; gone already is fine. */
export async function removeDomain(name: string): Promise<void> {
  await runCommand('virsh', ['-c', LIBVIRT_URI, 'destroy', name], { timeoutMs: 60_000 });
  const r = await runCommand('virsh', ['-c', LIBVIRT_URI, 'undefine', name, '--checkpoints-metadata'], { timeoutMs: 60_000 });
  if (r.code !== 0 && !/failed to get domain|Domain not found/.test(r.stderr)) {
    throw new Error(`virsh undefine ${name} failed: ${r.stderr.trim()}`);
  }
}

/**
 * The preamble of every test against the real libvirtd: libvirtd running for
 * this file, and the test guest's kernel, initrd and empty disk built.
 */
export async function useLibvirtGuestFiles(scratch: Scratch): Promise<GuestFiles> {
  await useLibvirtd(scratch);
  return buildGuestFiles(scratch);
}

/** Defines the domain (undefined at clean-up) and boots it until the guest says it is ready. */
export async function startNewDomain(scratch: Scratch, spec: DomainSpec): Promise<void> {
  await defineDomain(scratch, spec);
  await startDomain(spec);
}

/** The domain's state as `virsh domstate` prints it (running, paused, shut off, ...). */
export async function domstate(name: string): Promise<string> {
  return (await virsh('domstate', name)).trim();
}

/** Starts a defined domain and waits for the guest's ready line on its console. */
export async function startDomain(spec: DomainSpec, timeoutMs = 180_000): Promise<void> {
  await virsh('start', spec.name);
  await waitForConsole(spec.consoleLog, /^FERRY-GUEST-READY/m, timeoutMs, spec.name);
}

/** Polls the console log until `pattern` matches (guest output, never a fixed sleep). */
export async function waitForConsole(file: string, pattern: RegExp, timeoutMs: number, what = file): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (pattern.test(text)) return text;
    const error = /^FERRY-GUEST-ERROR.*$/m.exec(text);
    if (error) throw new Error(`${what}: ${error[0]}`);
    if (Date.now() > deadline) {
      throw new Error(`${what}: no ${pattern} on the console after ${timeoutMs / 1000} s; tail: ${text.slice(-400)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Files the guest has reported as written and fsynced, in order (`FERRY-WROTE data/b1-000001 12.3`). */
export function writtenFiles(consoleLog: string): string[] {
  const text = fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, 'utf8') : '';
  return [...text.matchAll(/^FERRY-WROTE (\S+) /gm)].map((m) => m[1]!);
}

/** Waits until the guest has reported `count` more written files than `after`. */
export async function waitForWrites(consoleLog: string, after: number, count: number, timeoutMs = 120_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const files = writtenFiles(consoleLog);
    if (files.length >= after + count) return files;
    if (Date.now() > deadline) throw new Error(`guest wrote ${files.length - after} of ${count} files within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The content the guest writes into each data file: its own name repeated, 4096 bytes. */
export function expectedFileContent(name: string): Buffer {
  return Buffer.from(`${name}\n`.repeat(Math.ceil(4096 / (name.length + 1))).slice(0, 4096));
}

/** Reads a file out of an ext4 image without mounting it (debugfs from e2fsprogs). */
export async function readFromExt4(image: string, file: string): Promise<Buffer> {
  const r = await runCommand('debugfs', ['-R', `cat /${file}`, image]);
  if (r.code !== 0) throw new Error(`debugfs cat /${file} ${image} failed: ${r.stderr}`);
  return Buffer.from(r.stdout, 'utf8');
}

/**
 * `fsck.ext4 -fn` (a full check that changes nothing) of the file system as a
 * mount would find it: on a copy at `copyTo` whose journal was replayed first
 * (`e2fsck -E journal_only`), as the kernel does at mount. A live copy is
 * crash-consistent: metadata the guest committed to its journal but not yet to
 * its home blocks reads as damage without the replay, more often the sooner
 * the copy follows the writes. Returns the check's exit code and output; the
 * copy is removed.
 */
export async function fsckReadOnly(image: string, copyTo: string): Promise<{ code: number | null; output: string }> {
  await mustRun('cp', ['--sparse=always', image, copyTo]);
  try {
    const replay = await runCommand('e2fsck', ['-E', 'journal_only', '-y', copyTo]);
    // 0: nothing to replay, 1: replayed.
    if (replay.code !== 0 && replay.code !== 1) return { code: replay.code, output: `journal replay: ${replay.stdout}${replay.stderr}` };
    const r = await runCommand('fsck.ext4', ['-fn', copyTo]);
    return { code: r.code, output: r.stdout + r.stderr };
  } finally {
    fs.rmSync(copyTo, { force: true });
  }
}
