// A ferry killed while it holds a Xen guest paused leaves the guest running
// again: the out-of-process watchdog, armed right before `xl pause`, runs
// `xl unpause NAME` when ferry's end of its pipe closes. Xen cannot run here,
// so the test stands at the command boundary: a fake `xl` (a small sh script
// first on ferry's PATH, and so on the watchdog's too) answers `xl list`,
// `xl list -l` and `xl list NAME` from the recorded fixtures in
// tests/fixtures/xen/, keeps the domain's paused/running state in a file
// (the state column shows `--p---` while paused, as real xl does), and logs
// every call. Everything else is real: ferry's CLI, the watchdog process, and
// the guest's disk, a plain image file on an xfs (reflink=1) loop file system
// with `snapshot = "reflink"`, which is what makes ferry pause the guest.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from '../support/scratch';
import { ferry, spawnFerry, expectSuccess, describeResult, FAST_KDF, REPO_ROOT, type RunningFerry } from '../support/ferry';
import { mountLoopFileSystem } from '../support/loopFileSystems';

const scratch = useScratch('fleet-xen-watchdog');
const env = { FERRY_PASSWORD: 'fleet-xen-watchdog' };
const FIXTURES = path.join(REPO_ROOT, 'tests', 'fixtures', 'xen');
const NAME = 'web01'; // a domain of the recorded fleet: domid 3
const DOMID = 3;
/**
 * What libxl prints when `xl unpause` finds the domain not paused (Xen's pause
 * count is already zero; LOGED(ERROR, domid, "Unpausing domain") with EINVAL
 * in libxl_domain_unpause). The line number is illustrative.
 */
const LIBXL_NOT_PAUSED = `libxl: error: libxl_domain.c:683:libxl_domain_unpause: Domain ${DOMID}:Unpausing domain: Invalid argument`;

let mount: string;
let disk: string;

beforeAll(async () => {
  // A disk on xfs is copied by reflink, which needs the guest paused around the copy.
  mount = await mountLoopFileSystem(scratch, 'xfs', { mkfs: ['mkfs.xfs', '-q', '-m', 'reflink=1'], sizeMiB: 512 });
  disk = path.join(mount, `${NAME}.img`);
  const fd = fs.openSync(disk, 'w');
  // 16 MiB with something in it, so the backup has data to read if it ever got that far.
  fs.writeSync(fd, Buffer.alloc(1024 * 1024, 'x'), 0, 1024 * 1024, 4 * 1024 * 1024);
  fs.ftruncateSync(fd, 16 * 1024 * 1024);
  fs.closeSync(fd);
}, 120_000);

/** The line of `name` in recorded `xl list` output, with its state letters set. */
function withState(listOutput: string, state: 'running' | 'paused'): string {
  return listOutput.replace(new RegExp(`^(${NAME}\\s+\\d+\\s+\\d+\\s+\\d+\\s+)\\S{6}`, 'm'), (_m, head: string) => head + (state === 'paused' ? '--p---' : '-b----'));
}

interface FakeXen {
  dir: string;
  bin: string;
  stateFile: string;
  callLog: string;
  state(): string;
  calls(): string[];
}

/**
 * A fake `xl` in a fresh directory. `pauseHangs`: `xl pause` logs itself,
 * leaves a `pause-started` marker and then waits (bounded) for a `pause-may-end`
 * file, exiting 1 without pausing: a pause that never took effect
 * (`pauseLandsLate`: then it pauses after all, as a command that outlived ferry could).
 */
