// `ferry forget` with a retention policy, end to end against a repository.
// Restore points at chosen times are written through the library (a backup
// records the current time); buckets use TZ=UTC here.
import * as fs from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('forget-policy');
const UTC = { env: { TZ: 'UTC' } };
let repo: TestRepo;
let n = 0;

/** A repository holding web01 (on two hosts) and db01 at the given times. */
beforeEach(async () => {
  repo = await TestRepo.init(scratch, `repo-${++n}`);
  const image = scratch.path(`disk-${n}.img`);
  writeRandomishImage(image, 1024 * 1024, n);
  const first = await repo.backup('web01', [image]);
  const library = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, '')));
  const { id: _id, ...template } = await library.loadRestorePointByName(first.id);
  const save = (guest: string, hostname: string, time: string, tags: string[] = []) => library.saveRestorePoint({ ...template, guest, hostname, time, tags });
  await save('web01', 'dom0-a', '2026-11-30T02:00:00.000Z');
  await save('web01', 'dom0-a', '2026-11-29T14:00:00.000Z');
  await save('web01', 'dom0-a', '2026-11-29T02:00:00.000Z');
  await save('web01', 'dom0-a', '2026-11-20T02:00:00.000Z', ['keep']);
  await save('web01', 'dom0-b', '2026-11-10T02:00:00.000Z');
  await save('db01', 'dom0-a', '2026-11-30T03:00:00.000Z');
  await save('db01', 'dom0-a', '2026-11-28T03:00:00.000Z');
  await library.backend.close();
  expectSuccess(await repo.run(['forget', first.id])); // the real backup's own time is now: out of the picture
});

async function remaining(): Promise<string[]> {
  return (await repo.list()).map((p) => `${p.guest} ${p.time.slice(0, 13)}`).sort();
}

describe('ferry forget with a policy', () => {
  it('--dry-run lists each point with the rule that keeps it, and removes nothing', async () => {
    const before = await remaining();
    const out = expectSuccess(await repo.run(['forget', '--keep-daily', '1', '--keep-tag', 'keep', '--dry-run'], UTC));
    expect(out).toMatch(/^web01 \(from dom0-a\):\n\s+keep\s+\w{8}\s+2026-11-30T02:00:00Z\s+daily 2026-11-30\n\s+would remove\s+\w{8}\s+2026-11-29T14:00:00Z\s*\n\s+would remove\s+\w{8}\s+2026-11-29T02:00:00Z\s*\n\s+keep\s+\w{8}\s+2026-11-20T02:00:00Z\s+tag keep$/m);
    expect(out).toMatch(/^web01 \(from dom0-b\):\n\s+keep\s+\w{8}\s+2026-11-10T02:00:00Z\s+daily 2026-11-10$/m);
    expect(out).toMatch(/would remove 3 restore point\(s\), kept 4, in 3 group\(s\)/);
    expect(await remaining()).toEqual(before);
  });

  it('removes what the policy does not keep, per guest and source host', async () => {
    expectSuccess(await repo.run(['forget', '--keep-daily', '2'], UTC));
    expect(await remaining()).toEqual([
      'db01 2026-11-28T03', 'db01 2026-11-30T03',
      'web01 2026-11-10T02', // dom0-b's only point: its own group
      'web01 2026-11-29T14', 'web01 2026-11-30T02',
    ]);
    await repo.expectCheckPasses(false);
  });

  it('touches only the selected guests and hosts', async () => {
    expectSuccess(await repo.run(['forget', '--keep-last', '1', '--guest', 'web*', '--host', 'dom0-a'], UTC));
    expect(await remaining()).toEqual(['db01 2026-11-28T03', 'db01 2026-11-30T03', 'web01 2026-11-10T02', 'web01 2026-11-30T02']);
  });

  it("applies ferry.conf's [retention] with per-guest overrides when no --keep-* is given", async () => {
    const conf = scratch.path(`ferry-${n}.conf`);
    fs.writeFileSync(conf, '[retention]\nkeep_last = 1\n\n[guest."db*"]\nkeep_last = 2\n');
    expectSuccess(await repo.run(['forget', '--config', conf], UTC));
    expect(await remaining()).toEqual(['db01 2026-11-28T03', 'db01 2026-11-30T03', 'web01 2026-11-10T02', 'web01 2026-11-30T02']);
  });

  it('refuses ids with a policy, no policy at all, and rules that keep nothing, removing nothing', async () => {
    const before = await remaining();
    expectCleanFailure(await repo.run(['forget', 'latest', '--keep-last', '1']), { code: EXIT.usage, message: /give restore point ids, or a policy .*not both/ });
    expectCleanFailure(await repo.run(['forget', '--config', scratch.path('missing.conf')]), { code: EXIT.badInput, message: /cannot read the config file/ });
    const empty = scratch.path(`empty-${n}.conf`);
    fs.writeFileSync(empty, '');
    expectCleanFailure(await repo.run(['forget', '--config', empty]), { code: EXIT.usage, message: /nothing to forget by; give restore point ids, --keep-\* options, or a \[retention\] policy/ });
    expectCleanFailure(await repo.run(['forget', '--keep-daily', '0']), { code: EXIT.usage, message: /would remove every restore point/ });
    expectCleanFailure(await repo.run(['forget', '--keep-daily', 'seven']), { code: EXIT.usage, message: /--keep-daily: 'seven' is not a whole number/ });
    expectCleanFailure(await repo.run(['forget', '--keep-within', '2 weeks']), { code: EXIT.usage, message: /--keep-within: '2 weeks' is not a duration/ });
    expect(await remaining()).toEqual(before);
  });
});
