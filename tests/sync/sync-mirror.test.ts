// `ferry sync SRC DST --mirror`: the copy follows the source. After a forget
// on SRC, a plain sync still only adds; --mirror removes the forgotten
// restore points from DST and prunes it, to a local copy and to RGW, and DST
// then checks clean and restores every remaining point bit-exact. A source
// that lists no restore point never empties DST unless --allow-empty says so.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  FAST_KDF,
  ferry,
  listFiles,
  overwriteRandomPages,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';
import { useS3Server } from '../support/s3server';

const MiB = 1024 * 1024;
const scratch = useScratch('sync-mirror');
const s3 = useS3Server();
process.env.XDG_CACHE_HOME = scratch.path('cache');

interface MirrorJson {
  restorePoints: number;
  copied: { objects: number };
  mirror?: {
    removedRestorePoints: string[];
    prune: { restorePointsKept: number; blobsFreed: number; bytesFreed: number; packsDeleted: number };
  };
}

interface Point {
  id: string;
  guest: string;
  sha256: string;
}

// Built once: SRC with 4 restore points of 2 guests (1 MiB packs), web's first point
// holding data no later point shares.
let src: TestRepo;
const points: Point[] = [];

async function backUp(guest: string): Promise<void> {
  const image = scratch.path(`${guest}.img`);
  const { id } = await src.backup(guest, [image]);
  points.push({ id, guest, sha256: await sha256File(image) });
}

beforeAll(async () => {
  src = new TestRepo(scratch.path('src'), scratch.path('src.pw'));
  fs.writeFileSync(src.passwordFile, 'correct horse battery staple\n');
  expectSuccess(await ferry(['init', '--repo', src.path, '--password-file', src.passwordFile, '--pack-size', '1M', ...FAST_KDF]));
  writeRandomishImage(scratch.path('web.img'), 8 * MiB, 11);
  writeRandomishImage(scratch.path('db.img'), 4 * MiB, 12);
  await backUp('web');
  await backUp('db');
  // Most of web changes: its first point alone needs many packs.
  writeRandomishImage(scratch.path('web.img'), 8 * MiB, 13);
  await backUp('web');
  overwriteRandomPages(scratch.path('web.img'), 4, 14);
  await backUp('web');
}, 120_000);

/** A fresh SRC-like repository per test: a copy of the fixture, so one test's forget is not another's. */
async function freshSource(name: string): Promise<TestRepo> {
  return src.copyTo(scratch.path(name));
}

async function copyTarget(from: TestRepo, location: string): Promise<TestRepo> {
  expectSuccess(await ferry(['init', '--from', from.path, '--repo', location]), 'init --from');
  return from.at(location);
}

function sync(from: TestRepo, to: TestRepo, extra: string[] = []) {
  return ferry(['sync', from.path, to.path, ...extra], { env: { FERRY_PASSWORD_FILE: from.passwordFile } });
}

async function syncJson(from: TestRepo, to: TestRepo, extra: string[] = []): Promise<MirrorJson> {
  return parseJson<MirrorJson>(await sync(from, to, [...extra, '--json']));
}

async function expectRestores(repo: TestRepo, p: Point, name: string): Promise<void> {
  const out = scratch.path(`restore-${name}-${p.id.slice(0, 8)}`);
  expectSuccess(await repo.run(['restore', p.id, '--to', out]));
  expect(await sha256File(`${out}/${p.guest}.img`), `${p.guest} ${p.id.slice(0, 8)} from ${name}`).toBe(p.sha256);
  fs.rmSync(out, { recursive: true });
}

const ids = async (repo: TestRepo): Promise<string[]> => (await repo.list()).map((p) => p.id).sort();

