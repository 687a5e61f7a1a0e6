// restore/ called directly (the CLI tests drive it through `ferry restore`):
// what a restore plan holds, how a pack's blobs become read ranges, and that
// restoreDisk and fileHoldsDisk agree with the image that was backed up.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Repository } from '../../src/repo/repository';
import type { PipelinePool } from '../../src/workers/pipelinePool';
import type { StoredRestorePoint } from '../../src/repo/restorePoint';
import { PlannedBlob, readRanges, restorePlan } from '../../src/restore/restorePlan';
import { restoreDisk } from '../../src/restore/diskRestore';
import { fileHoldsDisk } from '../../src/restore/verifyRestored';
import { sha256File, useScratch } from '../support';
import { openInProcess, smallRepository, type BackedUpImage } from '../support/repositoryScenarios';

const scratch = useScratch('restore-module');
let repo: Repository;
let pool: PipelinePool;
let webNight2: BackedUpImage;
let point: StoredRestorePoint;

beforeAll(async () => {
  const small = await smallRepository(scratch, 'restore');
  ({ repo, pool } = await openInProcess(scratch, small.repo));
  webNight2 = small.points[2];
  point = await repo.loadRestorePointByName(webNight2.id);
});

describe('restorePlan', () => {
  it('plans every data byte of the disk exactly once, each pack read front to back', async () => {
    const disk = point.disks[0];
    const plan = await restorePlan(repo, disk);
    expect(plan.start).toBe(0);
    expect(plan.end).toBe(disk.size);
    expect(plan.dataBytes).toBe(disk.dataBytes);
    // The data spans are ascending, disjoint and add up to the data bytes.
    let covered = 0;
    for (const [i, s] of plan.dataSpans.entries()) {
      expect(s.end).toBeGreaterThan(s.start);
      if (i > 0) expect(s.start).toBeGreaterThanOrEqual(plan.dataSpans[i - 1].end);
      covered += s.end - s.start;
    }
    expect(covered).toBe(disk.dataBytes);
    // Every blob goes to at least one place, every target offset once, and each pack's blobs are sorted.
    // (Not rawLength x targets: a page patch's stored raw length is the patch, not the chunk it rebuilds.)
    const targets = new Set<number>();
    for (const pack of plan.packs) {
      expect(pack.blobs.map((b) => b.loc.offset)).toEqual(pack.blobs.map((b) => b.loc.offset).sort((a, b) => a - b));
      for (const b of pack.blobs) {
        expect(b.targets.length).toBeGreaterThan(0);
        for (const t of b.targets) {
          expect(targets.has(t), `offset ${t} planned twice`).toBe(false);
          targets.add(t);
        }
      }
    }
    expect(new Set(plan.packs.map((p) => p.packId)).size).toBe(plan.packs.length);
  });

  it('a plan of some regions covers only their bytes', async () => {
    const disk = point.disks[0];
    expect(disk.regions.length).toBeGreaterThan(0);
    const plan = await restorePlan(repo, disk, 0, 1);
    expect(plan.start).toBe(0);
    expect(plan.end).toBe(Math.min(disk.size, disk.regionSize));
    for (const s of plan.dataSpans) expect(s.end).toBeLessThanOrEqual(plan.end);
    expect(plan.dataBytes).toBeLessThanOrEqual(disk.dataBytes);
  });
});

describe('readRanges', () => {
  const blob = (offset: number, storedLength: number): PlannedBlob => ({
    id: Buffer.alloc(32),
    loc: { pack: 0, offset, storedLength, rawLength: storedLength, typeFlags: 0 },
    targets: [0],
  });

  it('merges neighbours closer than the gap into one read', () => {
    const ranges = readRanges([blob(0, 100), blob(150, 100), blob(300, 50)], 50);
    expect(ranges.map((r) => [r.start, r.end, r.blobs.length])).toEqual([[0, 350, 3]]);
  });

  it('starts a new read after a gap wider than the limit', () => {
    const ranges = readRanges([blob(0, 100), blob(151, 100)], 50);
    expect(ranges.map((r) => [r.start, r.end])).toEqual([[0, 100], [151, 251]]);
  });

  it('never makes a read longer than the range limit', () => {
    const ranges = readRanges([blob(0, 100), blob(100, 100), blob(200, 100)], 1000, 250);
    expect(ranges.map((r) => [r.start, r.end])).toEqual([[0, 200], [200, 300]]);
  });
});

describe('restoreDisk and fileHoldsDisk', () => {
  it('restores the disk bit-exact into a sparse file, and fileHoldsDisk says so', async () => {
    const disk = point.disks[0];
    const target = scratch.path('restored-web.img');
    fs.writeFileSync(target, '');
    fs.truncateSync(target, disk.size);
    const written = await restoreDisk(repo, pool, disk, target, { zeroFill: false });
    expect(written).toBe(disk.dataBytes);
    expect(await sha256File(target)).toBe(webNight2.sha256);
    expect(await fileHoldsDisk(repo, disk, target)).toBe(true);
    expect(await fileHoldsDisk(repo, disk, webNight2.image)).toBe(true);
  });

  it('fileHoldsDisk is false for one changed byte, a wrong size, or no file', async () => {
    const disk = point.disks[0];
    const changed = scratch.path('changed-web.img');
    fs.copyFileSync(webNight2.image, changed);
    const fd = fs.openSync(changed, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, 4096);
    fs.writeSync(fd, Buffer.from([byte[0] ^ 0x01]), 0, 1, 4096);
    fs.closeSync(fd);
    expect(await fileHoldsDisk(repo, disk, changed)).toBe(false);

    const short = scratch.path('short-web.img');
    fs.copyFileSync(webNight2.image, short);
    fs.truncateSync(short, disk.size - 4096);
    expect(await fileHoldsDisk(repo, disk, short)).toBe(false);

    expect(await fileHoldsDisk(repo, disk, scratch.path('no-such-file.img'))).toBe(false);
  });
});
