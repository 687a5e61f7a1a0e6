// Real QEMU (TCG) test guests from scripts/testbed/guest.sh: a tiny Linux
// whose /init keeps writing numbered files to an ext4 file system on its
// virtio disk and reports each one on the serial console once fsynced.
// Every guest started here is stopped at the scratch's clean-up, also when a
// test failed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Scratch } from './scratch';
import { mustRun, runCommand } from './system';

const GUEST_SH = path.resolve(__dirname, '..', '..', 'scripts', 'testbed', 'guest.sh');

export interface TestGuest {
  name: string;
  dir: string;
  qmpSocket: string;
  serialLog: string;
  /** vda, the disk the guest writes to. */
  diskPath: string;
  pid: number;
  /** Files the guest reported as written and fsynced so far (`data/b1-000042`), in order. */
  wroteFiles(): string[];
  /** Waits until the console shows a line matching `pattern` (polling, never a fixed sleep). */
  waitForConsole(pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Waits until the guest has reported `count` more files than now. */
  waitForMoreWrites(count: number, timeoutMs?: number): Promise<void>;
  isAlive(): boolean;
  stop(): Promise<void>;
}

/** Builds (cached) the guest's kernel, initramfs and disk into `dir`. */
export async function buildGuestFiles(dir: string): Promise<void> {
  await mustRun('bash', [GUEST_SH, 'build', dir], { timeoutMs: 600_000 });
}

/**
 * Boots a guest in `scratch` and waits for its ready line. `disks` (vda, vdb,
 * ...; `.qcow2` ones attached as qcow2) default to a fresh copy of the built
 * empty ext4 disk (raw); the guest writes to vda. Boot takes 3-15 s under TCG
 * on a busy 2-core machine; the timeout is generous.
 */
export async function startGuest(
  scratch: Scratch,
  name: string,
  options: { disks?: string[]; env?: Record<string, string> } = {},
): Promise<TestGuest> {
  const dir = scratch.mkdir('guests');
  if (!fs.existsSync(path.join(dir, 'initrd.img'))) await buildGuestFiles(dir);
  const diskPath = options.disks?.[0] ?? path.join(dir, `${name}.img`);
  const serialLog = path.join(dir, `${name}.serial`);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await runCommand('bash', [GUEST_SH, 'stop', dir, name]);
  };
  // Registered before the start, so even a guest that fails to get ready is killed.
  scratch.defer(stop);
  const args = [GUEST_SH, 'start', dir, name, ...(options.disks ?? [])];
  const out = await mustRun('bash', args, {
    timeoutMs: 300_000,
    env: { ...process.env, FERRY_GUEST_BOOT_TIMEOUT: '240', ...options.env },
  });
  const pid = Number(out.trim().split('\n').pop());
  const wroteFiles = (): string[] => {
    const text = fs.existsSync(serialLog) ? fs.readFileSync(serialLog, 'utf8') : '';
    return [...text.matchAll(/^FERRY-WROTE (\S+) /gm)].map((m) => m[1]!);
  };
  const waitForConsole = async (pattern: RegExp, timeoutMs = 120_000, from = 0): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = fs.readFileSync(serialLog, 'utf8').slice(from);
      const line = text.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (Date.now() > deadline) {
        throw new Error(`guest ${name}: no console line matching ${pattern} within ${timeoutMs / 1000} s; tail:\n${text.slice(-500)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const guest: TestGuest = {
    name,
    dir,
    qmpSocket: path.join(dir, `${name}.qmp`),
    serialLog,
    diskPath,
    pid,
    wroteFiles,
    waitForConsole,
    async waitForMoreWrites(count, timeoutMs = 120_000) {
      const target = wroteFiles().length + count;
      const deadline = Date.now() + timeoutMs;
      while (wroteFiles().length < target) {
        if (Date.now() > deadline) throw new Error(`guest ${name} wrote only ${wroteFiles().length} of ${target} files within ${timeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    isAlive() {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    },
    stop,
  };
  return guest;
}

/**
 * Checks an ext4 image the way a restore would see it: a crash-consistent copy
 * of a mounted file system has an unreplayed journal, so the journal is
 * replayed on a private copy first (as mounting would), then `fsck.ext4 -fn`
 * must find nothing. Returns the names in /data (via debugfs) of that copy and the text of `readFiles`.
 */
export async function checkExt4Image(
  image: string,
  scratchDir: string,
  readFiles: readonly string[] = [],
): Promise<{ fsckOutput: string; dataFiles: string[]; contents: Map<string, string> }> {
  const copy = path.join(scratchDir, `fsck-${path.basename(image)}-${process.hrtime.bigint()}.img`);
  await mustRun('cp', ['--sparse=always', image, copy]);
  try {
    // Exit 1 means "journal replayed / fixed", which is expected here.
    const replay = await runCommand('e2fsck', ['-E', 'journal_only', '-p', copy]);
    if (replay.code !== 0 && replay.code !== 1) throw new Error(`journal replay of ${image} failed (exit ${replay.code}): ${replay.stdout}${replay.stderr}`);
    const fsck = await runCommand('fsck.ext4', ['-fn', copy]);
    if (fsck.code !== 0) throw new Error(`fsck.ext4 -fn found problems in ${image} (exit ${fsck.code}):\n${fsck.stdout}${fsck.stderr}`);
    const ls = await mustRun('debugfs', ['-R', 'ls -p /data', copy]);
    // `ls -p` prints /inode/mode/uid/gid/name/size/ per entry.
    const dataFiles = ls
      .split('\n')
      .map((l) => l.split('/'))
      .filter((f) => f.length >= 7 && f[5] !== '' && f[5] !== '.' && f[5] !== '..')
      .map((f) => `data/${f[5]}`);
    const contents = new Map<string, string>();
    for (const f of readFiles) contents.set(f, await mustRun('debugfs', ['-R', `cat /${f}`, copy]));
    return { fsckOutput: fsck.stdout, dataFiles, contents };
  } finally {
    fs.rmSync(copy, { force: true });
  }
}
