// `ferry sync SRC DST`: a copy target made with `init --from` receives, byte
// for byte, what it lacks — local→local (USB drive), local→S3 and S3→local —
// and stays a valid repository when the sync is killed at any moment; a
// re-run resumes. A selection copies only some restore points and what they
// need. A repository of another identity is refused.
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
  SeededRandom,
  sha256File,
  spawnFerry,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';
import { useS3Server } from '../support/s3server';
import { openBackend } from '../../src/storage/open';
import { objectNames } from '../support/repositoryScenarios';

const MiB = 1024 * 1024;
const scratch = useScratch('sync');
const s3 = useS3Server();
process.env.XDG_CACHE_HOME = scratch.path('cache');

interface SyncJson {
  restorePoints: number;
  copied: { objects: number; bytes: number };
  skipped: { objects: number; bytes: number };
  verified: number;
  byType: Record<'keys' | 'data' | 'index' | 'restorepoints', { copied: number; skipped: number }>;
}

interface Point {
  id: string;
  guest: string;
  image: string;
  sha256: string;
}

let src: TestRepo;
const points: Point[] = [];

/** A copy target of `src` at `location` (a directory or s3:), opened with the same passphrase. */
async function copyTarget(location: string): Promise<TestRepo> {
  expectSuccess(await ferry(['init', '--from', src.path, '--repo', location]), 'init --from');
  return src.at(location);
}

function sync(from: string, to: string, extra: string[] = []) {
  return ferry(['sync', from, to, ...extra], { env: { FERRY_PASSWORD_FILE: src.passwordFile } });
}

async function syncJson(from: string, to: string, extra: string[] = []): Promise<SyncJson> {
  return parseJson<SyncJson>(await sync(from, to, [...extra, '--json']));
}

async function expectRestores(repo: TestRepo, p: Point, name: string): Promise<void> {
  const out = scratch.path(`restore-${name}-${p.id.slice(0, 8)}`);
  expectSuccess(await repo.run(['restore', p.id, '--to', out]));
  expect(await sha256File(`${out}/${p.guest}.img`), `${p.guest} ${p.id.slice(0, 8)} from ${name}`).toBe(p.sha256);
}

async function backUp(guest: string): Promise<void> {
  const image = scratch.path(`${guest}.img`);
  const { id } = await src.backup(guest, [image]);
  points.push({ id, guest, image, sha256: await sha256File(image) });
}

beforeAll(async () => {
  src = await TestRepo.init(scratch, 'src');
  // Small packs, so a sync has many objects to be interrupted between.
  fs.rmSync(src.path, { recursive: true });
  expectSuccess(await ferry(['init', '--repo', src.path, '--password-file', src.passwordFile, '--pack-size', '1M', ...FAST_KDF]));
  writeRandomishImage(scratch.path('web.img'), 24 * MiB, 1);
  writeRandomishImage(scratch.path('db.img'), 16 * MiB, 2);
  await backUp('web');
  await backUp('db');
  overwriteRandomPages(scratch.path('web.img'), 6, 3);
  await backUp('web');
});

describe('init --from', () => {
  it('makes a copy target with the same identity and key slots, and no data', async () => {
    const dst = await copyTarget(scratch.path('fresh-copy'));
    expect(listFiles(dst.path).filter((f) => !f.startsWith('keys/'))).toEqual(['config']);
    expect(fs.readFileSync(`${dst.path}/config`)).toEqual(fs.readFileSync(`${src.path}/config`));
    expect(listFiles(`${dst.path}/keys`)).toEqual(listFiles(`${src.path}/keys`));
    // The source's passphrase opens it: it is the same repository, empty.
    expect(await dst.list()).toEqual([]);
  });

  it('refuses a target that is not empty', async () => {
    const other = await TestRepo.init(scratch, 'other');
    const before = listFiles(other.path);
    const r = await ferry(['init', '--from', src.path, '--repo', other.path]);
    expectCleanFailure(r, { code: EXIT.usage, message: /not empty/ });
    expect(listFiles(other.path)).toEqual(before);
  });
});

describe('local → local', () => {
  // One copy target, synced twice: the tests below read its two summaries and its files.
  let dst: TestRepo;
  let first: SyncJson;
  let again: SyncJson;

  beforeAll(async () => {
    dst = await copyTarget(scratch.path('usb'));
    first = await syncJson(src.path, dst.path, ['--verify']);
    again = await syncJson(src.path, dst.path);
  });

  it('copies every object, then nothing on a second run', async () => {
    const srcBackend = openBackend(src.path);
    const packs = await objectNames(srcBackend, 'data');
    expect(first.byType.data.copied).toBe(packs.length);
    expect(first.byType.restorepoints.copied).toBe(3);
    expect(first.verified).toBe(first.copied.objects);
    expect(again.copied.objects).toBe(0);
    expect(again.skipped.objects).toBe(first.copied.objects + first.skipped.objects);
  });

  it('leaves a copy that is byte-identical, passes check --read-data and restores bit-exact', async () => {
    const files = (dir: string) => listFiles(dir).filter((f) => !f.startsWith('locks/') && !f.startsWith('syncs/'));
    expect(files(dst.path)).toEqual(files(src.path));
    for (const f of files(src.path)) expect(fs.readFileSync(`${dst.path}/${f}`).equals(fs.readFileSync(`${src.path}/${f}`)), f).toBe(true);
    await dst.expectCheckPasses(true);
    for (const p of points) await expectRestores(dst, p, 'usb');
  });

  it('refuses a target of another identity, and changes nothing there', async () => {
    const stranger = await TestRepo.init(scratch, 'stranger');
    const before = listFiles(stranger.path);
    const r = await sync(src.path, stranger.path);
    expectCleanFailure(r, { code: EXIT.usage, message: /not a copy of .*: create it with ferry init --from/ });
    expect(listFiles(stranger.path)).toEqual(before);
  });

  it('refuses a target that is no repository at all', async () => {
    const r = await sync(src.path, scratch.path('nothing-here'));
    expectCleanFailure(r, { code: EXIT.notARepository, message: /not a copy of .*ferry init --from/ });
  });
});

