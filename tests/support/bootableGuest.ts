// Bootable "identity" guests for site-restore tests (scripts/testbed/bootdisk.sh):
// a raw disk that QEMU boots from its own MBR, with no -kernel/-initrd, and
// that prints on its serial console
//   FERRY-GUEST name=<identity> sum=<sha256 of its data>
// so a test can prove that a restored disk is the right guest, intact. Given
// a virtio NIC it serves that line over HTTP on port 80 (a TCP health
// signal). The guest never writes to its disk. Every QEMU started here is stopped at the
// scratch's clean-up, also when a test failed.
import { createCipheriv, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Scratch } from './scratch';
import { mustRun, runCommand } from './system';

const BOOTDISK_SH = path.resolve(__dirname, '..', '..', 'scripts', 'testbed', 'bootdisk.sh');

export interface BootableGuestDisk {
  name: string;
  /** The raw disk image (MBR, FAT boot partition, ext4 data partition). */
  path: string;
  /** sha256 (hex) of the guest's data: what it prints as `sum=` when it boots. */
  sum: string;
  /** Byte offset in the image of the data's first byte (the data is one contiguous run). */
  dataOffset: number;
  dataLength: number;
  sizeBytes: number;
}

export interface GuestIdentity {
  name: string;
  sum: string;
}

/**
 * `bytes` of pseudo-random data determined by `seed` (AES-128-CTR of zeros
 * under a key from the seed): different seeds give different data, the same
 * seed the same data, and no block is all zeros.
 */
export function guestData(seed: string, bytes: number): Buffer {
  const key = createHash('sha256').update(`ferry-guest-data:${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

/**
 * Builds guest `name`'s bootable raw disk at `diskPath` holding `data` (default:
 * 2 MiB of `guestData(name)`). `address` (a.b.c.d/n) is what the guest gives
 * its eth0 when it has a virtio NIC (default 10.0.2.15/24, QEMU user
 * networking's guest address). The boot partition is cached (the first build
 * downloads the Debian kernel); each disk then takes about a second.
 */
export async function buildBootableGuest(
  diskPath: string,
  name: string,
  data: Buffer = guestData(name, 2 * 1024 * 1024),
  options: { address?: string } = {},
): Promise<BootableGuestDisk> {
  const dataFile = `${diskPath}.data-${process.pid}`;
  fs.writeFileSync(dataFile, data);
  try {
    const env = { ...process.env, ...(options.address ? { FERRY_BOOTDISK_ADDRESS: options.address } : {}) };
    const out = await mustRun('bash', [BOOTDISK_SH, 'build', diskPath, name, dataFile], { timeoutMs: 600_000, env });
    const fields = new Map(out.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
    const field = (k: string): string => {
      const v = fields.get(k);
      if (v === undefined) throw new Error(`bootdisk.sh printed no ${k}= for ${name}: ${out}`);
      return v;
    };
    return {
      name,
      path: diskPath,
      sum: field('sum'),
      dataOffset: Number(field('data_offset')),
      dataLength: Number(field('data_length')),
      sizeBytes: Number(field('size')),
    };
  } finally {
    fs.rmSync(dataFile, { force: true });
  }
}

/** The identity line in a guest's console output, if it has printed it. */
export function parseGuestIdentity(consoleText: string): GuestIdentity | undefined {
  const m = /^FERRY-GUEST name=(\S+) sum=([0-9a-f]{64})\r?$/m.exec(consoleText);
  return m ? { name: m[1]!, sum: m[2]! } : undefined;
}

/**
 * Waits (polling, never a fixed sleep) until the console log `serialLog` shows
 * the guest's identity and ready lines; fails at once on FERRY-GUEST-ERROR or
 * when `isAlive` says the emulator is gone. For guests started by anything
 * (a test, ferry's own launcher, libvirt) that logs the serial console to a file.
 */
export async function waitForGuestIdentity(
  serialLog: string,
  options: { timeoutMs?: number; isAlive?: () => boolean } = {},
): Promise<GuestIdentity> {
  const timeoutMs = options.timeoutMs ?? 240_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = fs.existsSync(serialLog) ? fs.readFileSync(serialLog, 'utf8') : '';
    const identity = parseGuestIdentity(text);
    // READY comes after the network is up, when the guest has a NIC.
    if (identity && /^FERRY-GUEST-READY /m.test(text)) return identity;
    const error = /^FERRY-GUEST-ERROR .*$/m.exec(text);
    const tail = () => text.slice(-600);
    if (error) throw new Error(`guest on ${serialLog} failed to boot: ${error[0]}`);
    if (options.isAlive && !options.isAlive()) throw new Error(`guest on ${serialLog} exited before its identity line; console tail:\n${tail()}`);
    if (Date.now() > deadline) throw new Error(`guest on ${serialLog}: no identity line within ${timeoutMs / 1000} s; console tail:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface BootedGuest {
  name: string;
  serialLog: string;
  pid: number;
  /** What the guest printed when it booted. */
  identity: GuestIdentity;
  isAlive(): boolean;
  stop(): Promise<void>;
}

function qemuIsRunning(pid: number, name: string): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const running = stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    // Pids get reused: only a QEMU with this guest's name counts.
    return running && cmdline.includes('-name') && cmdline[cmdline.indexOf('-name') + 1] === name;
  } catch {
    return false;
  }
}

