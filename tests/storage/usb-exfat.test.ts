// A repository on a real exFAT file system, the way a USB drive is usually
// formatted: mkfs.exfat (exfatprogs) on a sparse file behind a loop device,
// mounted through exfat-fuse (the kernel here has no exfat driver). Through
// the real CLI: init, two backups, check --read-data and bit-exact restores;
// a copy target filled by `ferry sync`; the FAT-family limits the repository
// must keep (no links, files far below 2 GiB, portable lower-case names);
// small packs with --pack-size; and everything still there, and the file
// system clean (fsck.exfat), after an unmount and a fresh mount.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  attachLoop,
  BackupSummary,
  expectSuccess,
  FAST_KDF,
  ferry,
  isMounted,
  mustRun,
  overwriteRandomPages,
  parseJson,
  runCommand,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const scratch = useScratch('usb-exfat');

/** The pack size of the small-pack repository, and the largest chunk the default chunker (fastcdc:256K) cuts. */
const SMALL_PACK = 4 * MiB;
const MAX_CHUNK = 1 * MiB;

let device = '';
let mnt = '';
let local: TestRepo; // on the scratch disk (ext4 or whatever /var/tmp is)
let usb: TestRepo; // <mnt>/ferry, made directly on exFAT
let copy: TestRepo; // <mnt>/copy, made with init --from local and filled by sync
let small: TestRepo; // <mnt>/small, --pack-size 4M

interface Point {
  id: string;
  sha256: string;
  summary: BackupSummary;
}
const usbPoints: Point[] = [];
const localPoints: Point[] = [];

/** Fail with a clear message when a tool this test needs is not installed. */
function requireTool(name: string, pkg: string): void {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  if (!dirs.some((d) => d && fs.existsSync(path.join(d, name)))) {
    throw new Error(`${name} is not installed: apt-get install ${pkg} (it is listed in .ci/packages.txt; run bash scripts/install-test-deps.sh)`);
  }
}

function fsType(mountPoint: string): { source: string; type: string } | undefined {
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [source, dir, type] = line.split(' ');
    if (dir === mountPoint) return { source: source!, type: type! };
  }
  return undefined;
}

async function mountExfat(): Promise<void> {
  await mustRun('mount.exfat-fuse', [device, mnt]);
  const m = fsType(mnt);
  expect(m, `${mnt} should be mounted after mount.exfat-fuse`).toBeDefined();
  expect(m!.type, 'exfat-fuse mounts as a FUSE block file system').toBe('fuseblk');
  expect(m!.source).toBe(device);
}

