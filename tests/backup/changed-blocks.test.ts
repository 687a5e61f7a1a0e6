// Changed-block tracking in the engine: given the ranges a snapshot provider
// says changed, a backup reads only those, reuses every untouched region map,
// and still restores the new image bit-exact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { LocalBackend } from '../../src/storage/local';
import { ObjectType } from '../../src/storage/backend';
import { Repository } from '../../src/repo/repository';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { openImageSource } from '../../src/dedupe/imageSource';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { backupGuest, imageBackupRequest } from '../../src/backup/guestBackup';
import { restoreToDirectory } from '../../src/restore/guestRestore';
import { Span } from '../../src/dedupe/spans';
import { useScratch } from '../support/scratch';
import { SeededRandom } from '../support/files';
import { decodeRegionMap } from '../../src/repo/regionMap';
import { CorruptionError } from '../../src/errors';
import { BlobType, blobType } from '../../src/crypto/blobCodec';

const MiB = 1024 * 1024;
const SIZE = 100 * MiB; // four regions of 32 MiB, the last one short

const dir = useScratch('changed-blocks').dir;
let repo: Repository;
let pool: PipelinePool;

/** Counts the bytes read from packs: what a backup fetched of the previous restore point's chunks. */
class CountingBackend extends LocalBackend {
  packBytesRead = 0;
  override readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    if (type === 'data') this.packBytesRead += length;
    return super.readRange(type, name, offset, length, into);
  }
}
let backend: CountingBackend;

function noise(seed: number, length: number): Buffer {
  return new SeededRandom(seed).fill(Buffer.alloc(length));
}

function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, data, 0, data.length, offset);
  fs.closeSync(fd);
}

/** Bytes of every file under the repository. */
async function repositoryBytes(): Promise<number> {
  let total = 0;
  for (const e of await fs.promises.readdir(path.join(dir, 'repo'), { recursive: true, withFileTypes: true })) {
    if (e.isFile()) total += (await fs.promises.stat(path.join(e.parentPath ?? e.path, e.name))).size;
  }
  return total;
}

const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

