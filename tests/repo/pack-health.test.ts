// Stepping around a damaged pack (repo/packHealth.ts): a blob it held is read
// from another indexed copy in an intact pack, and a whole copy is taken over a
// page patch (FORMAT.md, "Copies of one blob"), whatever order the index files
// list them in; a patch copy only when no whole one is intact.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { BlobType } from '../../src/crypto/blobCodec';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { avoidDamagedPacks } from '../../src/repo/packHealth';
import { useScratch } from '../support';

const scratch = useScratch('pack-health');

const entry = (id: Buffer, typeFlags: number) => ({ id, typeFlags, offset: 0, storedLength: 10, rawLength: 10 });
const packId = (c: string) => c.repeat(64);

/** A repository whose index files name these packs, opened afresh with its index loaded. */
async function repositoryNaming(name: string, packs: { packId: string; entries: ReturnType<typeof entry>[] }[]): Promise<Repository> {
  const made = await Repository.init(new LocalBackend(scratch.path(name)), Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:64K'), packSize: 4 * 1024 * 1024, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
  await made.writeIndexFile(packs);
  const repo = await Repository.open(new LocalBackend(scratch.path(name)), Buffer.from('pw'));
  await repo.loadIndex();
  return repo;
}

describe('a blob of a damaged pack', () => {
  it('is read from an intact whole copy rather than an intact page patch, in either listing order', async () => {
    for (const order of ['patch-first', 'whole-first']) {
      const id = randomBytes(32);
      const patchCopy = { packId: packId('b'), entries: [entry(id, BlobType.Patch)] };
      const wholeCopy = { packId: packId('c'), entries: [entry(id, BlobType.Data)] };
      // The damaged pack's copy is the one the index reads (the last whole copy recorded).
      const damagedCopy = { packId: packId('a'), entries: [entry(id, BlobType.Data)] };
      const repo = await repositoryNaming(`repo-${order}`, order === 'patch-first' ? [patchCopy, wholeCopy, damagedCopy] : [wholeCopy, patchCopy, damagedCopy]);
      expect(repo.packIds[repo.blobLocation(id)!.pack]).toBe(packId('a'));
      const avoided = await avoidDamagedPacks(repo, [{ packId: packId('a'), size: undefined, expectedAtLeast: 100 }], 'keep');
      expect(avoided).toEqual({ lostBlobs: 0, relocatedBlobs: 1 });
      expect(repo.packIds[repo.blobLocation(id)!.pack], order).toBe(packId('c'));
    }
  });

  it('is read from an intact page patch when no whole copy is intact', async () => {
    const id = randomBytes(32);
    const repo = await repositoryNaming('repo-patch-only', [{ packId: packId('b'), entries: [entry(id, BlobType.Patch)] }, { packId: packId('a'), entries: [entry(id, BlobType.Data)] }]);
    const avoided = await avoidDamagedPacks(repo, [{ packId: packId('a'), size: undefined, expectedAtLeast: 100 }], 'keep');
    expect(avoided).toEqual({ lostBlobs: 0, relocatedBlobs: 1 });
    expect(repo.packIds[repo.blobLocation(id)!.pack]).toBe(packId('b'));
  });
});
