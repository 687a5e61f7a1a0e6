// The end of a site restore as a person sees it: real bootable guests, backed
// up here with their boot groups from ferry.conf, restored onto two fresh
// hosts over ssh and started there by site restore itself with the QEMU
// launchers it wrote — boot group 0 up (its serial health check passed)
// before group 1 starts; each boots from its restored disk alone and prints
// its own name and the checksum of its data. `--no-start` starts nothing, and
// a guest that already runs on its target is not touched.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectSuccess, parseJson, useScratch, writeRandomishImage } from '../support';
import { qemuProcessesOf } from '../../src/site/guestStart';
import { type BootableGuestDisk, buildBootableGuest, waitForGuestIdentity, watchConsoles } from '../support/bootableGuest';
import { type SshHostSet, processIsRunning, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore-boot');
let repo: TestRepo;
let hosts: SshHostSet;
const guests: Record<string, BootableGuestDisk> = {};

interface Report {
  guest: string;
  host: string;
  ok: boolean;
  error?: string;
  bootGroup: number;
  configFiles: string[];
  writtenBytes: number;
  alreadyRunning?: string;
  start?: { result: string; reason?: string; at?: string };
  health?: { result: string; check?: string; reason?: string; at?: string };
}

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01', 'new02']);
  repo = await TestRepo.init(scratch, 'repo');
  // One after the other: the first build fills the boot partition cache.
  guests.sbdb = await buildBootableGuest(scratch.path('sbdb.img'), 'sbdb');
  guests.sbweb = await buildBootableGuest(scratch.path('sbweb.img'), 'sbweb');
  const idle = scratch.path('sbidle.img');
  writeRandomishImage(idle, 4 * 1024 * 1024, 3);
  const conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, [
    ...[['sbdb', guests.sbdb.path], ['sbweb', guests.sbweb.path], ['sbidle', idle]].map(([n, p]) => `[[static.guest]]\nname = "${n}"\ndisks = [${JSON.stringify(p)}]\n`),
    '[guest."sbdb"]\nboot_group = 0\n',
    '[guest."sbweb"]\nboot_group = 1\n',
  ].join('\n'));
  expectSuccess(await repo.run(['backup', '--all', '--config', conf, '--work-dir', scratch.mkdir('work')]));
});

/** A hosts file whose pools and config directories are this test's own (`tag`), guests pinned to hosts. */
function hostsFile(tag: string, pins: Record<string, string>, extra = ''): { file: string; configDir: (host: string) => string; pool: (host: string) => string } {
  const configDir = (h: string) => path.join(hosts.host(h).root, tag, 'etc');
  const pool = (h: string) => path.join(hosts.host(h).pool, tag);
  const file = scratch.path(`${tag}-hosts.toml`);
  fs.writeFileSync(file, [
    `ssh_config = "${hosts.configFile}"`,
    ...['new01', 'new02'].map((h) => {
      fs.mkdirSync(pool(h), { recursive: true });
      return `[[host]]\nname = "${h}"\naddress = "${hosts.host(h).url}"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${configDir(h)}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${pool(h)}"\n`;
    }),
    ...Object.entries(pins).map(([g, h]) => `[guest."${g}"]\npin = "${h}"\n`),
    extra,
  ].join('\n'));
  return { file, configDir, pool };
}

async function planFor(tag: string, hostsToml: string, only: string[]): Promise<string> {
  const planFile = scratch.path(`${tag}-plan.json`);
  expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', planFile, ...only.flatMap((g) => ['--guest', g])]));
  return planFile;
}

