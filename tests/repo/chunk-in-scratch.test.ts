// Rebuilding chunks into reused buffers (BlobReader.readChunkInScratch, what
// prune's rule 7 seals whole): the same bytes as readBlobPlaintext for whole
// chunks and page-patch chains alike, one scratch for all of them, and damage
// under a chain is an error, never other bytes.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { ChunkScratch } from '../../src/repo/blobReader';
import { decodeRegionMap } from '../../src/repo/regionMap';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { CorruptionError } from '../../src/errors';
import { TestRepo, overwriteRandomPages, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('chunk-in-scratch');
const MiB = 1024 * 1024;
const PASSWORD = 'chunks in scratch';

let repo: TestRepo;
let chunkIds: Buffer[];

async function open(path: string): Promise<Repository> {
  const r = await Repository.open(new LocalBackend(path), Buffer.from(PASSWORD));
  await r.loadIndex();
  return r;
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo', { password: PASSWORD });
  const image = scratch.path('db.img');
  writeRandomishImage(image, 8 * MiB, 3);
  await repo.backup('db', [image]);
  // Two nights of scattered page writes: chunks stored as patches, some on patches.
  overwriteRandomPages(image, 40, 4);
  await repo.backup('db', [image]);
  overwriteRandomPages(image, 40, 5);
  const last = await repo.backup('db', [image]);
  const r = await open(repo.path);
  const rp = await r.loadRestorePointByName(last.id);
  chunkIds = [];
  for (const map of rp.disks[0].regions) {
    if (map) for (const e of decodeRegionMap(await r.readBlobPlaintext(Buffer.from(map, 'hex')), rp.disks[0].regionSize)!) chunkIds.push(e.id);
  }
  await r.backend.close();
});

describe('readChunkInScratch', () => {
  it('gives every chunk of a patched image as readBlobPlaintext does, through one scratch', async () => {
    const r = await open(repo.path);
    const depths = chunkIds.map((id) => blobType(r.blobLocation(id)!.typeFlags) === BlobType.Patch);
    expect(depths.filter(Boolean).length).toBeGreaterThan(0);
    expect(depths.filter((p) => !p).length).toBeGreaterThan(0);
    const reused = new ChunkScratch();
    for (const id of chunkIds) {
      const inScratch = Buffer.from(await r.readChunkInScratch(id, reused));
      expect(inScratch.equals(await r.readBlobPlaintext(id))).toBe(true);
    }
    await r.backend.close();
  });

  it('refuses a chain whose root is damaged in its pack', async () => {
    const copy = await repo.copyTo(scratch.path('damaged'));
    const r = await open(copy.path);
    const patched = chunkIds.find((id) => blobType(r.blobLocation(id)!.typeFlags) === BlobType.Patch)!;
    const root = (await r.readPatchChainInto(patched, Buffer.alloc(0))).root;
    const packId = r.packIds[root.loc.pack];
    const file = `${copy.path}/data/${packId.slice(0, 2)}/${packId}`;
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xff ^ fs.readFileSync(file)[root.loc.offset + 30]]), 0, 1, root.loc.offset + 30);
    fs.closeSync(fd);
    await expect(r.readChunkInScratch(patched, new ChunkScratch())).rejects.toThrow(CorruptionError);
    await expect(r.readChunkInScratch(patched, new ChunkScratch())).rejects.toThrow(/fails authentication|does not rebuild/);
    await r.backend.close();
  });
});
