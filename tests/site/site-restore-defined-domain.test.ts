// A target host that already has a guest of the planned name, although it
// does not run: a shut-off libvirt domain (which `virsh define` would replace
// without a word), or an xl cfg at the path site restore writes. The restore
// of that guest is refused in one line naming the domain and the host, with
// nothing written and nothing defined; --force replaces it; a definition this
// plan's own earlier run left is not in the way. libvirt for real (libvirtd,
// a TCG domain that only has to run); Xen at the command boundary: a fake
// `xl` first on PATH answers `xl list` with the recorded fixture and logs
// every call, so the test sees that xl create never ran.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectSuccess, parseJson, useScratch, writeRandomishImage } from '../support';
import { domstate, removeDomain, useLibvirtd, virsh } from '../support/libvirtGuest';
import { REPO_ROOT } from '../support/ferry';

const scratch = useScratch('site-restore-defined-domain');
const MiB = 1024 * 1024;
const XEN_FIXTURES = path.join(REPO_ROOT, 'tests', 'fixtures', 'xen');
let repo: TestRepo;

interface Report {
  guest: string;
  ok: boolean;
  error?: string;
  configFiles: string[];
  disks: Array<{ target: string; alreadyRestored?: boolean }>;
  start?: { result: string; reason?: string };
}

// The domain as backed up and as someone defined it on the target: same name, same uuid, which is
// when `virsh define` replaces it silently (another uuid, libvirt refuses the define itself).
const SDD01_UUID = '0f3c2a6e-5d41-4b8e-9c7a-2e1d0b9a8f71';

/** A domain that QEMU (TCG) can run without booting anything: it only has to be there and run. */
function domainXml(name: string, disk: string): string {
  return `<domain type='qemu'>
  <name>${name}</name>
  <uuid>${SDD01_UUID}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

beforeAll(async () => {
  await useLibvirtd(scratch);
  repo = await TestRepo.init(scratch, 'repo');
  const lvImage = scratch.path('sdd01.img');
  writeRandomishImage(lvImage, 4 * MiB, 11);
  fs.writeFileSync(scratch.path('sdd01.xml'), domainXml('sdd01', lvImage));
  await repo.backup('sdd01', [lvImage], ['--config', scratch.path('sdd01.xml')]);
  const xenImage = scratch.path('web01.img');
  writeRandomishImage(xenImage, 4 * MiB, 12);
  fs.writeFileSync(scratch.path('web01.cfg'), fs.readFileSync(path.join(XEN_FIXTURES, 'fleet', 'web01.cfg'), 'utf8').replace(/^disk = .*$/m, `disk = [ 'file:${xenImage},xvda,w' ]`));
  await repo.backup('web01', [xenImage], ['--config', scratch.path('web01.cfg')]);
});

/** A local host of `hypervisor` with its own pool and config directory (`tag`), and the plan for `guest` on it. */
async function planOn(tag: string, hypervisor: 'libvirt' | 'xen', guest: string): Promise<{ planFile: string; pool: string; etc: string }> {
  const pool = scratch.mkdir(tag, 'pool');
  const etc = scratch.path(tag, 'etc');
  const hostsToml = scratch.path(tag, 'hosts.toml');
  fs.writeFileSync(hostsToml, `[[host]]\nname = "new01"\naddress = "local"\nhypervisor = "${hypervisor}"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${etc}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${pool}"\n`);
  const planFile = scratch.path(tag, 'plan.json');
  expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--guest', guest, '--out', planFile]));
  return { planFile, pool, etc };
}

