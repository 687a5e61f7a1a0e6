// Region fingerprints (docs/FORMAT.md, "Region fingerprints"): a backup that
// finds a region's bytes as they were in the previous restore point (the same
// keyed fingerprint) reuses that region's map without cutting or hashing the
// region again; a changed region is cut as before. A repository written before
// fingerprints existed is backed up into (nothing reused the first time) and
// every restore point restores bit-exact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { beforeAll, describe, expect, it } from 'vitest';
import { BackupSummary, expectSuccess, pseudoRandomBytes, sha256File, TestRepo, useScratch } from '../support';
import { Repository } from '../../src/repo/repository';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { backupGuest, imageBackupRequest } from '../../src/backup/guestBackup';
import { openImageSource } from '../../src/dedupe/imageSource';
import { StoredRestorePoint } from '../../src/repo/restorePoint';
import { LocalBackend } from '../../src/storage/local';

const MiB = 1024 * 1024;
const REGION = 32 * MiB;
const scratch = useScratch('region-fingerprints');

function writeAt(file: string, at: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Four regions (the last one shorter): data in the first three, the fourth a hole. */
function fourRegionImage(file: string): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 3 * REGION + 5 * MiB);
  writeAt(file, 0, pseudoRandomBytes(31, 0, 512 * 1024));
  writeAt(file, REGION + 5 * MiB, pseudoRandomBytes(31, 1, 512 * 1024));
  writeAt(file, 2 * REGION + 20 * MiB, pseudoRandomBytes(31, 2, 512 * 1024));
}

/** The image the fixture repository (tests/fixtures/repository-2026-11) holds a restore point of. */
function oldRepositoryImage(file: string): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 40 * MiB);
  [0, 16 * MiB, 36 * MiB].forEach((at, i) => writeAt(file, at, pseudoRandomBytes(2026, i, 256 * 1024)));
}

async function restorePoint(repo: TestRepo, id: string): Promise<StoredRestorePoint> {
  const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').trim()));
  return opened.loadRestorePointByName(id);
}

async function expectRestoresTo(repo: TestRepo, id: string, fileName: string, sha256: string): Promise<void> {
  const dir = scratch.path(`restored-${id.slice(0, 12)}`);
  expectSuccess(await repo.run(['restore', id, '--to', dir]), `restore ${id.slice(0, 8)}`);
  expect(await sha256File(path.join(dir, fileName)), `restore point ${id.slice(0, 8)}`).toBe(sha256);
}

describe('a second backup of an image with one changed region', () => {
  let repo: TestRepo;
  let image: string;
  let first: BackupSummary;
  let second: BackupSummary;
  let firstPoint: StoredRestorePoint;
  let secondPoint: StoredRestorePoint;
  const sha: string[] = [];

  beforeAll(async () => {
    repo = await TestRepo.init(scratch, 'repo');
    image = scratch.path('guest.img');
    fourRegionImage(image);
    first = await repo.backup('guest', [image]);
    sha.push(await sha256File(image));
    // One page in region 1 changes; regions 0 and 2 keep their bytes.
    writeAt(image, REGION + 5 * MiB + 8192, pseudoRandomBytes(32, 0, 4096));
    second = await repo.backup('guest', [image]);
    sha.push(await sha256File(image));
    firstPoint = await restorePoint(repo, first.id);
    secondPoint = await restorePoint(repo, second.id);
  });

  it('takes a fingerprint of every region with data and none of the hole; the first backup has nothing to reuse', () => {
    const fingerprints = firstPoint.disks[0]!.fingerprints!;
    expect(fingerprints).toHaveLength(4);
    for (const f of fingerprints.slice(0, 3)) expect(f).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprints[3]).toBeNull();
    expect(new Set(fingerprints.slice(0, 3)).size).toBe(3);
    expect(first.reusedRegions).toBe(0);
  });

  it('reuses the maps of the two unchanged regions, cuts the changed one again, and says so', () => {
    expect(second.reusedRegions).toBe(2);
    const [before, after] = [firstPoint.disks[0]!, secondPoint.disks[0]!];
    expect(after.regions[0]).toBe(before.regions[0]);
    expect(after.regions[2]).toBe(before.regions[2]);
    expect(after.regions[1]).not.toBe(before.regions[1]);
    expect(after.regions[3]).toBeNull();
    expect(after.fingerprints![0]).toBe(before.fingerprints![0]);
    expect(after.fingerprints![2]).toBe(before.fingerprints![2]);
    expect(after.fingerprints![1]).not.toBe(before.fingerprints![1]);
    expect(after.dataBytes).toBe(before.dataBytes);
    // One changed page: one chunk (at most 1 MiB) and a map are new.
    expect(second.newBytes).toBeLessThan(MiB + 64 * 1024);
  });

  it('restores both restore points bit-exact, and the repository checks clean', async () => {
    await expectRestoresTo(repo, first.id, 'guest.img', sha[0]!);
    await expectRestoresTo(repo, second.id, 'guest.img', sha[1]!);
    await repo.expectCheckPasses();
  });

  it('keys the fingerprints with the repository: the same bytes elsewhere get other fingerprints, and none is the plain hash', async () => {
    const other = await TestRepo.init(scratch, 'other');
    const there = await restorePoint(other, (await other.backup('guest', [image])).id);
    const here = secondPoint.disks[0]!.fingerprints!;
    const elsewhere = there.disks[0]!.fingerprints!;
    for (const r of [0, 1, 2]) expect(elsewhere[r]).not.toBe(here[r]);
    const region0 = fs.readFileSync(image).subarray(0, REGION);
    expect(here).not.toContain(new Blake3Hasher().update(region0).digest('hex'));
  });
});

