// Garbage-collection rule 7 (FORMAT.md, "Chains") end to end: after the old
// restore points are forgotten, prune stores a live page patch whole when its
// bases are needed by nothing else, so the bases go; the remaining restore
// points restore bit-exact and check --read-data stays clean. A base another
// live patch needs stays.
//
// The repositories cut fixed 256 KiB chunks: fastcdc cuts where the repository's
// random gear key says, so which chunks a page write patches (twice, or on a
// shared base, or not at all when it moves a boundary) changed with every
// `ferry init` and the counts below with it (runs failed now and then). With
// fixed chunks every night stores the same blobs, whatever the keys.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobType, blobType } from '../../src/crypto/blobCodec';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { TestRepo, expectSuccess, listFiles, parseJson, overwritePage, sha256File, useScratch, writeRandomishImage } from '../support';

const MiB = 1024 * 1024;
const KiB = 1024;
/** Chunks at fixed offsets: page k of the image lies in chunk floor(k / 64), whatever the repository's keys. */
const FIXED_CHUNKS = 'fixed:256K';
const scratch = useScratch('prune-chains');

interface PruneReport {
  bytesFreed: number;
  packBytesAfter: number;
  chainsRewritten: number;
  chainBytesFreed: number;
  chainBytesWritten: number;
}

interface Point {
  id: string;
  sha256: Map<string, string>;
}

let restored = 0;

async function backUp(repo: TestRepo, images: string[]): Promise<Point> {
  const { id } = await repo.backup('g', images);
  const sha256 = new Map<string, string>();
  for (const image of images) sha256.set(path.basename(image), await sha256File(image));
  return { id, sha256 };
}

async function expectRestoresExactly(repo: TestRepo, points: Point[]): Promise<void> {
  for (const p of points) {
    const out = scratch.path(`restored-${++restored}`);
    expectSuccess(await repo.run(['restore', p.id, '--to', out]), `restore ${p.id}`);
    for (const [file, sum] of p.sha256) expect(await sha256File(path.join(out, file)), `${file} of restore point ${p.id}`).toBe(sum);
    fs.rmSync(out, { recursive: true });
  }
}

function packBytes(repo: TestRepo): number {
  return listFiles(path.join(repo.path, 'data')).reduce((sum, f) => sum + fs.statSync(path.join(repo.path, 'data', f)).size, 0);
}

/** Each indexed page patch (hex id) with its chain of bases, as the repository reads them now. */
async function patchChains(repo: TestRepo): Promise<Map<string, string[]>> {
  const passphrase = fs.readFileSync(repo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(passphrase));
  try {
    await opened.loadIndex();
    const patches: Buffer[] = [];
    opened.forEachBlob((id, loc) => {
      if (blobType(loc.typeFlags) === BlobType.Patch) patches.push(Buffer.from(id));
    });
    const chains = new Map<string, string[]>();
    for (const id of patches) chains.set(id.toString('hex'), (await opened.blobDependencies(id)).slice(1).map((b) => b.toString('hex')));
    return chains;
  } finally {
    await opened.backend.close();
  }
}

/** Whether the repository's index names blob `hex`. */
async function stores(repo: TestRepo, hexIds: string[]): Promise<string[]> {
  const passphrase = fs.readFileSync(repo.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(passphrase));
  try {
    await opened.loadIndex();
    return hexIds.filter((hex) => opened.hasBlob(Buffer.from(hex, 'hex')));
  } finally {
    await opened.backend.close();
  }
}

