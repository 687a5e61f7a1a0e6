// Starting restored guests, at the command boundary (no Xen here; libvirt's
// and xl's answers replayed from tests/fixtures, see their READMEs): asking a
// host whether a guest runs, and `bootSite`'s order — boot group by boot
// group, a group only after the one before runs, later groups left alone when
// a group fails, a guest that already runs never touched.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { guestPresence, qemuProcessesOf, startCommands } from '../../src/site/guestStart';
import { parseSiteHosts } from '../../src/site/hostsFile';
import { type RestoredGuest, bootSite } from '../../src/site/siteBoot';
import { healthSettingFor, healthWaiter } from '../../src/site/siteHealth';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import type { PlannedGuest, SitePlan } from '../../src/site/sitePlan';
import { RecordedCommandRunner, recordedOutput } from '../support/recordedRunner';
import { useScratch } from '../support';

const scratch = useScratch('guest-start');
const XEN = path.resolve(__dirname, '..', 'fixtures', 'xen');
const LIBVIRT = path.resolve(__dirname, '..', 'fixtures', 'libvirt');
const xenOut = (name: string) => recordedOutput(XEN, name);
const libvirtOut = (name: string) => recordedOutput(LIBVIRT, name);

const site = parseSiteHosts(
  [
    '[[host]]\nname = "dom0"\nhypervisor = "xen"\nmemory = "64G"\ncpus = 16\n[[host.pool]]\nname = "vg0"\ntype = "lvm"\nvolume_group = "vg0"\n',
    '[[host]]\nname = "kvm1"\nhypervisor = "libvirt"\nmemory = "64G"\ncpus = 16\n[[host.pool]]\nname = "vg0"\ntype = "lvm"\nvolume_group = "vg0"\n',
    '[[host]]\nname = "q1"\nhypervisor = "qemu"\nmemory = "64G"\ncpus = 16\nconfig_dir = "/srv/ferry/qemu"\n[[host.pool]]\nname = "d"\ntype = "dir"\npath = "/srv/images"\n',
  ].join('\n'),
  'hosts.toml',
);
const host = (name: string) => site.hosts.find((h) => h.name === name)!;

function planned(guest: string, bootGroup: number, bootPriority = 0): PlannedGuest {
  return { guest, restorePoint: `${guest}-rp`.padEnd(64, '0'), time: '2026-11-30T02:00:00.000Z', sourceHost: 'old01', host: 'dom0', hypervisor: 'xen', bootGroup, bootPriority, disks: [] };
}

function planOf(guests: PlannedGuest[]): SitePlan {
  return { format: 'ferry-site-plan', version: 1, created: '2026-12-01T10:00:00.000Z', repository: '/mnt/usb/ferry', hostsFile: 'hosts.toml', guests, unplaced: [], pools: [] };
}

const restoredOk = (...guests: string[]) => new Map<string, RestoredGuest>(guests.map((g) => [g, { guest: g, ok: true, configFiles: [`/etc/xen/${g}.cfg`, `/etc/xen/${g}.cfg.ferry-orig`] }]));

function bootOptions(runner: RecordedCommandRunner, lines: string[]) {
  return { dryRun: false, runnerFor: () => runner, journalDir: scratch.mkdir('journal', String(lines.length)), runningTimeoutMs: 5_000, log: (l: string) => lines.push(l) };
}

