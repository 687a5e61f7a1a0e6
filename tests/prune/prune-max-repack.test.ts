// `ferry prune --max-repack SIZE`: one run rewrites at most SIZE of packs, the
// rest is reported and left whole, and the next run continues where it stopped.
// (Which packs go first, lowest live share, is in prune-plan.test.ts.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT, FAST_KDF, TestRepo, expectCleanFailure, expectSuccess, ferry, parseJson, pseudoRandomBytes, sha256File, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('prune-max-repack');

interface PruneReport {
  packsRepacked: number;
  bytesRepacked: number;
  packsRepackDeferred: number;
  bytesRepackDeferred: number;
  bytesFreed: number;
}

describe('ferry prune --max-repack', () => {
  it('rewrites at most the budget per run, reports what is left, and a second run continues', async () => {
    // 1 MiB packs, so 8 MiB of data make several packs that each keep about a quarter live.
    const dir = scratch.path('repo');
    const repo = new TestRepo(dir, scratch.path('repo.password'));
    fs.writeFileSync(repo.passwordFile, 'max repack\n', { mode: 0o600 });
    expectSuccess(await ferry(['init', '--repo', dir, '--password-file', repo.passwordFile, '--pack-size', '1M', ...FAST_KDF]));
    const image = scratch.path('g.img');
    writeRandomishImage(image, 8 * MiB, 7, { holes: 0, text: 0 });
    const first = await repo.backup('g', [image]);
    const fd = fs.openSync(image, 'r+');
    for (let k = 0; k < 8; k++) fs.writeSync(fd, pseudoRandomBytes(8, k, 768 * 1024), 0, 768 * 1024, k * MiB);
    fs.closeSync(fd);
    const second = await repo.backup('g', [image]);
    const sha256 = await sha256File(image);
    expectSuccess(await repo.run(['forget', first.id]));

    const budget = 3 * MiB;
    const unbounded = parseJson<PruneReport>(await repo.run(['prune', '--dry-run', '--json']));
    expect(unbounded.bytesRepacked, 'the scenario needs more repacking than one budget').toBeGreaterThan(budget);
    expect(unbounded.packsRepackDeferred).toBe(0);

    const text = expectSuccess(await repo.run(['prune', '--dry-run', '--max-repack', '3M']));
    expect(text).toMatch(/^left for later: +\d+ pack\(s\), .* over --max-repack .*: the next prune repacks them$/m);

    const run1 = parseJson<PruneReport>(await repo.run(['prune', '--max-repack', '3M', '--json']));
    expect(run1.packsRepacked).toBeGreaterThan(0);
    expect(run1.bytesRepacked).toBeLessThanOrEqual(budget);
    expect(run1.packsRepackDeferred).toBeGreaterThan(0);
    expect(run1.bytesRepacked + run1.bytesRepackDeferred).toBe(unbounded.bytesRepacked);
    await repo.expectCheckPasses(true);

    // The next runs take up what was left, within the budget each time, until nothing is.
    let left = run1;
    for (let run = 2; left.packsRepackDeferred > 0; run++) {
      expect(run, 'prune --max-repack should finish within a few runs').toBeLessThanOrEqual(6);
      const next = parseJson<PruneReport>(await repo.run(['prune', '--max-repack', '3M', '--json']));
      expect(next.packsRepacked).toBeGreaterThan(0);
      expect(next.bytesRepacked).toBeLessThanOrEqual(budget);
      expect(next.packsRepackDeferred).toBeLessThan(left.packsRepackDeferred);
      left = next;
    }
    expect(parseJson<PruneReport>(await repo.run(['prune', '--dry-run', '--json'])).bytesRepacked).toBe(0);
    await repo.expectCheckPasses(true);
    const out = scratch.path('restored');
    expectSuccess(await repo.run(['restore', second.id, '--to', out]));
    expect(await sha256File(path.join(out, 'g.img'))).toBe(sha256);
  });

  it('refuses a size it cannot read', async () => {
    const repo = await TestRepo.init(scratch, 'bad-size');
    expectCleanFailure(await repo.run(['prune', '--max-repack', 'lots']), { code: EXIT.usage, message: /--max-repack: 'lots' is not a size; .* e\.g\. 2G/ });
  });
});
