// Runs once per `vitest run`, in the main process: makes the run directory
// that every test's scratch files live in, and on teardown removes it after
// undoing any mount or loop device a crashed test left behind inside it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestProject } from 'vitest/node';
import { releaseMountsAndLoopsUnder } from './system';

declare module 'vitest' {
  export interface ProvidedContext {
    ferryRunDir: string;
  }
}

export default function setup(project: TestProject): () => Promise<void> {
  // /var/tmp, not /tmp: scratch images must sit on a disk-backed file system
  // (sparse files, loop devices), and /tmp may be a tmpfs elsewhere.
  const base = process.env.FERRY_TEST_TMPDIR ?? (fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir());
  const runDir = fs.mkdtempSync(path.join(base, 'ferry-test-'));
  project.provide('ferryRunDir', runDir);
  return async () => {
    await releaseMountsAndLoopsUnder(runDir);
    if (process.env.FERRY_TEST_KEEP) {
      console.log(`ferry tests: kept scratch files in ${runDir}`);
      return;
    }
    fs.rmSync(runDir, { recursive: true, force: true });
  };
}
