// The quiesce watchdog runs the release command when the process that holds a
// guest dies (SIGKILL included) or holds it too long, and never after a normal release.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { useScratch } from '../support/scratch';

const dir = useScratch('watchdog').dir;
const watchdogModule = path.resolve(__dirname, '..', '..', 'dist', 'hypervisor', 'watchdog.js');
const watchdogMain = path.resolve(__dirname, '..', '..', 'dist', 'hypervisor', 'watchdogMain.js');

/** A holder process: arms the watchdog to `touch marker`, then disarms after `holdMs` (or never). */
function holder(marker: string, holdMs: number | null, timeoutMs = 60_000, argv: string[] = ['touch', marker]) {
  const script = `
    const { armWatchdog } = require(${JSON.stringify(watchdogModule)});
    const w = armWatchdog({ argv: ${JSON.stringify(argv)} }, ${timeoutMs});
    console.log('armed');
    ${holdMs === null ? 'setInterval(() => {}, 1000);' : `setTimeout(() => { w.disarm(); console.log('released'); }, ${holdMs});`}
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const armed = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('armed') && resolve()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, armed, exited };
}

async function appears(file: string, withinMs: number): Promise<boolean> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    if (fs.existsSync(file)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return fs.existsSync(file);
}

describe('quiesce watchdog', () => {
  it('releases the guest when ferry is SIGKILLed while holding it', async () => {
    const marker = path.join(dir, 'killed');
    const h = holder(marker, null);
    await h.armed;
    h.child.kill('SIGKILL');
    await h.exited;
    expect(await appears(marker, 10_000)).toBe(true);
  });

  it('does nothing after a normal release', async () => {
    const marker = path.join(dir, 'normal');
    const h = holder(marker, 100);
    await h.armed;
    await h.exited;
    expect(await appears(marker, 1500)).toBe(false);
  });

  it('releases a guest held longer than its time limit', async () => {
    const marker = path.join(dir, 'timeout');
    const h = holder(marker, null, 500);
    await h.armed;
    expect(await appears(marker, 10_000)).toBe(true);
    h.child.kill('SIGKILL');
  });

  it('retries a release command that fails (a QMP socket busy with another client) until it succeeds', async () => {
    const marker = path.join(dir, 'retried');
    const count = path.join(dir, 'attempts');
    // Fails twice, then succeeds and leaves the marker.
    const argv = ['sh', '-c', `n=$(cat ${count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${count}; [ $n -ge 3 ] && touch ${marker}`];
    const h = holder(marker, null, 60_000, argv);
    await h.armed;
    h.child.kill('SIGKILL');
    await h.exited;
    expect(await appears(marker, 10_000)).toBe(true);
    expect(fs.readFileSync(count, 'utf8').trim()).toBe('3');
  });

  it('runs the release at once when asked after a failed quiesce, and exits', async () => {
    const marker = path.join(dir, 'now');
    const child = spawn(process.execPath, [watchdogMain, '60000', '--', 'touch', marker], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.write('release-now\n'); // the pipe stays open: only the request can trigger it
    expect(await appears(marker, 10_000)).toBe(true);
    await exited;
  });

  it('counts a failing release whose stderr says the guest was not held as done once that has held for 10 s, not for the 2-minute retry window', async () => {
    const count = path.join(dir, 'not-held-attempts');
    const argv = ['sh', '-c', `echo x >> ${count}; echo "error: domain is already running" >&2; exit 1`];
    const child = spawn(process.execPath, [watchdogMain, '60000', '--already-released', 'already running', '--', ...argv], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.end();
    await exited;
    // Tried again about once a second while a pause ferry started before it died could still land.
    const attempts = fs.readFileSync(count, 'utf8').split('\n').filter(Boolean).length;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThan(60);
    expect(stderr).toMatch(/the guest was not held/);
    expect(stderr).not.toMatch(/failed \d+ times/);
  });

  it('a guard re-armed for a second way of holding stands the first watchdog down', async () => {
    const first = path.join(dir, 'guard-first');
    const second = path.join(dir, 'guard-second');
    const script = `
      const { WatchdogGuard } = require(${JSON.stringify(watchdogModule)});
      const g = new WatchdogGuard(60000);
      g.holding({ argv: ['touch', ${JSON.stringify(first)}] });
      g.holding({ argv: ['touch', ${JSON.stringify(second)}] });
      console.log('armed');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('armed') && resolve()));
    child.kill('SIGKILL');
    expect(await appears(second, 10_000)).toBe(true);
    expect(fs.existsSync(first)).toBe(false);
  });

  it('runs the release command without the passphrase or cloud secrets in its environment', async () => {
    const dump = path.join(dir, 'release-env');
    const script = `
      process.env.FERRY_PASSWORD = 'hunter2';
      process.env.AWS_SECRET_ACCESS_KEY = 'cloud-secret';
      process.env.FERRY_WATCHDOG_PROBE = 'kept';
      const { armWatchdog } = require(${JSON.stringify(watchdogModule)});
      armWatchdog({ argv: ['sh', '-c', 'env > ${dump}.tmp && mv ${dump}.tmp ${dump}'] }, 60000);
      console.log('armed');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('armed') && resolve()));
    child.kill('SIGKILL');
    expect(await appears(dump, 10_000)).toBe(true);
    const env = fs.readFileSync(dump, 'utf8');
    expect(env).toContain('FERRY_WATCHDOG_PROBE=kept');
    expect(env).not.toMatch(/hunter2|cloud-secret|FERRY_PASSWORD|AWS_SECRET_ACCESS_KEY/);
  });

  it('releases a guest that a pause command outliving ferry holds after the first "not held" answer', async () => {
    // The release fails as "not held" twice, then the pause lands and the release works.
    const count = path.join(dir, 'late-pause-attempts');
    const marker = path.join(dir, 'late-pause-released');
    const argv = ['sh', '-c', `n=$(cat ${count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${count}; if [ $n -le 2 ]; then echo "domain is already running" >&2; exit 1; fi; touch ${marker}`];
    const child = spawn(process.execPath, [watchdogMain, '60000', '--already-released', 'already running', '--', ...argv], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.end();
    await exited;
    expect(fs.existsSync(marker)).toBe(true);
    expect(fs.readFileSync(count, 'utf8').trim()).toBe('3');
  });
});
