// FORMAT.md, garbage-collection rule 3: a backup writes its restore point only
// while its lock was refreshed less than half the stale age ago (its own
// monotonic clock), so a prune that may remove a stale lock can never delete
// blobs that restore point names by deduplication.
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/repo/lock';
import { backupGuest, imageBackupRequest } from '../../src/backup/guestBackup';
import { LockLostError } from '../../src/errors';
import { TestRepo, useScratch, writeRandomishImage } from '../support';
import { openInProcess } from '../support/repositoryScenarios';

const scratch = useScratch('lock-margin');
const STALE_MS = 4000;
// Refreshed only just before it would go stale, so the test sees the gap between refreshes.
const timing = { staleAfterMs: STALE_MS, refreshEveryMs: STALE_MS - 1 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the margin a backup keeps before writing its restore point', () => {
  it('verifyFresh passes right after a refresh and fails past half the stale age, where verify still passes', async () => {
    const { repo } = await openInProcess(scratch, await TestRepo.init(scratch, 'fresh'));
    const lost: LockLostError[] = [];
    const lock = await acquireLock(repo, 'shared', 'backup', { hostId: 'a'.repeat(32), timing, onLost: (e) => lost.push(e) });
    try {
      await lock.verifyFresh();
      // A lower bound only: however slow the machine, at least this long has passed.
      await sleep(STALE_MS / 2 + 100);
      await lock.verify();
      await expect(lock.verifyFresh()).rejects.toThrow(/last refreshed [\d.]+ s ago, more than half the stale age of 4.0 s/);
      expect(lost).toHaveLength(1);
      expect(lost[0]).toBeInstanceOf(LockLostError);
    } finally {
      await lock.release();
      await repo.backend.close();
    }
  });

  it('backupGuest writes no restore point when the lock check before it fails', async () => {
    const testRepo = await TestRepo.init(scratch, 'guest');
    const { repo, pool } = await openInProcess(scratch, testRepo);
    const image = scratch.path('g.img');
    writeRandomishImage(image, 2 * 1024 * 1024, 81);
    let asked = 0;
    const request = {
      ...imageBackupRequest('g', [image], undefined, []),
      confirmLock: async () => {
        asked++;
        throw new LockLostError('lock too old');
      },
    };
    await expect(backupGuest(repo, pool, request)).rejects.toThrow(/lock too old/);
    expect(asked).toBe(1);
    expect((await repo.listAllRestorePoints()).points).toHaveLength(0);
    await repo.backend.close();
  });
});