/** Forget web's first point on SRC, then check that a plain sync keeps it and --mirror removes it and prunes. */
async function forgetThenMirror(source: TestRepo, dst: TestRepo, name: string): Promise<void> {
  await syncJson(source, dst);
  const gone = points[0];
  expectSuccess(await source.run(['forget', gone.id]), 'forget on SRC');

  // Without --mirror, sync stays additive.
  const plain = await syncJson(source, dst);
  expect(plain.mirror).toBeUndefined();
  expect(await ids(dst)).toContain(gone.id);

  const mirrored = await syncJson(source, dst, ['--mirror']);
  expect(mirrored.mirror?.removedRestorePoints).toEqual([gone.id]);
  expect(mirrored.mirror?.prune.restorePointsKept).toBe(points.length - 1);
  expect(mirrored.mirror?.prune.blobsFreed).toBeGreaterThan(0);
  expect(mirrored.mirror?.prune.bytesFreed).toBeGreaterThan(4 * MiB);
  expect(mirrored.mirror?.prune.packsDeleted).toBeGreaterThan(0);
  expect(await ids(dst)).toEqual(await ids(source));
  await dst.expectCheckPasses(true);
  for (const p of points.slice(1)) await expectRestores(dst, p, name);

  // Mirrored already: a second run removes and frees nothing.
  const again = await syncJson(source, dst, ['--mirror']);
  expect(again.mirror?.removedRestorePoints).toEqual([]);
  expect(again.mirror?.prune.blobsFreed).toBe(0);
}

describe('sync --mirror after a forget on the source', () => {
  it('to a local copy: removes the forgotten point, prunes, checks clean and restores the rest bit-exact', async () => {
    const source = await freshSource('src-local');
    const dst = await copyTarget(source, scratch.path('usb'));
    await forgetThenMirror(source, dst, 'usb');
  });

  it('to RGW: the same', async () => {
    const source = await freshSource('src-s3');
    const dst = await copyTarget(source, await s3.server.newLocation('mirror'));
    await forgetThenMirror(source, dst, 's3');
  });

  it('the human summary says what the mirror removed and freed', async () => {
    const source = await freshSource('src-human');
    const dst = await copyTarget(source, scratch.path('human'));
    await syncJson(source, dst);
    expectSuccess(await source.run(['forget', points[1].id]));
    const r = await sync(source, dst, ['--mirror']);
    expectSuccess(r);
    expect(r.stdout).toMatch(/; mirror: removed 1 restore point\(s\) the source no longer has, pruned \d+ blobs, [\d.]+ \w+ \(\d+ packs deleted, \d+ written\)/);
  });
});

describe('an empty source', () => {
  // An empty copy target of SRC: the same identity, no restore point (a wrong or unmounted path looks like this).
  let dst: TestRepo;
  let empty: TestRepo;
  beforeAll(async () => {
    dst = await copyTarget(src, scratch.path('full-copy'));
    await syncJson(src, dst);
    empty = await copyTarget(src, scratch.path('empty-source'));
  });

  it('--mirror stops before changing anything, in one line', async () => {
    const before = listFiles(dst.path).filter((f) => !f.startsWith('locks/'));
    const r = await sync(empty, dst, ['--mirror']);
    expectCleanFailure(r, { code: EXIT.usage, message: /lists no restore point, so --mirror would empty .*nothing was copied or removed .*--allow-empty/ });
    expect(listFiles(dst.path).filter((f) => !f.startsWith('locks/'))).toEqual(before);
    expect(await ids(dst)).toHaveLength(points.length);
  });

  it('--allow-empty without --mirror is refused', async () => {
    const r = await sync(empty, dst, ['--allow-empty']);
    expectCleanFailure(r, { code: EXIT.usage, message: /--allow-empty: only means something with --mirror/ });
  });

  it('--mirror with a selection is refused', async () => {
    const r = await sync(src, dst, ['--mirror', '--guest', 'web']);
    expectCleanFailure(r, { code: EXIT.usage, message: /--mirror: .*cannot be combined with --guest or --latest/ });
  });

  it('--mirror --allow-empty empties the copy and frees its packs', async () => {
    const target = await copyTarget(src, scratch.path('to-empty'));
    await syncJson(src, target);
    const summary = await syncJson(empty, target, ['--mirror', '--allow-empty']);
    expect(summary.mirror?.removedRestorePoints).toHaveLength(points.length);
    expect(await ids(target)).toEqual([]);
    expect(listFiles(`${target.path}/data`)).toEqual([]);
    await target.expectCheckPasses(true);
  });
});
