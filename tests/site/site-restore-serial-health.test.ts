// `health = { serial = "..." }` for restored libvirt and Xen guests: site
// restore reads a libvirt domain's serial console from the log its rewritten
// XML names (for real: libvirtd, the test guest booted under TCG, which
// prints FERRY-GUEST-READY on ttyS0), and a Xen guest's with `xl console
// NAME` on its host (at the command boundary: a fake `xl` first on PATH
// answers list, create and console from the recorded fixtures and logs every
// call).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TestRepo, expectSuccess, parseJson, useScratch, writeRandomishImage } from '../support';
import { type GuestFiles, copyDisk, domainXml, domstate, removeDomain, useLibvirtGuestFiles } from '../support/libvirtGuest';
import { REPO_ROOT } from '../support/ferry';

const scratch = useScratch('site-restore-serial-health');
const XEN_FIXTURES = path.join(REPO_ROOT, 'tests', 'fixtures', 'xen');
let repo: TestRepo;
let files: GuestFiles;

interface Report {
  guest: string;
  ok: boolean;
  error?: string;
  configFiles: string[];
  start?: { result: string; reason?: string };
  health?: { result: string; check?: string; reason?: string };
}

beforeAll(async () => {
  files = await useLibvirtGuestFiles(scratch);
  repo = await TestRepo.init(scratch, 'repo');
  const disk = await copyDisk(files, scratch.path('ssh01.img'), 'raw');
  // The domain as backed up: its console went to a file on the old host.
  fs.writeFileSync(scratch.path('ssh01.xml'), domainXml({ name: 'ssh01', files, disks: [{ path: disk, format: 'raw' }], consoleLog: scratch.path('old-host-console.log'), memoryMiB: 128 }));
  await repo.backup('ssh01', [disk], ['--config', scratch.path('ssh01.xml')]);
  const xenImage = scratch.path('web01.img');
  writeRandomishImage(xenImage, 4 * 1024 * 1024, 21);
  fs.writeFileSync(scratch.path('web01.cfg'), fs.readFileSync(path.join(XEN_FIXTURES, 'fleet', 'web01.cfg'), 'utf8').replace(/^disk = .*$/m, `disk = [ 'file:${xenImage},xvda,w' ]`));
  await repo.backup('web01', [xenImage], ['--config', scratch.path('web01.cfg')]);
});

function hostsFile(tag: string, hypervisor: 'libvirt' | 'xen', guest: string, pattern: string): { file: string; etc: string } {
  const etc = scratch.path(tag, 'etc');
  const file = scratch.path(tag, 'hosts.toml');
  fs.writeFileSync(file, `[[host]]\nname = "new01"\naddress = "local"\nhypervisor = "${hypervisor}"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${etc}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${scratch.mkdir(tag, 'pool')}"\n` +
    `[guest."${guest}"]\nhealth = { serial = "${pattern}" }\nhealth_timeout = "4m"\n`);
  return { file, etc };
}

describe('a serial health check of a restored libvirt guest', () => {
  it('reads the console log the rewritten domain XML names: healthy once the guest prints its line', async () => {
    const h = hostsFile('libvirt', 'libvirt', 'ssh01', 'FERRY-GUEST-READY');
    scratch.defer(() => removeDomain('ssh01'));
    const report = parseJson<Report[]>(await repo.run(['site', 'restore', '--hosts', h.file, '--guest', 'ssh01', '--json']))[0]!;
    expect(report.ok, report.error).toBe(true);
    expect(report.start?.result).toBe('started');
    expect(report.health).toMatchObject({ result: 'healthy', check: 'serial "FERRY-GUEST-READY"' });
    const log = path.join(h.etc, 'run', 'ssh01.serial');
    expect(fs.readFileSync(path.join(h.etc, 'ssh01.xml'), 'utf8')).toContain(`<log file='${log}' append='off'/>`);
    expect(fs.readFileSync(log, 'utf8')).toMatch(/^FERRY-GUEST-READY/m);
    expect(await domstate('ssh01')).toBe('running');
  });
});

describe('a serial health check of a restored Xen guest (xl at the command boundary)', () => {
  it('reads `xl console NAME` after xl create: healthy on the login prompt', async () => {
    const h = hostsFile('xen', 'xen', 'web01', 'login:');
    const dir = scratch.mkdir('xen', 'fake');
    const bin = scratch.mkdir('xen', 'bin');
    fs.writeFileSync(path.join(dir, 'state'), 'off\n');
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    fs.writeFileSync(path.join(bin, 'xl'), `#!/bin/sh
# Fake xl: recorded answers, web01 off until xl create, every call logged.
dir=${q(dir)}
echo "$*" >> "$dir/calls.log"
case "$*" in
  list) if [ "$(cat "$dir/state")" = off ]; then cat ${q(path.join(XEN_FIXTURES, 'xl-list-dom0-only.stdout'))}; else cat ${q(path.join(XEN_FIXTURES, 'xl-list.stdout'))}; fi ;;
  "create ${path.join(h.etc, 'web01.cfg')}") echo on > "$dir/state"; cat ${q(path.join(XEN_FIXTURES, 'xl-create-web01.stderr'))} >&2 ;;
  "console web01") cat ${q(path.join(XEN_FIXTURES, 'xl-console-web01.stdout'))} ;;
  *) echo "fake xl: unexpected call: xl $*" >&2; exit 2 ;;
esac
`, { mode: 0o755 });
    const r = await repo.run(['site', 'restore', '--hosts', h.file, '--guest', 'web01', '--json'], { env: { PATH: `${bin}:${process.env.PATH ?? ''}` } });
    const report = parseJson<Report[]>(r)[0]!;
    expect(report.ok, report.error).toBe(true);
    expect(report.start?.result).toBe('started');
    expect(report.health).toMatchObject({ result: 'healthy', check: 'serial "login:"' });
    const calls = fs.readFileSync(path.join(dir, 'calls.log'), 'utf8').split('\n').filter(Boolean);
    expect(calls.filter((c) => c !== 'list')).toEqual([`create ${path.join(h.etc, 'web01.cfg')}`, 'console web01']);
    expectSuccess(r);
  });
});
