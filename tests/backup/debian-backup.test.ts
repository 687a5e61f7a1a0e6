// A real Debian system disk, changed the way a running guest changes it
// between two nightly backups, must come back bit-exact, sparse, and
// mountable; and the second night must store only about what changed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  allocatedBytes,
  attachLoop,
  BackupSummary,
  debianImage,
  expectSuccess,
  mustRun,
  overwriteRandomPages,
  pseudoRandomBytes,
  sha256File,
  TestRepo,
  useScratch,
  withLoopMount,
} from '../support';

const scratch = useScratch('debian');
const MiB = 1024 * 1024;
const IMAGE_SIZE = 1024 * MiB;
const DB_SIZE = 50 * MiB;
const DB_PAGES_CHANGED = 48;

let repo: TestRepo;
let image: string;
const night: Array<{ summary: BackupSummary; sha256: string; allocated: number }> = [];

/** Night 1 content: a 50 MB "database" file of random pages next to the OS. */
function addDatabase(root: string): void {
  const dir = path.join(root, 'var/lib/fakedb');
  fs.mkdirSync(dir, { recursive: true });
  const fd = fs.openSync(path.join(dir, 'db.bin'), 'w');
  for (let off = 0, i = 0; off < DB_SIZE; off += MiB, i++) fs.writeSync(fd, pseudoRandomBytes(11, i, MiB), 0, MiB, off);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

/** A day in the life of the guest: logs grow, a package lands, files go, the database takes page writes. */
function liveOneDay(root: string): void {
  const log = path.join(root, 'var/log/syslog');
  let lines = '';
  for (let i = 0; i < 3000; i++) lines += `Nov 27 03:${String(i % 60).padStart(2, '0')} guest app[${i}]: request ${i} served\n`;
  fs.appendFileSync(log, lines);
  fs.appendFileSync(path.join(root, 'var/log/dpkg.log'), '2024-11-27 03:00:00 install fakepkg:amd64 <none> 1.0\n');

  const pkg = path.join(root, 'usr/lib/fakepkg');
  fs.mkdirSync(pkg, { recursive: true });
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(pkg, `lib${i}.so`), pseudoRandomBytes(12, i, 128 * 1024));
  fs.writeFileSync(path.join(root, 'usr/share/doc/fakepkg.README'), 'fake package, installed by the test\n');

  fs.rmSync(path.join(root, 'usr/share/doc/apt'), { recursive: true, force: true });
  fs.rmSync(path.join(root, 'var/cache/debconf/templates.dat-old'), { force: true });

  overwriteRandomPages(path.join(root, 'var/lib/fakedb/db.bin'), DB_PAGES_CHANGED, 99);
}

describe('backing up a real Debian disk image across two nights', () => {
  beforeAll(async () => {
    repo = await TestRepo.init(scratch, 'repo');
    image = await debianImage(scratch.path('debian.img'));
    await withLoopMount(scratch, image, addDatabase);

    for (const change of [null, liveOneDay]) {
      if (change) await withLoopMount(scratch, image, change);
      const sha256 = await sha256File(image);
      const summary = await repo.backup('debian', [image]);
      night.push({ summary, sha256, allocated: allocatedBytes(image) });
    }
  });

  it('reports both backups with the image as one disk of its full size', () => {
    for (const { summary } of night) {
      expect(summary.guest).toBe('debian');
      expect(summary.disks).toHaveLength(1);
      expect(summary.disks[0].size).toBe(IMAGE_SIZE);
      expect(summary.logicalBytes).toBe(IMAGE_SIZE);
    }
    expect(night[0].summary.id).not.toBe(night[1].summary.id);
  });

  it('stores far less on the second night than on the first', () => {
    const [first, second] = night.map((n) => n.summary.newBytes);
    // The first night stores the OS and the random database: tens of MB.
    expect(first).toBeGreaterThan(DB_SIZE / 2);
    // ~1.5 MB of files, 48 scattered 4 KiB pages and file system metadata
    // changed; a quarter of the first night is already generous.
    expect(second).toBeGreaterThan(0);
    expect(second).toBeLessThan(first / 4);
  });

  it('lists both restore points for the guest, oldest first', async () => {
    const points = await repo.list(['--guest', 'debian']);
    expect(points.map((p) => p.id)).toEqual(night.map((n) => n.summary.id));
  });

  it('restores each night bit-exact, sparse, and as a clean ext4 file system', async () => {
    for (const [i, { summary, sha256, allocated }] of night.entries()) {
      const dir = scratch.mkdir(`restore-${i}`);
      expectSuccess(await repo.run(['restore', summary.id, '--to', dir]), `restore of night ${i + 1}`);
      const restored = path.join(dir, 'debian.img');
      expect(fs.statSync(restored).size).toBe(IMAGE_SIZE);
      expect(await sha256File(restored), `night ${i + 1} content`).toBe(sha256);
      // Holes and zero runs are not written: about as much is allocated as in
      // the source (chunk granularity may add a little), far below the size.
      expect(allocatedBytes(restored)).toBeLessThan(Math.max(allocated * 1.5, allocated + 64 * MiB));
      expect(allocatedBytes(restored)).toBeLessThan(IMAGE_SIZE * 0.4);
      await mustRun('fsck.ext4', ['-fn', restored]);
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('restores "latest" for the guest as the second night', async () => {
    const dir = scratch.mkdir('restore-latest');
    expectSuccess(await repo.run(['restore', 'latest', '--guest', 'debian', '--to', dir]));
    expect(await sha256File(path.join(dir, 'debian.img'))).toBe(night[1].sha256);
    fs.rmSync(dir, { recursive: true });
  });

  it('restores a disk onto a block device bit-exact', async () => {
    const backing = scratch.path('device.img');
    fs.writeFileSync(backing, '');
    fs.truncateSync(backing, IMAGE_SIZE);
    const device = await attachLoop(scratch, backing);
    expectSuccess(await repo.run(['restore', night[0].summary.id, '--disk', '0', '--to', device, '--force']));
    expect(await sha256File(device)).toBe(night[0].sha256);
  });

  it('passes a full check that reads every pack back', async () => {
    await repo.expectCheckPasses(true);
  });
});
