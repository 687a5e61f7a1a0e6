// Changed-block tracking in the engine: given the ranges a snapshot provider
// says changed, a backup reads only those, reuses every untouched region map,
// and still restores the new image bit-exact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { openImageSource } from '../../src/dedupe/imageSource';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { backupGuest, imageBackupRequest } from '../../src/backup/guestBackup';
import { restoreToDirectory } from '../../src/restore/guestRestore';
import { Span } from '../../src/dedupe/spans';
import { useScratch } from '../support/scratch';
import { SeededRandom } from '../support/files';

const MiB = 1024 * 1024;
const SIZE = 100 * MiB; // four regions of 32 MiB, the last one short

const dir = useScratch('changed-blocks').dir;
let repo: Repository;
let pool: PipelinePool;

function noise(seed: number, length: number): Buffer {
  return new SeededRandom(seed).fill(Buffer.alloc(length));
}

function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, data, 0, data.length, offset);
  fs.closeSync(fd);
}

const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

beforeAll(async () => {
  repo = await Repository.init(new LocalBackend(path.join(dir, 'repo')), Buffer.from('pw'), {
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
});