describe('whether a guest runs on a target host', () => {
  it('xen: a domain of that name in `xl list`, in any state; no xl there means none runs', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'xl', args: ['list'], ...xenOut('xl-list'), repeat: true }]);
    expect(await guestPresence(runner, host('dom0'), 'web01')).toEqual({ runs: true, how: 'xl list: domain 3, state -b----' });
    expect(await guestPresence(runner, host('dom0'), 'mail01')).toMatchObject({ runs: true }); // paused still runs
    expect(await guestPresence(runner, host('dom0'), 'app01')).toEqual({ runs: false });
    const noXl = new RecordedCommandRunner([{ cmd: 'xl', args: ['list'], stderr: "env: 'xl': No such file or directory\n", code: 127 }]);
    expect(await guestPresence(noXl, host('dom0'), 'web01')).toEqual({ runs: false });
  });

  it('xen: a dom0 whose xl cannot reach the hypervisor cannot tell, and says so', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'xl', args: ['list'], ...xenOut('xl-no-hypervisor'), code: 1 }]);
    await expect(guestPresence(runner, host('dom0'), 'web01')).rejects.toThrow("dom0: xl list failed (exit 1): ERROR:  Can't find hypervisor information in sysfs!");
  });

  it('libvirt: `virsh domstate` running or paused runs; an unknown domain does not', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'virsh', args: ['-c', 'qemu:///system', 'domstate', 'web01'], ...libvirtOut('domstate-web01') },
      { cmd: 'virsh', args: ['-c', 'qemu:///system', 'domstate', 'web01'], ...libvirtOut('domstate-web01-paused') },
      { cmd: 'virsh', args: ['-c', 'qemu:///system', 'domstate', 'nosuch'], ...libvirtOut('domstate-nosuch'), code: 1 },
    ]);
    expect(await guestPresence(runner, host('kvm1'), 'web01')).toEqual({ runs: true, how: 'virsh domstate: running' });
    expect(await guestPresence(runner, host('kvm1'), 'web01')).toEqual({ runs: true, how: 'virsh domstate: paused' });
    expect(await guestPresence(runner, host('kvm1'), 'nosuch')).toEqual({ runs: false });
  });

  it('qemu: a QEMU process named so (as QEMU or libvirt passes -name) or holding the launcher\'s QMP socket', () => {
    const ps = [
      '    1 /sbin/init',
      '  812 /usr/bin/qemu-system-x86_64 -name web01 -accel kvm -m 1024',
      '  813 /usr/bin/qemu-system-x86_64 -name guest=db01,debug-threads=on -S',
      '  814 qemu-system-x86_64 -name other -qmp unix:/srv/ferry/qemu/run/app01.qmp,server=on,wait=off',
      '  815 /usr/bin/vim -name web02',
      '  816 /usr/bin/qemu-system-x86_64 -name web012',
    ].join('\n');
    expect(qemuProcessesOf(ps, 'web01', '/srv/ferry/qemu/run/web01.qmp')).toEqual([812]);
    expect(qemuProcessesOf(ps, 'db01', '/srv/ferry/qemu/run/db01.qmp')).toEqual([813]);
    expect(qemuProcessesOf(ps, 'app01', '/srv/ferry/qemu/run/app01.qmp')).toEqual([814]);
    expect(qemuProcessesOf(ps, 'web02', '/srv/ferry/qemu/run/web02.qmp')).toEqual([]);
  });

  it('starts with xl create, virsh define + start, or the launcher script', () => {
    expect(startCommands(host('dom0'), 'web01', '/etc/xen/web01.cfg')).toEqual([{ cmd: 'xl', args: ['create', '/etc/xen/web01.cfg'] }]);
    expect(startCommands(host('kvm1'), 'web01', '/etc/ferry/site/libvirt/web01.xml')).toEqual([
      { cmd: 'virsh', args: ['-c', 'qemu:///system', 'define', '/etc/ferry/site/libvirt/web01.xml'] },
      { cmd: 'virsh', args: ['-c', 'qemu:///system', 'start', 'web01'] },
    ]);
    expect(startCommands(host('q1'), 'web01', '/srv/ferry/qemu/web01.sh')).toEqual([{ cmd: 'sh', args: ['/srv/ferry/qemu/web01.sh'] }]);
  });
});

