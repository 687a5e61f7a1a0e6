// `ferry backup --all` of a running Xen guest on a plain file through the
// CLI and ferry.conf: snapshot = "pause" / "shutdown" chosen per guest, the
// hold reported in the output, the JSON and the restore point, the one-line
// error that names both when nothing is set, and a SIGKILL while the guest is
// held: the watchdog (a real process) resumes or starts it. Xen cannot run
// here: a fake `xl` (a small sh script first on PATH, the watchdog's too)
// answers from the recorded fixtures in tests/fixtures/xen/, keeps the
// domain's state (running, paused, off) in a file and logs every call.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from '../support/scratch';
import { sha256File, writeRandomishImage } from '../support/files';
import { ferry, spawnFerry, expectSuccess, describeResult, FAST_KDF, REPO_ROOT, type RunningFerry } from '../support/ferry';

const scratch = useScratch('fleet-xen-in-place-cli');
const env = { FERRY_PASSWORD: 'fleet-xen-in-place-cli' };
const FIXTURES = path.join(REPO_ROOT, 'tests', 'fixtures', 'xen');
const MiB = 1024 * 1024;
let repo: string;

beforeAll(async () => {
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }), 'init');
}, 60_000);

interface FakeXen {
  dir: string;
  bin: string;
  disk: string;
  cfg: string;
  conf: (guestTable: string) => string;
  state(): string;
  calls(): string[];
}

/** A fake xl host running web01 (domid 3) with its disk a plain file; `guestTable` is web01's [guest."web01"] body in ferry.conf. */
function fakeXen(label: string): FakeXen {
  const dir = scratch.mkdir(label);
  const bin = scratch.mkdir(label, 'bin');
  const disk = path.join(dir, 'web01.img');
  writeRandomishImage(disk, 16 * MiB, 7300 + label.length);
  const configDir = scratch.mkdir(label, 'etc-xen');
  const cfg = path.join(configDir, 'web01.cfg');
  fs.writeFileSync(cfg, fs.readFileSync(path.join(FIXTURES, 'fleet', 'web01.cfg'), 'utf8').replace(/^disk = .*$/m, `disk = [ 'file:${disk},xvda,w' ]`));
  const list = fs.readFileSync(path.join(FIXTURES, 'xl-list.stdout'), 'utf8').split('\n');
  const withState = (line: string, letters: string) => line.replace(/^(web01\s+\d+\s+\d+\s+\d+\s+)\S{6}/, (_m, head: string) => head + letters);
  const web01 = list.find((l) => l.startsWith('web01 '))!;
  const dom0 = list.find((l) => l.startsWith('Domain-0 '))!;
  fs.writeFileSync(path.join(dir, 'list.running'), [list[0], dom0, withState(web01, '-b----')].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'list.paused'), [list[0], dom0, withState(web01, '--p---')].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'list.off'), [list[0], dom0].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'list-web01.running'), [list[0], withState(web01, '-b----')].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'list-web01.paused'), [list[0], withState(web01, '--p---')].join('\n') + '\n');
  // Shutting down: still listed as running until the test says it is off.
  fs.writeFileSync(path.join(dir, 'list.stopping'), [list[0], dom0, withState(web01, '-b----')].join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'list-web01.stopping'), [list[0], withState(web01, '-b----')].join('\n') + '\n');
  const details = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'xl-list-l.stdout'), 'utf8')) as { config: { c_info: { name: string }; disks: unknown[] } }[])
    .filter((d) => d.config.c_info.name === 'web01');
  details[0]!.config.disks = [{ pdev_path: disk, vdev: 'xvda', format: 'raw', readwrite: 1 }];
  fs.writeFileSync(path.join(dir, 'list-l'), `${JSON.stringify(details, null, 4)}\n`);
  fs.copyFileSync(path.join(FIXTURES, 'xl-shutdown-w-web01.stderr'), path.join(dir, 'shutdown.stderr'));
  fs.writeFileSync(path.join(dir, 'create.stderr'), fs.readFileSync(path.join(FIXTURES, 'xl-create-web01.stderr'), 'utf8').replace('/etc/xen/web01.cfg', cfg));
  fs.writeFileSync(path.join(dir, 'state'), 'running\n');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  fs.writeFileSync(path.join(bin, 'xl'), `#!/bin/sh
# Fake xl for ferry's tests: recorded answers, state in a file, every call logged.
dir=${q(dir)}
echo "$*" >> "$dir/calls.log"
state=$(cat "$dir/state")
case "$*" in
  "list") cat "$dir/list.$state" ;;
  "list -l") cat "$dir/list-l" ;;
  "list web01")
    # xl_utils.c find_domain's message for a name that no domain has.
    if [ "$state" = off ]; then echo "web01 is an invalid domain identifier (rc=-6)" >&2; exit 1; fi
    cat "$dir/list-web01.$state" ;;
  "pause web01") echo paused > "$dir/state" ;;
  "unpause web01") echo running > "$dir/state" ;;
  "shutdown -w web01")
    if [ -e "$dir/slow-shutdown" ]; then
      # A slow guest: shutting down until the test writes "off".
      echo stopping > "$dir/state"
      while [ "$(cat "$dir/state")" = stopping ]; do sleep 0.2; done
    else
      echo off > "$dir/state"
    fi
    cat "$dir/shutdown.stderr" >&2 ;;
  "create "${q(cfg)})
    if [ "$state" != off ]; then echo "fake xl: web01 exists" >&2; exit 1; fi
    echo running > "$dir/state"; cat "$dir/create.stderr" >&2 ;;
  *) echo "fake xl: unexpected call: xl $*" >&2; exit 2 ;;
esac
`, { mode: 0o755 });
  return {
    dir, bin, disk, cfg,
    conf: (guestTable) => {
      const file = path.join(dir, 'ferry.conf');
      fs.writeFileSync(file, `repository = ${JSON.stringify(repo)}\n[xen]\nconfig_dir = ${JSON.stringify(configDir)}\n\n[guest."web01"]\n${guestTable}`);
      return file;
    },
    state: () => fs.readFileSync(path.join(dir, 'state'), 'utf8').trim(),
    calls: () => {
      const log = path.join(dir, 'calls.log');
      return fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
    },
  };
}