describe('ferry prune, rule 7 (patch chains)', () => {
  it('stores live patches whole once their bases are needed by nothing else: the bases (down chains of two patches) go, the rest restores bit-exact', async () => {
    const repo = await TestRepo.init(scratch, 'rewrite', { chunker: FIXED_CHUNKS });
    const image = scratch.path('rewrite.img');
    // Incompressible, so sizes are predictable: a chunk stored whole takes about its length.
    writeRandomishImage(image, 8 * MiB, 71, { holes: 0, text: 0 });
    const night1 = await backUp(repo, [image]);
    // Nights 2 and 3 each change one page of each of the 32 chunks, at other offsets: night 3's chunks are patches on night 2's patches.
    for (let at = 0; at < 8 * MiB; at += 256 * KiB) overwritePage(image, at + 64 * KiB, 2);
    const night2 = await backUp(repo, [image]);
    for (let at = 0; at < 8 * MiB; at += 256 * KiB) overwritePage(image, at + 160 * KiB, 3);
    const night3 = await backUp(repo, [image]);
    // Night 4 patches a few of night 3's chunks: after the prune their base is a whole chunk that was a patch.
    for (const at of [0, 3 * MiB, 6 * MiB]) overwritePage(image, at + 200 * KiB, 4);
    const night4 = await backUp(repo, [image]);

    const before = await patchChains(repo);
    // 32 patches of night 2 (on night 1's chunks), 32 of night 3 (on those), 3 of night 4 (on 3 of night 3's).
    expect(before.size, 'page patches').toBe(67);
    const deep = [...before.values()].filter((chain) => chain.length >= 2);
    expect(deep.length, 'chains of a patch on a patch on a whole chunk').toBe(35);
    // What night 3's patches stand on: night 2's patches and night 1's chunks. Once nights 1 and 2 are forgotten
    // only live patches need them (night 4's 3 through night 3's), so rule 7 must free every one of them.
    const bases = [...new Set(deep.filter((chain) => chain.length === 2).flat())];
    expect(bases.length).toBe(64);
    expectSuccess(await repo.run(['forget', night1.id, night2.id]));
    const packsBefore = packBytes(repo);

    // Every pack holding garbage is repacked, so what rule 7 frees does not hang on how the nights' blobs fell into packs.
    const report = parseJson<PruneReport>(await repo.run(['prune', '--json', '--repack-below', '1']));
    // Night 3's 32 patches stored whole (night 4's 3 patches then stand on whole chunks).
    expect(report.chainsRewritten).toBe(32);
    expect(report.chainBytesFreed).toBeGreaterThan(report.chainBytesWritten);
    expect(await stores(repo, bases), 'bases still stored').toEqual([]);
    // Left: night 3's 8 MiB whole, night 4's three patches and the region maps. Without rule 7 night 1's chunks stayed too.
    const after = packBytes(repo);
    expect(after).toBe(report.packBytesAfter);
    expect(after).toBeLessThan(8.8 * MiB);
    expect(packsBefore - after).toBe(report.bytesFreed);

    await expectRestoresExactly(repo, [night3, night4]);
    await repo.expectCheckPasses(true);
  });

  it('keeps a base that another live patch needs: two disks patched on the same base chunk', async () => {
    const repo = await TestRepo.init(scratch, 'shared-base', { chunker: FIXED_CHUNKS });
    const a = scratch.path('a.img');
    const b = scratch.path('b.img');
    writeRandomishImage(a, 4 * MiB, 81, { holes: 0, text: 0 });
    fs.copyFileSync(a, b);
    const night1 = await backUp(repo, [a, b]);
    // The same page of both disks changes differently: two patches on one base.
    overwritePage(a, MiB, 82);
    overwritePage(b, MiB, 83);
    const night2 = await backUp(repo, [a, b]);
    const chains = await patchChains(repo);
    expect(chains.size).toBe(2);
    const [baseOfA, baseOfB] = [...chains.values()];
    expect(baseOfA).toEqual(baseOfB);
    expectSuccess(await repo.run(['forget', night1.id]));

    const report = parseJson<PruneReport>(await repo.run(['prune', '--json', '--repack-below', '1']));
    expect(report.chainsRewritten).toBe(0);
    expect(await stores(repo, baseOfA)).toEqual(baseOfA);
    expect((await patchChains(repo)).size).toBe(2);
    await expectRestoresExactly(repo, [night2]);
    await repo.expectCheckPasses(true);
  });
});