describe('a repository written before region fingerprints', () => {
  it('is backed up into: nothing reused from the old restore point, reused from the new one; all three restore bit-exact', async () => {
    const fixture = path.join(__dirname, '..', 'fixtures', 'repository-2026-11');
    const dir = scratch.path('old-repository');
    fs.cpSync(path.join(fixture, 'repo'), dir, { recursive: true });
    const repo = new TestRepo(dir, path.join(fixture, 'passphrase'));
    const [old] = await repo.list();
    expect(old!.guest).toBe('old');
    expect((await restorePoint(repo, old!.id)).disks[0]!.fingerprints).toBeUndefined();

    const image = scratch.path('old.img');
    oldRepositoryImage(image);
    const imageSha = await sha256File(image);
    const first = await repo.backup('old', [image]);
    expect(first.reusedRegions).toBe(0);
    expect(first.newBlobs).toBe(0);
    const second = await repo.backup('old', [image]);
    expect(second.reusedRegions).toBe(2);

    for (const id of [old!.id, first.id, second.id]) await expectRestoresTo(repo, id, 'old.img', imageSha);
    await repo.expectCheckPasses();
  });
});

describe('a backup with changed-block tracking', () => {
  it('keeps the fingerprints of the regions it does not read and drops those of the regions it changes; the next full read reuses the kept ones', async () => {
    const testRepo = await TestRepo.init(scratch, 'tracked');
    const repo = await Repository.open(new LocalBackend(testRepo.path), Buffer.from(fs.readFileSync(testRepo.passwordFile, 'utf8').trim()));
    const pool = new PipelinePool(repo.keys, repo.settings, 2);
    try {
      const image = scratch.path('tracked.img');
      fourRegionImage(image);
      const first = await backupGuest(repo, pool, imageBackupRequest('t', [image], undefined, []));
      const previous = first.restorePoint.disks[0]!;
      const page = { start: 2 * REGION + 20 * MiB + 4096, end: 2 * REGION + 20 * MiB + 8192 };
      writeAt(image, page.start, pseudoRandomBytes(33, 0, 4096));
      const tracked = await backupGuest(repo, pool, {
        guest: 't',
        tags: [],
        disks: [{ source: openImageSource(image), name: 'tracked.img', base: { previous, changed: [page] } }],
      });
      const disk = tracked.restorePoint.disks[0]!;
      expect(disk.readBytes).toBe(4096);
      expect(disk.fingerprints).toEqual([previous.fingerprints![0], previous.fingerprints![1], null, null]);
      expect(tracked.restorePoint.stats.reusedRegions).toBe(0);

      const full = await backupGuest(repo, pool, {
        guest: 't',
        tags: [],
        disks: [{ source: openImageSource(image), name: 'tracked.img', base: { previous: disk } }],
      });
      expect(full.restorePoint.stats.reusedRegions).toBe(2);
      expect(full.restorePoint.disks[0]!.regions).toEqual(disk.regions);
      expect(full.restorePoint.disks[0]!.fingerprints![2]).toMatch(/^[0-9a-f]{64}$/);
      await expectRestoresTo(testRepo, full.id, 'tracked.img', await sha256File(image));
    } finally {
      await pool.close();
    }
  });
});
