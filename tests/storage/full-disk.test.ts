// A full disk (ENOSPC) on either side fails with one clear line and leaves
// nothing half-written: earlier restore points still restore bit-exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  expectCleanFailure,
  expectSuccess,
  listFiles,
  mountTmpfs,
  mustRun,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('full-disk');
const MiB = 1024 * 1024;

let small: { image: string; sha256: string };

beforeAll(async () => {
  small = { image: scratch.path('small.img'), sha256: '' };
  writeRandomishImage(small.image, 16 * MiB, 21);
  small.sha256 = await sha256File(small.image);
});

describe('repository on a full disk', () => {
  it('a backup that runs out of space fails cleanly and the previous restore point survives', async () => {
    const disk = await mountTmpfs(scratch, 'repo-disk', 48);
    const repo = await TestRepo.init(scratch, 'repo', { dir: path.join(disk, 'repo') });
    const first = await repo.backup('guest', [small.image]);

    // 96 MiB of incompressible data cannot fit in what is left of 48 MiB.
    const big = scratch.path('big.img');
    writeRandomishImage(big, 96 * MiB, 22, { holes: 0, text: 0 });
    const r = await repo.run(['backup', '--guest', 'guest', big]);
    expectCleanFailure(r, { message: /space|ENOSPC|full/i });
    const leftovers = listFiles(repo.path).filter((f) => /\.tmp|(^|\/)\./.test(f));
    expect(leftovers, 'the failed backup must remove its half-written temp files').toEqual([]);

    expect((await repo.list()).map((p) => p.id)).toEqual([first.id]);
    await repo.expectCheckPasses(true);
    const out = scratch.mkdir('restore-after-enospc');
    expectSuccess(await repo.run(['restore', first.id, '--to', out]));
    expect(await sha256File(path.join(out, 'small.img'))).toBe(small.sha256);
  });
});

describe('a backup interrupted by a full disk', () => {
  it('says truly that the packs it completed stay, and the next backup (with space freed) reuses them', async () => {
    const disk = await mountTmpfs(scratch, 'resume-disk', 40);
    const repo = await TestRepo.init(scratch, 'resume', { dir: path.join(disk, 'repo') });
    const big = scratch.path('resume.img');
    writeRandomishImage(big, 64 * MiB, 23, { holes: 0, text: 0 });
    const r = await repo.run(['backup', '--guest', 'guest', big]);
    const line = expectCleanFailure(r, { code: 8, message: /ENOSPC/ });
    expect(line).toContain('the packs it completed stay and the next backup reuses them');
    expect(line).not.toContain('unchanged');
    const kept = listFiles(repo.path).filter((f) => f.startsWith('data/'));
    expect(kept.length, 'complete packs stayed').toBeGreaterThan(0);

    await mustRun('mount', ['-o', 'remount,size=256m', disk]);
    const resumed = await repo.run(['backup', '--guest', 'guest', big, '--json']);
    const summary = parseJson<{ id: string; newBytes: number; logicalBytes: number }>(resumed);
    expect(summary.newBytes, 'the packs left behind are reused, not stored again').toBeLessThan(summary.logicalBytes - 16 * MiB);
    const out = scratch.mkdir('restore-after-resume');
    expectSuccess(await repo.run(['restore', summary.id, '--to', out]));
    expect(await sha256File(path.join(out, 'resume.img'))).toBe(await sha256File(big));
  });
});

describe('restore target on a full disk', () => {
  it('a restore that runs out of space fails cleanly and leaves no partial file', async () => {
    const repo = await TestRepo.init(scratch, 'repo2');
    const point = await repo.backup('guest', [small.image]);
    // ~13 MiB of data in the image; 8 MiB of room.
    const target = await mountTmpfs(scratch, 'target-disk', 8);
    const r = await repo.run(['restore', point.id, '--to', target]);
    expectCleanFailure(r, { message: /space|ENOSPC|full/i });
    expect(fs.readdirSync(target), 'no partial or temporary file may be left').toEqual([]);
  });
});
