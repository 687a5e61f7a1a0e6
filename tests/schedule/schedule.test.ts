// `ferry schedule install|show|remove` into a temporary root: the systemd
// service and timer (checked by systemd-analyze verify), the cron.d file where
// systemd is not running (its flock really keeps two nights apart), the
// round trip through show and remove, and refusals that write nothing.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CRON_LOCK_PATH, RANDOM_DELAY_SEC, cronCommand } from '../../src/schedule/scheduleFiles';
import { EXIT, FERRY_BIN, expectCleanFailure, expectSuccess, ferry, listFiles, parseJson, runCommand, useScratch } from '../support';

const scratch = useScratch('schedule');
const NIGHTLY = `${process.execPath} ${FERRY_BIN} nightly --config /etc/ferry/ferry.conf`;
let roots = 0;

/** A target system: ferry's config, and systemd running or only cron. */
function targetRoot(init: 'systemd' | 'cron'): string {
  const root = scratch.path(`root-${++roots}`);
  fs.mkdirSync(path.join(root, 'etc/ferry'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc/ferry/ferry.conf'), '# the nightly config\n');
  fs.mkdirSync(path.join(root, init === 'systemd' ? 'run/systemd/system' : 'etc/cron.d'), { recursive: true });
  return root;
}

function read(root: string, p: string): string {
  return fs.readFileSync(path.join(root, p), 'utf8');
}

function tree(root: string): string[] {
  return listFiles(root).sort();
}

describe('ferry schedule on a systemd host', () => {
  it('installs a service and timer that systemd-analyze verify accepts, shows them, and removes them', async () => {
    const root = targetRoot('systemd');
    const out = expectSuccess(await ferry(['schedule', 'install', '--at', '3:15', '--root', root]));
    expect(out.split('\n')[0]).toBe('systemd timer: systemd is the init system here (/run/systemd/system exists)');
    expect(out).toMatch(/runs every day at 03:15$/m);

    const service = read(root, 'etc/systemd/system/ferry-nightly.service');
    for (const line of ['Type=oneshot', `ExecStart=${NIGHTLY}`, 'Nice=10', 'IOSchedulingClass=idle', 'CPUSchedulingPolicy=batch', 'KillMode=process']) {
      expect(service.split('\n'), line).toContain(line);
    }
    const timer = read(root, 'etc/systemd/system/ferry-nightly.timer');
    for (const line of ['OnCalendar=*-*-* 03:15:00', 'Persistent=true', `RandomizedDelaySec=${RANDOM_DELAY_SEC}`, 'Unit=ferry-nightly.service', 'WantedBy=timers.target']) {
      expect(timer.split('\n'), line).toContain(line);
    }
    expect(fs.readlinkSync(path.join(root, 'etc/systemd/system/timers.target.wants/ferry-nightly.timer'))).toBe('/etc/systemd/system/ferry-nightly.timer');
    expect(fs.statSync(path.join(root, 'etc/systemd/system/ferry-nightly.service')).mode & 0o777).toBe(0o644);

    // systemd-analyze prints what it ignores (unknown keys, bad values) on stderr and still exits 0.
    const unitFiles = ['service', 'timer'].map((t) => path.join(root, `etc/systemd/system/ferry-nightly.${t}`));
    const verified = await runCommand('systemd-analyze', ['verify', ...unitFiles]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stderr).toBe('');
    // ... which it does for a damaged copy: the check above has teeth.
    const damaged = scratch.path(`damaged-${roots}`);
    fs.mkdirSync(damaged);
    fs.writeFileSync(path.join(damaged, 'ferry-nightly.service'), service.replace('IOSchedulingClass=idle', 'IOSchedulingClass=idel'));
    expect((await runCommand('systemd-analyze', ['verify', path.join(damaged, 'ferry-nightly.service')])).stderr).toMatch(/IO scheduling class/);

    const shown = parseJson(await ferry(['schedule', 'show', '--root', root, '--json']));
    expect(shown).toEqual({
      kind: 'systemd',
      at: '03:15',
      command: NIGHTLY,
      files: ['/etc/systemd/system/ferry-nightly.service', '/etc/systemd/system/ferry-nightly.timer', '/etc/systemd/system/timers.target.wants/ferry-nightly.timer'],
    });
    expect(expectSuccess(await ferry(['schedule', 'show', '--root', root]))).toMatch(/^systemd timer: every day at 03:15\nruns: .* nightly --config \/etc\/ferry\/ferry\.conf\n/);

    const removed = expectSuccess(await ferry(['schedule', 'remove', '--root', root]));
    expect(removed.trim().split('\n')).toHaveLength(3);
    expect(tree(root)).toEqual(['etc/ferry/ferry.conf']);
    expect(parseJson(await ferry(['schedule', 'show', '--root', root, '--json']))).toBeNull();
    expect(expectSuccess(await ferry(['schedule', 'show', '--root', root]))).toMatch(/no ferry schedule is installed/);
  });
});

describe('ferry schedule where systemd is not running', () => {
  it('writes a cron.d file (and says why), which show reads back and remove removes', async () => {
    const root = targetRoot('cron');
    const out = expectSuccess(await ferry(['schedule', 'install', '--at', '02:30', '--config', '/etc/ferry/ferry.conf', '--root', root]));
    expect(out.split('\n')[0]).toBe('cron.d file: systemd is not running here (no /run/systemd/system) and cron reads /etc/cron.d');
    const lines = read(root, 'etc/cron.d/ferry-nightly').split('\n');
    expect(lines).toContain(`30 2 * * * root ${cronCommand(NIGHTLY, CRON_LOCK_PATH, RANDOM_DELAY_SEC)}`);
    expect(lines).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    // cron turns % into a newline.
    expect(lines.filter((l) => !l.startsWith('#')).join('\n')).not.toContain('%');
    expect(parseJson(await ferry(['schedule', 'show', '--root', root, '--json']))).toEqual({ kind: 'cron', at: '02:30', command: NIGHTLY, files: ['/etc/cron.d/ferry-nightly'] });

    // Forced to systemd, the cron file goes: never two schedules.
    const forced = expectSuccess(await ferry(['schedule', 'install', '--scheduler', 'systemd', '--root', root]));
    expect(forced).toMatch(/^systemd timer: as asked\nremoved .*\/etc\/cron\.d\/ferry-nightly \(the earlier cron schedule\)$/m);
    expect(fs.existsSync(path.join(root, 'etc/cron.d/ferry-nightly'))).toBe(false);
    expectSuccess(await ferry(['schedule', 'install', '--scheduler', 'cron', '--root', root]));
    expect(fs.existsSync(path.join(root, 'etc/systemd/system/ferry-nightly.timer'))).toBe(false);

    expectSuccess(await ferry(['schedule', 'remove', '--root', root]));
    expect(tree(root)).toEqual(['etc/ferry/ferry.conf']);
    expect(expectSuccess(await ferry(['schedule', 'remove', '--root', root]))).toMatch(/no ferry schedule was installed/);
  });

  it("the cron line's flock keeps two nights apart: a second start while the first runs does nothing and says so", async () => {
    const lock = scratch.path('nightly.lock');
    const marker = scratch.path('started');
    const command = cronCommand(`touch ${marker}`, lock, 0);
    // The first night, holding the lock until its stdin closes.
    const first = spawn('flock', [lock, 'sh', '-c', 'echo holding; cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => first.stdout!.once('data', () => resolve()));
    const second = await runCommand('sh', ['-c', command]);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe(`ferry nightly: not started: the previous night still runs (it holds ${lock})\n`);
    expect(fs.existsSync(marker)).toBe(false);
    first.stdin!.end();
    await new Promise((resolve) => first.on('close', resolve));
    // The next night, with the lock free, runs.
    const third = await runCommand('sh', ['-c', command]);
    expect(third.stdout).toBe('');
    expect(fs.existsSync(marker)).toBe(true);
  });
});

describe('ferry schedule refuses', () => {
  it('bad input and files it did not write, writing nothing', async () => {
    const root = targetRoot('cron');
    const before = tree(root);
    const install = (extra: string[]) => ferry(['schedule', 'install', '--root', root, ...extra]);
    expectCleanFailure(await install(['--at', '25:00']), { code: EXIT.usage, message: /schedule time '25:00' is not a time of day; use HH:MM/ });
    expectCleanFailure(await install(['--scheduler', 'anacron']), { code: EXIT.usage, message: /--scheduler: 'anacron' is not a scheduler; use systemd or cron/ });
    expectCleanFailure(await install(['--config', 'ferry.conf']), { code: EXIT.usage, message: /config file 'ferry.conf': must be an absolute path/ });
    expectCleanFailure(await install(['--config', '/etc/ferry/my ferry.conf']), { code: EXIT.usage, message: /config file '\/etc\/ferry\/my ferry.conf': must be an absolute path of letters/ });
    expectCleanFailure(await install(['--config', '/etc/ferry/other.conf']), { code: EXIT.badInput, message: /config file .*\/etc\/ferry\/other.conf does not exist; every night would fail/ });
    expect(tree(root)).toEqual(before);

    fs.writeFileSync(path.join(root, 'etc/cron.d/ferry-nightly'), '0 1 * * * root /usr/local/bin/my-own-backup\n');
    const foreign = tree(root);
    expectCleanFailure(await install([]), { code: EXIT.badInput, message: /ferry-nightly exists and was not written by 'ferry schedule install'; ferry leaves it alone/ });
    expectCleanFailure(await ferry(['schedule', 'remove', '--root', root]), { code: EXIT.badInput, message: /not written by 'ferry schedule install'/ });
    expect(tree(root)).toEqual(foreign);
    expect(read(root, 'etc/cron.d/ferry-nightly')).toBe('0 1 * * * root /usr/local/bin/my-own-backup\n');

    const bare = scratch.path(`bare-${++roots}`);
    fs.mkdirSync(bare);
    expectCleanFailure(await ferry(['schedule', 'install', '--root', bare]), { code: EXIT.badInput, message: /neither is systemd running .* nor is cron installed/ });
    expect(tree(bare)).toEqual([]);
  });
});
