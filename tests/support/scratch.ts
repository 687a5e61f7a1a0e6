// Per-test-file scratch space: a directory under the run directory plus a
// stack of clean-up actions (unmount, detach, kill) run in afterAll, even when
// tests failed. Mounts and loop devices under the directory are released as a
// last resort, so a failed test never leaves a busy loop device behind.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, inject } from 'vitest';
import { releaseMountsAndLoopsUnder } from './system';

export class Scratch {
  private readonly cleanups: Array<() => unknown> = [];

  constructor(readonly dir: string) {}

  /** A path inside the scratch directory (not created). */
  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** A fresh empty directory inside the scratch directory. */
  mkdir(...parts: string[]): string {
    const p = this.path(...parts);
    fs.mkdirSync(p, { recursive: true });
    return p;
  }

  /** Run `fn` at clean-up time (last registered runs first). */
  defer(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  async dispose(): Promise<void> {
    const errors: unknown[] = [];
    while (this.cleanups.length > 0) {
      const fn = this.cleanups.pop()!;
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    await releaseMountsAndLoopsUnder(this.dir);
    if (!process.env.FERRY_TEST_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, `clean-up of ${this.dir} failed`);
  }
}

/** The directory this `vitest run` keeps its scratch files in (made by globalSetup). */
export function runDir(): string {
  const dir = inject('ferryRunDir');
  if (!dir) throw new Error('ferryRunDir not provided: run the tests through vitest.config.ts (npm test)');
  return dir;
}

/** Scratch space for one test file; call at the top level of the file. */
export function useScratch(name: string): Scratch {
  const scratch = new Scratch(fs.mkdtempSync(path.join(runDir(), `${name}-`)));
  afterAll(() => scratch.dispose());
  return scratch;
}
