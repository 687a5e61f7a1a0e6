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
