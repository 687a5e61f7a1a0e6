// `ferry restore latest --all --to DIR`: every guest's latest restore point,
// each into DIR/GUEST/, in one process. A guest that cannot be restored is
// reported and the others still are; the command then fails naming it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { TestRepo, listFiles, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';
import { ferryPeakRss } from '../support/peakRss';

const MiB = 1024 * 1024;
const scratch = useScratch('restore-all');
let repo: TestRepo;
/** Each guest's image as its latest restore point has it. */
const latest = new Map<string, string>();
/** The packs written by guest beta's latest backup (beta's data only). */
let betaPacks: string[] = [];

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'fleet');
  for (const [guest, seed] of [['alpha', 1], ['beta', 2]] as const) {
    const image = scratch.path(`${guest}.img`);
    writeRandomishImage(image, 6 * MiB, seed);
    await repo.backup(guest, [image]);
    writeRandomishImage(image, 6 * MiB, seed + 10);
    const before = new Set(listFiles(path.join(repo.path, 'data')));
    await repo.backup(guest, [image]);
    if (guest === 'beta') betaPacks = listFiles(path.join(repo.path, 'data')).filter((f) => !before.has(f));
    latest.set(guest, await sha256File(image));
  }
});

interface AllJson {
  guests: { id: string; guest: string; files: { path: string }[] }[];
  failed: { guest: string; error: string }[];
}

describe('ferry restore latest --all', () => {
  it("writes each guest's latest restore point into DIR/GUEST/", async () => {
    const out = scratch.path('all');
    const r = await repo.run(['restore', 'latest', '--all', '--to', out, '--json']);
    const json = parseJson<AllJson>(r);
    expect(json.guests.map((g) => g.guest)).toEqual(['alpha', 'beta']);
    expect(json.failed).toEqual([]);
    expect(listFiles(out)).toEqual(['alpha/alpha.img', 'beta/beta.img']);
    for (const [guest, sum] of latest) expect(await sha256File(path.join(out, guest, `${guest}.img`)), guest).toBe(sum);
    expect(r.stderr).toMatch(/restored restore point [0-9a-f]{64} of guest 'alpha'/);
    expect(r.stderr).toMatch(/restored restore point [0-9a-f]{64} of guest 'beta'/);
  });

  it('refuses an id other than latest, and --guest or --disk beside --all, in one line', async () => {
    for (const args of [['restore', 'abcdef12', '--all'], ['restore', 'latest', '--all', '--guest', 'alpha'], ['restore', 'latest', '--all', '--disk', '0']]) {
      const r = await repo.run([...args, '--to', scratch.path('refused')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/--all/);
      expect(fs.existsSync(scratch.path('refused'))).toBe(false);
    }
  });

  it('restores the other guests when one is damaged, then fails naming it (exit 11), leaving nothing of it behind', async () => {
    const damaged = await repo.copyTo(scratch.path('damaged-repo'));
    // Flip a byte in the middle of each of beta's latest packs: its chunks no longer verify.
    for (const pack of betaPacks) {
      const file = path.join(damaged.path, 'data', pack);
      const fd = fs.openSync(file, 'r+');
      const at = Math.floor(fs.statSync(file).size / 3);
      const byte = Buffer.alloc(1);
      fs.readSync(fd, byte, 0, 1, at);
      byte[0] ^= 0xff;
      fs.writeSync(fd, byte, 0, 1, at);
      fs.closeSync(fd);
    }
    const out = scratch.path('partly');
    const r = await damaged.run(['restore', 'latest', '--all', '--to', out]);
    expect(r.code).toBe(11);
    expect(r.stderr).toMatch(/FAILED beta: .*(damaged|verification)/);
    expect(r.stderr).toMatch(/1 of 2 guest\(s\) did not restore: beta/);
    expect(listFiles(out)).toEqual(['alpha/alpha.img']);
    expect(await sha256File(path.join(out, 'alpha', 'alpha.img'))).toBe(latest.get('alpha'));
  });
  it('holds one set of buffers for all the guests it restores: 8 guests of 48 MiB stay under the 160 MiB budget', async () => {
    const fleet = await TestRepo.init(scratch, 'eight');
    for (let g = 0; g < 8; g++) {
      const image = scratch.path(`g${g}.img`);
      writeRandomishImage(image, 48 * MiB, 100 + g, { holes: 0.1, text: 0.3 });
      await fleet.backup(`g${g}`, [image]);
      fs.rmSync(image);
    }
    const out = scratch.path('eight-out');
    const { result, peakRssBytes } = await ferryPeakRss(scratch, ['restore', '--repo', fleet.path, '--password-file', fleet.passwordFile, 'latest', '--all', '--to', out, '--json']);
    expect(parseJson<AllJson>(result).guests).toHaveLength(8);
    // A fresh set of read buffers per guest, left for V8 to collect, peaked at 166 MiB here; one set, 125.
    expect(peakRssBytes / MiB).toBeLessThanOrEqual(160);
  }, 120_000);
});
