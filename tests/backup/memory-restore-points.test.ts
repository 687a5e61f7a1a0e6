// Peak memory (issue 11) does not grow with the restore points a repository
// keeps. A restore point lists one region map and fingerprint per 32 MiB
// region: ~176 bytes per region in memory, 1.4 MiB per point of a 256 GiB
// guest. A nightly job that keeps months of points for a fleet has hundreds.
// Commands that list every point (backup, to find the previous one; list;
// restore latest; prune) read them one at a time and keep only what a listing
// needs (RestorePointSummary). Held whole, the 200 points of a 64 GiB guest
// below took the backup to 205 MiB and list to 140 MiB.
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch, writeThinImage } from '../support';
import { expectSuccess, ferry, FAST_KDF } from '../support/ferry';
import { ferryPeakRss } from '../support/peakRss';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';

const MiB = 1024 * 1024;
const REGION = 32 * MiB;
const REGIONS = 2048;
/** Restore points of the guest in the repository before the measured commands. */
const POINTS = 200;
const BUDGET = 160 * MiB;
const scratch = useScratch('memory-restore-points');
const env = { FERRY_PASSWORD: 'memory' };

let image: string;
let repo: string;

beforeAll(async () => {
  image = scratch.path('guest.img');
  writeThinImage(image, REGIONS, REGION);
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  const first = JSON.parse(expectSuccess(await ferry(['backup', '--repo', repo, '--guest', 'big', image, '--json', '--time', '2026-01-01T01:00:00Z'], { env }))) as { id: string };
  // The other nights as copies of the first, a day apart: the same maps, stored as separate points.
  const library = await Repository.open(new LocalBackend(repo), Buffer.from(env.FERRY_PASSWORD));
  try {
    const { id: _id, ...point } = await library.loadRestorePointByName(first.id);
    for (let n = 1; n < POINTS; n++) {
      await library.saveRestorePoint({ ...point, time: new Date(Date.UTC(2026, 0, 1 + n, 1)).toISOString() });
    }
  } finally {
    await library.backend.close();
  }
}, 300_000);

describe(`peak memory with ${POINTS} restore points of a ${REGIONS}-region guest`, () => {
  it('the points are what the test means: each lists every region', async () => {
    const list = JSON.parse(expectSuccess(await ferry(['list', '--repo', repo, '--json'], { env }))) as { id: string }[];
    expect(list).toHaveLength(POINTS);
    const show = JSON.parse(expectSuccess(await ferry(['show', 'latest', '--repo', repo, '--json'], { env }))) as { disks: { size: number }[] };
    expect(show.disks[0].size).toBe(REGIONS * REGION);
  });

  it('a backup of the guest stays under 160 MiB', async () => {
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['backup', '--repo', repo, '--guest', 'big', image, '--json'], { env });
    const out = JSON.parse(expectSuccess(result)) as { newBlobs: number; reusedRegions: number };
    // It read its previous point whole: every region's fingerprint matched, so every map was reused.
    expect(out.reusedRegions).toBe(REGIONS);
    expect(out.newBlobs).toBe(0);
    expect(peakRssBytes).toBeLessThan(BUDGET);
  }, 300_000);

  it('list, restore latest and prune stay under 160 MiB', async () => {
    const to = scratch.path('restored');
    for (const args of [['list'], ['restore', 'latest', '--guest', 'big', '--to', to], ['prune']]) {
      const { result, peakRssBytes } = await ferryPeakRss(scratch, [...args, '--repo', repo], { env });
      expectSuccess(result);
      expect(peakRssBytes, args[0]).toBeLessThan(BUDGET);
    }
  }, 300_000);
});
