// `ferry site plan`: each guest's restore point, placed on the hosts of a
// hosts.toml whose pools are measured on their hosts (here: this machine).
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import type { SitePlan } from '../../src/site/sitePlan';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, parseJson, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('site-plan');
const MiB = 1024 * 1024;
let repo: TestRepo;
let oldWeb01: string;

function xlCfg(name: string, memoryMiB: number, vcpus: number, image: string): string {
  return `name = "${name}"\nmemory = ${memoryMiB}\nvcpus = ${vcpus}\nvif = [ 'mac=00:16:3e:00:00:0${vcpus},bridge=xenbr0' ]\ndisk = [ 'file:${image},xvda,w' ]\n`;
}

async function backupWithCfg(name: string, memoryMiB: number, vcpus: number): Promise<void> {
  const image = scratch.path(`${name}.img`);
  writeRandomishImage(image, 4 * MiB, name.length);
  const cfg = scratch.path(`${name}.cfg`);
  fs.writeFileSync(cfg, xlCfg(name, memoryMiB, vcpus, image));
  await repo.backup(name, [image], ['--config', cfg]);
}

function hostsFile(name: string, hosts: Array<{ name: string; memory: string; cpus: number }>, extra = ''): string {
  const file = scratch.path(`${name}.toml`);
  fs.writeFileSync(
    file,
    hosts
      .map((h) => `[[host]]\nname = "${h.name}"\nhypervisor = "xen"\nmemory = "${h.memory}"\ncpus = ${h.cpus}\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${scratch.mkdir(`pools-${name}-${h.name}`)}"\n`)
      .join('\n') + extra,
  );
  return file;
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  await backupWithCfg('db01', 4096, 4);
  await backupWithCfg('web01', 1024, 2);
  const image = scratch.path('app01.img');
  writeRandomishImage(image, 2 * MiB, 9);
  await repo.backup('app01', [image]); // image mode without a config: memory unknown, any host
  // An older restore point of web01, as a backup on 20 November would have written it.
  const library = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, '')));
  const { id: _id, ...latest } = await library.findRestorePoint('latest', 'web01');
  oldWeb01 = await library.saveRestorePoint({ ...latest, time: '2026-11-20T02:00:00.000Z' });
  await library.backend.close();
});

