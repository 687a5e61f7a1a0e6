// Arms the out-of-process watchdog (watchdogMain.ts) for one quiesced guest.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_WATCHDOG_TIMEOUT_MS = 120_000;

export interface ArmedWatchdog {
  /** The guest was released normally: stand the watchdog down. */
  disarm(): void;
  readonly pid: number | undefined;
}

function watchdogScript(): string {
  const beside = path.join(__dirname, 'watchdogMain.js');
  return fs.existsSync(beside) ? beside : path.resolve(__dirname, '..', '..', 'dist', 'hypervisor', 'watchdogMain.js');
}

export function armWatchdog(releaseArgv: readonly string[], timeoutMs = DEFAULT_WATCHDOG_TIMEOUT_MS): ArmedWatchdog {
  const child = spawn(process.execPath, [watchdogScript(), String(timeoutMs), '--', ...releaseArgv], {
    // Own process group: a signal to ferry's group (Ctrl-C, a cron timeout) must not take it down too.
    detached: true,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  child.unref();
  child.stdin?.on('error', () => undefined);
  let disarmed = false;
  return {
    pid: child.pid,
    disarm(): void {
      if (disarmed) return;
      disarmed = true;
      child.stdin?.end('released\n');
    },
  };
}
