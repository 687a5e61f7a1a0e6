// Peak memory of restoring a restore point made of page-patched chunks
// (issue 11): after nights of scattered 4 KiB writes most chunks are a patch
// on a patch on a whole chunk, and the restore rebuilds each one. It stays
// within the same budgets as restoring whole chunks: 160 MiB by default,
// 96 MiB with --memory 96M, bit-exact.
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { overwriteRandomPages, sha256File, useScratch, writeRandomishImage } from '../support';
import { expectSuccess, ferry, FAST_KDF } from '../support/ferry';
import { ferryPeakRss } from '../support/peakRss';

const MiB = 1024 * 1024;
const scratch = useScratch('restore-memory-patched');
const env = { FERRY_PASSWORD: 'patched-memory' };
const NIGHTS = 3;
/** Pages written a night: more than there are chunks (~1000 of ~256 KiB), so nearly every chunk is patched every night. */
const PAGES_A_NIGHT = 1500;

let repo: string;
let imageSha: string;
let patchBlobs = 0;

beforeAll(async () => {
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  const image = scratch.path('disk.img');
  writeRandomishImage(image, 256 * MiB, 31, { holes: 0.05, text: 0.4 });
  expectSuccess(await ferry(['backup', '--repo', repo, '--guest', 'db', image], { env }));
  for (let night = 1; night <= NIGHTS; night++) {
    overwriteRandomPages(image, PAGES_A_NIGHT, 100 + night);
    expectSuccess(await ferry(['backup', '--repo', repo, '--guest', 'db', image], { env }));
  }
  imageSha = await sha256File(image);
  const opened = await Repository.open(new LocalBackend(repo), Buffer.from(env.FERRY_PASSWORD));
  try {
    await opened.loadIndex();
    opened.forEachBlob((_id, loc) => {
      if (blobType(loc.typeFlags) === BlobType.Patch) patchBlobs++;
    });
  } finally {
    await opened.backend.close();
  }
}, 180_000);

describe('restoring a point of page-patched chunks', () => {
  it('the fixture is what it claims: thousands of page patches over three nights', () => {
    expect(patchBlobs).toBeGreaterThanOrEqual(1500);
  });

  // V8's --optimize-for-size (src/cli/v8Memory.ts): before it 142-145 and 90-92 MiB, after 126-128 and 83-84 MiB;
  // the limits leave room for other machines.
  for (const [budget, limit] of [[undefined, 138], ['96M', 89]] as const) {
    it(`stays under ${limit} MiB${budget ? ` with --memory ${budget}` : ' by default'}, bit-exact`, async () => {
      const out = scratch.mkdir(`restore-${limit}`);
      const { result, peakRssBytes } = await ferryPeakRss(
        scratch,
        ['restore', '--repo', repo, 'latest', '--guest', 'db', '--to', out, ...(budget ? ['--memory', budget] : [])],
        { env },
      );
      expectSuccess(result);
      expect(peakRssBytes / MiB, 'peak RSS, MiB').toBeLessThanOrEqual(limit);
      expect(await sha256File(path.join(out, 'disk.img'))).toBe(imageSha);
    });
  }
});
