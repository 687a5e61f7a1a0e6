// check/ called directly (the CLI tests drive it through `ferry check`): a
// clean repository reports no damage; one flipped byte in a pack is found
// with --read-data, named by its object, and only the restore points that
// need that pack are called affected.
import { beforeAll, describe, expect, it } from 'vitest';
import { checkRepository } from '../../src/check/repositoryCheck';
import { packsNeeded } from '../../src/sync/selection';
import { openBackend } from '../../src/storage/open';
import { useScratch } from '../support';
import { corruptObject, objectNames, openInProcess, smallRepository, type BackedUpImage } from '../support/repositoryScenarios';
import type { TestRepo } from '../support';

const scratch = useScratch('check-module');
let clean: TestRepo;
let damaged: TestRepo;
/** web night 1, db, web night 2 */
let points: BackedUpImage[];
let cleanPacks: string[];
let dbPack: string;

beforeAll(async () => {
  clean = (await smallRepository(scratch, 'clean')).repo;
  const cleanBackend = openBackend(clean.path);
  cleanPacks = await objectNames(cleanBackend, 'data');
  await cleanBackend.close();
  const small = await smallRepository(scratch, 'damaged');
  damaged = small.repo;
  points = small.points;
  // Flip a byte in a pack that only db's restore point needs.
  const { repo } = await openInProcess(scratch, damaged);
  const rps = await repo.listRestorePoints();
  const db = await packsNeeded(repo, rps.filter((rp) => rp.guest === 'db'));
  const web = await packsNeeded(repo, rps.filter((rp) => rp.guest === 'web'));
  dbPack = [...db].find((p) => !web.has(p))!;
  const backend = openBackend(damaged.path);
  await corruptObject(backend, 'data', dbPack);
  await backend.close();
});

describe('checkRepository', () => {
  it('a clean repository: every pack and restore point checked, no damage, nothing affected', async () => {
    const { repo, pool } = await openInProcess(scratch, clean);
    const report = await checkRepository(repo, pool, 'read-data');
    expect(report.damage).toEqual([]);
    expect(report.affected).toEqual([]);
    expect(report.restorePoints).toBe(3);
    expect(report.packs).toBe(cleanPacks.length);
    expect(report.blobsVerified).toBeGreaterThan(0);
    expect(report.unindexedPacks).toBe(0);
  });

  it('--read-data finds a flipped byte in a pack, names the pack, and calls only its restore point affected', async () => {
    expect(dbPack).toBeDefined();
    const { repo, pool } = await openInProcess(scratch, damaged);
    const report = await checkRepository(repo, pool, 'read-data');
    expect(report.damage.length).toBeGreaterThan(0);
    expect(report.damage.every((d) => d.object.includes(dbPack)), JSON.stringify(report.damage)).toBe(true);
    expect(report.affected.map((a) => a.id)).toEqual([points[1].id]);
    expect(report.affected[0].guest).toBe('db');
  });
});
