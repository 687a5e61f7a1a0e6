// Running system tools (mount, losetup, fsck, ...) from tests.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion; never throws for a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string | Buffer; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => {}); // the command may exit without reading stdin
    child.stdin.end(options.input ?? '');
    let timer: NodeJS.Timeout | undefined;
    if (options.timeoutMs) {
      timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    }
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      if (e.code === 'ENOENT') {
        reject(new Error(`'${command}' is not installed (run: bash scripts/install-test-deps.sh)`));
      } else {
        reject(e);
      }
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** Run a command that must succeed; throws with its output otherwise. */
export async function mustRun(command: string, args: string[], options: Parameters<typeof runCommand>[2] = {}): Promise<string> {
  const r = await runCommand(command, args, options);
  if (r.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}):\n${r.stderr}${r.stdout}`,
    );
  }
  return r.stdout;
}

/** Unmount everything mounted under `dir` and detach loop devices whose backing file is under it. */
export async function releaseMountsAndLoopsUnder(dir: string): Promise<void> {
  const prefix = dir.endsWith('/') ? dir : dir + '/';
  const mounts = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && m.startsWith(prefix))
    .sort()
    .reverse(); // innermost first
  for (const m of mounts) {
    const r = await runCommand('umount', [m]);
    if (r.code !== 0) await runCommand('umount', ['-l', m]);
  }
  const list = await runCommand('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  for (const line of list.stdout.split('\n')) {
    const [dev, ...rest] = line.trim().split(/\s+/);
    const backing = rest.join(' ').replace(/ \(deleted\)$/, '');
    if (dev && backing.startsWith(prefix)) await runCommand('losetup', ['-d', dev]);
  }
}
