// A restore point lists a map id for every 32 MiB region that holds data, so
// its exact size would tell how much of the guest's disk is in use. Sealed
// restore points are padded to a size class (the next power of two, at least
// 4 KiB); restore points written before the padding still read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectSuccess, sha256File, TestRepo, useScratch } from '../support';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { sealObject } from '../../src/crypto/objectCodec';
import { contentName } from '../../src/crypto/chunkId';

const REGION = 32 * 1024 * 1024;
const scratch = useScratch('restore-point-size');

/** A sparse image of `regions` regions with a few data bytes at the start of each of the first `used`. */
function sparseImage(name: string, regions: number, used: number): string {
  const file = scratch.path(name);
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, regions * REGION);
    for (let r = 0; r < used; r++) fs.writeSync(fd, Buffer.from(`region ${r} of ${name}\n`), 0, undefined, r * REGION);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

const snapshotSize = (repo: TestRepo, id: string): number => fs.statSync(path.join(repo.path, 'snapshots', id)).size;

describe('restore point sizes', () => {
  it('two restore points with 1 and 40 non-empty regions have the same sealed size, a power of two', async () => {
    const repo = await TestRepo.init(scratch, 'repo');
    const few = await repo.backup('few', [sparseImage('few.img', 64, 1)]);
    const many = await repo.backup('many', [sparseImage('many.img', 64, 40)]);
    expect(few.disks[0]!.size).toBe(many.disks[0]!.size);
    expect(snapshotSize(repo, few.id)).toBe(4096);
    expect(snapshotSize(repo, many.id)).toBe(4096);

    // Without padding the sizes differ by about one map id per region: the leak this closes.
    const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').trim()));
    const plain = async (id: string) => {
      const { id: _id, ...rp } = await opened.loadRestorePointByName(id);
      return sealObject(opened.keys.dataKey, 'restorepoint', Buffer.from(JSON.stringify(rp))).length;
    };
    expect((await plain(many.id)) - (await plain(few.id))).toBeGreaterThan(39 * 32);

    const out = scratch.path('many-restored');
    expectSuccess(await repo.run(['restore', many.id, '--to', out]));
    expect(await sha256File(path.join(out, 'many.img'))).toBe(await sha256File(scratch.path('many.img')));
  });

  it('a restore point written unpadded, as before, still lists, checks and restores', async () => {
    const repo = await TestRepo.init(scratch, 'old');
    const image = sparseImage('old.img', 8, 5);
    const padded = await repo.backup('old', [image]);
    // Rewrite it exactly as the earlier writer did: Seal(Kd, zstd(JSON), "ferry/snapshot"), no padding.
    const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').trim()));
    const { id: _id, ...rp } = await opened.loadRestorePointByName(padded.id);
    const unpadded = sealObject(opened.keys.dataKey, 'restorepoint', Buffer.from(JSON.stringify(rp)));
    const oldId = contentName(unpadded);
    await opened.backend.write('restorepoints', oldId, unpadded);
    await opened.backend.remove('restorepoints', padded.id);
    expect(snapshotSize(repo, oldId)).toBeLessThan(4096);

    expect((await repo.list()).map((p) => p.id)).toEqual([oldId]);
    await repo.expectCheckPasses();
    const out = scratch.path('old-restored');
    expectSuccess(await repo.run(['restore', oldId.slice(0, 8), '--to', out]));
    expect(await sha256File(path.join(out, 'old.img'))).toBe(await sha256File(image));
  });
});