describe('ferry site plan', () => {
  it('places every guest within memory and pool space, prints a table and writes the JSON plan', async () => {
    const hosts = hostsFile('fits', [{ name: 'new01', memory: '4G', cpus: 8 }, { name: 'new02', memory: '2G', cpus: 4 }]);
    const out = scratch.path('plan.json');
    const r = expectSuccess(await repo.run(['site', 'plan', '--hosts', hosts, '--out', out]));
    expect(r).toMatch(/^guest +restore point +time +host +pool +size +boot group$/m);
    expect(r).toMatch(/^db01 +\w{8} +\S+ +new01 +images +4\.00 MiB \(\d\.\d\d MiB data\) +0$/m);
    expect(r).toMatch(/^web01 +\w{8} +\S+ +new02 +images /m);
    expect(r).toMatch(/disks there count by their data bytes/);
    const plan = JSON.parse(fs.readFileSync(out, 'utf8')) as SitePlan;
    expect(plan).toMatchObject({ format: 'ferry-site-plan', version: 1, unplaced: [] });
    expect(plan.guests.map((g) => [g.guest, g.host])).toEqual([['app01', expect.any(String)], ['db01', 'new01'], ['web01', 'new02']]);
    const db01 = plan.guests.find((g) => g.guest === 'db01')!;
    expect(db01).toMatchObject({ memoryMiB: 4096, vcpus: 4, bootGroup: 0, disks: [{ name: 'db01.img', device: 'xvda', pool: 'images', sizeBytes: 4 * MiB, format: 'raw' }] });
    expect(plan.pools.map((p) => [p.host, p.pool, p.sparse])).toEqual([['new01', 'images', true], ['new02', 'images', true]]);
  });

  it('says what does not fit where and by how much, and exits 12', async () => {
    const hosts = hostsFile('small', [{ name: 'new01', memory: '2G', cpus: 8 }, { name: 'new02', memory: '3G', cpus: 8 }]);
    const r = await repo.run(['site', 'plan', '--hosts', hosts]);
    expect(r.code).toBe(EXIT.doesNotFit);
    expect(r.stderr).toMatch(/^ferry: db01 does not fit: new01: memory 4\.0 GiB needed, 2\.0 GiB left \(short by 2\.0 GiB\); new02: memory 4\.0 GiB needed, 3\.0 GiB left \(short by 1\.0 GiB\)$/m);
    expect(r.stderr).toMatch(/^ferry: 1 of 3 guest\(s\) do not fit the hosts of /m);
  });

  it('--at takes the latest restore point at or before that time; guests with none then are left out', async () => {
    const hosts = hostsFile('at', [{ name: 'new01', memory: '8G', cpus: 8 }]);
    const plan = parseJson<SitePlan>(await repo.run(['site', 'plan', '--hosts', hosts, '--at', '2026-11-25', '--json']));
    expect(plan.guests.map((g) => [g.guest, g.restorePoint, g.time])).toEqual([['web01', oldWeb01, '2026-11-20T02:00:00.000Z']]);
    expect(plan.at).toBeDefined();
  });

  it('honours --guest, pins and anti-affinity from the hosts file', async () => {
    const hosts = hostsFile('rules', [{ name: 'new01', memory: '8G', cpus: 8 }, { name: 'new02', memory: '8G', cpus: 8 }], '\n[guest."web01"]\npin = "new02"\n');
    const plan = parseJson<SitePlan>(await repo.run(['site', 'plan', '--hosts', hosts, '--guest', 'web*', '--json']));
    expect(plan.guests.map((g) => [g.guest, g.host])).toEqual([['web01', 'new02']]);
  });

  it('refuses a bad hosts file, a bad time and a pool that is missing, each in one line', async () => {
    const bad = scratch.path('bad.toml');
    fs.writeFileSync(bad, '[[host]]\nname = "x"\nhypervisor = "xen"\nmemory = "lots"\ncpus = 1\n[[host.pool]]\nname = "p"\ntype = "dir"\npath = "/tmp"\n');
    expectCleanFailure(await repo.run(['site', 'plan', '--hosts', bad]), { code: EXIT.badInput, message: new RegExp(`^ferry: ${bad}:4: key 'host\\[0\\]\\.memory': expected a size`) });
    expectCleanFailure(await repo.run(['site', 'plan', '--hosts', bad, '--at', 'yesterday']), { code: EXIT.usage, message: /--at: 'yesterday' is not a time/ });
    const missing = scratch.path('missing-pool.toml');
    fs.writeFileSync(missing, `[[host]]\nname = "new01"\nhypervisor = "xen"\nmemory = "8G"\ncpus = 1\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${scratch.path('nowhere')}"\n`);
    expectCleanFailure(await repo.run(['site', 'plan', '--hosts', missing]), { code: EXIT.badInput, message: /pool images of host new01: cannot measure .*nowhere .*create the directory on new01/ });
  });
});

describe('--at times', () => {
  it('reads a day as its end and a minute as itself, in local time unless an offset is given', async () => {
    const { parsePlanTime } = await import('../../src/site/sitePlan');
    expect(parsePlanTime('2026-11-30')!.getTime()).toBe(new Date(2026, 10, 30, 23, 59, 59, 999).getTime());
    expect(parsePlanTime('2026-11-30T02:00')!.getTime()).toBe(new Date(2026, 10, 30, 2, 0).getTime());
    expect(parsePlanTime('2026-11-30T02:00Z')!.toISOString()).toBe('2026-11-30T02:00:00.000Z');
    for (const bad of ['2026-02-30', '30.11.2026', '2026-11-30 02:00', 'now', '']) expect(parsePlanTime(bad)).toBeUndefined();
  });
});