const backupArgs = (xen: FakeXen, conf: string, extra: string[] = []) => ['backup', '--all', '--config', conf, '--work-dir', scratch.mkdir(path.basename(xen.dir), 'work'), ...extra];
const xenEnv = (xen: FakeXen, extra: Record<string, string> = {}) => ({ ...env, PATH: `${xen.bin}:${process.env.PATH ?? ''}`, FERRY_RUN_DIR: scratch.mkdir(path.basename(xen.dir), 'run'), ...extra });

describe('backup --all of a running Xen guest on a plain file', () => {
  it('without a snapshot setting fails in one line that names snapshot = "pause" and "shutdown" and what each costs', async () => {
    const xen = fakeXen('unset');
    const r = await ferry(backupArgs(xen, xen.conf('boot_group = 0\n')), { env: xenEnv(xen) });
    expect(r.code, describeResult(r)).toBe(11);
    const failed = r.stdout.split('\n').filter((l) => l.startsWith('FAILED web01'));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toContain(`no snapshot provider can take a point-in-time copy of disk xvda (${xen.disk})`);
    expect(failed[0]).toContain('snapshot = "pause" in ferry.conf (the guest stays paused while all its disks are read (16 MiB to read): no service meanwhile');
    expect(failed[0]).toContain('snapshot = "shutdown" (clean shutdown, read, start again with its config: down for a shutdown, the read and a boot');
    expect(xen.calls()).not.toContain('pause web01');
    expect(xen.state()).toBe('running');
  });

  it('snapshot = "pause": reports the pause on the summary line, in --json and in `ferry show`; restores bit-exact', async () => {
    const xen = fakeXen('pause');
    const r = await ferry(backupArgs(xen, xen.conf('snapshot = "pause"\n'), ['--json']), { env: xenEnv(xen) });
    const out = JSON.parse(expectSuccess(r, 'backup --all --json')) as { guests: { guest: string; id: string; pauseMs: number; downMs: number; snapshotKinds: string[] }[] };
    const [g] = out.guests;
    expect(g).toMatchObject({ guest: 'web01', snapshotKinds: ['pause'], downMs: 0 });
    expect(g!.pauseMs).toBeGreaterThanOrEqual(0);
    expect(xen.calls()).toEqual(['list', 'list -l', 'list web01', 'pause web01', 'unpause web01']);
    expect(xen.state()).toBe('running');
    const shown = JSON.parse(expectSuccess(await ferry(['show', '--repo', repo, g!.id, '--json'], { env }), 'show')) as { stats: { pauseMs?: number } };
    expect(shown.stats.pauseMs).toBe(g!.pauseMs);
    expect(expectSuccess(await ferry(['show', '--repo', repo, g!.id], { env }), 'show')).toContain(`guest:  paused ${g!.pauseMs} ms for this backup`);
    const to = scratch.mkdir('pause', 'restored');
    expectSuccess(await ferry(['restore', '--repo', repo, g!.id, '--to', to], { env }), 'restore');
    expect(await sha256File(path.join(to, 'xvda.img'))).toBe(await sha256File(xen.disk));
  }, 60_000);

  it('snapshot = "shutdown": xl shutdown -w, read, xl create CFG; the summary line gives the downtime', async () => {
    const xen = fakeXen('shutdown');
    const r = await ferry(backupArgs(xen, xen.conf('snapshot = "shutdown"\n')), { env: xenEnv(xen) });
    expectSuccess(r, 'backup --all');
    expect(r.stdout).toMatch(/^ok +web01 \(xen, shutdown\): [0-9a-f]{8}, paused 0 ms, shut down \d+ ms, read /m);
    expect(xen.calls()).toEqual(['list', 'list -l', 'list web01', 'shutdown -w web01', `create ${xen.cfg}`]);
    expect(xen.state()).toBe('running');
  }, 60_000);

  it('snapshot = "pause" with quiesce = "none" is refused for that guest in one line, before anything is held', async () => {
    const xen = fakeXen('pause-none');
    const r = await ferry(backupArgs(xen, xen.conf('snapshot = "pause"\nquiesce = "none"\n')), { env: xenEnv(xen) });
    expect(r.code, describeResult(r)).toBe(11);
    expect(r.stdout).toContain('FAILED web01 (xen): guest web01: snapshot = "pause" reads its disks while it is paused, but quiesce = "none" would not pause it; set quiesce = "pause" for this guest or remove the quiesce key');
    expect(xen.calls()).toEqual(['list', 'list -l']);
  });
});

