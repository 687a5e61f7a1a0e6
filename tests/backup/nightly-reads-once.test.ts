// A nightly backup without change tracking (a region that had a map before)
// reads the image once: the worker seals the chunks that changed from the
// bytes it scanned, as page patches against the previous night's chunks,
// whose bases come from the repository while it scans on
// (workers/freshChunkChannel.ts). Before, every changed chunk was read from
// the image a second time. A base that does not rebuild stops the backup with
// the damaged chunk named, and nothing is stored as a restore point.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptionError } from '../../src/errors';
import { backupGuest, imageBackupRequest } from '../../src/backup/guestBackup';
import { openImageSource } from '../../src/dedupe/imageSource';
import { decodeRegionMap } from '../../src/repo/regionMap';
import { Repository } from '../../src/repo/repository';
import { DiskRecord } from '../../src/repo/restorePoint';
import { LocalBackend } from '../../src/storage/local';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { SeededRandom, sha256File, useScratch, writeSparseImageWithPieces } from '../support';
import { restoreToDirectory } from '../../src/restore/guestRestore';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';

const MiB = 1024 * 1024;
const PAGE = 4096;
const scratch = useScratch('nightly-reads-once');
/** Two pieces of 16 MiB (text and random, a few holes) in two regions of a 96 MiB image. */
const PIECE_AT = [4 * MiB, 40 * MiB];
const PIECE_BYTES = 16 * MiB;

let repo: Repository;
let pool: PipelinePool;

/** Bytes this process (its worker threads too) got from read system calls so far: the image's and the repository's. */
function bytesRead(): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
}

/** Rewrite `pages` scattered 4 KiB pages of the pieces: most chunks change by a page or two. */
function rewritePages(image: string, seed: number, pages: number): void {
  const rng = new SeededRandom(seed);
  const fd = fs.openSync(image, 'r+');
  try {
    const page = Buffer.alloc(PAGE);
    for (let i = 0; i < pages; i++) {
      const at = PIECE_AT[rng.int(PIECE_AT.length)] + rng.int(PIECE_BYTES / PAGE) * PAGE;
      fs.writeSync(fd, rng.fill(page), 0, PAGE, at);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A backup of `image` against `previous` without changed-block tracking: every allocated byte is read. */
function nightly(image: string, name: string, previous: DiskRecord) {
  return backupGuest(repo, pool, { guest: name, tags: [], disks: [{ source: openImageSource(image), name: path.basename(image), base: { previous } }] });
}

async function mapEntries(disk: DiskRecord, region: number) {
  return decodeRegionMap(await repo.readBlobPlaintext(Buffer.from(disk.regions[region]!, 'hex')), disk.regionSize)!;
}

/** Bytes of the chunks `after` names and `before` does not (at the same place). */
async function newChunkBytes(before: DiskRecord, after: DiskRecord): Promise<number> {
  let bytes = 0;
  for (let r = 0; r < after.regions.length; r++) {
    if (after.regions[r] === null || after.regions[r] === before.regions[r]) continue;
    const old = new Set((before.regions[r] ? await mapEntries(before, r) : []).map((e) => e.id.toString('hex')));
    for (const e of await mapEntries(after, r)) if (!old.has(e.id.toString('hex'))) bytes += e.length;
  }
  return bytes;
}

beforeAll(async () => {
  repo = await Repository.init(new LocalBackend(scratch.path('repo')), Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:256K'), packSize: 16 * MiB, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
  pool = new PipelinePool(repo.keys, repo.settings, 2);
});

afterAll(async () => {
  await pool.close();
});

describe('a nightly backup without change tracking', () => {
  it('reads each allocated byte of the image once, stores the changed chunks as page patches, and restores bit-exact', async () => {
    expect(pool.sealsWhileScanning).toBe(true);
    const image = scratch.path('night.img');
    writeSparseImageWithPieces(image, 96 * MiB, PIECE_AT, PIECE_BYTES, 4100);
    const first = await backupGuest(repo, pool, imageBackupRequest('night', [image], undefined, []));
    rewritePages(image, 4200, 300);
    const allocated = openImageSource(image).dataExtents.reduce((n, e) => n + e.end - e.start, 0);

    const before = bytesRead();
    const second = await nightly(image, 'night', first.restorePoint.disks[0]);
    const read = bytesRead() - before;

    const stats = second.restorePoint.stats;
    // Most chunks changed (of ~128 of 256 KiB), each stored as the pages that differ from its base.
    expect(stats.newBlobs, 'chunks stored').toBeGreaterThan(60);
    expect(stats.newBytes / stats.newBlobs, 'bytes stored per chunk').toBeLessThan(48 * 1024);
    // The image once (widened to 4 KiB blocks), and the changed chunks' bases as stored (compressed:
    // less than the changed chunks). Reading the changed chunks from the image again would add them too.
    const changedBytes = await newChunkBytes(first.restorePoint.disks[0], second.restorePoint.disks[0]);
    expect(changedBytes, 'changed chunks').toBeGreaterThan(allocated / 3);
    expect(read, 'bytes read').toBeGreaterThanOrEqual(allocated);
    expect(read, 'bytes read').toBeLessThan(allocated + changedBytes);

    const out = scratch.path('night-restored');
    await restoreToDirectory(repo, pool, await repo.findRestorePoint(second.id), out);
    expect(await sha256File(path.join(out, 'night.img'))).toBe(await sha256File(image));
  });

  it('stops with the damaged chunk named when a base does not rebuild, and stores no restore point', async () => {
    const image = scratch.path('damaged.img');
    writeSparseImageWithPieces(image, 96 * MiB, PIECE_AT, PIECE_BYTES, 4300);
    const first = await backupGuest(repo, pool, imageBackupRequest('damaged', [image], undefined, []));
    const previous = first.restorePoint.disks[0];
    // Damage a stored chunk of the first piece, then change a page inside it.
    const entries = await mapEntries(previous, 0);
    const hit = entries.find((e) => e.offset >= PIECE_AT[0] + MiB && e.length >= 2 * PAGE)!;
    const target = hit.offset + PAGE;
    const loc = repo.blobLocation(hit.id)!;
    const packId = repo.packIds[loc.pack];
    const fd = fs.openSync(scratch.path('repo', 'data', packId.slice(0, 2), packId), 'r+');
    try {
      const byte = Buffer.alloc(1);
      fs.readSync(fd, byte, 0, 1, loc.offset + 100);
      byte[0] ^= 0xff;
      fs.writeSync(fd, byte, 0, 1, loc.offset + 100);
    } finally {
      fs.closeSync(fd);
    }
    const page = fs.openSync(image, 'r+');
    fs.writeSync(page, Buffer.alloc(PAGE, 0x5a), 0, PAGE, target);
    fs.closeSync(page);
    const pointsBefore = (await repo.listRestorePoints()).length;

    const attempt = nightly(image, 'damaged', previous);
    await expect(attempt).rejects.toThrow(CorruptionError);
    await expect(attempt).rejects.toThrow(new RegExp(`chunk ${hit.id.toString('hex').slice(0, 16)} of the previous restore point .*ferry check --read-data`));
    expect((await repo.listRestorePoints()).length).toBe(pointsBefore);
    // The pool's workers take the next task.
    const again = await backupGuest(repo, pool, imageBackupRequest('after', [image], undefined, []));
    expect(again.restorePoint.stats.newBlobs).toBeGreaterThan(0);
  });
});
