// `ferry site restore --hosts hosts.toml [--at] [--guest] [--tag]`: plan and
// restore in one go, without a plan file; the plan it used is written to the
// state directory, named on stderr, and serves `--plan` for a repeat.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SitePlan } from '../../src/site/sitePlan';
import { EXIT, TestRepo, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('site-restore-one-go');
const MiB = 1024 * 1024;
let repo: TestRepo;
let hostsToml: string;
const pool = scratch.mkdir('pool');
const shas: Record<string, string> = {};

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  for (const [i, guest] of ['onego-app01', 'onego-app02', 'onego-db01'].entries()) {
    const image = scratch.path(`${guest}.img`);
    writeRandomishImage(image, 8 * MiB, 60 + i);
    shas[guest] = await sha256File(image);
    await repo.backup(guest, [image]);
  }
  hostsToml = scratch.path('hosts.toml');
  fs.writeFileSync(hostsToml, `[[host]]\nname = "here"\naddress = "local"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "2G"\ncpus = 2\nconfig_dir = "${scratch.path('etc')}"\n[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${pool}"\n`);
});

describe('ferry site restore --hosts (plan and restore in one go)', () => {
  it('plans the chosen guests, restores them, and names the plan it wrote to the state directory', async () => {
    const r = await repo.run(['site', 'restore', '--no-start', '--hosts', hostsToml, '--guest', 'onego-app*', '--json']);
    const report = parseJson<Array<{ guest: string; ok: boolean }>>(r);
    expect(report.map((g) => [g.guest, g.ok]).sort()).toEqual([['onego-app01', true], ['onego-app02', true]]);
    for (const g of ['onego-app01', 'onego-app02']) expect(await sha256File(path.join(pool, g, `${g}.img`))).toBe(shas[g]);
    expect(fs.existsSync(path.join(pool, 'onego-db01'))).toBe(false);
    const file = /plan written to (\S+) \(repeat exactly this restore with --plan \1\)/.exec(r.stderr)?.[1];
    expect(file, r.stderr).toBeDefined();
    const plan = JSON.parse(fs.readFileSync(file!, 'utf8')) as SitePlan;
    expect(plan.guests.map((g) => g.guest).sort()).toEqual(['onego-app01', 'onego-app02']);
    expect(plan.hostsFile).toBe(hostsToml);
    // The written plan repeats the restore: everything is there already.
    const again = parseJson<Array<{ guest: string; ok: boolean; disks: Array<{ alreadyRestored?: boolean }> }>>(await repo.run(['site', 'restore', '--no-start', '--plan', file!, '--json']));
    expect(again.every((g) => g.ok && g.disks.every((d) => d.alreadyRestored))).toBe(true);
  });

  it('refuses plan options beside --plan, and neither --plan nor --hosts, in one line each', async () => {
    const plan = scratch.path('plan.json');
    expect((await repo.run(['site', 'plan', '--hosts', hostsToml, '--out', plan])).code).toBe(0);
    const both = await repo.run(['site', 'restore', '--no-start', '--plan', plan, '--guest', 'onego-db01']);
    expect(both.code).toBe(EXIT.usage);
    expect(both.stderr.trim()).toBe(`ferry: site restore: --at, --guest and --tag choose what to plan, and ${plan} is planned already; give them to 'site plan', or leave out --plan`);
    const none = await repo.run(['site', 'restore']);
    expect(none.code).toBe(EXIT.usage);
    expect(none.stderr.trim()).toBe("ferry: site restore: give --plan FILE (from 'site plan --out'), or --hosts FILE to plan and restore in one go");
    const badAt = await repo.run(['site', 'restore', '--no-start', '--hosts', hostsToml, '--at', 'yesterday-ish']);
    expect(badAt.code).toBe(EXIT.usage);
    expect(badAt.stderr.trim()).toBe("ferry: --at: 'yesterday-ish' is not a time; use 2026-11-30 or 2026-11-30T02:00");
  });
});
