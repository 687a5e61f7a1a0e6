// What a prune killed while deleting its dropped packs leaves (FORMAT.md, rule
// 8): packs no index names that hold page patches whose bases are already
// deleted. check takes such packs, as restore does, and calls a patch that no
// longer rebuilds damage only when a restore point needs it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, listFiles, overwriteRandomPages, sha256File, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('check-prune-leftovers');
const MiB = 1024 * 1024;

interface Night {
  id: string;
  sha256: string;
  /** The pack and the index file its backup added (relative to the repository). */
  pack: string;
  index: string;
}

let repo: TestRepo;
let night1: Night;
let night2: Night;
let night3: Night;

async function backUp(image: string): Promise<Night> {
  const before = new Set(listFiles(repo.path));
  const { id } = await repo.backup('g', [image]);
  const added = listFiles(repo.path).filter((f) => !before.has(f));
  const packs = added.filter((f) => f.startsWith('data/'));
  const indexes = added.filter((f) => f.startsWith('index/'));
  expect(packs, 'one pack a night').toHaveLength(1);
  expect(indexes, 'one index file a night').toHaveLength(1);
  return { id, sha256: await sha256File(image), pack: packs[0], index: indexes[0] };
}

/** A copy of the repository as a prune killed in its last step leaves it: night 2's pack unindexed, night 1's pack gone. */
async function killedPruneLeftovers(name: string, forget: Night[]): Promise<TestRepo> {
  const copy = await repo.copyTo(scratch.path(name));
  if (forget.length > 0) expectSuccess(await copy.run(['forget', ...forget.map((n) => n.id)]));
  for (const f of [night2.index, night1.index, night1.pack]) fs.rmSync(path.join(copy.path, f));
  return copy;
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  const image = scratch.path('g.img');
  writeRandomishImage(image, 4 * MiB, 61, { holes: 0, text: 0 });
  night1 = await backUp(image);
  // Night 2: a few pages, stored as patches on night 1's chunks. Night 3: all new, so nothing needs either night.
  overwriteRandomPages(image, 8, 62);
  night2 = await backUp(image);
  writeRandomishImage(image, 4 * MiB, 63, { holes: 0, text: 0 });
  night3 = await backUp(image);
}, 120_000);

describe('check after a prune killed while deleting packs', () => {
  it('passes when no restore point needs the unindexed patches whose bases are gone, and says the packs are unindexed', async () => {
    const copy = await killedPruneLeftovers('dead-leftovers', [night1, night2]);
    const out = expectSuccess(await copy.check(true), 'check --read-data');
    expect(out).toMatch(/1 unindexed pack\(s\)/);
    const restored = scratch.path('restored');
    expectSuccess(await copy.run(['restore', night3.id, '--to', restored]));
    expect(await sha256File(path.join(restored, 'g.img'))).toBe(night3.sha256);
  });

  it('reports them as damage, naming the restore point, when one needs them', async () => {
    const copy = await killedPruneLeftovers('needed-leftovers', [night1]);
    const r = await copy.check(true);
    expectCleanFailure(r, { code: EXIT.damageFound });
    expect(r.stdout).toMatch(/damaged: data\/\S+: page patch \w+ does not rebuild its chunk/);
    expect(r.stdout).toContain(`affected restore point: ${night2.id.slice(0, 8)}`);
  });
});
