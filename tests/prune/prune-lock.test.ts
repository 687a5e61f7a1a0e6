// Prune confirms its exclusive lock before it deletes anything (FORMAT.md,
// garbage-collection rule 3): a prune that lost its lock deletes nothing.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pruneRepository } from '../../src/prune/pruneRun';
import { LockLostError } from '../../src/errors';
import { TestRepo, expectSuccess, listFiles, useScratch, writeRandomishImage } from '../support';
import { openInProcess } from '../support/repositoryScenarios';

const scratch = useScratch('prune-lock');

describe('prune and its lock', () => {
  it('deletes nothing when the lock check before the deletions fails', async () => {
    const testRepo = await TestRepo.init(scratch, 'repo');
    const image = scratch.path('g.img');
    writeRandomishImage(image, 2 * 1024 * 1024, 91, { holes: 0, text: 0 });
    const first = await testRepo.backup('g', [image]);
    writeRandomishImage(image, 2 * 1024 * 1024, 92, { holes: 0, text: 0 });
    await testRepo.backup('g', [image]);
    expectSuccess(await testRepo.run(['forget', first.id]));
    const before = ['data', 'index'].flatMap((d) => listFiles(path.join(testRepo.path, d)));
    const { repo } = await openInProcess(scratch, testRepo);
    let asked = 0;
    const confirmLock = async () => {
      asked++;
      throw new LockLostError('lock lost');
    };
    await expect(pruneRepository(repo, { repackBelow: 0.5, mode: 'prune', confirmLock })).rejects.toThrow(/lock lost/);
    await repo.backend.close();
    expect(asked).toBe(1);
    const after = ['data', 'index'].flatMap((d) => listFiles(path.join(testRepo.path, d)));
    // The merged index file was written (a valid state); nothing that was there is gone.
    expect(after.filter((f) => !before.includes(f))).toHaveLength(1);
    expect(before.filter((f) => !after.includes(f))).toEqual([]);
    await testRepo.expectCheckPasses(true);
  });
});