/**
 * Boots `diskPath` (raw, or qcow2 when it ends in .qcow2) under QEMU TCG from
 * the disk alone: `-drive if=virtio`, no -kernel, and no network unless
 * `httpForward` asks for a user-mode virtio NIC that forwards 127.0.0.1:<port>
 * to the guest's port 80 (at `guestAddress`, default 10.0.2.15). Returns once
 * the guest printed its identity (boot takes 6-15 s on a busy 2-core machine;
 * the timeout is generous). Stopped at `scratch`'s clean-up.
 */
export async function bootGuestDisk(
  scratch: Scratch,
  diskPath: string,
  options: {
    name?: string;
    memoryMiB?: number;
    timeoutMs?: number;
    httpForward?: { port: number; guestAddress?: string };
  } = {},
): Promise<BootedGuest> {
  const name = options.name ?? path.basename(diskPath).replace(/\.[^.]*$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new Error(`guest name '${name}' must be letters, digits, _ . -`);
  if (diskPath.includes(',')) throw new Error(`disk path ${diskPath} contains a comma, which QEMU's option syntax cannot take`);
  const dir = scratch.mkdir('booted-guests');
  const serialLog = path.join(dir, `${name}.serial`);
  const pidFile = path.join(dir, `${name}.pid`);
  const log = path.join(dir, `${name}.log`);
  fs.rmSync(serialLog, { force: true });
  fs.rmSync(pidFile, { force: true });
  const format = diskPath.endsWith('.qcow2') ? 'qcow2' : 'raw';
  const fwd = options.httpForward;
  const nic = fwd
    ? `user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${fwd.port}-${fwd.guestAddress ?? '10.0.2.15'}:80`
    : 'none';
  let pid = 0;
  const isAlive = () => pid > 0 && qemuIsRunning(pid, name);
  const stop = async (): Promise<void> => {
    if (!isAlive()) return;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && isAlive(); i++) await new Promise((r) => setTimeout(r, 100));
    if (isAlive()) process.kill(pid, 'SIGKILL');
  };
  // Registered before the start, so even a guest that never gets ready is killed.
  scratch.defer(stop);
  const args = [
    '-name', name, '-accel', 'tcg', '-m', String(options.memoryMiB ?? 256), '-smp', '1',
    '-display', 'none', '-no-reboot', '-monitor', 'none', '-nic', nic,
    '-serial', `file:${serialLog}`,
    '-drive', `file=${path.resolve(diskPath)},format=${format},if=virtio`,
    '-pidfile', pidFile, '-daemonize',
  ];
  const r = await runCommand('qemu-system-x86_64', args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`qemu-system-x86_64 failed to start ${name} (exit ${r.code}): ${r.stderr.trim()}`);
  fs.writeFileSync(log, r.stderr);
  pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  const identity = await waitForGuestIdentity(serialLog, { timeoutMs: options.timeoutMs, isAlive });
  return { name, serialLog, pid, identity, isAlive, stop };
}

export interface ConsoleEvent {
  /** The console log it appeared in. */
  log: string;
  /** `created` when the log first existed, else the line. */
  line: string;
  /** Which poll round saw it first: rounds are ordered, so a smaller round means seen earlier. */
  round: number;
  time: Date;
}

/**
 * Records when each console log appears and when each of its lines first
 * shows, polling every `intervalMs` (default 50). Each round reads the logs
 * in the reverse of the order given, so when something in a later log is
 * caused by a line of an earlier one (a guest started once another is up),
 * that line is never recorded in a later round than its effect.
 */
export function watchConsoles(logs: string[], intervalMs = 50): { events: ConsoleEvent[]; stop(): ConsoleEvent[] } {
  const events: ConsoleEvent[] = [];
  const seen = new Map<string, Set<string>>(logs.map((l) => [l, new Set<string>()]));
  let round = 0;
  const poll = () => {
    round++;
    for (const log of [...logs].reverse()) {
      let text: string;
      try {
        text = fs.readFileSync(log, 'utf8');
      } catch {
        continue;
      }
      const lines = seen.get(log)!;
      const record = (line: string) => {
        if (lines.has(line)) return;
        lines.add(line);
        events.push({ log, line, round, time: new Date() });
      };
      record('created');
      // Only complete lines: a line still being written shows next round.
      for (const line of text.split('\n').slice(0, -1)) record(line.replace(/\r$/, ''));
    }
  };
  const timer = setInterval(poll, intervalMs);
  poll();
  return {
    events,
    stop() {
      clearInterval(timer);
      poll();
      return events;
    },
  };
}