describe('killed at random moments', () => {
  it('leaves a valid target each time; a re-run completes it and it restores bit-exact', async () => {
    const dst = await copyTarget(scratch.path('killed'));
    const rng = new SeededRandom(2024);
    let kills = 0;
    for (let round = 0; round < 4; round++) {
      // A bandwidth cap makes the copy take seconds, so the kill lands mid-copy.
      const run = spawnFerry(['sync', src.path, dst.path, '--limit-upload', '8M'], { env: { FERRY_PASSWORD_FILE: src.passwordFile } });
      await new Promise((resolve) => setTimeout(resolve, 150 + rng.int(1500)));
      const killed = run.child.kill('SIGKILL');
      const result = await run.done;
      if (killed && result.signal === 'SIGKILL') kills++;
      // Whatever was copied so far is a valid repository: no damage, only maybe unindexed packs.
      expectSuccess(await dst.check(false), `check after kill ${round}`);
    }
    expect(kills, 'at least some runs were killed mid-sync').toBeGreaterThan(1);
    const last = await syncJson(src.path, dst.path);
    expect(last.skipped.objects).toBeGreaterThan(0);
    await dst.expectCheckPasses(true);
    expect((await dst.list()).map((p) => p.id).sort()).toEqual(points.map((p) => p.id).sort());
    for (const p of points) await expectRestores(dst, p, 'killed');
  });
});

describe('selection', () => {
  it('--guest web --latest 1 copies that restore point and only the packs it needs', async () => {
    const dst = await copyTarget(scratch.path('selected'));
    const summary = await syncJson(src.path, dst.path, ['--guest', 'web', '--latest', '1', '--verify']);
    expect(summary.restorePoints).toBe(1);
    const latestWeb = points.filter((p) => p.guest === 'web').at(-1)!;
    expect((await dst.list()).map((p) => p.id)).toEqual([latestWeb.id]);
    const srcPacks = await objectNames(openBackend(src.path), 'data');
    const dstPacks = await objectNames(openBackend(dst.path), 'data');
    // db's packs stayed behind.
    expect(dstPacks.length).toBeGreaterThan(0);
    expect(dstPacks.length).toBeLessThan(srcPacks.length);
    await dst.expectCheckPasses(true);
    await expectRestores(dst, latestWeb, 'selected');

    // Adding the other guest later copies only what it adds; a full sync then completes the copy.
    const db = await syncJson(src.path, dst.path, ['--guest', 'db']);
    expect(db.byType.restorepoints.copied).toBe(1);
    expect(db.byType.data.skipped).toBe(0);
    const full = await syncJson(src.path, dst.path);
    expect(full.byType.restorepoints.copied).toBe(1);
    await dst.expectCheckPasses(true);
    for (const p of points) await expectRestores(dst, p, 'selected-full');
  });

  it('refuses an unknown guest before copying anything', async () => {
    const dst = await copyTarget(scratch.path('unknown-guest'));
    const before = listFiles(dst.path);
    const r = await sync(src.path, dst.path, ['--guest', 'nosuch']);
    expectCleanFailure(r, { code: EXIT.usage, message: /--guest nosuch: .*no restore point/ });
    expect(listFiles(dst.path)).toEqual(before);
  });
});

describe('local → S3 → local', () => {
  it('carries the repository offsite and back, bit-exact', async () => {
    const bucket = await s3.server.createBucket();
    const offsite = await copyTarget(s3.server.location(bucket, 'offsite'));
    const up = await syncJson(src.path, offsite.path, ['--verify']);
    expect(up.byType.restorepoints.copied).toBe(3);
    expect(up.verified).toBe(up.copied.objects);
    await offsite.expectCheckPasses(true);
    expect((await syncJson(src.path, offsite.path)).copied.objects).toBe(0);

    const back = await copyTarget(scratch.path('from-s3'));
    // The new copy is made from the S3 one: identity travels too.
    expectSuccess(await ferry(['sync', offsite.path, back.path]));
    await back.expectCheckPasses(true);
    for (const p of points) await expectRestores(back, p, 'from-s3');
    const files = (dir: string) => listFiles(dir).filter((f) => !f.startsWith('locks/') && !f.startsWith('syncs/'));
    expect(files(back.path)).toEqual(files(src.path));
  });

  it('a selective sync from S3 writes its own index for the packs it copied', async () => {
    const bucket = await s3.server.createBucket();
    const offsite = await copyTarget(s3.server.location(bucket, 'sel'));
    await syncJson(src.path, offsite.path);
    const local = await copyTarget(scratch.path('sel-from-s3'));
    const summary = await syncJson(offsite.path, local.path, ['--guest', 'db']);
    expect(summary.byType.index.copied).toBe(1);
    await local.expectCheckPasses(true);
    await expectRestores(local, points.find((p) => p.guest === 'db')!, 'sel-from-s3');
  });
});
