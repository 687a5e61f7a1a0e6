// The command boundary: every hypervisor and snapshot tool (xl, lvs,
// lvcreate, ...) is run through a CommandRunner, so tests can replay recorded
// output and assert exactly which commands ran, in which order.
import { execFile } from 'node:child_process';
import { HypervisorError, describeSystemError } from '../errors';
import { childEnvironment } from './childEnvironment';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; a command killed by a signal reports 128 + signal number. */
  code: number;
}

export interface RunOptions {
  /** Kill the command after this many milliseconds (default 10 minutes). */
  timeoutMs?: number;
  /** Extra environment variables; LC_ALL=C is always set so messages are parseable. Secrets are never passed (childEnvironment). */
  env?: Record<string, string>;
}

export interface CommandRunner {
  /** Runs `cmd` with `args` directly (no shell). Resolves with any exit code; rejects only if it cannot run. */
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
// `xl list -l` for a big host or `lvs` with hundreds of LVs can be megabytes.
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/** Runs real commands with child_process.execFile. */
export class ExecFileCommandRunner implements CommandRunner {
  run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      execFile(
        cmd,
        [...args],
        {
          encoding: 'utf8',
          maxBuffer: MAX_OUTPUT_BYTES,
          timeout: timeoutMs,
          killSignal: 'SIGKILL',
          env: childEnvironment({ ...opts.env, LC_ALL: 'C' }),
        },
        (error, stdout, stderr) => {
          if (!error) return resolve({ stdout, stderr, code: 0 });
          const e = error as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string };
          if (typeof e.code === 'string') {
            // The command never ran (ENOENT, EACCES) or its output overflowed.
            return reject(new HypervisorError(`cannot run ${cmd}: ${describeSystemError(e)}`, { cause: error }));
          }
          if (e.killed && e.signal === 'SIGKILL') {
            return reject(new HypervisorError(
              `${describeCommand(cmd, args)} did not finish within ${timeoutMs / 1000} s and was killed`,
              { cause: error },
            ));
          }
          const code = typeof e.code === 'number' ? e.code : 128 + (SIGNAL_NUMBERS[e.signal ?? ''] ?? 0);
          resolve({ stdout, stderr, code });
        },
      );
    });
  }
}

/** `xl pause web01` — for messages; quotes arguments that need it. */
export function describeCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The last non-empty stderr line: tools put the actual error there, after noise. */
export function lastErrorLine(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    // lvm ends usage-type failures with this hint, after the line that says what went wrong.
    .filter((l) => l.length > 0 && !/^Run `\S+ --help' for more information\.$/.test(l));
  return lines[lines.length - 1] ?? '';
}

/** Runs a command and throws a one-line HypervisorError unless it exits 0. */
export async function runChecked(
  runner: CommandRunner,
  cmd: string,
  args: readonly string[],
  opts?: RunOptions,
): Promise<CommandResult> {
  const result = await runner.run(cmd, args, opts);
  if (result.code !== 0) {
    const why = lastErrorLine(result.stderr) || lastErrorLine(result.stdout) || 'no message';
    throw new HypervisorError(`${describeCommand(cmd, args)} failed (exit ${result.code}): ${why}`);
  }
  return result;
}
