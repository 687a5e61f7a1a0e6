// Peak memory (issue 11) does not grow with a disk's size when its data does
// not: a thin-provisioned 512 GiB disk with 4 KiB in each of its 16384
// regions is 16384 worker tasks, and whatever a task leaves behind adds up.
// Two such leftovers were found this way: a native BLAKE3 hasher per region
// fingerprint (~3 KiB each, not freed by collection; now reused), and worker
// threads that waited for tasks in Atomics.wait, so their event loop never
// released what a task left for it (~3 KiB per task; now they wait for
// messages). Before: 227-232 MiB; after: 133-149 MiB on the EPYC VM.
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch, writeThinImage } from '../support';
import { expectSuccess, ferry, FAST_KDF } from '../support/ferry';
import { ferryPeakRss } from '../support/peakRss';

const MiB = 1024 * 1024;
const REGION = 32 * MiB;
const REGIONS = 16384;
const BUDGET = 160 * MiB;
const scratch = useScratch('memory-sparse-regions');
const env = { FERRY_PASSWORD: 'memory' };

let image: string;

beforeAll(() => {
  image = scratch.path('thin.img');
  writeThinImage(image, REGIONS, REGION);
});

describe(`peak memory of a ${(REGIONS * REGION) / 1024 ** 3} GiB disk with 4 KiB in each of its ${REGIONS} regions`, () => {
  it('a full backup and the next night stay under 160 MiB, the next night reusing every region', async () => {
    const repo = scratch.path('repo');
    expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
    for (const night of ['full', 'next']) {
      const { result, peakRssBytes } = await ferryPeakRss(scratch, ['backup', '--repo', repo, '--guest', 'thin', image, '--json'], { env });
      const out = JSON.parse(expectSuccess(result)) as { readBytes: number; reusedRegions: number; dataBytes?: number };
      expect(out.readBytes, night).toBe(REGIONS * 4096);
      expect(out.reusedRegions, night).toBe(night === 'full' ? 0 : REGIONS);
      expect(peakRssBytes, night).toBeLessThan(BUDGET);
    }
  }, 600_000);
});