async function unmountExfat(): Promise<void> {
  if (!isMounted(mnt)) return;
  // A ferry process that just exited can keep the mount busy for a moment.
  for (let attempt = 0; attempt < 30; attempt++) {
    if ((await runCommand('umount', [mnt])).code === 0 && !isMounted(mnt)) return;
    if ((await runCommand('fusermount', ['-u', mnt])).code === 0 && !isMounted(mnt)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  await mustRun('umount', ['-l', mnt]);
}

/** Restore `id` from `repo` into a fresh local directory; returns the sha256 of the restored disk. */
async function restoredSha(repo: TestRepo, id: string, name: string): Promise<string> {
  const out = scratch.path(`restore-${name}-${id.slice(0, 8)}`);
  expectSuccess(await repo.run(['restore', id, '--to', out]), `restore ${id.slice(0, 8)} from ${repo.path}`);
  expect(fs.readdirSync(out)).toContain('vm1.img');
  return sha256File(path.join(out, 'vm1.img'));
}

interface Entry {
  rel: string;
  name: string;
  st: fs.Stats;
}

/** Every entry under `dir`, by lstat (links are not followed). */
function walk(dir: string): Entry[] {
  const out: Entry[] = [];
  const rec = (rel: string) => {
    for (const name of fs.readdirSync(rel ? path.join(dir, rel) : dir).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      out.push({ rel: r, name, st });
      if (st.isDirectory()) rec(r);
    }
  };
  rec('');
  return out;
}

/** The repository layout of docs/FORMAT.md, with every name lower-case hex. */
function expectedName(rel: string, isDir: boolean): RegExp | undefined {
  const parts = rel.split('/');
  if (parts.length === 1) return isDir ? /^(keys|data|index|snapshots|locks|syncs)$/ : /^config$/;
  const [top] = parts;
  if (top === 'data' && parts.length === 2) return isDir ? /^[0-9a-f]{2}$/ : undefined;
  if (top === 'data' && parts.length === 3 && !isDir) return new RegExp(`^${parts[1]}[0-9a-f]{62}$`);
  if (parts.length === 2 && !isDir) {
    if (top === 'keys') return /^[0-9a-f]{16}$/;
    if (top === 'locks') return /^[0-9a-f]{32}$/;
    // syncs/: the record a sync leaves in its target (FORMAT.md).
    if (top === 'index' || top === 'snapshots' || top === 'syncs') return /^[0-9a-f]{64}$/;
  }
  return undefined;
}

function packSizes(repo: TestRepo): number[] {
  return walk(repo.path)
    .filter((e) => e.rel.startsWith('data/') && e.st.isFile())
    .map((e) => e.st.size);
}

beforeAll(async () => {
  requireTool('mkfs.exfat', 'exfatprogs');
  requireTool('fsck.exfat', 'exfatprogs');
  requireTool('mount.exfat-fuse', 'exfat-fuse');
  requireTool('fusermount', 'fuse (a dependency of exfat-fuse)');
  if (!fs.existsSync('/dev/fuse')) throw new Error('/dev/fuse does not exist: exfat-fuse needs the fuse kernel module');

  // The "USB drive": 2 GiB, sparse (only what is written takes space).
  const disk = scratch.path('usb.disk');
  fs.closeSync(fs.openSync(disk, 'w'));
  fs.truncateSync(disk, 2 * GiB);
  device = await attachLoop(scratch, disk); // detached at clean-up, after the unmount below
  await mustRun('mkfs.exfat', ['-L', 'FERRYUSB', device]);
  expect((await mustRun('blkid', ['-o', 'value', '-s', 'TYPE', device])).trim()).toBe('exfat');
  mnt = scratch.mkdir('usb');
  scratch.defer(unmountExfat); // registered after attachLoop, so it runs before the detach
  await mountExfat();

  // A ~100 MiB sparse guest disk: holes, text and random data.
  const image = scratch.path('vm1.img');
  writeRandomishImage(image, 100 * MiB, 4242);

  const passwordFile = scratch.path('password');
  fs.writeFileSync(passwordFile, 'correct horse usb\n', { mode: 0o600 });
  local = new TestRepo(scratch.path('local-repo'), passwordFile);
  usb = new TestRepo(path.join(mnt, 'ferry'), passwordFile);
  copy = local.at(path.join(mnt, 'copy'));
  small = new TestRepo(path.join(mnt, 'small'), passwordFile);
  for (const repo of [local, usb]) {
    expectSuccess(await ferry(['init', '--repo', repo.path, '--password-file', passwordFile, ...FAST_KDF]), `init ${repo.path}`);
  }

  // Two versions of the image, each backed up into both repositories.
  for (let version = 0; version < 2; version++) {
    if (version === 1) overwriteRandomPages(image, 40, 77);
    const sha256 = await sha256File(image);
    for (const [repo, points] of [[usb, usbPoints], [local, localPoints]] as const) {
      const summary = await repo.backup('vm1', [image]);
      points.push({ id: summary.id, sha256, summary });
    }
  }
  expect(usbPoints[0]!.sha256, 'the second version must differ from the first').not.toBe(usbPoints[1]!.sha256);
});

describe('a repository made on exFAT', () => {
  it('stores two backups, the second deduplicated against the first', async () => {
    const [first, second] = usbPoints;
    expect(first!.summary.newBytes).toBeGreaterThan(40 * MiB);
    // 40 changed 4 KiB pages: far less than the first backup stored.
    expect(second!.summary.newBytes).toBeLessThan(first!.summary.newBytes / 4);
    const list = await usb.list();
    expect(list.map((p) => p.id).sort()).toEqual([first!.id, second!.id].sort());
  });

  it('passes check --read-data', async () => {
    await usb.expectCheckPasses(true);
  });

  it('restores both restore points bit-exact to a local directory', async () => {
    for (const p of usbPoints) expect(await restoredSha(usb, p.id, 'usb'), `restore point ${p.id.slice(0, 8)}`).toBe(p.sha256);
  });
});

describe('a copy on exFAT made with init --from and filled by ferry sync', () => {
  it('receives every restore point, passes check --read-data, and a second sync copies nothing', async () => {
    expectSuccess(await ferry(['init', '--from', local.path, '--repo', copy.path]), 'init --from');
    const env = { FERRY_PASSWORD_FILE: local.passwordFile };
    const first = parseJson<{ copied: { objects: number }; restorePoints: number }>(
      await ferry(['sync', local.path, copy.path, '--verify', '--json'], { env }),
    );
    expect(first.copied.objects).toBeGreaterThan(0);
    const again = parseJson<{ copied: { objects: number } }>(await ferry(['sync', local.path, copy.path, '--json'], { env }));
    expect(again.copied.objects, 'everything was already copied').toBe(0);
    expect((await copy.list()).map((p) => p.id).sort()).toEqual(localPoints.map((p) => p.id).sort());
    await copy.expectCheckPasses(true);
  });

  it('restores both restore points bit-exact from the exFAT copy', async () => {
    for (const p of localPoints) expect(await restoredSha(copy, p.id, 'copy'), `restore point ${p.id.slice(0, 8)}`).toBe(p.sha256);
  });
});

describe('small packs on exFAT (init --pack-size 4M)', () => {
  it('writes packs of at most 4 MiB plus one blob, and they check and restore', async () => {
    expectSuccess(
      await ferry(['init', '--repo', small.path, '--password-file', small.passwordFile, '--pack-size', '4M', ...FAST_KDF]),
      'init --pack-size 4M',
    );
    const { id } = await small.backup('vm1', [scratch.path('vm1.img')]);
    const sizes = packSizes(small);
    // ~60 MiB of incompressible data: many packs, none above the target plus
    // the largest sealed chunk (and a few KiB of pack header).
    expect(sizes.length).toBeGreaterThanOrEqual(10);
    const bound = SMALL_PACK + MAX_CHUNK + 64 * 1024;
    for (const s of sizes) expect(s).toBeLessThanOrEqual(bound);
    // Packs are cut at the target: all but the last reach it.
    expect(sizes.filter((s) => s < SMALL_PACK).length).toBeLessThanOrEqual(1);
    await small.expectCheckPasses(true);
    expect(await restoredSha(small, id, 'small')).toBe(usbPoints[1]!.sha256);
  });
});

describe('FAT-family limits of the repository tree on exFAT', () => {
  it('has no symlinks or hard links, no file near 2 GiB, and only portable lower-case names', () => {
    const roots = [usb, copy, small].map((r) => r.path).filter((p) => fs.existsSync(p));
    expect(roots, 'all three exFAT repositories exist').toHaveLength(3);
    for (const root of roots) {
      const entries = walk(root);
      const files = entries.filter((e) => e.st.isFile());
      expect(files.length, root).toBeGreaterThan(3);
      for (const e of entries) {
        const where = `${root}/${e.rel}`;
        expect(e.st.isSymbolicLink(), `${where} must not be a symlink`).toBe(false);
        expect(e.st.isFile() || e.st.isDirectory(), `${where} must be a file or a directory`).toBe(true);
        expect(e.name, `${where}: exFAT/case-insensitive-safe name`).toMatch(/^[0-9a-zA-Z._-]+$/);
        expect(e.rel.includes('.tmp-'), `${where}: no temporary file may be left`).toBe(false);
        const pattern = expectedName(e.rel, e.st.isDirectory());
        expect(pattern, `${where} is not part of the repository layout`).toBeDefined();
        expect(e.name, where).toMatch(pattern!);
        if (e.st.isFile()) {
          expect(e.st.nlink, `${where} must have exactly one link`).toBe(1);
          expect(e.st.size, `${where} must stay far below the 2 GiB FAT limit`).toBeLessThan(1 * GiB);
        }
      }
      // No two names in one directory that a case-insensitive file system would merge.
      const byDir = new Map<string, Set<string>>();
      for (const e of entries) {
        const dir = path.dirname(e.rel);
        const seen = byDir.get(dir) ?? new Set<string>();
        expect(seen.has(e.name.toLowerCase()), `${root}/${e.rel} collides case-insensitively`).toBe(false);
        seen.add(e.name.toLowerCase());
        byDir.set(dir, seen);
      }
      // Hard links across files would also show as one inode named twice.
      const inodes = files.map((f) => `${f.st.dev}:${f.st.ino}`);
      expect(new Set(inodes).size, `${root}: every file its own inode`).toBe(inodes.length);
    }
  });
});

describe('after unmounting the drive', () => {
  it('the exFAT file system is clean, and after a fresh mount every repository still checks and restores', async () => {
    await mustRun('sync', ['-f', mnt]);
    await unmountExfat();
    expect(isMounted(mnt)).toBe(false);
    const fsck = await runCommand('fsck.exfat', ['-n', device]);
    expect(fsck.code, `fsck.exfat -n ${device}:\n${fsck.stdout}${fsck.stderr}`).toBe(0);
    await mountExfat();
    for (const repo of [usb, copy, small]) await repo.expectCheckPasses(true);
    expect(await restoredSha(usb, usbPoints[1]!.id, 'remounted')).toBe(usbPoints[1]!.sha256);
  });
});