/** Polls until `reached()`; fails (killing ferry) if ferry exits first or 60 s pass. */
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

describe('a ferry killed by SIGKILL while it holds a Xen guest for an in-place read', () => {
  it('snapshot = "pause": the watchdog runs xl unpause', async () => {
    const xen = fakeXen('kill-pause');
    const running = spawnFerry(backupArgs(xen, xen.conf('snapshot = "pause"\n')), { env: xenEnv(xen, { FERRY_HOLD_QUIESCE_MS: '60000' }) });
    await waitUntil(running, () => xen.state() === 'paused', 'xl pause');
    running.child.kill('SIGKILL');
    // ferry's stderr closes once the watchdog, which inherited it, has exited too.
    const result = await running.done;
    expect(result.signal, describeResult(result)).toBe('SIGKILL');
    expect(xen.state()).toBe('running');
    expect(xen.calls().slice(-2)).toEqual(['pause web01', 'unpause web01']);
    expect(result.stderr).toContain('ferry watchdog: ferry exited while the guest was held; ran xl unpause web01\n');
  }, 90_000);

  it('snapshot = "shutdown": the watchdog starts the guest again with xl create CFG', async () => {
    const xen = fakeXen('kill-shutdown');
    const running = spawnFerry(backupArgs(xen, xen.conf('snapshot = "shutdown"\n')), { env: xenEnv(xen, { FERRY_HOLD_QUIESCE_MS: '60000' }) });
    await waitUntil(running, () => xen.state() === 'off', 'xl shutdown -w');
    running.child.kill('SIGKILL');
    const result = await running.done;
    expect(result.signal, describeResult(result)).toBe('SIGKILL');
    expect(xen.state()).toBe('running');
    expect(xen.calls().slice(-3)).toEqual(['shutdown -w web01', 'list web01', `create ${xen.cfg}`]);
    expect(result.stderr).toContain(`ferry watchdog: ferry exited while the guest was held; ran xl create ${xen.cfg}\n`);
  }, 90_000);

  it('snapshot = "shutdown" of a guest still shutting down: the watchdog waits until the domain is gone, then starts it', async () => {
    const xen = fakeXen('kill-slow-shutdown');
    fs.writeFileSync(path.join(xen.dir, 'slow-shutdown'), '');
    const running = spawnFerry(backupArgs(xen, xen.conf('snapshot = "shutdown"\n')), { env: xenEnv(xen, { FERRY_HOLD_QUIESCE_MS: '60000' }) });
    await waitUntil(running, () => xen.state() === 'stopping', 'xl shutdown -w');
    running.child.kill('SIGKILL');
    // The watchdog must not start a guest that is still there: it asks xl list until the domain is gone.
    const asked = Date.now() + 30_000;
    while (!xen.calls().slice(xen.calls().indexOf('shutdown -w web01')).includes('list web01')) {
      if (Date.now() > asked) throw new Error(`the watchdog never asked xl list web01: ${xen.calls().join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(xen.calls().filter((c) => c.startsWith('create'))).toEqual([]);
    fs.writeFileSync(path.join(xen.dir, 'state'), 'off\n');
    const result = await running.done;
    expect(result.signal, describeResult(result)).toBe('SIGKILL');
    expect(xen.state()).toBe('running');
    expect(xen.calls().at(-1)).toBe(`create ${xen.cfg}`);
    expect(result.stderr).toContain(`ferry watchdog: ferry exited while the guest was held; ran xl create ${xen.cfg}\n`);
  }, 120_000);
});
