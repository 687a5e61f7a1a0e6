// This host's record of the restore points it saw (repo/seenRestorePoints.ts):
// forgotten points stay forgotten, and the record stays small however many
// nights a job forgets.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_TOMBSTONES, SeenRestorePoints } from '../../src/repo/seenRestorePoints';
import { useScratch } from '../support';

const scratch = useScratch('seen-points');
const REPO_ID = Buffer.alloc(32, 7);
const id = (n: number) => n.toString(16).padStart(64, '0');
const point = (n: number) => ({ id: id(n), guest: 'web01', time: new Date(Date.UTC(2026, 0, 1) + n * 86_400_000).toISOString() });

describe('SeenRestorePoints', () => {
  it('keeps a forgotten point forgotten when a listing that read it before it went saves it again', () => {
    const dir = scratch.mkdir('state-a');
    const seen = SeenRestorePoints.load(dir, REPO_ID, '/repo');
    seen.saw([point(1), point(2)]);
    seen.forgot([id(1)]);
    SeenRestorePoints.load(dir, REPO_ID, '/repo').saw([point(1), point(2)]); // a concurrent list's late save
    const again = SeenRestorePoints.load(dir, REPO_ID, '/repo');
    expect(again.about(id(1))).toBeUndefined();
    expect(again.vanished([])).toEqual([point(2)]);
    expect(again.problems).toEqual([]);
  });

  it('keeps only the newest tombstones, so years of nightly forgets do not grow the record', () => {
    const dir = scratch.mkdir('state-b');
    const seen = SeenRestorePoints.load(dir, REPO_ID, '/repo');
    const total = MAX_TOMBSTONES + 500;
    for (let night = 0; night < total; night += 100) {
      const batch = Array.from({ length: 100 }, (_, i) => point(night + i));
      seen.saw(batch);
      seen.forgot(batch.map((p) => p.id));
    }
    const file = path.join(dir, 'repositories', `${REPO_ID.toString('hex')}.json`);
    const record = JSON.parse(fs.readFileSync(file, 'utf8')).locations['/repo'];
    expect(record.forgotten).toHaveLength(MAX_TOMBSTONES);
    expect(record.forgotten[0]).toBe(id(total - MAX_TOMBSTONES));
    expect(record.forgotten.at(-1)).toBe(id(total - 1));
    expect(fs.statSync(file).size).toBeLessThan(MAX_TOMBSTONES * 70);
    // The newest stay forgotten; one forgotten long ago may be seen again (an old drive copy: at worst a warning later).
    seen.saw([point(total - 1), point(0)]);
    expect(seen.about(id(total - 1))).toBeUndefined();
    expect(seen.about(id(0))).toEqual({ guest: 'web01', time: point(0).time });
  });
});
