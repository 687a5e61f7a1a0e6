// `check` must tell the truth about damage: packs no index names are verified
// too (and a lost index is said to be lost), a restore point is called
// affected only if a blob it needs is really unreadable, and a pack file that
// holds another pack's content is called a wrong pack.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, expectCleanFailure, expectSuccess, flipByte, listFiles, parseJson, sha256File, TestRepo, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('check-exact');
const MiB = 1024 * 1024;

interface Point {
  image: string;
  id: string;
  sha256: string;
  pack: string;
}

interface CheckJson {
  blobsVerified: number;
  damage: { object: string; problem: string }[];
  affected: { id: string }[];
  packsMissingFromIndex: number;
}

let repo: TestRepo;
let alpha: Point;
let beta: Point;

async function backUp(guest: string, seed: number): Promise<Point> {
  const image = scratch.path(`${guest}.img`);
  writeRandomishImage(image, 8 * MiB, seed);
  const before = new Set(listFiles(repo.path));
  const { id } = await repo.backup(guest, [image]);
  const packs = listFiles(repo.path).filter((f) => !before.has(f) && f.startsWith('data/'));
  expect(packs, `backup of ${guest} should add one pack`).toHaveLength(1);
  return { image, id, sha256: await sha256File(image), pack: packs[0] };
}

async function copyOf(name: string, damage: (dir: string) => void): Promise<TestRepo> {
  const copy = await repo.copyTo(scratch.path(name));
  damage(copy.path);
  return copy;
}

async function checkJson(copy: TestRepo, readData: boolean): Promise<{ code: number | null; report: CheckJson; stdout: string }> {
  const r = await copy.run(['check', '--json', ...(readData ? ['--read-data'] : [])]);
  return { code: r.code, report: JSON.parse(r.stdout) as CheckJson, stdout: r.stdout };
}

async function expectRestoresBitExact(copy: TestRepo, point: Point): Promise<void> {
  const out = scratch.mkdir(`restore-${path.basename(copy.path)}-${point.id.slice(0, 8)}`);
  expectSuccess(await copy.run(['restore', point.id, '--to', out]), `restore of ${point.id}`);
  expect(await sha256File(path.join(out, path.basename(point.image)))).toBe(point.sha256);
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  alpha = await backUp('alpha', 91);
  beta = await backUp('beta', 92);
  await repo.expectCheckPasses(true);
});

describe('a lost index', () => {
  const dropIndex = (dir: string) => fs.rmSync(path.join(dir, 'index'), { recursive: true });

  it('check --read-data verifies the unindexed packs, says the index is missing and that repair rebuilds it; nothing is affected', async () => {
    const copy = await copyOf('no-index', (dir) => {
      dropIndex(dir);
      fs.mkdirSync(path.join(dir, 'index'));
    });
    const r = await copy.check(true);
    expectCleanFailure(r, { code: EXIT.damageFound });
    expect(r.stdout).toMatch(/index is missing for 2 pack\(s\)/);
    expect(r.stdout).toContain('ferry repair');
    expect(r.stdout).not.toContain('affected restore point');
    const verified = Number(/(\d+) blobs verified/.exec(r.stdout)?.[1]);
    expect(verified).toBeGreaterThan(10);
    const { report } = await checkJson(copy, true);
    expect(report.packsMissingFromIndex).toBe(2);
    expect(report.affected).toEqual([]);
    await expectRestoresBitExact(copy, alpha);
  });

  it('check --read-data finds a flipped byte in an unindexed pack and names the restore point it breaks', async () => {
    const copy = await copyOf('no-index-flipped', (dir) => {
      dropIndex(dir);
      fs.mkdirSync(path.join(dir, 'index'));
      const file = path.join(dir, alpha.pack);
      flipByte(file, Math.floor(fs.statSync(file).size / 3));
    });
    const { code, report } = await checkJson(copy, true);
    expect(code).toBe(EXIT.damageFound);
    expect(report.damage.map((d) => d.object).join('\n')).toContain(path.basename(alpha.pack));
    expect(report.affected.map((a) => a.id)).toEqual([alpha.id]);
  });
});

describe('a pack truncated by 100 bytes (only its header is lost)', () => {
  let copy: TestRepo;

  beforeAll(async () => {
    copy = await copyOf('truncated-100', (dir) => {
      const file = path.join(dir, alpha.pack);
      fs.truncateSync(file, fs.statSync(file).size - 100);
    });
  });

  it('restores bit-exact, so check names the damaged pack but no affected restore point', async () => {
    await expectRestoresBitExact(copy, alpha);
    for (const readData of [true, false]) {
      const { code, report } = await checkJson(copy, readData);
      expect(code, `check${readData ? ' --read-data' : ''}`).toBe(EXIT.damageFound);
      expect(report.damage.map((d) => d.object).join('\n')).toContain(path.basename(alpha.pack));
      expect(report.affected, `check${readData ? ' --read-data' : ''}`).toEqual([]);
    }
  });

  it('a pack cut into its blobs still affects its restore point (and only that one)', async () => {
    const halved = await copyOf('truncated-half', (dir) => {
      const file = path.join(dir, alpha.pack);
      fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
    });
    for (const readData of [true, false]) {
      const { report } = await checkJson(halved, readData);
      expect(report.affected.map((a) => a.id)).toEqual([alpha.id]);
    }
  });
});

describe('two packs swapped (each renamed to the other)', () => {
  let copy: TestRepo;

  beforeAll(async () => {
    copy = await copyOf('swapped', (dir) => {
      const a = path.join(dir, alpha.pack);
      const b = path.join(dir, beta.pack);
      fs.renameSync(a, `${a}.swap`);
      fs.renameSync(b, a);
      fs.renameSync(`${a}.swap`, b);
    });
  });

  it('check names each as a wrong pack holding the other one', async () => {
    for (const readData of [true, false]) {
      const r = await copy.check(readData);
      expectCleanFailure(r, { code: EXIT.damageFound });
      const wrong = r.stdout.split('\n').filter((l) => l.includes('wrong pack'));
      expect(wrong.join('\n')).toContain(path.basename(alpha.pack));
      expect(wrong.join('\n')).toContain(path.basename(beta.pack));
    }
  });

  it('restore says wrong pack, not truncated', async () => {
    const out = scratch.mkdir('restore-swapped');
    const line = expectCleanFailure(await copy.run(['restore', alpha.id, '--to', out]), { code: EXIT.corrupt });
    expect(line).toContain('wrong pack');
    expect(line).not.toContain('truncated');
    expect(fs.readdirSync(out)).toEqual([]);
  });
});

it('the JSON report is what the text report says', async () => {
  const { report } = await checkJson(repo, true);
  expect(parseJson<CheckJson>(await repo.run(['check', '--json'])).damage).toEqual([]);
  expect(report.damage).toEqual([]);
  expect(report.packsMissingFromIndex).toBe(0);
});
