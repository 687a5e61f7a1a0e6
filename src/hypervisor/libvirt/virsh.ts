// `virsh -c URI ...` through the CommandRunner, and readers for the plain
// text virsh prints (libvirt 9.0). Every parser refuses output it does not
// recognise instead of guessing.
import { HypervisorError } from '../../errors';
import { type CommandResult, type CommandRunner, type RunOptions, describeCommand, lastErrorLine } from '../commandRunner';

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';

/** One connection's worth of virsh: the URI is fixed, every call goes through the runner. */
export class Virsh {
  constructor(
    readonly runner: CommandRunner,
    readonly uri: string = DEFAULT_LIBVIRT_URI,
    readonly command: string = 'virsh',
  ) {}

  /** Full argv of a virsh call, e.g. for a watchdog that runs it without ferry. */
  argv(args: readonly string[]): string[] {
    return [this.command, '-c', this.uri, ...args];
  }

  /** Runs virsh; resolves with any exit code. */
  run(args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    return this.runner.run(this.command, ['-c', this.uri, ...args], opts);
  }

  /** Runs virsh and throws a one-line HypervisorError unless it exits 0. */
  async checked(args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    const result = await this.run(args, opts);
    if (result.code !== 0) throw this.failure(args, result);
    return result;
  }

  failure(args: readonly string[], result: CommandResult): VirshError {
    const why = virshErrorText(result);
    return new VirshError(`${describeCommand(this.command, ['-c', this.uri, ...args])} failed (exit ${result.code}): ${why}`, why);
  }
}

/** A virsh call that failed; `reason` is libvirt's own message without the `error:` prefix. */
export class VirshError extends HypervisorError {
  constructor(message: string, readonly reason: string) {
    super(message);
  }
}

/** libvirt's message from a failed call: the last `error:` line, else the last line. */
export function virshErrorText(result: Pick<CommandResult, 'stderr' | 'stdout'>): string {
  const errorLines = result.stderr.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('error: '));
  // virsh prints a generic line ("error: Unable to freeze filesystems") before the specific one.
  const last = errorLines[errorLines.length - 1];
  if (last) return last.slice('error: '.length);
  return lastErrorLine(result.stderr) || lastErrorLine(result.stdout) || 'no message';
}

/** libvirt says a domain does not exist (`virsh domstate nosuch`). */
export function isNoSuchDomain(reason: string): boolean {
  return /^failed to get domain '|^Domain not found/.test(reason);
}

/** One name per line (`list --name`, `checkpoint-list --name`); blank lines dropped. */
export function parseNameList(stdout: string): string[] {
  return stdout.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
}

/** The state word of `virsh domstate` (`running`, `paused`, `shut off`, `in shutdown`, ...). */
export function parseDomState(stdout: string, what: string): string {
  const line = stdout.split('\n').map((l) => l.trim()).find((l) => l.length > 0);
  if (!line) throw new HypervisorError(`${what} printed no state`);
  // With --reason the line reads `paused (user)`.
  return line.replace(/\s*\(.*\)$/, '');
}

export interface DomJobInfo {
  /** `None`, `Bounded`, `Unbounded`, `Completed`, `Failed` or `Cancelled`. */
  type: string;
  /** `Backup`, `Outgoing migration`, ... (absent when no job ran). */
  operation?: string;
  /** libvirt's error for a failed job, when it reports one. */
  errorMessage?: string;
  /** Every `Key: value` line as printed. */
  fields: Record<string, string>;
}

/** Reads `virsh domjobinfo [--completed]`: `Key:   value` lines. */
export function parseDomJobInfo(stdout: string, what: string): DomJobInfo {
  const fields: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([^:]+):\s*(.*?)\s*$/.exec(line);
    if (m) fields[m[1]!.trim()] = m[2]!;
  }
  const type = fields['Job type'];
  if (type === undefined) throw new HypervisorError(`${what} printed no "Job type:" line: ${JSON.stringify(stdout.slice(0, 200))}`);
  return {
    type,
    ...(fields.Operation !== undefined ? { operation: fields.Operation } : {}),
    ...(fields['Error message'] !== undefined ? { errorMessage: fields['Error message'] } : {}),
    fields,
  };
}

/** Job types of a job that is still running. */
export function isActiveJob(info: DomJobInfo): boolean {
  return info.type === 'Bounded' || info.type === 'Unbounded';
}
