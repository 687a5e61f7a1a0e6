// `check --read-data-subset`: only the packs of one bucket are read in full
// (bucket = first 32 bits of the pack id mod t), the others get the structure
// check. `P%` rotates through ceil(100/P) buckets with a cursor in the state
// directory, so every pack is read within ceil(100/P) runs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, flipByte, listFiles, TestRepo, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('read-data-subset');
const MiB = 1024 * 1024;

interface CheckJson {
  packs: number;
  packsRead: number;
  damage: { object: string }[];
  readDataSubset?: { bucket: number; of: number };
}

let repo: TestRepo;
let packs: string[];
const bucketOf = (pack: string, of: number) => parseInt(path.basename(pack).slice(0, 8), 16) % of;

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  for (const [i, guest] of ['a', 'b', 'c', 'd', 'e', 'f'].entries()) {
    const image = scratch.path(`${guest}.img`);
    writeRandomishImage(image, 6 * MiB, 300 + i);
    await repo.backup(guest, [image]);
  }
  packs = listFiles(repo.path).filter((f) => f.startsWith('data/'));
  expect(packs.length).toBeGreaterThanOrEqual(6);
});

async function check(copy: TestRepo, subset: string, stateDir: string): Promise<{ code: number | null; report: CheckJson }> {
  const r = await copy.run(['check', '--json', '--read-data-subset', subset], { env: { FERRY_STATE_DIR: stateDir } });
  return { code: r.code, report: JSON.parse(r.stdout) as CheckJson };
}

describe('check --read-data-subset', () => {
  it('n/t reads exactly the packs of bucket n of t', async () => {
    const state = scratch.mkdir('state-fixed');
    for (const n of [1, 2, 3]) {
      const { code, report } = await check(repo, `${n}/3`, state);
      expect(code).toBe(0);
      expect(report.packsRead).toBe(packs.filter((p) => bucketOf(p, 3) === n - 1).length);
      expect(report.readDataSubset).toEqual({ bucket: n, of: 3 });
    }
  });

  it('P% rotates: successive runs read the next bucket, and ceil(100/P) runs read every pack once', async () => {
    const state = scratch.mkdir('state-rotating');
    const runs: CheckJson[] = [];
    for (let i = 0; i < 4; i++) runs.push((await check(repo, '40%', state)).report); // ceil(100/40) = 3 buckets
    expect(runs.map((r) => r.readDataSubset)).toEqual([{ bucket: 1, of: 3 }, { bucket: 2, of: 3 }, { bucket: 3, of: 3 }, { bucket: 1, of: 3 }]);
    expect(runs.slice(0, 3).reduce((n, r) => n + r.packsRead, 0)).toBe(packs.length);
    expect(fs.readdirSync(path.join(state, 'check-cursor'))).toHaveLength(1);
  });

  it('finds a flipped byte when its pack is in the subset read, and not otherwise', async () => {
    const copy = await repo.copyTo(scratch.path('flipped'));
    const damaged = packs[0];
    const file = path.join(copy.path, damaged);
    flipByte(file, Math.floor(fs.statSync(file).size / 3));
    const state = scratch.mkdir('state-flipped');
    const hit = await check(copy, `${bucketOf(damaged, 2) + 1}/2`, state);
    expect(hit.code).toBe(EXIT.damageFound);
    expect(hit.report.damage.map((d) => d.object).join('\n')).toContain(path.basename(damaged));
    const miss = await check(copy, `${2 - bucketOf(damaged, 2)}/2`, state);
    expect(miss.code).toBe(0);
    expect(miss.report.damage).toEqual([]);
  });

  it('refuses a subset that is not one, and --read-data beside it, with one line (exit 2)', async () => {
    for (const args of [['--read-data-subset', '0%'], ['--read-data-subset', '4/3'], ['--read-data', '--read-data-subset', '5%']]) {
      const r = await repo.run(['check', ...args]);
      expect(r.code).toBe(EXIT.usage);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});