function fakeXen(label: string, opts: { pauseHangs?: boolean; pauseLandsLate?: boolean } = {}): FakeXen {
  const dir = scratch.mkdir(`xen-${label}`);
  const bin = scratch.mkdir(`xen-${label}`, 'bin');
  const stateFile = path.join(dir, 'state');
  const callLog = path.join(dir, 'calls.log');
  fs.writeFileSync(stateFile, 'running\n');
  // Recorded answers, one per state: only the state column differs.
  const list = fs.readFileSync(path.join(FIXTURES, 'xl-list.stdout'), 'utf8');
  const listOne = fs.readFileSync(path.join(FIXTURES, `xl-list-${NAME}.stdout`), 'utf8');
  // Only this domain and dom0 are running on this fake host.
  const header = list.split('\n')[0]!;
  const onlyOurs = [header, ...list.split('\n').filter((l) => /^(Domain-0|web01)\s/.test(l))].join('\n') + '\n';
  for (const state of ['running', 'paused'] as const) {
    fs.writeFileSync(path.join(dir, `list.${state}`), withState(onlyOurs, state));
    fs.writeFileSync(path.join(dir, `list-${NAME}.${state}`), withState(listOne, state));
  }
  // The recorded libxl config of web01, its disk moved onto the xfs loop file system.
  const details = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'xl-list-l.stdout'), 'utf8')) as { domid: number; config: { c_info: { name: string }; disks: unknown[] } }[])
    .filter((d) => d.config.c_info.name === NAME);
  expect(details.map((d) => d.domid)).toEqual([DOMID]);
  details[0]!.config.disks = [{ pdev_path: disk, vdev: 'xvda', format: 'raw', readwrite: 1 }];
  fs.writeFileSync(path.join(dir, 'list-l'), `${JSON.stringify(details, null, 4)}\n`);
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = `#!/bin/sh
# Fake xl for ferry's tests: recorded answers, state in a file, every call logged.
dir=${q(dir)}
echo "$*" >> "$dir/calls.log"
state=$(cat "$dir/state")
case "$*" in
  "list") cat "$dir/list.$state" ;;
  "list -l") cat "$dir/list-l" ;;
  "list ${NAME}") cat "$dir/list-${NAME}.$state" ;;
  "pause ${NAME}")
    ${opts.pauseHangs ? `touch "$dir/pause-started"
    # Hangs until the test lets it end (at most 60 s), then fails without pausing.
    i=0
    while [ ! -e "$dir/pause-may-end" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    ${opts.pauseLandsLate ? 'echo paused > "$dir/state"; exit 0' : 'echo "libxl: error: pause interrupted (fake xl)" >&2; exit 1'}` : `echo paused > "$dir/state"`} ;;
  "unpause ${NAME}")
    if [ "$state" != paused ]; then
      echo ${q(LIBXL_NOT_PAUSED)} >&2
      exit 1
    fi
    echo running > "$dir/state" ;;
  *) echo "fake xl: unexpected call: xl $*" >&2; exit 2 ;;
esac
`;
  fs.writeFileSync(path.join(bin, 'xl'), script, { mode: 0o755 });
  return {
    dir, bin, stateFile, callLog,
    state: () => fs.readFileSync(stateFile, 'utf8').trim(),
    calls: () => (fs.existsSync(callLog) ? fs.readFileSync(callLog, 'utf8').split('\n').filter(Boolean) : []),
  };
}

/** ferry.conf: the Xen driver with a config dir holding web01's cfg (its disk on xfs), and reflink for web01. */
function writeConfig(xen: FakeXen): string {
  const configDir = path.join(xen.dir, 'etc-xen');
  fs.mkdirSync(configDir);
  const cfg = fs.readFileSync(path.join(FIXTURES, 'fleet', `${NAME}.cfg`), 'utf8')
    .replace(/^disk = .*$/m, `disk = [ 'file:${disk},xvda,w' ]`);
  fs.writeFileSync(path.join(configDir, `${NAME}.cfg`), cfg);
  const conf = path.join(xen.dir, 'ferry.conf');
  fs.writeFileSync(conf, `[xen]\nconfig_dir = ${JSON.stringify(configDir)}\n\n[guest."${NAME}"]\nsnapshot = "reflink"\n`);
  return conf;
}

/** `ferry backup --all` with the fake xl first on PATH, holding the pause for 60 s. */
async function startBackup(xen: FakeXen, label: string): Promise<RunningFerry> {
  const repo = scratch.path(`repo-${label}`);
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }), 'init');
  return spawnFerry(['backup', '--all', '--repo', repo, '--config', writeConfig(xen), '--work-dir', scratch.mkdir(`work-${label}`)], {
    env: { ...env, PATH: `${xen.bin}:${process.env.PATH ?? ''}`, FERRY_HOLD_QUIESCE_MS: '60000' },
  });
}

