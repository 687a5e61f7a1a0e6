// A backup killed (SIGKILL) at any moment leaves the repository valid: check
// --read-data passes and the last completed restore point restores bit-exact.
// The next backup completes and reuses what the killed runs already stored.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BackupSummary,
  describeResult,
  expectSuccess,
  parseJson,
  Rng,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('crash');
const MiB = 1024 * 1024;
const KILLS = 15;

let repo: TestRepo;
let previous: { image: string; id: string; sha256: string };
let big: { image: string; sha256: string };
/** A full backup of the big image into an empty repository: its duration and size. */
let full: { ms: number; newBytes: number };

async function expectRestoresBitExact(id: string, image: string, sha256: string, label: string): Promise<void> {
  const out = scratch.mkdir('restore');
  try {
    expectSuccess(await repo.run(['restore', id, '--to', out]), `restore ${label}`);
    expect(await sha256File(path.join(out, path.basename(image))), label).toBe(sha256);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  const prevImage = scratch.path('previous.img');
  writeRandomishImage(prevImage, 16 * MiB, 41);
  previous = { image: prevImage, id: (await repo.backup('vm', [prevImage])).id, sha256: await sha256File(prevImage) };

  const bigImage = scratch.path('big.img');
  writeRandomishImage(bigImage, 300 * MiB, 42, { holes: 0.1, text: 0.25 });
  big = { image: bigImage, sha256: await sha256File(bigImage) };

  const reference = await TestRepo.init(scratch, 'reference');
  const t0 = Date.now();
  const summary = await reference.backup('vm', [bigImage]);
  full = { ms: Date.now() - t0, newBytes: summary.newBytes };
  fs.rmSync(reference.path, { recursive: true });
});

describe('backups killed at random moments', () => {
  it(`survive ${KILLS} SIGKILLs spread over a backup's run time, then a backup completes reusing stored data`, async () => {
    const rng = new Rng(20241127);
    // Ascending moments from 5% to 95% of a full backup's duration, jittered.
    const moments = Array.from({ length: KILLS }, (_, i) => Math.round(full.ms * (0.05 + (0.9 * (i + rng.next())) / KILLS)));
    const completed: string[] = [];
    let killed = 0;

    for (const [i, ms] of moments.entries()) {
      const label = `kill ${i + 1}/${KILLS} at ${ms} ms of ~${full.ms} ms`;
      const running = repo.spawn(['backup', '--guest', 'vm', big.image, '--json']);
      const timer = setTimeout(() => running.child.kill('SIGKILL'), ms);
      const r = await running.done;
      clearTimeout(timer);
      if (r.signal === 'SIGKILL') killed++;
      else {
        // Not killed in time: it must then have completed normally.
        expect(r.code, `${label}: backup failed on its own; ${describeResult(r)}`).toBe(0);
        completed.push(parseJson<BackupSummary>(r).id);
      }

      const check = await repo.check(true);
      expect(check.code, `${label}: check --read-data after the kill; ${describeResult(check)}`).toBe(0);
      const ids = (await repo.list()).map((p) => p.id);
      expect(ids, `${label}: only completed backups are restore points`).toEqual([previous.id, ...completed]);
      await expectRestoresBitExact(previous.id, previous.image, previous.sha256, `${label}: previous restore point`);
    }
    expect(killed, 'most kills must land while the backup runs').toBeGreaterThanOrEqual(10);

    const final = await repo.backup('vm', [big.image]);
    expect(final.newBytes, `final backup newBytes vs a full backup's ${full.newBytes}`).toBeLessThan(full.newBytes);
    await expectRestoresBitExact(final.id, big.image, big.sha256, 'final backup');
    await repo.expectCheckPasses(true);
  });
});
