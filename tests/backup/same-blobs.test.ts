// What a backup stores is a function of the repository's keys and the images:
// not of the memory budget (worker threads or the main thread, window and batch
// sizes, regions in flight) nor of which task finished first. The same nights
// into two copies of one repository, one with the default budget and one with
// the smallest, store the same blobs: same ids, whole or page patch alike, each
// patch on the same chain of bases. (Two repositories made by two `ferry init`s
// cut differently: each has its own random gear key.)
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { TestRepo, overwriteRandomPages, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('same-blobs');

/** Every indexed blob as `id type` and, for a page patch, its bases down to the whole chunk: sorted. */
async function storedBlobs(repo: TestRepo): Promise<string[]> {
  const passphrase = fs.readFileSync(repo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(passphrase));
  try {
    await opened.loadIndex();
    const blobs: { id: Buffer; type: BlobType }[] = [];
    opened.forEachBlob((id, loc) => blobs.push({ id: Buffer.from(id), type: blobType(loc.typeFlags) }));
    const lines: string[] = [];
    for (const { id, type } of blobs) {
      const bases = type === BlobType.Patch ? (await opened.blobDependencies(id)).slice(1).map((b) => b.toString('hex')) : [];
      lines.push([id.toString('hex'), type, ...bases].join(' '));
    }
    return lines.sort();
  } finally {
    await opened.backend.close();
  }
}

describe('what a backup stores', () => {
  it('is the same with the default memory budget (worker threads) and the smallest (main thread), night after night of page patches', async () => {
    const byDefault = await TestRepo.init(scratch, 'default-budget');
    const smallest = await byDefault.copyTo(scratch.path('smallest-budget'));
    const image = scratch.path('disk.img');
    // Two regions (32 MiB each), holes and compressible text among the random data.
    writeRandomishImage(image, 40 * MiB, 91, { holes: 0.25, text: 0.25 });
    const nights: string[][] = [];
    for (let night = 1; night <= 3; night++) {
      if (night > 1) overwriteRandomPages(image, 48, 90 + night);
      await byDefault.backup('g', [image]);
      await smallest.backup('g', [image], ['--memory', '96M']);
      const stored = await storedBlobs(byDefault);
      expect(await storedBlobs(smallest), `night ${night}`).toEqual(stored);
      nights.push(stored);
    }
    // The nights did store chains of page patches (so the comparison covers the patch decision and its bases).
    const depths = nights[2].map((line) => line.split(' ').length - 2);
    expect(depths.filter((d) => d === 1).length).toBeGreaterThan(0);
    expect(depths.filter((d) => d === 2).length).toBeGreaterThan(0);
  });
});
