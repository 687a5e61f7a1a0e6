// sync/selection.ts called directly (the CLI tests drive it through `ferry
// sync --guest --latest`): which restore points a selective sync copies, and
// which packs they need, resolved through the source's index.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Repository } from '../../src/repo/repository';
import type { RestorePointSummary } from '../../src/repo/restorePoint';
import { packsNeeded, selectRestorePoints } from '../../src/sync/selection';
import { UsageError } from '../../src/errors';
import { openBackend } from '../../src/storage/open';
import { useScratch } from '../support';
import { objectNames, openInProcess, smallRepository, type BackedUpImage } from '../support/repositoryScenarios';

const scratch = useScratch('sync-selection');
let repo: Repository;
let all: RestorePointSummary[];
let packFiles: string[];
/** web night 1, db, web night 2 */
let points: BackedUpImage[];

beforeAll(async () => {
  const small = await smallRepository(scratch, 'selection');
  points = small.points;
  ({ repo } = await openInProcess(scratch, small.repo));
  all = await repo.listRestorePoints();
  const backend = openBackend(small.repo.path);
  packFiles = await objectNames(backend, 'data');
  await backend.close();
});

const ids = (rps: RestorePointSummary[]) => rps.map((rp) => rp.id);

describe('selectRestorePoints', () => {
  it('no selection copies every restore point', () => {
    expect(ids(selectRestorePoints(all, { guests: [] }, 'src'))).toEqual(ids(all));
  });

  it('--guest keeps only that guest, oldest first', () => {
    expect(ids(selectRestorePoints(all, { guests: ['web'] }, 'src'))).toEqual([points[0].id, points[2].id]);
  });

  it('--latest N keeps the newest N of each guest', () => {
    expect(new Set(ids(selectRestorePoints(all, { guests: [], latest: 1 }, 'src')))).toEqual(new Set([points[1].id, points[2].id]));
    expect(ids(selectRestorePoints(all, { guests: ['web'], latest: 1 }, 'src'))).toEqual([points[2].id]);
  });

  it('a guest with no restore point is a usage error naming the guest and the location', () => {
    expect(() => selectRestorePoints(all, { guests: ['mail'] }, 'usb:/x')).toThrow(UsageError);
    expect(() => selectRestorePoints(all, { guests: ['mail'] }, 'usb:/x')).toThrow(/--guest mail: usb:\/x has no restore point of guest 'mail'/);
  });
});

describe('packsNeeded', () => {
  const needed = async (...which: number[]) => packsNeeded(repo, which.map((i) => all.find((rp) => rp.id === points[i].id)!));

  it('all restore points together need every pack of the repository', async () => {
    expect([...(await needed(0, 1, 2))].sort()).toEqual(packFiles);
  });

  it('guests that share no data share no packs', async () => {
    const web = await needed(0, 2);
    const db = await needed(1);
    expect(db.size).toBeGreaterThan(0);
    expect([...db].filter((p) => web.has(p))).toEqual([]);
  });

  it('a later night needs the packs of the earlier night whose chunks it reuses', async () => {
    const night1 = await needed(0);
    const night2 = await needed(2);
    expect([...night1].every((p) => night2.has(p))).toBe(true);
    // ... and the packs of what it stored new (its changed pages, its region maps).
    expect(night2.size).toBeGreaterThan(night1.size);
  });
});
