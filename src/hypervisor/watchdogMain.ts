// The quiesce watchdog, a separate process started right before ferry holds a
// guest: if the ferry process dies (even by SIGKILL) before saying "released",
// asks for "release-now", or the hold outlasts its time limit, run the release
// command so the guest never stays paused or frozen.
// Usage: node watchdogMain.js TIMEOUT_MS [--already-released REGEX] [--wait-until JSON] -- ARGV...  (TIMEOUT_MS 0: no limit)
// JSON: {"argv": [...], "output": "REGEX"}: before releasing, run argv until its output matches (a guest shut down must be off before it starts again).
import { spawnSync, execFileSync } from 'node:child_process';

const sep = process.argv.indexOf('--');
const timeoutMs = Number(process.argv[2]);
const options = process.argv.slice(3, sep);
const doneAt = options.indexOf('--already-released');
/** A failing release whose stderr matches reached its goal: the guest was not held (ferry died before the pause). */
const alreadyReleased = doneAt >= 0 ? new RegExp(options[doneAt + 1] ?? '(?!)') : undefined;
const waitAt = options.indexOf('--wait-until');
const waitUntil = waitAt >= 0 ? (JSON.parse(options[waitAt + 1] ?? '{}') as { argv: string[]; output: string }) : undefined;
const releaseArgv = process.argv.slice(sep + 1);
let settled = false;
let input = '';

/** How long to keep trying: a QMP socket serves one client at a time, so a monitor polling it can make one attempt fail. */
const RETRY_FOR_MS = 120_000;
/**
 * How long "the guest is not held" must hold before the watchdog believes it:
 * a pause command ferry started just before it died (xl pause, virsh suspend)
 * lives on and may still take effect.
 */
const NOT_HELD_SETTLE_MS = 10_000;

function stderrOf(err: unknown): string {
  const stderr = (err as { stderr?: Buffer | string }).stderr;
  return stderr === undefined ? '' : stderr.toString();
}

/** How long a shutdown may go on before the guest is started again (a guest installing updates may take many minutes). */
const WAIT_UNTIL_MS = 30 * 60_000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls the wait-until command; false when its output never matched in WAIT_UNTIL_MS (the guest never went off: nothing to start). */
function waitUntilReady(): boolean {
  if (!waitUntil) return true;
  const pattern = new RegExp(waitUntil.output);
  const until = Date.now() + WAIT_UNTIL_MS;
  for (;;) {
    const r = spawnSync(waitUntil.argv[0], waitUntil.argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
    if (pattern.test(`${r.stdout ?? ''}${r.stderr ?? ''}`)) return true;
    if (Date.now() > until) return false;
    sleepSync(2000);
  }
}

function release(why: string): void {
  if (settled) return;
  settled = true;
  if (!waitUntilReady()) {
    process.stderr.write(`ferry watchdog: ${why}; ${waitUntil?.argv.join(' ')} never said the guest was off within ${WAIT_UNTIL_MS / 60_000} min: not starting it\n`);
    process.exit(0);
  }
  const until = Date.now() + RETRY_FOR_MS;
  let notHeldSince: number | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync(releaseArgv[0], releaseArgv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
      process.stderr.write(`ferry watchdog: ${why}; ran ${releaseArgv.join(' ')}${attempt > 1 ? ` (attempt ${attempt})` : ''}\n`);
      break;
    } catch (err) {
      if (alreadyReleased?.test(stderrOf(err))) {
        notHeldSince ??= Date.now();
        if (Date.now() - notHeldSince >= NOT_HELD_SETTLE_MS) {
          process.stderr.write(`ferry watchdog: ${why}; the guest was not held (${releaseArgv.join(' ')}: ${stderrOf(err).trim().replace(/\s+/g, ' ')})\n`);
          break;
        }
      } else {
        notHeldSince = undefined;
      }
      if (Date.now() > until) {
        process.stderr.write(`ferry watchdog: ${why}; ${releaseArgv.join(' ')} failed ${attempt} times, last: ${(err as Error).message}\n`);
        break;
      }
      sleepSync(notHeldSince === undefined ? 200 : 1000);
    }
  }
  process.exit(0);
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  input += d;
  if (input.includes('release-now')) {
    release('ferry asked for a release after a quiesce failed');
  } else if (input.includes('released')) {
    settled = true;
    process.exit(0);
  }
});
// The parent's end of the pipe closes when it exits for any reason, SIGKILL included.
process.stdin.on('end', () => release('ferry exited while the guest was held'));
process.stdin.on('error', () => release('lost contact with ferry while the guest was held'));
// 0: no time limit (a guest held for a backup that reads its disks in place: as long as the read takes).
if (timeoutMs > 0) setTimeout(() => release(`guest held longer than ${timeoutMs} ms`), timeoutMs).unref();
// Keep the process alive while stdin is open.
process.stdin.resume();
