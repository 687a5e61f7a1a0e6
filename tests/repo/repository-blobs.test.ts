// The Repository's blob API (restic's SaveBlob/LookupBlob): a backup claims a
// blob before writing it, so two parallel regions with the same chunk store it
// once, and a claimed blob is known but not yet readable.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { BlobType } from '../../src/crypto/blobCodec';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { useScratch } from '../support';

const scratch = useScratch('repository-blobs');
let repo: Repository;

beforeAll(async () => {
  repo = await Repository.init(new LocalBackend(scratch.path('repo')), Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:64K'), packSize: 4 * 1024 * 1024, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
});

describe('Repository blob API', () => {
  it('claims a blob once: the first claim says "store it", later ones say "already known"', () => {
    const id = randomBytes(32);
    expect(repo.hasBlob(id)).toBe(false);
    expect(repo.claimBlob(id, 4096, BlobType.Data)).toBe(true);
    expect(repo.hasBlob(id)).toBe(true);
    expect(repo.claimBlob(id, 4096, BlobType.Data)).toBe(false);
  });

  it('a claimed blob has no location to read from until its pack is written', () => {
    const id = randomBytes(32);
    repo.claimBlob(id, 100, BlobType.Map);
    expect(repo.blobLocation(id)).toBeUndefined();
    const seen: number[] = [];
    repo.forEachBlob((blobId, loc) => {
      if (blobId.equals(id)) seen.push(loc.rawLength);
    });
    expect(seen).toEqual([100]);
  });
});

describe('copies of one blob in several packs', () => {
  const entry = (id: Buffer, typeFlags: number) => ({ id, typeFlags, offset: 0, storedLength: 10, rawLength: 10 });

  it('reads a whole copy rather than a page patch, whichever pack is recorded first (FORMAT.md, "Copies of one blob")', () => {
    // A backup sizes a new patch's chain by the copy it reads: if a later reader took the patch copy, that chain
    // would be deeper than the backup counted. Index files load in listing order, so the order must not matter.
    const patchFirst = randomBytes(32);
    const wholeFirst = randomBytes(32);
    repo.addPackEntries('a'.repeat(64), [entry(patchFirst, BlobType.Patch), entry(wholeFirst, BlobType.Data)]);
    repo.addPackEntries('b'.repeat(64), [entry(patchFirst, BlobType.Data), entry(wholeFirst, BlobType.Patch)]);
    expect(repo.blobLocation(patchFirst)?.typeFlags).toBe(BlobType.Data);
    expect(repo.blobLocation(wholeFirst)?.typeFlags).toBe(BlobType.Data);
    expect(repo.packIds[repo.blobLocation(patchFirst)!.pack]).toBe('b'.repeat(64));
    expect(repo.packIds[repo.blobLocation(wholeFirst)!.pack]).toBe('a'.repeat(64));
  });

  it("takes an orphan pack's copy only where no index file names the blob", () => {
    const named = randomBytes(32);
    const unnamed = randomBytes(32);
    repo.addPackEntries('c'.repeat(64), [entry(named, BlobType.Patch)]);
    repo.addPackEntries('d'.repeat(64), [entry(named, BlobType.Data), entry(unnamed, BlobType.Data)], { fillGaps: true });
    expect(repo.packIds[repo.blobLocation(named)!.pack]).toBe('c'.repeat(64));
    expect(repo.packIds[repo.blobLocation(unnamed)!.pack]).toBe('d'.repeat(64));
  });
});
