// Parts the snapshot providers share: the leftover sweep (try every leftover,
// then report all that could not be removed at once), deleting ferry's files
// from a work directory, and polling until a hypervisor job reaches a state.
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HypervisorError, describeSystemError } from '../errors';

/**
 * One removeLeftovers() run. A leftover that cannot be removed must not keep
 * the others in place, so failures are collected and reported by done().
 */
export class LeftoverSweep {
  readonly removed: string[] = [];
  private readonly failures: string[] = [];

  /** `what` names the leftovers in the error, e.g. `leftover snapshot(s)`. */
  constructor(private readonly what: string) {}

  /** Removes the leftover `name`; a failure is noted as `describe(err)` and the sweep goes on. */
  async remove(name: string, action: () => Promise<void> | void, describe: (err: unknown) => string = errorMessage): Promise<void> {
    try {
      await action();
      this.removed.push(name);
    } catch (err) {
      this.failures.push(describe(err));
    }
  }

  /** Notes a failure found outside remove() (a listing that failed). */
  failed(message: string): void {
    this.failures.push(message);
  }

  /** The names removed; throws one HypervisorError naming every failure if there was any. */
  done(): string[] {
    if (this.failures.length > 0) {
      throw new HypervisorError(`could not remove ${this.failures.length} ${this.what}: ${this.failures.join('; ')}`);
    }
    return this.removed;
  }
}

export function errorMessage(err: unknown): string {
  return (err as Error).message;
}

/** Deletes files; one that is already gone is fine. */
export async function deleteFiles(paths: readonly string[]): Promise<void> {
  for (const p of paths) {
    try {
      await unlink(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new HypervisorError(`cannot delete ${p}: ${describeSystemError(err)}`, { cause: err });
      }
    }
  }
}

/** Deletes the files of `dir` whose names `isOwned` accepts (ferry's), in name order; a missing `dir` holds none. */
export async function sweepOwnedFiles(sweep: LeftoverSweep, dir: string, isOwned: (name: string) => boolean): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') sweep.failed(`cannot list ${dir}: ${describeSystemError(err)}`);
    return;
  }
  for (const name of names.filter(isOwned).sort()) {
    const path = join(dir, name);
    await sweep.remove(path, () => deleteFiles([path]));
  }
}

export interface PollOptions {
  timeoutMs: number;
  /** Sleep after the first unsuccessful check. */
  intervalMs: number;
  /** Each further sleep doubles, up to this. Default: intervalMs (a fixed interval). */
  maxIntervalMs?: number;
}

/** Calls `check` until it answers true (then true), or until `timeoutMs` has passed (then false). */
export async function pollUntil(check: () => Promise<boolean>, options: PollOptions): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  let interval = options.intervalMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, interval));
    interval = Math.min(interval * 2, options.maxIntervalMs ?? options.intervalMs);
  }
  return true;
}
