// One damaged restore point (a torn write) must not take the repository down:
// the others are listed and restored, the damaged one is named, `restore
// latest` of its guest refuses to pass over it silently, backups of other
// guests run, and `forget` removes it although it cannot be read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  overwriteRandomPages,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('damaged-point');
const MiB = 1024 * 1024;

let repo: TestRepo;
let alphaImage: string;
let betaImage: string;
let alpha1: { id: string; sha256: string };
let alpha2: { id: string; sha256: string };
let beta1: { id: string; sha256: string };

function stderrLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '');
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  alphaImage = scratch.path('alpha.img');
  betaImage = scratch.path('beta.img');
  writeRandomishImage(alphaImage, 4 * MiB, 61);
  writeRandomishImage(betaImage, 4 * MiB, 62);
  alpha1 = { id: (await repo.backup('alpha', [alphaImage])).id, sha256: await sha256File(alphaImage) };
  overwriteRandomPages(alphaImage, 4, 63);
  alpha2 = { id: (await repo.backup('alpha', [alphaImage])).id, sha256: await sha256File(alphaImage) };
  beta1 = { id: (await repo.backup('beta', [betaImage])).id, sha256: await sha256File(betaImage) };
  // A torn write of alpha's newest restore point.
  fs.truncateSync(path.join(repo.path, 'snapshots', alpha2.id), 275);
});

describe('a torn restore point', () => {
  it('list shows the others and names the damaged one in one warning line', async () => {
    const r = await repo.run(['list']);
    const stdout = expectSuccess(r, 'ferry list');
    expect(stdout).toContain(alpha1.id.slice(0, 8));
    expect(stdout).toContain(beta1.id.slice(0, 8));
    const lines = stderrLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ferry: warning: restore point \S+ .*damaged/);
    expect(lines[0]).toContain(alpha2.id);
  });

  it('list --json lists the others and the damaged one, marked as damaged', async () => {
    const list = parseJson<Array<{ id: string; guest?: string; damaged?: boolean }>>(await repo.run(['list', '--json']));
    expect(list.filter((p) => !p.damaged).map((p) => p.id)).toEqual([alpha1.id, beta1.id]);
    expect(list.filter((p) => p.damaged).map((p) => p.id)).toEqual([alpha2.id]);
  });

  it('stats leaves it out of its figures with a note', async () => {
    const r = await repo.run(['stats', '--json']);
    const stats = parseJson<{ restorePoints: number; damagedRestorePoints: string[] }>(r);
    expect(stats.restorePoints).toBe(2);
    expect(stats.damagedRestorePoints).toEqual([alpha2.id]);
    expect(r.stderr).toContain(alpha2.id);
  });

  it('restore latest of its guest refuses, saying the newest is damaged and which one', async () => {
    const out = scratch.mkdir('restore-alpha-latest');
    const line = expectCleanFailure(await repo.run(['restore', 'latest', '--guest', 'alpha', '--to', out]), { code: EXIT.corrupt });
    expect(line).toContain(alpha2.id);
    expect(line).toMatch(/newest restore point of guest 'alpha'.*damaged/);
    expect(fs.readdirSync(out)).toEqual([]);
  });

  it('restore latest of another guest restores it, since this host knows whose the damaged point was', async () => {
    const out = scratch.mkdir('restore-beta-latest');
    expectSuccess(await repo.run(['restore', 'latest', '--guest', 'beta', '--to', out]), 'restore latest --guest beta');
    expect(await sha256File(path.join(out, 'beta.img'))).toBe(beta1.sha256);
  });

  it('a host that never saw the damaged point does not guess: restore latest of any guest names it and refuses', async () => {
    const out = scratch.mkdir('restore-beta-elsewhere');
    const r = await repo.run(['restore', 'latest', '--guest', 'beta', '--to', out], { env: { FERRY_STATE_DIR: scratch.path('other-host-state') } });
    const line = expectCleanFailure(r, { code: EXIT.corrupt });
    expect(line).toContain(alpha2.id);
    expect(line).toMatch(/may be the newest of guest 'beta'/);
  });

  it('an older restore point of its guest restores by id', async () => {
    const out = scratch.mkdir('restore-alpha1');
    expectSuccess(await repo.run(['restore', alpha1.id, '--to', out]));
    expect(await sha256File(path.join(out, 'alpha.img'))).toBe(alpha1.sha256);
  });

  it('a backup of another guest runs', async () => {
    overwriteRandomPages(betaImage, 4, 64);
    const r = await repo.run(['backup', '--guest', 'beta', betaImage, '--json']);
    expectSuccess(r, 'backup of beta');
    expect(r.stderr).toContain(alpha2.id);
  });

  it('forget ID removes it although it cannot be read; then nothing warns and latest is the older point', async () => {
    const r = await repo.run(['forget', alpha2.id.slice(0, 8)]);
    expect(expectSuccess(r, 'forget of the damaged point')).toMatch(/removed restore point \S+ \(damaged/);
    expect(fs.existsSync(path.join(repo.path, 'snapshots', alpha2.id))).toBe(false);
    const list = await repo.run(['list']);
    expectSuccess(list);
    expect(list.stderr).toBe('');
    const out = scratch.mkdir('restore-alpha-after-forget');
    expectSuccess(await repo.run(['restore', 'latest', '--guest', 'alpha', '--to', out]));
    expect(await sha256File(path.join(out, 'alpha.img'))).toBe(alpha1.sha256);
  });
});

describe('backup --all while a restore point is damaged', () => {
  it('backs up every guest; the guest whose newest point may be the damaged one is read in full', async () => {
    const conf = scratch.path('ferry.conf');
    const guest = (name: string, disk: string) => `[[static.guest]]\nname = "${name}"\ndisks = [${JSON.stringify(disk)}]\n`;
    fs.writeFileSync(conf, [guest('alpha', alphaImage), guest('beta', betaImage)].join('\n'));
    const all = () => repo.run(['backup', '--all', '--config', conf, '--work-dir', scratch.mkdir('work')]);
    expectSuccess(await all(), 'first backup --all');
    const newestAlpha = (await repo.list(['--guest', 'alpha'])).pop()!;
    fs.truncateSync(path.join(repo.path, 'snapshots', newestAlpha.id), 275);
    const r = await all();
    expectSuccess(r, 'backup --all beside a damaged restore point');
    expect(r.stdout).toMatch(/^ok +alpha /m);
    expect(r.stdout).toMatch(/^ok +beta /m);
    expect(r.stderr).toContain(`alpha: restore point ${newestAlpha.id.slice(0, 8)} is damaged and may be its newest: reading its disks in full`);
    expect(r.stderr).not.toMatch(/beta: restore point \S+ is damaged/);
  });
});
