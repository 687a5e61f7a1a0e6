// Prune reads each page patch's body once per run: the live set's walk down
// every chain and the plan's following of every kept copy share what they
// read. Before, a chain three patches deep was read from each patch on it,
// and the plan read every body again (a 1.5 GB repository's prune spent 10 of
// its 12 s reading patch bodies one at a time).
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { Repository } from '../../src/repo/repository';
import { pruneRepository } from '../../src/prune/pruneRun';
import { LocalBackend } from '../../src/storage/local';
import { ObjectType } from '../../src/storage/backend';
import { TestRepo, overwritePage, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const KiB = 1024;
const scratch = useScratch('patch-base-reads');

/** A local backend that counts ranged reads of each stored blob (pack and offset). */
class CountingBackend extends LocalBackend {
  readonly reads = new Map<string, number>();

  override readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    if (type === 'data') this.reads.set(`${name}:${offset}`, (this.reads.get(`${name}:${offset}`) ?? 0) + 1);
    return super.readRange(type, name, offset, length, into);
  }
}

describe('prune and page-patch chains', () => {
  it('reads the body of each stored patch once, however deep its chain and however many copies the plan follows', async () => {
    // Fixed chunks: the same pages patch the same chunks whatever the repository's keys.
    const testRepo = await TestRepo.init(scratch, 'chains', { chunker: 'fixed:256K' });
    const image = scratch.path('disk.img');
    writeRandomishImage(image, 4 * MiB, 61, { holes: 0 });
    await testRepo.backup('g', [image]);
    // Three nights rewrite a page in every chunk: chains three patches deep, each night's point naming its newest.
    for (let night = 1; night <= 3; night++) {
      for (let at = 0; at < 4 * MiB; at += 256 * KiB) overwritePage(image, at + night * 16 * KiB, 100 + night);
      await testRepo.backup('g', [image]);
    }
    const backend = new CountingBackend(testRepo.path);
    const repo = await Repository.open(backend, Buffer.from(fs.readFileSync(testRepo.passwordFile, 'utf8').replace(/\r?\n$/, '')));
    await repo.loadIndex();

    const report = await pruneRepository(repo, { repackBelow: 0.5, mode: 'dry-run' });
    expect(report.restorePointsKept).toBe(4);

    const patchReads: number[] = [];
    for (const packId of repo.packIds) {
      const header = await repo.readPackHeader(packId, (await backend.stat('data', packId))!.size);
      for (const e of header!) if (blobType(e.typeFlags) === BlobType.Patch) patchReads.push(backend.reads.get(`${packId}:${e.offset}`) ?? 0);
    }
    // 16 chunks, 3 patches each.
    expect(patchReads.length).toBe(48);
    expect(patchReads.every((n) => n === 1), `reads per patch body: ${patchReads.join(' ')}`).toBe(true);
  });
});