describe('site restore starts the guests', () => {
  it('boot group by boot group with the launchers it wrote: group 0 passes its serial health check before group 1 starts, and each guest is itself', async () => {
    const h = hostsFile('order', { sbdb: 'new01', sbweb: 'new02' }, '[guest."sb*"]\nhealth = { serial = "FERRY-GUEST-READY" }\nhealth_timeout = "4m"\n');
    const planFile = await planFor('order', h.file, ['sbdb', 'sbweb']);
    const serial = (g: string, host: string) => path.join(h.configDir(host), 'run', `${g}.serial`);
    // Group 0's console first: each round reads group 1's before it (see watchConsoles).
    const consoles = watchConsoles([serial('sbdb', 'new01'), serial('sbweb', 'new02')]);
    let r;
    try {
      r = await repo.run(['site', 'restore', '--plan', planFile, '--json']);
    } finally {
      consoles.stop();
    }
    const report = parseJson<Report[]>(r);
    expect(report.map((g) => [g.guest, g.host, g.bootGroup, g.ok, g.start?.result, g.health?.result, g.health?.check])).toEqual([
      ['sbdb', 'new01', 0, true, 'started', 'healthy', 'serial "FERRY-GUEST-READY"'],
      ['sbweb', 'new02', 1, true, 'started', 'healthy', 'serial "FERRY-GUEST-READY"'],
    ]);
    const first = (g: string, host: string, line: RegExp | 'created') =>
      consoles.events.find((e) => e.log === serial(g, host) && (line === 'created' ? e.line === 'created' : line.test(e.line)));
    const dbReady = first('sbdb', 'new01', /^FERRY-GUEST-READY /);
    const webStarted = first('sbweb', 'new02', 'created');
    expect(dbReady, 'sbdb printed its ready line').toBeDefined();
    expect(webStarted, 'sbweb was started').toBeDefined();
    expect(dbReady!.round).toBeLessThanOrEqual(webStarted!.round);
    expect(Date.parse(report[0]!.health!.at!)).toBeLessThanOrEqual(Date.parse(report[1]!.start!.at!));
    // Both booted from their restored disks: the right identity and data.
    for (const [g, host] of [['sbdb', 'new01'], ['sbweb', 'new02']] as const) {
      expect(await waitForGuestIdentity(serial(g, host), { timeoutMs: 60_000 })).toEqual({ name: g, sum: guests[g]!.sum });
    }
    // Progress: one timestamped line per event.
    expect(r.stderr).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z new01: sbdb \S+ → \S+ \(\d+ bytes written in [\d.]+ s, [\d.]+ MB\/s\)$/m);
    expect(r.stderr).toMatch(/^\S+Z new01: sbdb healthy \(serial "FERRY-GUEST-READY", [\d.]+ s after its start\)$/m);
    expect(r.stderr).toMatch(/^\S+Z boot group 0: 1 guest\(s\) up$/m);

    // Run again: both run, started by this plan; nothing is written or started again.
    const again = parseJson<Report[]>(await repo.run(['site', 'restore', '--plan', planFile, '--json']));
    expect(again.map((g) => [g.guest, g.ok, g.alreadyRunning, g.writtenBytes, g.start?.result, g.health?.result])).toEqual([
      ['sbdb', true, 'this-plan', 0, 'already running', 'healthy'],
      ['sbweb', true, 'this-plan', 0, 'already running', 'healthy'],
    ]);
  });

  it('--no-start writes the disks and the launcher and starts nothing', async () => {
    const h = hostsFile('nostart', { sbidle: 'new01' });
    const planFile = await planFor('nostart', h.file, ['sbidle']);
    const report = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', planFile, '--json']));
    expect(report).toHaveLength(1);
    expect(report[0]).toMatchObject({ guest: 'sbidle', host: 'new01', ok: true });
    expect(report[0]!.start).toBeUndefined();
    expect(report[0]!.configFiles[0]).toBe(path.join(h.configDir('new01'), 'sbidle.sh'));
    expect(fs.readdirSync(path.join(h.pool('new01'), 'sbidle'))).toEqual(['disk0.img']);
    expect(fs.existsSync(path.join(h.configDir('new01'), 'run', 'sbidle.serial'))).toBe(false);
    expect(qemuProcessesOf(await hosts.ssh('new01', 'ps -eo pid=,args='), 'sbidle', path.join(h.configDir('new01'), 'run', 'sbidle.qmp'))).toEqual([]);
  });

  it('never touches a guest that already runs on its target: reported, nothing written, exit 11', async () => {
    const h = hostsFile('running', { sbidle: 'new02' });
    const planFile = await planFor('running', h.file, ['sbidle']);
    // Some other QEMU named sbidle runs on new02 (stopped, tiny: it only has to exist).
    const pidFile = path.join(hosts.host('new02').root, 'running-sbidle.pid');
    await hosts.ssh('new02', `qemu-system-x86_64 -name sbidle -S -m 16 -nodefaults -display none -daemonize -pidfile ${pidFile}`);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    try {
      const r = await repo.run(['site', 'restore', '--plan', planFile, '--json']);
      expect(r.code).toBe(EXIT.someGuestsFailed);
      const [report] = JSON.parse(r.stdout) as Report[];
      expect(report!.ok).toBe(false);
      expect(report!.error).toBe(`guest sbidle already runs on host new02 (QEMU process ${pid}); not touched: stop it there, or leave it out of the plan (site plan --guest), and run again`);
      expect(report!.start).toEqual({ result: 'skipped', reason: 'already runs there; not touched' });
      expect(r.stderr).toMatch(new RegExp(`^\\S+Z new02: guest sbidle already runs on host new02 \\(QEMU process ${pid}\\); not touched$`, 'm'));
      expect(r.stderr.trim().split('\n').pop()).toBe('ferry: 1 of 1 guest(s) were not restored or did not come up: sbidle (see above)');
      expect(fs.readdirSync(h.pool('new02'))).toEqual([]);
      expect(fs.existsSync(h.configDir('new02'))).toBe(false);
      expect(processIsRunning(pid)).toBe(true);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });
});