beforeAll(async () => {
  backend = new CountingBackend(path.join(dir, 'repo'));
  repo = await Repository.init(backend, Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:64K'), packSize: 4 * MiB, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
  pool = new PipelinePool(repo.keys, repo.settings, 2);
});

afterAll(async () => {
  await pool?.close();
});

describe('a backup with changed ranges', () => {
  it('reads only the changed ranges, keeps untouched regions, and restores bit-exact', async () => {
    const image = path.join(dir, 'disk.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, SIZE);
    for (let r = 0; r < 4; r++) writeAt(image, r * 32 * MiB + MiB, noise(r, 2 * MiB));
    const first = await backupGuest(repo, pool, imageBackupRequest('g', [image], undefined, []));
    const previous = first.restorePoint.disks[0];

    // Night two: scattered page writes in regions 1 and 2, zeros over data, data into a hole.
    const changed: Span[] = [];
    const change = (offset: number, data: Buffer) => {
      writeAt(image, offset, data);
      changed.push({ start: offset, end: offset + data.length });
    };
    for (let p = 0; p < 40; p++) change(32 * MiB + MiB + p * 97 * 4096, noise(100 + p, 4096));
    change(64 * MiB + 2 * MiB, Buffer.alloc(256 * 1024)); // zeroed data
    change(64 * MiB + 20 * MiB, noise(999, 8192)); // data where there was a hole
    changed.sort((a, b) => a.start - b.start);

    // The provider's view holds only the changed bytes (like a QEMU incremental target).
    const view = path.join(dir, 'incremental.raw');
    fs.writeFileSync(view, '');
    fs.truncateSync(view, SIZE);
    const fd = fs.openSync(image, 'r');
    for (const c of changed) {
      const buf = Buffer.alloc(c.end - c.start);
      fs.readSync(fd, buf, 0, buf.length, c.start);
      writeAt(view, c.start, buf);
    }
    fs.closeSync(fd);

    const second = await backupGuest(repo, pool, {
      guest: 'g',
      tags: [],
      disks: [{ source: openImageSource(view), name: 'disk.img', base: { previous, changed } }],
    });
    const disk = second.restorePoint.disks[0];
    expect(disk.readBytes).toBe(changed.reduce((n, c) => n + c.end - c.start, 0));
    expect(disk.regions[0]).toBe(previous.regions[0]);
    expect(disk.regions[3]).toBe(previous.regions[3]);
    expect(disk.regions[1]).not.toBe(previous.regions[1]);

    const out = path.join(dir, 'restored');
    const rp = await repo.findRestorePoint(second.id);
    await restoreToDirectory(repo, pool, rp, out);
    expect(sha(path.join(out, 'disk.img'))).toBe(sha(image));
    expect(disk.dataBytes).toBe(
      (await restoreToDirectory(repo, pool, rp, path.join(dir, 'again')))[0].writtenBytes,
    );
  });

  it('with a snapshot of the whole disk, reads the touched chunks from it, not from the repository, and patches the touched pages', async () => {
    const image = path.join(dir, 'whole.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 64 * MiB);
    writeAt(image, MiB, noise(20, 8 * MiB));
    writeAt(image, 40 * MiB, noise(21, 4 * MiB));
    const first = await backupGuest(repo, pool, imageBackupRequest('w', [image], undefined, []));
    const previous = first.restorePoint.disks[0];

    // 30 scattered pages in region 0, one of them written with the bytes it had (tracking reports writes, not differences).
    const changed: Span[] = [];
    for (let p = 0; p < 30; p++) {
      const at = MiB + p * 61 * 4096;
      writeAt(image, at, p === 7 ? fs.readFileSync(image).subarray(at, at + 4096) : noise(200 + p, 4096));
      changed.push({ start: at, end: at + 4096 });
    }
    const oldEntries = decodeRegionMap(await repo.readBlobPlaintext(Buffer.from(previous.regions[0]!, 'hex')), previous.regionSize)!;
    const touched = oldEntries.filter((e) => changed.some((c) => c.start < e.offset + e.length && e.offset < c.end));
    const readBefore = backend.packBytesRead;
    const bytesBefore = await repositoryBytes();

    const second = await backupGuest(repo, pool, {
      guest: 'w',
      tags: [],
      disks: [{ source: openImageSource(image), name: 'whole.img', base: { previous, changed, wholeDisk: true } }],
    });
    const disk = second.restorePoint.disks[0];
    // Every touched chunk whole (the pages lie inside them), from the image; of the repository only region 0's map.
    expect(disk.readBytes).toBe(touched.reduce((n, e) => n + e.length, 0));
    expect(backend.packBytesRead - readBefore).toBeLessThan(16 * 1024);
    expect(disk.regions[1]).toBe(previous.regions[1]);
    // Each chunk a page changed is stored as a page patch: the one or two chunk pages the 4 KiB write
    // straddles (chunks do not start on page boundaries), not the chunk (~64 KiB). The page rewritten
    // as it was leaves its chunk as it was.
    const newEntries = decodeRegionMap(await repo.readBlobPlaintext(Buffer.from(disk.regions[0]!, 'hex')), previous.regionSize)!;
    const fresh = newEntries.filter((e) => !oldEntries.some((o) => o.id.equals(e.id)));
    expect(fresh.length).toBeGreaterThanOrEqual(29);
    expect(fresh.length).toBeLessThan(touched.length);
    for (const e of fresh) {
      const loc = repo.blobLocation(e.id)!;
      expect(blobType(loc.typeFlags)).toBe(BlobType.Patch);
      expect(loc.storedLength).toBeLessThanOrEqual(2 * 4096 + 200);
    }
    expect(await repositoryBytes() - bytesBefore).toBeLessThan(30 * 2 * 4096 + 64 * 1024);

    const out = path.join(dir, 'whole-out');
    await restoreToDirectory(repo, pool, await repo.findRestorePoint(second.id), out);
    expect(sha(path.join(out, 'whole.img'))).toBe(sha(image));

    // The same change from a snapshot of only the changed ranges rebuilds the touched chunks from the repository.
    const readBeforeRebuild = backend.packBytesRead;
    await backupGuest(repo, pool, {
      guest: 'w',
      tags: [],
      disks: [{ source: openImageSource(image), name: 'whole.img', base: { previous, changed } }],
    });
    expect(backend.packBytesRead - readBeforeRebuild).toBeGreaterThan(touched.length * 32 * 1024);
  });

  it('reads everything when the disk size changed since the base', async () => {
    const image = path.join(dir, 'grown.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 40 * MiB);
    writeAt(image, 0, noise(5, MiB));
    const first = await backupGuest(repo, pool, imageBackupRequest('h', [image], undefined, []));
    fs.truncateSync(image, 72 * MiB);
    writeAt(image, 70 * MiB, noise(6, MiB));
    const second = await backupGuest(repo, pool, {
      guest: 'h',
      tags: [],
      disks: [{ source: openImageSource(image), name: 'grown.img', base: { previous: first.restorePoint.disks[0], changed: [] } }],
    });
    expect(second.restorePoint.disks[0].readBytes).toBe(2 * MiB);
    const out = path.join(dir, 'grown-out');
    await restoreToDirectory(repo, pool, await repo.findRestorePoint(second.id), out);
    expect(sha(path.join(out, 'grown.img'))).toBe(sha(image));
  });

  it('stops with the damaged chunk named when an old chunk a change touched does not rebuild, and stores no restore point', async () => {
    const image = path.join(dir, 'damaged.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 32 * MiB);
    writeAt(image, 0, noise(7, 4 * MiB));
    const first = await backupGuest(repo, pool, imageBackupRequest('d', [image], undefined, []));
    const previous = first.restorePoint.disks[0];
    // Damage the stored chunk that covers byte 1 MiB, then change a page inside it.
    const entries = decodeRegionMap(await repo.readBlobPlaintext(Buffer.from(previous.regions[0]!, 'hex')), previous.regionSize)!;
    const hit = entries.find((e) => e.offset <= MiB && MiB < e.offset + e.length)!;
    const loc = repo.blobLocation(hit.id)!;
    const packId = repo.packIds[loc.pack];
    const packFile = path.join(dir, 'repo', 'data', packId.slice(0, 2), packId);
    const fd = fs.openSync(packFile, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, loc.offset + 100);
    byte[0] ^= 0xff;
    fs.writeSync(fd, byte, 0, 1, loc.offset + 100);
    fs.closeSync(fd);
    writeAt(image, MiB, noise(8, 4096));
    const pointsBefore = (await repo.listRestorePoints()).length;

    const attempt = backupGuest(repo, pool, {
      guest: 'd',
      tags: [],
      disks: [{ source: openImageSource(image), name: 'damaged.img', base: { previous, changed: [{ start: MiB, end: MiB + 4096 }] } }],
    });
    await expect(attempt).rejects.toThrow(CorruptionError);
    await expect(attempt).rejects.toThrow(new RegExp(`chunk ${hit.id.toString('hex').slice(0, 16)} of the previous restore point .*ferry check --read-data`));
    expect((await repo.listRestorePoints()).length).toBe(pointsBefore);
  });
});
