// `ferry backup --time`: a restore point dated other than now (bench/nights.sh
// simulates 30 nights with it), which forget's policies then bucket by.
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('backup-time');
const UTC = { env: { TZ: 'UTC' } };
let repo: TestRepo;
let image: string;

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  image = scratch.path('disk.img');
  writeRandomishImage(image, 1024 * 1024, 1);
});

describe('ferry backup --time', () => {
  it('dates the restore point at the given moment, in any zone, stored in UTC', async () => {
    const summary = await repo.backup('timed01', [image], ['--time', '2026-01-05T03:00:00+02:00']);
    expect(summary.time).toBe('2026-01-05T01:00:00.000Z');
    const listed = (await repo.list()).filter((p) => p.guest === 'timed01');
    expect(listed.map((p) => p.time)).toEqual(['2026-01-05T01:00:00.000Z']);
  });

  it("is what forget's policy buckets by: one point a simulated day, keep-daily 2 keeps the last two days", async () => {
    for (const day of ['10', '11', '12']) await repo.backup('nightly01', [image], ['--time', `2026-01-${day}T01:00:00Z`]);
    expectSuccess(await repo.run(['forget', '--guest', 'nightly01', '--keep-daily', '2'], UTC));
    const kept = (await repo.list()).filter((p) => p.guest === 'nightly01').map((p) => p.time).sort();
    expect(kept).toEqual(['2026-01-11T01:00:00.000Z', '2026-01-12T01:00:00.000Z']);
  });

  it('refuses a time that is not ISO 8601 with a zone, or with --all, writing nothing', async () => {
    const before = (await repo.list()).length;
    for (const bad of ['yesterday', '2026-01-05', '2026-01-05T01:00:00', '2026-13-05T01:00:00Z']) {
      expectCleanFailure(await repo.run(['backup', '--guest', 'bad01', '--time', bad, image]), {
        code: EXIT.usage,
        message: /^ferry: --time '.*': not an ISO 8601 time with a zone; give e\.g\. 2026-01-05T01:00:00Z$/,
      });
    }
    expectCleanFailure(await repo.run(['backup', '--all', '--time', '2026-01-05T01:00:00Z']), { code: EXIT.usage, message: /--all takes no --time/ });
    expect((await repo.list()).length).toBe(before);
  });
});
