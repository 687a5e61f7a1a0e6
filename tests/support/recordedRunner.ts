// A CommandRunner that replays recorded output instead of running anything,
// and remembers every call, so a test can state the exact command sequence
// (e.g. `xl pause` before `lvcreate` before `xl unpause`).
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandResult, CommandRunner, RunOptions } from '../../src/hypervisor/commandRunner';
import { describeCommand } from '../../src/hypervisor/commandRunner';
import { HypervisorError } from '../../src/errors';

export interface RecordedReply {
  cmd: string;
  args: readonly string[];
  stdout?: string;
  stderr?: string;
  code?: number;
  /** When true the reply answers every matching call; otherwise it is used once. */
  repeat?: boolean;
}

export interface RecordedCall {
  cmd: string;
  args: string[];
}

export class RecordedCommandRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  private readonly pending: RecordedReply[];

  constructor(replies: readonly RecordedReply[] = []) {
    this.pending = [...replies];
  }

  /** Adds a reply after construction (e.g. once a test knows a run id). */
  reply(reply: RecordedReply): this {
    this.pending.push(reply);
    return this;
  }

  async run(cmd: string, args: readonly string[], _opts?: RunOptions): Promise<CommandResult> {
    this.calls.push({ cmd, args: [...args] });
    const index = this.pending.findIndex((r) => r.cmd === cmd && sameArgs(r.args, args));
    if (index < 0) {
      // Unexpected commands fail loudly: a test must know every command a driver runs.
      throw new HypervisorError(`unexpected command (no recorded reply): ${describeCommand(cmd, args)}`);
    }
    const reply = this.pending[index]!;
    if (!reply.repeat) this.pending.splice(index, 1);
    return { stdout: reply.stdout ?? '', stderr: reply.stderr ?? '', code: reply.code ?? 0 };
  }

  /** The calls made so far as shell-like lines, for readable assertions. */
  commandLines(): string[] {
    return this.calls.map((c) => describeCommand(c.cmd, c.args));
  }

  /** Replies that were recorded but never asked for. */
  unused(): RecordedReply[] {
    return this.pending.filter((r) => !r.repeat);
  }
}

function sameArgs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Loads `<dir>/<name>.stdout` and `<dir>/<name>.stderr` (either may be absent)
 * as the output part of a reply.
 */
export function recordedOutput(dir: string, name: string): { stdout: string; stderr: string } {
  const read = (ext: string) => {
    const file = join(dir, `${name}.${ext}`);
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  };
  return { stdout: read('stdout'), stderr: read('stderr') };
}
