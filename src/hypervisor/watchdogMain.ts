// The quiesce watchdog, a separate process: if the ferry process that paused
// a guest dies (even by SIGKILL) before saying "released", or the quiesce
// outlasts its time limit, run the release command so the guest never stays
// paused or frozen. Usage: node watchdogMain.js TIMEOUT_MS -- ARGV...
import { execFileSync } from 'node:child_process';

const sep = process.argv.indexOf('--');
const timeoutMs = Number(process.argv[2]);
const releaseArgv = process.argv.slice(sep + 1);
let settled = false;
let input = '';

/** How long to keep trying: a QMP socket serves one client at a time, so a monitor polling it can make one attempt fail. */
const RETRY_FOR_MS = 120_000;

function release(why: string): void {
  if (settled) return;
  settled = true;
  const until = Date.now() + RETRY_FOR_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync(releaseArgv[0], releaseArgv.slice(1), { stdio: 'ignore', timeout: 60_000 });
      process.stderr.write(`ferry watchdog: ${why}; ran ${releaseArgv.join(' ')}${attempt > 1 ? ` (attempt ${attempt})` : ''}\n`);
      break;
    } catch (err) {
      if (Date.now() > until) {
        process.stderr.write(`ferry watchdog: ${why}; ${releaseArgv.join(' ')} failed ${attempt} times, last: ${(err as Error).message}\n`);
        break;
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200); // sleep 200 ms, synchronously
    }
  }
  process.exit(0);
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  input += d;
  if (input.includes('released')) {
    settled = true;
    process.exit(0);
  }
});
// The parent's end of the pipe closes when it exits for any reason, SIGKILL included.
process.stdin.on('end', () => release('ferry exited while the guest was held'));
process.stdin.on('error', () => release('lost contact with ferry while the guest was held'));
setTimeout(() => release(`guest held longer than ${timeoutMs} ms`), timeoutMs).unref();
// Keep the process alive while stdin is open.
process.stdin.resume();
