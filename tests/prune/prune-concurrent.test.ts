// A backup that starts while prune holds the exclusive lock stops at once with
// exit 5 and one line naming the prune, having stored nothing; the prune goes on.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, listFiles, pseudoRandomBytes, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('prune-concurrent');

describe('a backup during prune', () => {
  it('is refused (exit 5, the holder named) and stores nothing; prune completes and the repository checks clean', async () => {
    const repo = await TestRepo.init(scratch, 'repo');
    const image = scratch.path('g.img');
    writeRandomishImage(image, 8 * MiB, 101, { holes: 0, text: 0 });
    const first = await repo.backup('g', [image]);
    // 6 of 8 MiB replaced: the first pack keeps 2 MiB live, so prune reads it (slowly) to repack them.
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, pseudoRandomBytes(102, 0, 6 * MiB), 0, 6 * MiB, 2 * MiB);
    fs.closeSync(fd);
    await repo.backup('g', [image]);
    expectSuccess(await repo.run(['forget', first.id]));

    // Slowed down, so that the prune holds its lock while the backup starts: at 3 MB/s it moves ~22 MB in ~7 s, and
    // the refused backup is done ~1.5 s after the lock appears even at load 8 (1 MB/s made this file take 25 s).
    const prune = repo.spawn(['prune', '--repack-below', '1', '--limit-download', '3M', '--limit-upload', '3M']);
    let exited = false;
    void prune.done.then(() => (exited = true));
    while (!exited && listFiles(path.join(repo.path, 'locks')).filter((f) => !f.includes('.tmp-')).length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(exited, 'prune finished before its lock was seen').toBe(false);
    const snapshotsBefore = fs.readdirSync(path.join(repo.path, 'snapshots')).sort();
    const backup = await repo.run(['backup', '--guest', 'g', image]);
    expectCleanFailure(backup, { code: EXIT.locked, message: /is locked \(exclusive\) by 'prune'/ });
    expect(fs.readdirSync(path.join(repo.path, 'snapshots')).sort()).toEqual(snapshotsBefore);

    expectSuccess(await prune.done, 'prune');
    await repo.expectCheckPasses(true);
  });
});
