// A prune killed while deleting packs leaves some dropped packs behind, no
// longer indexed; a base one of their page patches needs may be gone already
// (docs/FORMAT.md, garbage collection rule 8). The next backup indexes such
// orphan packs, but never dedupes against their patches: it stores those
// chunks again, so its restore point restores bit-exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TestRepo, expectSuccess, listFiles, overwriteRandomPages, sha256File, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('orphan-patches');
const MiB = 1024 * 1024;

describe('a backup after a prune killed mid-deletion', () => {
  it('does not deduplicate against an orphan pack\'s page patch whose base is gone', async () => {
    const repo = await TestRepo.init(scratch, 'repo');
    const image = scratch.path('db01.img');
    writeRandomishImage(image, 16 * MiB, 5);
    const night0 = await repo.backup('db01', [image]);
    const packsOf = () => new Set(listFiles(path.join(repo.path, 'data')));
    const basePacks = packsOf();
    overwriteRandomPages(image, 40, 6); // scattered pages: night 1 stores page patches on night 0's chunks
    const night1 = await repo.backup('db01', [image]);
    expect(night1.newBytes).toBeLessThan(4 * MiB); // patches, not whole chunks (16 MiB image)
    const patchPacks = [...packsOf()].filter((p) => !basePacks.has(p));
    // The state of a prune killed in step 4: both points forgotten, every index file gone,
    // the packs holding the bases deleted, the packs holding the patches not yet.
    expectSuccess(await repo.run(['forget', night0.id, night1.id]));
    for (const f of fs.readdirSync(path.join(repo.path, 'index'))) fs.rmSync(path.join(repo.path, 'index', f));
    for (const p of basePacks) fs.rmSync(path.join(repo.path, 'data', p));
    expect(patchPacks.length).toBeGreaterThan(0);

    const again = await repo.backup('db01', [image]);
    const restored = scratch.path('restored');
    expectSuccess(await repo.run(['restore', again.id, '--to', restored]));
    expect(await sha256File(path.join(restored, 'db01.img'))).toBe(await sha256File(image));
  });
});
