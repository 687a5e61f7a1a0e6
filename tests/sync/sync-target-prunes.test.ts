// A copy that forgets and prunes on its own (nightly's offsite_retention =
// "follow"): the sync copies every restore point of the source, but a pack
// only if it holds a blob they need that the copy lacks. Copied by name, the
// source's packs that the copy's own prune dropped as garbage would come back
// on every sync.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { syncRepositories } from '../../src/sync/repositorySync';
import { expectSuccess, FAST_KDF, ferry, overwritePage, TestRepo, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('sync-target-prunes');
const PASSWORD = 'target prunes';
const env = { FERRY_PASSWORD: PASSWORD };

let src: TestRepo;
let firstWeb: string;
let firstDb: string;

const packs = (repo: string) => fs.readdirSync(path.join(repo, 'data'), { recursive: true }).filter((f) => /[0-9a-f]{64}$/.test(String(f))).length;
const points = (repo: string) => fs.readdirSync(path.join(repo, 'snapshots')).sort();
const sync = (from: string, to: string, targetPrunes: boolean) =>
  syncRepositories(new LocalBackend(from), new LocalBackend(to), { concurrency: 2, verify: false, secret: Buffer.from(PASSWORD), targetPrunes });

beforeAll(async () => {
  src = new TestRepo(scratch.path('src'), scratch.path('src.pw'));
  fs.writeFileSync(src.passwordFile, `${PASSWORD}\n`);
  expectSuccess(await ferry(['init', '--repo', src.path, '--password-file', src.passwordFile, '--pack-size', '1M', '--chunker', 'fixed:256K', ...FAST_KDF]));
  const image = scratch.path('web.img');
  writeRandomishImage(image, 6 * MiB, 21);
  firstWeb = (await src.backup('web', [image])).id;
  writeRandomishImage(image, 6 * MiB, 22); // the next point shares nothing with the first
  await src.backup('web', [image]);
  // db's second point is page patches on its first and nothing else: one page
  // written in every 64 KiB of fixed 256 KiB chunks, so every chunk is a patch
  // and, once the first point is forgotten, every base is garbage. (With
  // content-defined chunks, keyed per repository, a moved cut point would add
  // whole chunks to the patches' pack, and a pack that stays whole keeps its
  // patches' bases: then rule 7 has nothing to do, by chance.)
  const db = scratch.path('db.img');
  writeRandomishImage(db, 4 * MiB, 23, { holes: 0, text: 0 });
  firstDb = (await src.backup('db', [db])).id;
  for (let off = 0; off < 4 * MiB; off += 64 * 1024) overwritePage(db, off + 8192, 24);
  await src.backup('db', [db]);
}, 120_000);

describe('a sync to a copy that prunes on its own', () => {
  it('does not bring back the packs the copy pruned as garbage; a sync by name does', async () => {
    const dst = scratch.path('dst');
    expectSuccess(await ferry(['init', '--from', src.path, '--repo', dst], { env }), 'init --from');
    await sync(src.path, dst, true);
    expect(points(dst)).toEqual(points(src.path));
    // Both forget the first point; only the copy prunes (the repository prunes on another night).
    for (const repo of [src.path, dst]) expectSuccess(await ferry(['forget', '--repo', repo, firstWeb], { env }), 'forget');
    expectSuccess(await ferry(['prune', '--repo', dst], { env }), 'prune the copy');
    const pruned = packs(dst);
    expect(pruned).toBeLessThan(packs(src.path));

    const again = await sync(src.path, dst, true);
    expect(again.byType.data.copied).toBe(0);
    expect(packs(dst)).toBe(pruned);
    expect(points(dst)).toEqual(points(src.path));
    expectSuccess(await ferry(['check', '--repo', dst, '--read-data'], { env }), 'check the copy');

    const byName = await sync(src.path, dst, false);
    expect(byName.byType.data.copied).toBeGreaterThan(0); // the garbage is back
  });

  it('does not copy again the bases of chunks the copy holds whole (its prune rewrote their chains, rule 7)', async () => {
    const dst = scratch.path('dst-chains');
    expectSuccess(await ferry(['init', '--from', src.path, '--repo', dst], { env }), 'init --from');
    await sync(src.path, dst, true);
    for (const repo of [src.path, dst]) expectSuccess(await ferry(['forget', '--repo', repo, firstDb], { env }), 'forget');
    const prune = JSON.parse(expectSuccess(await ferry(['prune', '--repo', dst, '--json'], { env }), 'prune the copy')) as { chainsRewritten: number };
    expect(prune.chainsRewritten).toBe(16); // 4 MiB in 256 KiB chunks

    const again = await sync(src.path, dst, true);
    expect(again.byType.data.copied).toBe(0);
    expectSuccess(await ferry(['check', '--repo', dst, '--read-data'], { env }), 'check the copy');
  });

  it("copies the source's whole copy of a chunk the copy holds only as a page patch (the source's prune rewrote its chain)", async () => {
    // The source's next patches are sized on its whole copies (FORMAT.md, "Copies of one blob"): laid on the
    // copy's patches, their chains would be deeper than they record. A source of its own, as the tests above change src.
    const own = new TestRepo(scratch.path('src-rewrites'), src.passwordFile);
    expectSuccess(await ferry(['init', '--repo', own.path, '--password-file', own.passwordFile, '--pack-size', '1M', '--chunker', 'fixed:256K', ...FAST_KDF]));
    const db = scratch.path('db-rewrites.img');
    writeRandomishImage(db, 4 * MiB, 31, { holes: 0, text: 0 });
    const first = (await own.backup('db', [db])).id;
    const patchEveryChunk = (seed: number) => {
      for (let off = 0; off < 4 * MiB; off += 64 * 1024) overwritePage(db, off + 8192, seed);
    };
    patchEveryChunk(32);
    await own.backup('db', [db]);
    const dst = scratch.path('dst-rewrites');
    expectSuccess(await ferry(['init', '--from', own.path, '--repo', dst], { env }), 'init --from');
    await sync(own.path, dst, true);
    // Only the source forgets and prunes: it stores the second point's chunks whole; the copy keeps them as patches.
    expectSuccess(await ferry(['forget', '--repo', own.path, first], { env }), 'forget');
    const prune = JSON.parse(expectSuccess(await ferry(['prune', '--repo', own.path, '--json'], { env }), 'prune the source')) as { chainsRewritten: number };
    expect(prune.chainsRewritten).toBe(16);
    patchEveryChunk(33);
    const third = (await own.backup('db', [db])).id;

    const again = await sync(own.path, dst, true);
    expect(again.byType.data.copied).toBeGreaterThan(0);
    const readsWhole = async (repo: string) => {
      const opened = await Repository.open(new LocalBackend(repo), Buffer.from(PASSWORD));
      await opened.loadIndex();
      const whole = new Set<string>();
      opened.forEachBlob((id, loc) => {
        if (blobType(loc.typeFlags) === BlobType.Data) whole.add(id.toString('hex'));
      });
      await opened.backend.close();
      return whole;
    };
    const wholeInSource = await readsWhole(own.path);
    const wholeInCopy = await readsWhole(dst);
    expect(wholeInSource.size).toBeGreaterThanOrEqual(16);
    expect([...wholeInSource].filter((id) => !wholeInCopy.has(id))).toEqual([]);
    expectSuccess(await ferry(['check', '--repo', dst, '--read-data'], { env }), 'check the copy');
    const out = scratch.path('restored-rewrites');
    expectSuccess(await ferry(['restore', '--repo', dst, third, '--to', out], { env }), 'restore from the copy');
    expect(fs.readFileSync(path.join(out, 'db-rewrites.img')).equals(fs.readFileSync(db))).toBe(true);
  });
});
