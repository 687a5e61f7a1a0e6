// Damaged repository files: `check` finds and names the damage and the
// restore points it affects; restoring an affected point fails cleanly
// (never silently wrong data); unaffected points still restore bit-exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  flipByte,
  listFiles,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('damage');
const MiB = 1024 * 1024;

interface Point {
  image: string;
  id: string;
  sha256: string;
  /** Repository files that this backup added. */
  added: string[];
}

let repo: TestRepo;
let alpha: Point;
let beta: Point;

async function backUp(guest: string, seed: number): Promise<Point> {
  const image = scratch.path(`${guest}.img`);
  writeRandomishImage(image, 16 * MiB, seed);
  const before = new Set(listFiles(repo.path));
  const { id } = await repo.backup(guest, [image]);
  const added = listFiles(repo.path).filter((f) => !before.has(f) && !f.startsWith('locks/'));
  return { image, id, sha256: await sha256File(image), added };
}

/** The largest file under `kind/` that `point`'s backup added (e.g. its pack). */
function addedFile(point: Point, kind: 'data' | 'index' | 'snapshots'): string {
  const files = point.added.filter((f) => f.startsWith(`${kind}/`));
  expect(files.length, `backup ${point.id} should have added a file under ${kind}/`).toBeGreaterThan(0);
  return files.sort((a, b) => fs.statSync(path.join(repo.path, b)).size - fs.statSync(path.join(repo.path, a)).size)[0];
}

/** Object names may be shortened in messages: match the first 8 characters. */
function shortName(file: string): string {
  return path.basename(file).slice(0, 8);
}

async function damagedCopy(name: string, damage: (copy: string) => void): Promise<TestRepo> {
  const copy = await repo.copyTo(scratch.path(name));
  damage(copy.path);
  return copy;
}

async function expectRestoreFailsCleanly(copy: TestRepo, point: Point): Promise<void> {
  const out = scratch.mkdir(`restore-fail-${path.basename(copy.path)}`);
  const r = await copy.run(['restore', point.id, '--to', out]);
  expectCleanFailure(r);
  expect(fs.readdirSync(out), 'a failed restore leaves no output file').toEqual([]);
}

async function expectRestoresBitExact(copy: TestRepo, point: Point): Promise<void> {
  const out = scratch.mkdir(`restore-ok-${path.basename(copy.path)}`);
  expectSuccess(await copy.run(['restore', point.id, '--to', out]), `restore of ${point.id}`);
  expect(await sha256File(path.join(out, path.basename(point.image)))).toBe(point.sha256);
}

/** Run check; assert it fails with exit 10 and its output names `names`. */
async function expectCheckFinds(copy: TestRepo, readData: boolean, names: string[]): Promise<void> {
  const r = await copy.check(readData);
  expectCleanFailure(r, { code: EXIT.damageFound });
  const output = r.stdout + r.stderr;
  for (const name of names) expect(output, `check output should name ${name}`).toContain(name);
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  alpha = await backUp('alpha', 31);
  beta = await backUp('beta', 32);
  await repo.expectCheckPasses(true);
});

describe('a damaged repository', () => {
  it('a flipped byte in a pack is found by check --read-data, and only its restore point is lost', async () => {
    const pack = addedFile(alpha, 'data');
    const copy = await damagedCopy('pack-byte', (dir) => {
      const file = path.join(dir, pack);
      flipByte(file, Math.floor(fs.statSync(file).size / 2));
    });
    await expectCheckFinds(copy, true, [shortName(pack), alpha.id.slice(0, 8)]);
    await expectRestoreFailsCleanly(copy, alpha);
    await expectRestoresBitExact(copy, beta);
  });

  it('a truncated pack is found by check --read-data, and only its restore point is lost', async () => {
    const pack = addedFile(alpha, 'data');
    const copy = await damagedCopy('pack-truncated', (dir) => {
      const file = path.join(dir, pack);
      fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    });
    await expectCheckFinds(copy, true, [shortName(pack), alpha.id.slice(0, 8)]);
    await expectRestoreFailsCleanly(copy, alpha);
    await expectRestoresBitExact(copy, beta);
  });

  it('a flipped byte in an index file is found by check, and no restore returns wrong data', async () => {
    const index = addedFile(alpha, 'index');
    const copy = await damagedCopy('index-byte', (dir) => {
      const file = path.join(dir, index);
      flipByte(file, Math.floor(fs.statSync(file).size / 2));
    });
    await expectCheckFinds(copy, false, [shortName(index)]);
    // The index can be rebuilt from the packs, so restoring alpha may succeed;
    // if it does, it must be bit-exact, and if not, fail cleanly.
    const out = scratch.mkdir('restore-index-alpha');
    const r = await copy.run(['restore', alpha.id, '--to', out]);
    if (r.code === 0) expect(await sha256File(path.join(out, 'alpha.img'))).toBe(alpha.sha256);
    else {
      expectCleanFailure(r);
      expect(fs.readdirSync(out)).toEqual([]);
    }
    await expectRestoresBitExact(copy, beta);
  });

  it('a flipped byte in a restore point file is found by check, and only that point is lost', async () => {
    const snapshot = addedFile(alpha, 'snapshots');
    const copy = await damagedCopy('snapshot-byte', (dir) => {
      const file = path.join(dir, snapshot);
      flipByte(file, Math.floor(fs.statSync(file).size / 2));
    });
    await expectCheckFinds(copy, false, [shortName(snapshot)]);
    await expectRestoreFailsCleanly(copy, alpha);
    await expectRestoresBitExact(copy, beta);
  });
});
