// Torn writes and interrupted commands: a pack cut short, an index file lost,
// a command killed half-way. Whatever happened, the next backup must produce a
// restore point that restores, `ferry repair` must say exactly what is lost,
// and re-running the interrupted command must finish it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  listFiles,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('torn-writes');
const MiB = 1024 * 1024;

interface Backed {
  repo: TestRepo;
  image: string;
  id: string;
  sha256: string;
  /** Repository files (relative) that the backup added. */
  added: string[];
}

/** A new repository with one 16 MiB guest backed up into it. */
async function repoWithBackup(name: string, seed: number): Promise<Backed> {
  const repo = await TestRepo.init(scratch, name);
  const image = scratch.path(`${name}.img`);
  writeRandomishImage(image, 16 * MiB, seed, { holes: 0, text: 0 });
  const before = new Set(listFiles(repo.path));
  const { id } = await repo.backup('web', [image]);
  const added = listFiles(repo.path).filter((f) => !before.has(f) && !f.startsWith('locks/'));
  return { repo, image, id, sha256: await sha256File(image), added };
}

/** The largest pack a backup added. */
function newestPack(b: Backed): string {
  const packs = b.added.filter((f) => f.startsWith('data/'));
  expect(packs.length).toBeGreaterThan(0);
  return packs.sort((x, y) => fs.statSync(path.join(b.repo.path, y)).size - fs.statSync(path.join(b.repo.path, x)).size)[0];
}

function truncateToHalf(repo: TestRepo, file: string): void {
  const p = path.join(repo.path, file);
  fs.truncateSync(p, Math.floor(fs.statSync(p).size / 2));
}

async function expectRestoresBitExact(repo: TestRepo, id: string, image: string, sha256: string): Promise<void> {
  const out = scratch.path(`restore-${id.slice(0, 8)}-${Math.random().toString(16).slice(2, 8)}`);
  expectSuccess(await repo.run(['restore', id, '--to', out]), `restore of ${id}`);
  expect(await sha256File(path.join(out, path.basename(image))), `restore of ${id} must be bit-exact`).toBe(sha256);
}

describe('a backup after a pack was torn', () => {
  it('does not reuse the lost blobs: it stores them again, says so, and its restore point restores bit-exact', async () => {
    const b = await repoWithBackup('torn-pack-backup', 901);
    truncateToHalf(b.repo, newestPack(b));

    const r = await b.repo.run(['backup', '--guest', 'web', b.image, '--json']);
    const summary = parseJson<{ id: string; newBytes: number }>(r);
    expect(r.stderr).toMatch(/warning: 1 pack\(s\) damaged or missing \(1 short\); \d+ blob\(s\) they held will be stored again by this backup; run 'ferry repair'/);
    expect(summary.newBytes, 'the lost data is stored again').toBeGreaterThan(4 * MiB);
    await expectRestoresBitExact(b.repo, summary.id, b.image, b.sha256);

    // The next backup finds the stored-again copies: nothing lost, nothing new.
    const again = await b.repo.backup('web', [b.image]);
    expect(again.newBytes).toBeLessThan(MiB);
    await expectRestoresBitExact(b.repo, again.id, b.image, b.sha256);
  });

  it('stores again the blobs of a pack that is missing altogether', async () => {
    const b = await repoWithBackup('missing-pack-backup', 902);
    fs.rmSync(path.join(b.repo.path, newestPack(b)));
    const r = await b.repo.run(['backup', '--guest', 'web', b.image, '--json']);
    const summary = parseJson<{ id: string; newBytes: number }>(r);
    expect(r.stderr).toContain('1 pack(s) damaged or missing (1 missing)');
    await expectRestoresBitExact(b.repo, summary.id, b.image, b.sha256);
  });
});
