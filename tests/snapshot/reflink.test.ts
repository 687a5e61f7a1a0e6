// The reflink snapshot provider on a real xfs made with reflink=1 (and a real
// ext4, which has no reflink), both loop-mounted: the clone is instant, does
// not follow later writes to the image, and ext4 is refused with a clear error.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { ReflinkSnapshotProvider, ReflinkUnsupportedError } from '../../src/snapshot/reflink';
import { newRunId } from '../../src/snapshot/provider';
import { overwriteRandomPages, sha256File, useScratch, writeRandomishImage } from '../support';
import { mountLoopFileSystem } from '../support/loopFileSystems';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('ReflinkSnapshotProvider', () => {
  const scratch = useScratch('reflink-snapshot');
  let xfs: string;
  let ext4: string;
  const disk = (p: string, device = 'xvda'): GuestDisk => ({ device, path: p, format: 'raw', readOnly: false });

  beforeAll(async () => {
    xfs = await mountLoopFileSystem(scratch, 'xfs', { mkfs: ['mkfs.xfs', '-q', '-m', 'reflink=1'], sizeMiB: 1024 });
    ext4 = await mountLoopFileSystem(scratch, 'ext4', { mkfs: ['mkfs.ext4', '-q'], sizeMiB: 256 });
  });

  it('clones a 100 GiB sparse image on xfs in well under a second, next to it in .ferry', async () => {
    const image = path.join(xfs, 'big.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 100 * GiB);
    const fd = fs.openSync(image, 'r+');
    for (let i = 0; i < 32; i++) fs.writeSync(fd, Buffer.alloc(MiB, i + 1), 0, MiB, i * 3 * GiB);
    fs.closeSync(fd);
    const provider = new ReflinkSnapshotProvider();
    expect(await provider.canHandle(disk(image))).toBe(true);

    const started = performance.now();
    const [clone] = await provider.create([disk(image)], 'r1');
    const ms = performance.now() - started;
    console.log(`reflink: clone of a 100 GiB sparse image with 32 MiB of data took ${ms.toFixed(2)} ms`);

    expect(clone!.readPath).toBe(path.join(xfs, '.ferry', 'ferry-r1-big.img'));
    expect(clone!.ownedName).toBe(clone!.readPath);
    expect(clone!.tracking).toBeUndefined(); // a clone knows nothing about what changed
    expect(fs.statSync(clone!.readPath).size).toBe(100 * GiB);
    expect(fs.statSync(path.join(xfs, '.ferry')).mode & 0o777).toBe(0o700);
    expect(ms).toBeLessThan(500);
    await provider.remove(clone!);
    expect(fs.existsSync(clone!.readPath)).toBe(false);
  });

  it('keeps the image as it was at the clone while the guest writes to the image', async () => {
    const image = path.join(xfs, 'web01.img');
    writeRandomishImage(image, 64 * MiB, 3);
    const before = await sha256File(image);
    const provider = new ReflinkSnapshotProvider();
    const [clone] = await provider.create([disk(image)], 'r2');
    overwriteRandomPages(image, 500, 9);

    expect(await sha256File(image)).not.toBe(before);
    expect(await sha256File(clone!.readPath)).toBe(before);
    await provider.remove(clone!);
    await provider.remove(clone!); // already gone: not an error
  });

  it('refuses ext4: canHandle is false, and create says reflink is unsupported and what to do', async () => {
    const image = path.join(ext4, 'legacy.img');
    fs.writeFileSync(image, Buffer.alloc(MiB, 7));
    const provider = new ReflinkSnapshotProvider();
    expect(await provider.canHandle(disk(image))).toBe(false);

    const attempt = provider.create([disk(image, 'xvdb')], 'r3');
    await expect(attempt).rejects.toThrow(ReflinkUnsupportedError);
    await expect(attempt).rejects.toThrow(
      new RegExp(`cannot reflink disk xvdb \\(${image}\\): its file system does not support cloning \\(\\w+\\); reflink needs xfs made with .*mkfs.xfs -m reflink=1.* or btrfs`),
    );
    expect(fs.readdirSync(path.join(ext4, '.ferry'))).toEqual([]); // nothing half-made is left
    expect(fs.readdirSync(ext4).filter((e) => e.startsWith('.ferry-probe'))).toEqual([]);
  });

  it('is all or nothing: when one disk of a guest cannot be cloned, the clones already made are removed', async () => {
    const good = path.join(xfs, 'app01-a.img');
    const bad = path.join(ext4, 'app01-b.img');
    fs.writeFileSync(good, Buffer.alloc(MiB, 1));
    fs.writeFileSync(bad, Buffer.alloc(MiB, 2));
    await expect(new ReflinkSnapshotProvider().create([disk(good, 'xvda'), disk(bad, 'xvdb')], 'r4')).rejects.toThrow(/disk xvdb/);
    expect(fs.existsSync(path.join(xfs, '.ferry', 'ferry-r4-app01-a.img'))).toBe(false);
  });

  it('removeLeftovers deletes work files of a killed run and nothing else in the image directory', async () => {
    const image = path.join(xfs, 'db01.img');
    fs.writeFileSync(image, Buffer.alloc(MiB, 3));
    const [left] = await new ReflinkSnapshotProvider().create([disk(image)], 'killed'); // the run died here
    // A run that still runs (a single-guest backup beside this one) may be reading its clone now.
    const [live] = await new ReflinkSnapshotProvider().create([disk(image)], newRunId(new Date(), process.pid));
    const adminFile = path.join(xfs, '.ferry', 'notes.txt');
    fs.writeFileSync(adminFile, 'not ferry-named');

    // A new run knows the directory from the guest's disks, or from searchDirs.
    const removed = await new ReflinkSnapshotProvider({ searchDirs: [xfs] }).removeLeftovers();

    expect(removed).toEqual([left!.ownedName]);
    expect(fs.existsSync(live!.ownedName)).toBe(true);
    expect(fs.existsSync(adminFile)).toBe(true);
    expect(fs.existsSync(image)).toBe(true);
  });

  it('refuses to remove a file that is not a ferry work file', async () => {
    const image = path.join(xfs, 'web01.img');
    await expect(new ReflinkSnapshotProvider().remove({ disk: disk(image), readPath: image, ownedName: image }))
      .rejects.toThrow(`refusing to remove ${image}: not a ferry work file`);
    expect(fs.existsSync(image)).toBe(true);
  });
});