describe('bootSite on a Xen host (xl at the command boundary)', () => {
  it('starts boot group 0 with xl create, waits until xl list shows it, then group 1', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list-dom0-only') }, // db01 does not run yet
      { cmd: 'xl', args: ['create', '/etc/xen/db01.cfg'], ...xenOut('xl-create-db01') },
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list') }, // now it runs (web01 and mail01 in this recording are not in the plan)
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list') }, // app01 does not run yet
      { cmd: 'xl', args: ['create', '/etc/xen/app01.cfg'], stderr: 'Parsing config from /etc/xen/app01.cfg\n' },
      { cmd: 'xl', args: ['list'], stdout: `${xenOut('xl-list').stdout}app01                                        9   512     1     -b----       0.4\n` },
    ]);
    const lines: string[] = [];
    const pending = bootSite(planOf([planned('db01', 0), planned('app01', 1)]), restoredOk('db01', 'app01'), site, bootOptions(runner, lines));
    const boots = await pending;
    expect(runner.commandLines()).toEqual(['xl list', 'xl create /etc/xen/db01.cfg', 'xl list', 'xl list', 'xl create /etc/xen/app01.cfg', 'xl list']);
    expect(boots.get('db01')).toMatchObject({ start: { result: 'started' }, health: { result: 'running' } });
    expect(boots.get('app01')).toMatchObject({ start: { result: 'started' }, health: { result: 'running' } });
    expect(lines).toContain('boot group 0: 1 guest(s) up');
    expect(lines.indexOf('boot group 0: 1 guest(s) up')).toBeLessThan(lines.findIndex((l) => l.startsWith('dom0: app01 started')));
  });

  it('a guest whose start fails is named with xl\'s reason, and later groups are not started', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list-dom0-only') },
      { cmd: 'xl', args: ['create', '/etc/xen/db01.cfg'], stderr: 'Parsing config from /etc/xen/db01.cfg\nlibxl: error: libxl_device.c:1109:device_backend_callback: Domain 11:unable to add device with path /local/domain/0/backend/vbd/11/51712\nlibxl: error: libxl_create.c:1870:domcreate_attach_devices: Domain 11:unable to add disk devices\n', code: 3 },
    ]);
    const lines: string[] = [];
    const boots = await bootSite(planOf([planned('db01', 0), planned('app01', 1)]), restoredOk('db01', 'app01'), site, bootOptions(runner, lines));
    expect(runner.commandLines()).toEqual(['xl list', 'xl create /etc/xen/db01.cfg']);
    expect(boots.get('db01')!.start).toEqual({ result: 'failed', reason: 'dom0: xl create /etc/xen/db01.cfg failed (exit 3): libxl: error: libxl_create.c:1870:domcreate_attach_devices: Domain 11:unable to add disk devices' });
    expect(boots.get('app01')!.start.result).toBe('skipped');
    expect(boots.get('app01')!.start.reason).toMatch(/^boot group 0 did not come up \(db01: dom0: xl create .* failed .*\); later groups were not started$/);
  });

  it('a guest that already runs on the target is not touched, and its group counts as failed', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'xl', args: ['list'], ...xenOut('xl-list') }]); // db01 runs there already
    const lines: string[] = [];
    const boots = await bootSite(planOf([planned('db01', 0), planned('app01', 1)]), restoredOk('db01', 'app01'), site, bootOptions(runner, lines));
    expect(runner.commandLines()).toEqual(['xl list']);
    expect(boots.get('db01')!.start).toEqual({ result: 'skipped', reason: 'already runs on host dom0 (xl list: domain 5, state r-----); not touched' });
    expect(lines).toContain('dom0: guest db01 already runs on host dom0 (xl list: domain 5, state r-----); not touched');
    expect(boots.get('app01')!.start.result).toBe('skipped');
  });

  it('--dry-run prints the start commands in boot order and runs nothing', async () => {
    const runner = new RecordedCommandRunner();
    const lines: string[] = [];
    const boots = await bootSite(planOf([planned('db01', 0), planned('web01', 1, 5), planned('app01', 1, 2)]), restoredOk('db01', 'web01', 'app01'), site, { ...bootOptions(runner, lines), dryRun: true });
    expect(runner.calls).toEqual([]);
    expect(lines).toEqual([
      'dom0: xl create /etc/xen/db01.cfg   (boot group 0)',
      '(wait until boot group 0 runs and passes its health checks)',
      'dom0: xl create /etc/xen/app01.cfg   (boot group 1)',
      'dom0: xl create /etc/xen/web01.cfg   (boot group 1)',
      '(wait until boot group 1 runs and passes its health checks)',
    ]);
    expect(boots.get('web01')!.start.result).toBe('not started');
  });
});

describe('bootSite on a libvirt host (virsh at the command boundary)', () => {
  it('defines the rewritten domain XML, starts it, and waits until domstate says running', async () => {
    const virsh = (...args: string[]) => ['-c', 'qemu:///system', ...args];
    const runner = new RecordedCommandRunner([
      { cmd: 'virsh', args: virsh('domstate', 'web01'), stdout: '\n', stderr: "error: failed to get domain 'web01'\n", code: 1 }, // as domstate-nosuch
      // What virsh 9.0 prints on success (tools/virsh-domain.c); only the exit status is read.
      { cmd: 'virsh', args: virsh('define', '/etc/ferry/site/libvirt/web01.xml'), stdout: "Domain 'web01' defined from /etc/ferry/site/libvirt/web01.xml\n\n" },
      { cmd: 'virsh', args: virsh('start', 'web01'), stdout: "Domain 'web01' started\n\n" },
      { cmd: 'virsh', args: virsh('domstate', 'web01'), ...libvirtOut('domstate-web01') },
    ]);
    const restored = new Map<string, RestoredGuest>([['web01', { guest: 'web01', ok: true, configFiles: ['/etc/ferry/site/libvirt/web01.xml'] }]]);
    const boots = await bootSite(planOf([{ ...planned('web01', 0), host: 'kvm1', hypervisor: 'libvirt' }]), restored, site, bootOptions(runner, []));
    expect(runner.commandLines()).toEqual([
      'virsh -c qemu:///system domstate web01',
      'virsh -c qemu:///system define /etc/ferry/site/libvirt/web01.xml',
      'virsh -c qemu:///system start web01',
      'virsh -c qemu:///system domstate web01',
    ]);
    expect(boots.get('web01')).toMatchObject({ start: { result: 'started' }, health: { result: 'running' } });
  });
});

