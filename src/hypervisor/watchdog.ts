// Arms the out-of-process watchdog (watchdogMain.ts) for one quiesced guest.
import { spawn } from 'node:child_process';
import type { HoldGuard, ReleaseCommand } from './driver';
import { childEnvironment } from './childEnvironment';
import { compiledScript } from '../host/compiledScript';

export const DEFAULT_WATCHDOG_TIMEOUT_MS = 120_000;
/** A hold that lasts as long as a read of the guest's disks (snapshot = "pause" or "shutdown"): released only when ferry goes or asks. */
export const NO_WATCHDOG_TIME_LIMIT = 0;

export interface ArmedWatchdog {
  /** The guest was released normally: stand the watchdog down. */
  disarm(): void;
  /** The hold failed part way: let the watchdog run the release now, then exit. */
  releaseNow(): void;
  readonly pid: number | undefined;
}

/** The watchdog's command line: TIMEOUT_MS [--already-released REGEX] [--wait-until JSON] -- ARGV... */
function watchdogArgs(release: ReleaseCommand, timeoutMs: number): string[] {
  const done = release.alreadyReleased ? ['--already-released', release.alreadyReleased.source] : [];
  const waitUntil = release.waitUntil
    ? ['--wait-until', JSON.stringify({ argv: release.waitUntil.argv, output: release.waitUntil.output.source })]
    : [];
  return [compiledScript('hypervisor/watchdogMain'), String(timeoutMs), ...done, ...waitUntil, '--', ...release.argv];
}

/**
 * Starts the watchdog. `spawn` returns once the process exists and its stdin
 * pipe is open, so a SIGKILL from then on closes the pipe and the watchdog
 * releases, even if it has not finished starting.
 */
export function armWatchdog(release: ReleaseCommand, timeoutMs = DEFAULT_WATCHDOG_TIMEOUT_MS): ArmedWatchdog {
  const child = spawn(process.execPath, watchdogArgs(release, timeoutMs), {
    // Own process group: a signal to ferry's group (Ctrl-C, a cron timeout) must not take it down too.
    detached: true,
    stdio: ['pipe', 'ignore', 'inherit'],
    // The release command (a post hook, virsh, xl) runs with the watchdog's environment: no secrets.
    env: childEnvironment(),
  });
  child.unref();
  child.stdin?.on('error', () => undefined); // a watchdog that already acted and exited: nothing left to tell it
  let told = false;
  const tell = (word: string) => {
    if (told) return;
    told = true;
    child.stdin?.end(`${word}\n`);
  };
  return { pid: child.pid, disarm: () => tell('released'), releaseNow: () => tell('release-now') };
}

/**
 * The guard fleet backups hand to a driver's quiesce: arms a watchdog right
 * before the driver holds the guest, and re-arms when the driver switches
 * from one way of holding to another.
 */
export class WatchdogGuard implements HoldGuard {
  private armed: ArmedWatchdog | undefined;

  constructor(private readonly timeoutMs = DEFAULT_WATCHDOG_TIMEOUT_MS) {}

  holding(release: ReleaseCommand): void {
    // The earlier hold was undone by the driver before it tries the next one.
    this.armed?.disarm();
    this.armed = armWatchdog(release, this.timeoutMs);
  }

  /** The guest was released normally (or never held). */
  standDown(): void {
    this.armed?.disarm();
    this.armed = undefined;
  }

  /** The quiesce failed after it may have taken effect (a stop that timed out, a pre hook that froze half): undo it from outside. */
  releaseNow(): void {
    this.armed?.releaseNow();
    this.armed = undefined;
  }
}
