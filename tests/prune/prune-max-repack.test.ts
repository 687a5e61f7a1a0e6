// `ferry prune --max-repack SIZE`: one run rewrites at most SIZE of packs, the
// rest is reported and left whole, and the next run continues where it stopped;
// the packs with the lowest live share go first (also in prune-plan.test.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, listFiles, parseJson, pseudoRandomBytes, sha256File, useScratch } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('prune-max-repack');

function packNames(repo: TestRepo): string[] {
  return listFiles(path.join(repo.path, 'data')).map((f) => path.basename(f));
}

interface PruneReport {
  packsRepacked: number;
  bytesRepacked: number;
  packsRepackDeferred: number;
  bytesRepackDeferred: number;
  bytesFreed: number;
}

describe('ferry prune --max-repack', () => {
  it('rewrites at most the budget per run, lowest live share first, reports what is left, and the next runs continue', async () => {
    // Guest g<i>'s image is A<i> | B<i> (9 MiB, incompressible), stored in a pack of its own; guest
    // keep's image holds every A<i> (3, 5, 7 MiB). With the g<i> points forgotten, g<i>'s pack keeps
    // A<i> live: shares 3/9, 5/9, 7/9. Fixed 1 MiB chunks, so that every A<i> is cut the same in
    // both images (content-defined cuts are keyed per repository: the chunks at A<i>'s ends would
    // die by chance, and g1's share could pass g2's).
    const repo = await TestRepo.init(scratch, 'repo', { chunker: 'fixed:1M' });
    const packsOf = new Map<number, string[]>();
    const forgotten: string[] = [];
    const parts: Buffer[] = [];
    for (let i = 1; i <= 3; i++) {
      const a = pseudoRandomBytes(70, i, (2 * i + 1) * MiB);
      const b = pseudoRandomBytes(71, i, 9 * MiB - a.length);
      parts.push(a);
      const image = scratch.path(`g${i}.img`);
      fs.writeFileSync(image, Buffer.concat([a, b]));
      const before = new Set(packNames(repo));
      forgotten.push((await repo.backup(`g${i}`, [image])).id);
      packsOf.set(i, packNames(repo).filter((p) => !before.has(p)));
      expect(packsOf.get(i), `g${i}'s backup writes one pack`).toHaveLength(1);
    }
    const keepImage = scratch.path('keep.img');
    fs.writeFileSync(keepImage, Buffer.concat(parts));
    const keep = await repo.backup('keep', [keepImage]);
    expect(keep.newBytes, 'keep deduplicates against the g<i> packs: only its region map is new').toBeLessThan(MiB);
    const sha256 = await sha256File(keepImage);
    expectSuccess(await repo.run(['forget', ...forgotten]));
    const prune = async (extra: string[]) => parseJson<PruneReport>(await repo.run(['prune', '--repack-below', '0.9', '--json', ...extra]));

    const unbounded = await prune(['--dry-run']);
    // The plan's own words only when the count is wrong (one more prune run otherwise for nothing).
    const planText = unbounded.packsRepacked === 3 ? '' : expectSuccess(await repo.run(['prune', '--dry-run', '--repack-below', '0.9']));
    expect(unbounded.packsRepacked, `the three g<i> packs are repacked: ${JSON.stringify(unbounded)}\n${planText}`).toBe(3);
    expect(unbounded.packsRepackDeferred).toBe(0);
    const text = expectSuccess(await repo.run(['prune', '--dry-run', '--repack-below', '0.9', '--max-repack', '10M']));
    expect(text).toMatch(/^left for later: +2 pack\(s\), .* over --max-repack .*: the next prune repacks them$/m);

    // Room for one ~9 MiB pack a run: g1's first (the lowest live share), then g2's, then g3's.
    const budget = 10 * MiB;
    const run1 = await prune(['--max-repack', '10M']);
    expect([run1.packsRepacked, run1.packsRepackDeferred]).toEqual([1, 2]);
    expect(run1.bytesRepacked).toBeLessThanOrEqual(budget);
    expect(run1.bytesRepacked + run1.bytesRepackDeferred).toBe(unbounded.bytesRepacked);
    const expectRepacked = (done: number[], waiting: number[]) => {
      const now = packNames(repo);
      for (const i of done) for (const p of packsOf.get(i)!) expect(now, `g${i}'s pack is repacked`).not.toContain(p);
      for (const i of waiting) for (const p of packsOf.get(i)!) expect(now, `g${i}'s pack waits`).toContain(p);
    };
    expectRepacked([1], [2, 3]);
    await repo.expectCheckPasses(true);

    // The next runs continue where it stopped.
    const run2 = await prune(['--max-repack', '10M']);
    expect([run2.packsRepacked, run2.packsRepackDeferred]).toEqual([1, 1]);
    expect(run2.bytesRepacked).toBeLessThanOrEqual(budget);
    expectRepacked([1, 2], [3]);
    const run3 = await prune(['--max-repack', '10M']);
    expect([run3.packsRepacked, run3.packsRepackDeferred]).toEqual([1, 0]);
    expect((await prune(['--dry-run'])).bytesRepacked).toBe(0);
    await repo.expectCheckPasses(true);
    const out = scratch.path('restored');
    expectSuccess(await repo.run(['restore', keep.id, '--to', out]));
    expect(await sha256File(path.join(out, 'keep.img'))).toBe(sha256);
  });

  it('refuses a size it cannot read', async () => {
    const repo = await TestRepo.init(scratch, 'bad-size');
    expectCleanFailure(await repo.run(['prune', '--max-repack', 'lots']), { code: EXIT.usage, message: /--max-repack: 'lots' is not a size; .* e\.g\. 2G/ });
  });
});