/** Polls until `reached()`; fails (killing ferry) if ferry exits first or 60 s pass: listing one fake domain takes well under a second. */
async function waitUntil(running: RunningFerry, reached: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let exited = false;
  void running.done.then(() => (exited = true));
  while (!reached()) {
    if (exited || Date.now() > deadline) {
      running.child.kill('SIGKILL');
      throw new Error(`${what} never happened: ${describeResult(await running.done)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * ferry's result once its stderr pipe closes, which is when the watchdog (it
 * inherited that pipe) has exited too. Bounded at 60 s: the watchdog believes
 * "not paused" after 10 s of it, each `xl unpause` is a fork of a small sh
 * script, while a watchdog that keeps retrying holds the pipe for 120 s.
 */
async function doneAndWatchdogGone(running: RunningFerry): Promise<Awaited<RunningFerry['done']>> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the watchdog still holds ferry\'s stderr 60 s after ferry was killed: it is retrying the release')), 60_000);
  });
  try {
    return await Promise.race([running.done, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a ferry killed while it holds a Xen guest paused', () => {
  it('leaves the guest running again: the watchdog ran xl unpause', async () => {
    const xen = fakeXen('held');
    const running = await startBackup(xen, 'held');
    await waitUntil(running, () => xen.state() === 'paused', 'xl pause');
    running.child.kill('SIGKILL');
    const result = await doneAndWatchdogGone(running);
    expect(result.signal, describeResult(result)).toBe('SIGKILL');
    expect(xen.state()).toBe('running');
    const calls = xen.calls();
    expect(calls.filter((c) => c === `unpause ${NAME}`), calls.join('\n')).toHaveLength(1);
    expect(calls.indexOf(`pause ${NAME}`), calls.join('\n')).toBeGreaterThanOrEqual(0);
    expect(calls.indexOf(`unpause ${NAME}`)).toBeGreaterThan(calls.indexOf(`pause ${NAME}`));
    // Before the pause, ferry asked xl for the current state: a guest paused by someone else stays paused.
    expect(calls.slice(0, calls.indexOf(`pause ${NAME}`))).toContain(`list ${NAME}`);
    expect(result.stderr).toContain(`ferry watchdog: ferry exited while the guest was held; ran xl unpause ${NAME}\n`);
  });

  it('killed after arming the watchdog but before xl pause took effect: the failing unpause counts as done after the settle window, no 2-minute retries', async () => {
    const xen = fakeXen('before-pause', { pauseHangs: true });
    const running = await startBackup(xen, 'before-pause');
    const started = path.join(xen.dir, 'pause-started');
    try {
      await waitUntil(running, () => fs.existsSync(started), 'xl pause (hanging)');
      running.child.kill('SIGKILL');
      const result = await doneAndWatchdogGone(running);
      expect(result.signal, describeResult(result)).toBe('SIGKILL');
      expect(xen.state()).toBe('running');
      const calls = xen.calls();
      // Unpauses answered by libxl's "not paused" error for the 10 s settle window (about one a second), then done.
      const unpauses = calls.filter((c) => c === `unpause ${NAME}`).length;
      expect(unpauses, calls.join('\n')).toBeGreaterThanOrEqual(2);
      expect(unpauses, calls.join('\n')).toBeLessThan(60);
      expect(calls.indexOf(`unpause ${NAME}`)).toBeGreaterThan(calls.indexOf(`pause ${NAME}`));
      expect(result.stderr).toContain(
        `ferry watchdog: ferry exited while the guest was held; the guest was not held (xl unpause ${NAME}: ${LIBXL_NOT_PAUSED})\n`,
      );
      expect(result.stderr).not.toMatch(/failed \d+ times/);
    } finally {
      fs.writeFileSync(path.join(xen.dir, 'pause-may-end'), ''); // lets the orphaned fake `xl pause` exit
    }
  });

  it('a pause that outlives the killed ferry and lands after the first "not paused" answer is still undone', async () => {
    const xen = fakeXen('late-pause', { pauseHangs: true, pauseLandsLate: true });
    const running = await startBackup(xen, 'late-pause');
    await waitUntil(running, () => fs.existsSync(path.join(xen.dir, 'pause-started')), 'xl pause (hanging)');
    running.child.kill('SIGKILL');
    // Let the orphaned pause land once the watchdog has answered "not paused" at least once.
    await waitUntil(running, () => xen.calls().includes(`unpause ${NAME}`), 'the watchdog\'s first xl unpause');
    fs.writeFileSync(path.join(xen.dir, 'pause-may-end'), '');
    const result = await doneAndWatchdogGone(running);
    expect(xen.state(), xen.calls().join('\n')).toBe('running');
    expect(result.stderr).toContain(`ferry watchdog: ferry exited while the guest was held; ran xl unpause ${NAME}`);
  });
});

describe('a ferry stopped by SIGTERM or SIGINT while it holds a Xen guest paused', () => {
  it.each([['SIGTERM', 143], ['SIGINT', 130]] as const)('on %s resumes the guest itself (the CLI runs the fleet backup\'s cleanup hook), then exits %i', async (signal, code) => {
    const xen = fakeXen(`signal-${signal}`);
    const running = await startBackup(xen, `signal-${signal}`);
    await waitUntil(running, () => xen.state() === 'paused', 'xl pause');
    running.child.kill(signal);
    const result = await doneAndWatchdogGone(running);
    expect(result.code, describeResult(result)).toBe(code);
    expect(xen.state(), xen.calls().join('\n')).toBe('running');
    expect(result.stderr).toContain(`${signal}: releasing 1 held guest(s)`);
  });
});