describe('site restore onto a libvirt host that has a shut-off domain of the same name', () => {
  it('refuses in one line, defines and writes nothing; --force replaces it; the domain this plan defined is its own on a re-run', async () => {
    const { planFile, pool, etc } = await planOn('libvirt', 'libvirt', 'sdd01');
    // Someone's machine: defined there, shut off, its own disk.
    const theirs = scratch.path('theirs.img');
    fs.writeFileSync(theirs, Buffer.alloc(MiB));
    fs.writeFileSync(scratch.path('theirs.xml'), domainXml('sdd01', theirs));
    scratch.defer(() => removeDomain('sdd01'));
    await virsh('define', scratch.path('theirs.xml'));
    const before = await virsh('dumpxml', 'sdd01');
    expect(await domstate('sdd01')).toBe('shut off');

    const refused = await repo.run(['site', 'restore', '--plan', planFile, '--json']);
    expect(refused.code).toBe(EXIT.someGuestsFailed);
    const [report] = JSON.parse(refused.stdout) as Report[];
    const line = 'host new01 already has a libvirt domain named sdd01 (shut off), which virsh define would replace; nothing was written or defined for sdd01: ' +
      'remove it there (virsh undefine sdd01), leave sdd01 out of the plan (site plan --guest), or restore with --force to replace it';
    expect(report!).toMatchObject({ ok: false, error: line, disks: [], configFiles: [] });
    expect(refused.stderr).toMatch(new RegExp(`^\\S+Z new01: ${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    expect(fs.readdirSync(pool)).toEqual([]);
    expect(fs.existsSync(etc)).toBe(false);
    expect(await virsh('dumpxml', 'sdd01')).toBe(before);
    expect(await domstate('sdd01')).toBe('shut off');

    const forced = parseJson<Report[]>(await repo.run(['site', 'restore', '--force', '--plan', planFile, '--json']))[0]!;
    expect(forced.ok, forced.error).toBe(true);
    expect(forced.start).toMatchObject({ result: 'started' });
    expect(await domstate('sdd01')).toBe('running');
    const target = forced.disks[0]!.target;
    expect(await virsh('dumpxml', 'sdd01')).toContain(`<source file='${target}'`);

    // Shut off again, still defined, by this plan: not in the way of a re-run of it.
    await virsh('destroy', 'sdd01');
    const again = parseJson<Report[]>(await repo.run(['site', 'restore', '--plan', planFile, '--json']))[0]!;
    expect(again.ok, again.error).toBe(true);
    expect(again.disks[0]).toMatchObject({ alreadyRestored: true });
    expect(again.start).toMatchObject({ result: 'started' });
    expect(await domstate('sdd01')).toBe('running');
  });
});

/** A fake `xl` first on PATH: `xl list` prints `listFile` (recorded output), every call is logged; anything else fails. */
function fakeXl(tag: string, listFile: string): { env: Record<string, string>; calls: () => string[] } {
  const bin = scratch.mkdir(tag, 'bin');
  const log = scratch.path(tag, 'xl-calls.log');
  fs.writeFileSync(path.join(bin, 'xl'), `#!/bin/sh\necho "$*" >> '${log}'\ncase "$*" in\n  list) cat '${listFile}' ;;\n  *) echo "fake xl: unexpected call: xl $*" >&2; exit 2 ;;\nesac\n`, { mode: 0o755 });
  return {
    env: { PATH: `${bin}:${process.env.PATH ?? ''}` },
    calls: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : []),
  };
}

describe('site restore onto a Xen host (xl at the command boundary)', () => {
  it('an xl cfg of that name at the target path: refused in one line, nothing written, xl create never runs; --force replaces it; a re-run of this plan is not refused', async () => {
    const { planFile, pool, etc } = await planOn('xen-cfg', 'xen', 'web01');
    const xl = fakeXl('xen-cfg', path.join(XEN_FIXTURES, 'xl-list-dom0-only.stdout'));
    fs.mkdirSync(etc);
    const cfg = path.join(etc, 'web01.cfg');
    fs.writeFileSync(cfg, 'name = "web01"\n# someone else\'s web01\n');

    const refused = await repo.run(['site', 'restore', '--plan', planFile, '--json'], { env: xl.env });
    expect(refused.code).toBe(EXIT.someGuestsFailed);
    const [report] = JSON.parse(refused.stdout) as Report[];
    expect(report!.error).toBe(`host new01 already has an xl config for domain web01 at ${cfg}; nothing was written or created for web01: ` +
      'move that file away, leave web01 out of the plan (site plan --guest), or restore with --force to replace it');
    expect(fs.readdirSync(pool)).toEqual([]);
    expect(fs.readdirSync(etc)).toEqual(['web01.cfg']);
    expect(fs.readFileSync(cfg, 'utf8')).toBe('name = "web01"\n# someone else\'s web01\n');
    expect(xl.calls()).toEqual(['list']);

    const forced = parseJson<Report[]>(await repo.run(['site', 'restore', '--force', '--no-start', '--plan', planFile, '--json'], { env: xl.env }))[0]!;
    expect(forced.ok, forced.error).toBe(true);
    expect(fs.readFileSync(cfg, 'utf8')).toContain(`'file:${forced.disks[0]!.target},xvda,w'`);
    // This plan's own cfg and disk now: a re-run goes on without --force.
    const again = parseJson<Report[]>(await repo.run(['site', 'restore', '--no-start', '--plan', planFile, '--json'], { env: xl.env }))[0]!;
    expect(again.ok, again.error).toBe(true);
    expect(again.disks[0]).toMatchObject({ alreadyRestored: true });
    expect(xl.calls().filter((c) => c !== 'list')).toEqual([]);
  });

  it('a domain of that name in `xl list`: refused even with --force, nothing written, nothing created', async () => {
    const { planFile, pool, etc } = await planOn('xen-listed', 'xen', 'web01');
    const xl = fakeXl('xen-listed', path.join(XEN_FIXTURES, 'xl-list.stdout')); // web01 is domain 3 there
    const r = await repo.run(['site', 'restore', '--force', '--plan', planFile, '--json'], { env: xl.env });
    expect(r.code).toBe(EXIT.someGuestsFailed);
    expect((JSON.parse(r.stdout) as Report[])[0]!.error).toBe('guest web01 already runs on host new01 (xl list: domain 3, state -b----); not touched: stop it there, or leave it out of the plan (site plan --guest), and run again');
    expect(fs.readdirSync(pool)).toEqual([]);
    expect(fs.existsSync(etc)).toBe(false);
    expect(xl.calls().every((c) => c === 'list')).toBe(true);
  });
});
