// `ferry site restore --plan`: every planned guest's disks land on its host's
// pool — two fresh hosts reached over real ssh (network namespaces with their
// own sshd) and this machine — bit-exact, sparse, under their final names only
// when complete; a guest that cannot be restored fails alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SitePlan } from '../../src/site/sitePlan';
import { EXIT, TestRepo, allocatedBytes, expectSuccess, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { type SshHostSet, startSshHosts } from '../support/sshHosts';

const scratch = useScratch('site-restore');
const MiB = 1024 * 1024;
let repo: TestRepo;
let hosts: SshHostSet;
let hostsToml: string;
const originals: Record<string, { image: string; sha: string }> = {};
const localPool = scratch.mkdir('local-pool');
const localConfigs = scratch.path('local-etc-xen');

function cfg(name: string, memoryMiB: number, image: string): string {
  return `# ${name}, as the old host ran it\nname = "${name}"\nmemory = ${memoryMiB}\nvcpus = 1\nvif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]\ndisk = [ 'file:${image},xvda,w' ]\n`;
}

beforeAll(async () => {
  hosts = await startSshHosts(scratch, ['new01', 'new02']);
  repo = await TestRepo.init(scratch, 'repo');
  for (const [i, [name, memory]] of ([['db01', 3000], ['web01', 1500], ['web02', 1500], ['app01', 500]] as const).entries()) {
    const image = scratch.path(`${name}.img`);
    writeRandomishImage(image, (40 + 8 * i) * MiB, 20 + i); // holes and data across several 32 MiB regions
    const conf = scratch.path(`${name}.cfg`);
    fs.writeFileSync(conf, cfg(name, memory, image));
    await repo.backup(name, [image], ['--config', conf]);
    originals[name] = { image, sha: await sha256File(image) };
  }
  const h = (name: string) => hosts.host(name);
  hostsToml = scratch.path('hosts.toml');
  fs.writeFileSync(hostsToml, [
    `ssh_config = "${hosts.configFile}"`,
    ...['new01', 'new02'].map((n) => `[[host]]\nname = "${n}"\naddress = "${h(n).url}"\nhypervisor = "xen"\nmemory = "3G"\ncpus = 4\nconfig_dir = "${configDirOf(n)}"\nbridges = { xenbr0 = "br-new" }\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${h(n).pool}"\n`),
    `[[host]]\nname = "here"\naddress = "local"\nhypervisor = "xen"\nmemory = "1G"\ncpus = 2\nconfig_dir = "${localConfigs}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${localPool}"\n`,
    '[guest."app01"]\npin = "here"\n',
  ].join('\n'));
});

async function planTo(file: string): Promise<SitePlan> {
  expectSuccess(await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', file]));
  return JSON.parse(fs.readFileSync(file, 'utf8')) as SitePlan;
}

function configDirOf(host: string): string {
  return host === 'here' ? localConfigs : path.join(hosts.host(host).root, 'etc', 'xen');
}

function poolOf(host: string): string {
  return host === 'here' ? localPool : hosts.host(host).pool;
}

describe('ferry site restore', () => {
  it('--dry-run prints what it would create, write and run, and writes nothing', async () => {
    const plan = await planTo(scratch.path('dry.json'));
    const out = expectSuccess(await repo.run(['site', 'restore', '--plan', scratch.path('dry.json'), '--dry-run']));
    for (const g of plan.guests) {
      expect(out).toContain(`${g.host}: mkdir -p -- ${path.join(poolOf(g.host), g.guest)}`);
      expect(out).toMatch(new RegExp(`${g.host}: create \\S+/${g.guest}/${g.guest}\\.img\\.ferry-partial \\(sparse, \\d+ bytes\\) and write \\d+ data bytes of ${g.guest}/${g.guest}\\.img`));
    }
    for (const h of ['new01', 'new02', 'here']) expect(fs.readdirSync(poolOf(h))).toEqual([]);
    for (const g of plan.guests) expect(out).toContain(`${g.host}: write ${path.join(configDirOf(g.host), `${g.guest}.cfg`)} (`);
    for (const h of ['new01', 'new02', 'here']) expect(fs.existsSync(configDirOf(h))).toBe(false);
  });

  it('writes every disk onto its planned host, bit-exact and sparse, and reports each guest', async () => {
    const plan = await planTo(scratch.path('plan.json'));
    expect(new Set(plan.guests.map((g) => g.host))).toEqual(new Set(['new01', 'new02', 'here']));
    const report = parseJson<Array<{ guest: string; host: string; ok: boolean; writtenBytes: number }>>(await repo.run(['site', 'restore', '--no-start', '--plan', scratch.path('plan.json'), '--json']));
    expect(report.map((r) => [r.guest, r.ok])).toEqual(plan.guests.map((g) => [g.guest, true]));
    for (const g of plan.guests) {
      const restored = path.join(poolOf(g.host), g.guest, `${g.guest}.img`);
      expect(await sha256File(restored), `${g.guest} on ${g.host}`).toBe(originals[g.guest]!.sha);
      expect(allocatedBytes(restored)).toBeLessThanOrEqual(allocatedBytes(originals[g.guest]!.image) + MiB);
      expect(fs.readdirSync(path.dirname(restored))).toEqual([`${g.guest}.img`]); // no partial file left
      expect(report.find((r) => r.guest === g.guest)!.writtenBytes).toBeGreaterThan(0);
      // Its xl cfg, rewritten for the new host: the new disk path and bridge, everything else as it was; the original beside it.
      const conf = path.join(configDirOf(g.host), `${g.guest}.cfg`);
      const text = fs.readFileSync(conf, 'utf8');
      expect(text).toContain(`# ${g.guest}, as the old host ran it`);
      expect(text).toMatch(new RegExp(`disk = \\[ '[^']*${restored.replace(/[.]/g, '\\.')},xvda,w' \\]`));
      expect(text).toMatch(g.host === 'here' ? /bridge=xenbr0/ : /bridge=br-new/);
      expect(text).toContain('mac=00:16:3e:00:00:01');
      expect(fs.readFileSync(`${path.join(configDirOf(g.host), `${g.guest}.cfg`)}.ferry-orig`, 'utf8')).toBe(fs.readFileSync(scratch.path(`${g.guest}.cfg`), 'utf8'));
    }
  });

  it('refuses to overwrite a disk that exists (that guest fails, the others go on), and overwrites with --force', async () => {
    const plan = await planTo(scratch.path('again.json'));
    const victim = plan.guests.find((g) => g.host !== 'here')!;
    const restored = path.join(poolOf(victim.host), victim.guest, `${victim.guest}.img`);
    fs.writeFileSync(restored, 'an admin put this here');
    for (const g of plan.guests) {
      if (g.guest === victim.guest) continue;
      fs.rmSync(path.join(poolOf(g.host), g.guest), { recursive: true });
      fs.rmSync(path.join(configDirOf(g.host), `${g.guest}.cfg`));
    }
    const r = await repo.run(['site', 'restore', '--no-start', '--plan', scratch.path('again.json')]);
    expect(r.code).toBe(EXIT.someGuestsFailed);
    expect(r.stdout).toMatch(new RegExp(`^${victim.guest} +${victim.host} +\\w{8} +FAILED: ${victim.host}:${restored.replace(/[.]/g, '\\.')} already exists; remove it, or restore with --force`, 'm'));
    expect(fs.readFileSync(restored, 'utf8')).toBe('an admin put this here');
    for (const g of plan.guests) if (g.guest !== victim.guest) expect(await sha256File(path.join(poolOf(g.host), g.guest, `${g.guest}.img`))).toBe(originals[g.guest]!.sha);
    expectSuccess(await repo.run(['site', 'restore', '--no-start', '--plan', scratch.path('again.json'), '--force']));
    expect(await sha256File(restored)).toBe(originals[victim.guest]!.sha);
  });

  it('--dry-run names the logical volume an lvm pool gets: thick with zeros written, thin with data only', async () => {
    const plan = await planTo(scratch.path('for-lvm.json'));
    const lvmHosts = scratch.path('lvm-hosts.toml');
    fs.writeFileSync(lvmHosts, ['new01', 'new02', 'here'].map((n, i) => `[[host]]\nname = "${n}"\nhypervisor = "xen"\nmemory = "3G"\ncpus = 4\n[[host.pool]]\nname = "images"\ntype = "lvm"\nvolume_group = "vg${i}"\n${i === 1 ? 'thin_pool = "pool0"\n' : ''}`).join('\n'));
    const out = expectSuccess(await repo.run(['site', 'restore', '--plan', scratch.path('for-lvm.json'), '--hosts', lvmHosts, '--dry-run']));
    for (const g of plan.guests) {
      const i = ['new01', 'new02', 'here'].indexOf(g.host);
      const size = Math.ceil(g.disks[0]!.sizeBytes / 512) * 512;
      const create = i === 1 ? `lvcreate -q -V ${size}b -T vg1/pool0 -n ${g.guest}-${g.guest}-ferry-partial` : `lvcreate -q -Wy -Zn -L ${size}b -n ${g.guest}-${g.guest}-ferry-partial vg${i}`;
      expect(out).toContain(`${g.host}: ${create}`);
      expect(out).toContain(`${g.host}: lvrename vg${i} ${g.guest}-${g.guest}-ferry-partial ${g.guest}-${g.guest}`);
      expect(out).toMatch(new RegExp(`${g.host}: write ${i === 1 ? '\\d+ data bytes' : `${g.disks[0]!.sizeBytes} bytes \\(zeros too`}`));
    }
  });

  it('refuses a file that is not a plan, in one line', async () => {
    const bogus = scratch.path('bogus.json');
    fs.writeFileSync(bogus, '{"format":"something-else"}');
    const r = await repo.run(['site', 'restore', '--plan', bogus]);
    expect(r.code).toBe(EXIT.badInput);
    expect(r.stderr.trim()).toBe(`ferry: ${bogus}: not a ferry site plan of version 1; write one with 'ferry site plan --out'`);
  });
});