describe('bootSite when a re-run finds guests it started', () => {
  it('counts them as started and checks them again, and a dry run says they run instead of printing their start', async () => {
    const restored = restoredOk('app01');
    restored.set('db01', { guest: 'db01', ok: true, configFiles: [], alreadyRunning: 'this-plan' });
    const lines: string[] = [];
    const dry = await bootSite(planOf([planned('db01', 0), planned('app01', 1)]), restored, site, { ...bootOptions(new RecordedCommandRunner(), lines), dryRun: true });
    expect(lines).toEqual([
      'dom0: db01 runs already, started by an earlier run of this plan',
      'dom0: xl create /etc/xen/app01.cfg   (boot group 1)',
      '(wait until boot group 1 runs and passes its health checks)',
    ]);
    expect(dry.get('db01')!.start.result).toBe('already running');
    const runner = new RecordedCommandRunner([
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list') }, // db01 runs: group 0 is up
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list') }, // app01 does not run yet
      { cmd: 'xl', args: ['create', '/etc/xen/app01.cfg'], stderr: 'Parsing config from /etc/xen/app01.cfg\n' },
      { cmd: 'xl', args: ['list'], stdout: `${xenOut('xl-list').stdout}app01                                        9   512     1     -b----       0.4\n` },
    ]);
    const boots = await bootSite(planOf([planned('db01', 0), planned('app01', 1)]), restored, site, bootOptions(runner, []));
    expect(runner.commandLines()).toEqual(['xl list', 'xl list', 'xl create /etc/xen/app01.cfg', 'xl list']);
    expect(boots.get('db01')).toMatchObject({ start: { result: 'already running' }, health: { result: 'running' } });
    expect(boots.get('app01')).toMatchObject({ start: { result: 'started' }, health: { result: 'running' } });
  });
});

describe('health checks of started guests', () => {
  it('come from the hosts file\'s [guest] rules (a later or exact rule overriding), else from ferry.conf', () => {
    const rules = parseSiteHosts(
      '[[host]]\nname = "dom0"\nhypervisor = "xen"\nmemory = "64G"\ncpus = 16\n[[host.pool]]\nname = "vg0"\ntype = "lvm"\nvolume_group = "vg0"\n' +
        '[guest."web01"]\nhealth_timeout = "90s"\n[guest."web*"]\nhealth = { tcp = "10.0.0.21:443" }\n',
      'hosts.toml',
    );
    const fromConf = (g: string) => (g === 'db01' ? { check: { kind: 'serial' as const, pattern: 'login:' } } : undefined);
    expect(healthSettingFor(rules, 'web01', fromConf)).toEqual({ check: { kind: 'tcp', host: '10.0.0.21', port: 443 }, timeoutMs: 90_000 });
    expect(healthSettingFor(rules, 'web02', fromConf)).toEqual({ check: { kind: 'tcp', host: '10.0.0.21', port: 443 } });
    expect(healthSettingFor(rules, 'db01', fromConf)).toEqual({ check: { kind: 'serial', pattern: 'login:' } });
    expect(healthSettingFor(rules, 'app01', fromConf)).toBeUndefined();
  });

  it('a guest whose health check fails is named with the reason, and later groups are not started', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list-dom0-only') },
      { cmd: 'xl', args: ['create', '/etc/xen/db01.cfg'], ...xenOut('xl-create-db01') },
      { cmd: 'xl', args: ['list'], ...xenOut('xl-list') },
    ]);
    const lines: string[] = [];
    const check = { check: { kind: 'command' as const, argv: ['sh', '-c', 'echo "no server on port 5432" >&2; exit 2'] }, timeoutMs: 1500 };
    const boots = await bootSite(planOf([planned('db01', 0), planned('app01', 1)]), restoredOk('db01', 'app01'), site, {
      ...bootOptions(runner, lines),
      healthCheck: (g, h) => (g.guest === 'db01' ? healthWaiter(check, h, g.guest, new ExecFileCommandRunner()) : undefined),
    });
    expect(runner.commandLines()).toEqual(['xl list', 'xl create /etc/xen/db01.cfg', 'xl list']);
    expect(boots.get('db01')).toMatchObject({ start: { result: 'started' }, health: { result: 'failed', check: 'command sh -c echo "no server on port 5432" >&2; exit 2' } });
    expect(boots.get('db01')!.health.reason).toMatch(/^command sh -c .* did not pass within 2 s: sh -c .* exited with 2: no server on port 5432$/);
    expect(boots.get('app01')!.start).toMatchObject({ result: 'skipped' });
    expect(boots.get('app01')!.start.reason).toMatch(/^boot group 0 did not come up \(db01: command sh -c .* did not pass within 2 s: .*\); later groups were not started$/);
    expect(lines).toContain('boot group 0: 1 of 1 guest(s) failed (db01); later boot groups are not started');
  });
});
