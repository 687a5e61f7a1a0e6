// SIGINT and SIGTERM belong to the command line (src/cli/signals.ts): library
// code registers what must be undone (a paused guest to resume), and a signal
// runs those hooks before the process exits with the signal's exit code.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { useScratch } from '../support';
import { REPO_ROOT } from '../support/ferry';

const scratch = useScratch('cli-signals');

/**
 * A node process that registers two hooks (each writes a file; the first also
 * throws), one more that it removes again, then signals itself.
 */
function runSignalled(signal: 'SIGINT' | 'SIGTERM', dir: string): Promise<number | null> {
  const script = `
    const fs = require('node:fs');
    const path = require('node:path');
    const { withSignalCleanup } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist/cli/signals.js'))});
    const dir = ${JSON.stringify(dir)};
    withSignalCleanup(async (cleanup) => {
      cleanup.add(async (reason) => { fs.writeFileSync(path.join(dir, 'first'), reason); throw new Error('release failed'); });
      cleanup.add(async (reason) => { fs.writeFileSync(path.join(dir, 'second'), reason); });
      const remove = cleanup.add(async () => { fs.writeFileSync(path.join(dir, 'removed'), 'ran'); });
      remove();
      process.kill(process.pid, ${JSON.stringify(signal)});
      await new Promise(() => setInterval(() => {}, 1000)); // alive until the signal ends the process
    });
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
}

describe('withSignalCleanup', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('on %s runs every registered hook (even after one fails), then exits %i', async (signal, code) => {
    const dir = scratch.mkdir(signal);
    expect(await runSignalled(signal, dir)).toBe(code);
    expect(fs.readFileSync(path.join(dir, 'first'), 'utf8')).toBe(signal);
    expect(fs.readFileSync(path.join(dir, 'second'), 'utf8')).toBe(signal);
    expect(fs.existsSync(path.join(dir, 'removed'))).toBe(false);
  });
});
