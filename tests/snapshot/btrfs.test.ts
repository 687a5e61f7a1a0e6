// The btrfs snapshot provider on a real btrfs (mkfs.btrfs on a sparse file,
// loop-mounted): read-only snapshots, changed ranges from `btrfs send
// --no-data -p`, the baseline kept between runs, and leftovers. The parser of
// `btrfs receive --dump` output is specified first, on text recorded from
// btrfs-progs 6.2.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { BtrfsSnapshotProvider } from '../../src/snapshot/btrfs';
import { changesFromDump, mergeRanges, parseDumpHeader } from '../../src/snapshot/btrfsDump';
import { parseBtrfsMounts, pathOnMount } from '../../src/snapshot/btrfsMounts';
import { newRunId, parseRunId, type Snapshot } from '../../src/snapshot/provider';
import { spawnSync } from 'node:child_process';
import { mustRun, overwriteRandomPages, sha256File, useScratch, writeRandomishImage } from '../support';
import { mountLoopFileSystem } from '../support/loopFileSystems';

const MiB = 1024 * 1024;
const IMAGE_BYTES = 256 * MiB;
const PAGE = 4096;

// Run ids as ferry makes them. Other test files' `backup --all` sweep every
// btrfs mount on the host, this one's too: a run id naming this (live) process
// keeps a snapshot in use out of their sweeps, as it does for a real run.
let runSeconds = 0;
const liveRun = () => newRunId(new Date(Date.now() + 1000 * runSeconds++), process.pid);
// A run whose process is gone: its snapshots are leftovers to any sweep.
const deadPid = spawnSync('true').pid!;
const deadRun = () => newRunId(new Date(Date.now() + 1000 * runSeconds++), deadPid);
// What a sweep leaves of a dead run's snapshot: nothing. Another test file's
// sweep may have been first, so this one removed it or nothing.
function expectSwept(removed: string[], dead: string): void {
  expect(removed.filter((r) => r !== dead)).toEqual([]);
  expect(fs.existsSync(dead)).toBe(false);
}

// Recorded: a 4 KiB write at 20480, one at 1 MiB (which split a 3 MiB extent:
// the self-clone after it is the untouched rest), 8 KiB at 7 MiB.
const DUMP = [
  'snapshot        ./ferry-b                       uuid=8558a89b-624c-e24a-be43-d70b88c0ed4b transid=8 parent_uuid=857c0913-24e7-104a-84ec-8d45ed9217ef parent_transid=7',
  'update_extent   ./ferry-b/sub\\ dir/disk.img     offset=20480 len=4096',
  'update_extent   ./ferry-b/sub\\ dir/disk.img     offset=1048576 len=4096',
  'clone           ./ferry-b/sub\\ dir/disk.img     offset=1052672 len=2093056 from=./ferry-b/sub dir/disk.img clone_offset=1052672',
  'update_extent   ./ferry-b/sub\\ dir/disk.img     offset=7340032 len=8192',
  'utimes          ./ferry-b/sub\\ dir/disk.img     atime=2026-11-27T01:50:34+0000 mtime=2026-11-27T01:50:35+0000 ctime=2026-11-27T01:50:35+0000',
  'update_extent   ./ferry-b/other.img              offset=0 len=65536',
  'utimes          ./ferry-b/.ferry                 atime=2026-11-27T01:50:34+0000 mtime=2026-11-27T01:50:35+0000 ctime=2026-11-27T01:50:35+0000',
].join('\n');

describe('btrfs receive --dump parsing', () => {
  it('collects the written extents of the image, skipping self-clones, metadata and other files', () => {
    expect(changesFromDump(DUMP, ['sub dir/disk.img'], [64 * MiB])).toEqual([{
      kind: 'ranges',
      ranges: [{ start: 20480, end: 24576 }, { start: 1048576, end: 1052672 }, { start: 7340032, end: 7348224 }],
    }]);
  });

  it('reads the stream header: the new snapshot and the parent it was compared with', () => {
    expect(parseDumpHeader(DUMP)).toEqual({
      subvolume: './ferry-b', uuid: '8558a89b-624c-e24a-be43-d70b88c0ed4b', parentUuid: '857c0913-24e7-104a-84ec-8d45ed9217ef',
    });
  });

  it('unescapes octal UTF-8, backslashes and tabs in paths', () => {
    const dump = 'snapshot ./s uuid=u parent_uuid=p\nupdate_extent   ./s/we\\\\ird\\ttab/a=b\\ \\303\\251.img offset=0 len=8192';
    expect(changesFromDump(dump, ['we\\ird\ttab/a=b é.img'], [8192])).toEqual([{ kind: 'ranges', ranges: [{ start: 0, end: 8192 }] }]);
  });

  it('counts a clone from another file or offset as changed bytes, clipped to the image size', () => {
    const dump = 'snapshot ./s uuid=u parent_uuid=p\nclone ./s/d.img offset=4096 len=8192 from=./s/base.img clone_offset=0';
    expect(changesFromDump(dump, ['d.img'], [10000])).toEqual([{ kind: 'ranges', ranges: [{ start: 4096, end: 10000 }] }]);
  });

  it('gives up on ranges when the image was truncated, renamed over, or unlinked', () => {
    const head = 'snapshot ./s uuid=u parent_uuid=p\n';
    const [truncated] = changesFromDump(`${head}truncate ./s/d.img size=100`, ['d.img'], [100]);
    const [renamed] = changesFromDump(`${head}mkfile ./s/o261-9-0\nrename ./s/o261-9-0 dest=./s/d.img`, ['d.img'], [100]);
    const [unlinked] = changesFromDump(`${head}unlink ./s/d.img`, ['d.img'], [100]);
    expect(truncated).toMatchObject({ kind: 'full', reason: expect.stringContaining('truncated or extended (size=100)') });
    expect(renamed).toMatchObject({ kind: 'full', reason: expect.stringContaining("'rename'") });
    expect(unlinked).toMatchObject({ kind: 'full', reason: expect.stringContaining("'unlink'") });
  });

  it('merges overlapping and touching ranges', () => {
    expect(mergeRanges([{ start: 10, end: 20 }, { start: 0, end: 5 }, { start: 20, end: 30 }, { start: 25, end: 26 }]))
      .toEqual([{ start: 0, end: 5 }, { start: 10, end: 30 }]);
  });

  it('maps a subvolume path from `btrfs subvolume list` onto the mount that reaches it', () => {
    const mounts = parseBtrfsMounts([
      '36 25 0:41 / /srv/pool rw,relatime shared:1 - btrfs /dev/loop0 rw,subvolid=5,subvol=/',
      '37 25 0:42 /vms /var/lib/my\\040vms rw,relatime - btrfs /dev/loop0 rw,subvolid=256,subvol=/vms',
      '38 25 8:1 / /boot rw - ext4 /dev/sda1 rw',
    ].join('\n'));
    expect(mounts).toEqual([
      { source: '/dev/loop0', root: '/', mountPoint: '/srv/pool' },
      { source: '/dev/loop0', root: '/vms', mountPoint: '/var/lib/my vms' },
    ]);
    expect(pathOnMount('vms/.ferry/ferry-r1-abc', mounts[0]!)).toBe('/srv/pool/vms/.ferry/ferry-r1-abc');
    expect(pathOnMount('vms/.ferry/ferry-r1-abc', mounts[1]!)).toBe('/var/lib/my vms/.ferry/ferry-r1-abc');
    expect(pathOnMount('other/.ferry/ferry-r1-abc', mounts[1]!)).toBeUndefined();
  });
});

describe('BtrfsSnapshotProvider on a real btrfs', () => {
  const scratch = useScratch('btrfs-snapshot');
  let mnt: string;
  let vms: string;
  let image: string;
  let provider: BtrfsSnapshotProvider;
  const disk = (p: string, device = 'xvda'): GuestDisk => ({ device, path: p, format: 'raw', readOnly: false });
  const ferryEntries = () => fs.readdirSync(path.join(vms, '.ferry')).sort();

  beforeAll(async () => {
    mnt = await mountLoopFileSystem(scratch, 'btrfs', { mkfs: ['mkfs.btrfs', '-q'], sizeMiB: 1536 });
    vms = path.join(mnt, 'vms');
    await mustRun('btrfs', ['subvolume', 'create', vms]);
    image = path.join(vms, 'web01.img');
    writeRandomishImage(image, IMAGE_BYTES, 42, { holes: 0.2, text: 0.2 });
    provider = new BtrfsSnapshotProvider({ runner: new ExecFileCommandRunner(), searchRoots: [mnt] });
  });

  it('handles image files in a btrfs subvolume, and nothing on other file systems', async () => {
    const onExt4 = scratch.path('ext4.img');
    fs.writeFileSync(onExt4, 'x');
    expect(await provider.canHandle(disk(image))).toBe(true);
    expect(await provider.canHandle(disk(onExt4))).toBe(false);
    expect(await provider.canHandle(disk(path.join(vms, 'missing.img')))).toBe(false);
  });

  it('refuses a disk that is not on btrfs, naming the disk and what to do', async () => {
    const onExt4 = scratch.path('ext4.img');
    fs.writeFileSync(onExt4, 'x');
    await expect(provider.create([disk(onExt4, 'xvdb')], 'r0'))
      .rejects.toThrow(`cannot take a btrfs snapshot of disk xvdb: ${onExt4} is not on a btrfs file system; choose another snapshot provider`);
  });

  describe('a nightly cycle: snapshot, commit, change 2%, snapshot again', () => {
    let first: Snapshot;
    let second: Snapshot;
    const night1 = liveRun();

    it('first run: a read-only snapshot in .ferry holding the image as it was, with a tracking token but no baseline', async () => {
      const started = performance.now();
      [first] = await provider.create([disk(image)], night1);
      const ms = performance.now() - started;
      console.log(`btrfs: snapshot of a subvolume with a 256 MiB image took ${ms.toFixed(1)} ms`);

      expect(first!.readPath).toBe(path.join(first!.ownedName, 'web01.img'));
      expect(path.dirname(first!.ownedName)).toBe(path.join(vms, '.ferry'));
      expect(path.basename(first!.ownedName)).toMatch(new RegExp(`^ferry-${night1}-[0-9a-f]{12}$`));
      expect(await sha256File(first!.readPath)).toBe(await sha256File(image));
      expect(() => fs.writeFileSync(first!.readPath, 'x')).toThrow(/EROFS|read-only/);
      expect(first!.tracking?.kind).toBe('btrfs');
      expect(first!.changed).toBeUndefined();
      expect(first!.fullReadReason).toBeUndefined();
    });

    it('after commit, remove() keeps the snapshot as the next baseline', async () => {
      await provider.commit([first]);
      await provider.remove(first);
      expect(fs.existsSync(first.ownedName)).toBe(true);
      const key = first.ownedName.split('-').at(-1);
      expect(fs.readlinkSync(path.join(vms, '.ferry', `${key}.baseline`))).toBe(path.basename(first.ownedName));
    });

    it('second run: `changed` covers every byte written since, and little more', async () => {
      const pages = Math.round((IMAGE_BYTES / PAGE) * 0.02); // 2% of the image, scattered 4 KiB writes
      const offsets = overwriteRandomPages(image, pages, 7);
      const realChange = new Set(offsets).size * PAGE;

      // As an orchestrator keeping the pause short does it: snapshot while the
      // guest is held, compare with the baseline after it is released.
      const started = performance.now();
      [second] = await provider.create([disk(image)], liveRun());
      const snapshotMs = performance.now() - started;
      await provider.findChanges([second!], [first.tracking]);
      const trackingMs = performance.now() - started - snapshotMs;

      expect(second!.fullReadReason).toBeUndefined();
      const changed = second!.changed!;
      expect(changed).toBeDefined();
      const changedBytes = changed.reduce((n, r) => n + r.end - r.start, 0);
      console.log(`btrfs: snapshot ${snapshotMs.toFixed(1)} ms, send --no-data comparison ${trackingMs.toFixed(1)} ms; changed ranges ${changedBytes} B ` +
        `(${changed.length} ranges) for ${realChange} B really written (${((changedBytes / IMAGE_BYTES) * 100).toFixed(2)}% of the image)`);

      for (const off of offsets) {
        expect(changed.some((r) => r.start <= off && off + PAGE <= r.end), `page at ${off} is covered`).toBe(true);
      }
      // Applying only the changed ranges of the new snapshot to the old image gives the new image.
      const rebuilt = scratch.path('rebuilt.img');
      fs.copyFileSync(first.readPath, rebuilt);
      const src = fs.openSync(second!.readPath, 'r');
      const dst = fs.openSync(rebuilt, 'r+');
      const buf = Buffer.alloc(MiB);
      for (const r of changed) {
        for (let off = r.start; off < r.end; off += buf.length) {
          const n = fs.readSync(src, buf, 0, Math.min(buf.length, r.end - off), off);
          fs.writeSync(dst, buf, 0, n, off);
        }
      }
      fs.closeSync(src);
      fs.closeSync(dst);
      expect(await sha256File(rebuilt)).toBe(await sha256File(second!.readPath));
      expect(await sha256File(second!.readPath)).toBe(await sha256File(image));
      expect(changedBytes).toBeGreaterThanOrEqual(realChange);
      expect(changedBytes).toBeLessThan(IMAGE_BYTES * 0.1);
    });

    it('commit replaces the baseline: the old snapshot is deleted, the new one kept through remove()', async () => {
      await provider.commit([second]);
      await provider.remove(second);
      expect(fs.existsSync(first.ownedName)).toBe(false);
      expect(fs.existsSync(second.ownedName)).toBe(true);
    });

    it('a failed backup (no commit): remove() deletes the new snapshot and the baseline stays', async () => {
      // `since` passed to create() compares right away, as providers without findChanges do.
      const [third] = await provider.create([disk(image)], liveRun(), [second.tracking]);
      expect(third!.changed).toEqual([]); // nothing written since night2
      await provider.remove(third!);
      expect(fs.existsSync(third!.ownedName)).toBe(false);
      expect(fs.existsSync(second.ownedName)).toBe(true);
    });

    it('a resized image is read in full, and says why', async () => {
      const grown = path.join(vms, 'grown.img');
      fs.writeFileSync(grown, Buffer.alloc(MiB, 1));
      const [before] = await provider.create([disk(grown, 'xvdg')], liveRun());
      await provider.commit([before!]);
      fs.truncateSync(grown, 2 * MiB);
      const [after] = await provider.create([disk(grown, 'xvdg')], liveRun(), [before!.tracking]);
      expect(after!.changed).toBeUndefined();
      expect(after!.fullReadReason).toMatch(/changed size from 1048576 to 2097152 bytes/);
      await provider.commit([after!]);
      expect(fs.existsSync(before!.ownedName)).toBe(false);
    });

    it('tracking lost: with the baseline deleted by hand, the next run reads everything and says why', async () => {
      await mustRun('btrfs', ['subvolume', 'delete', second.ownedName]);
      const [next] = await provider.create([disk(image)], liveRun(), [second.tracking]);
      expect(next!.changed).toBeUndefined();
      expect(next!.fullReadReason).toMatch(/snapshot .* is gone .*tracking lost/);
      await provider.commit([next!]);
      await provider.remove(next!);
      expect(fs.existsSync(next!.ownedName)).toBe(true);
    });
  });

  it('snapshots the disks of one guest in one subvolume together, and each other subvolume once', async () => {
    const other = path.join(mnt, 'data');
    await mustRun('btrfs', ['subvolume', 'create', other]);
    const a = path.join(vms, 'app01-a.img');
    const b = path.join(vms, 'app01-b.img');
    const c = path.join(other, 'app01-c.img');
    for (const p of [a, b, c]) fs.writeFileSync(p, Buffer.alloc(64 * 1024, p.length));
    const multi = liveRun();
    const snaps = await provider.create([disk(a, 'xvda'), disk(c, 'xvdc'), disk(b, 'xvdb')], multi);
    expect(snaps.map((s) => s.disk.device)).toEqual(['xvda', 'xvdc', 'xvdb']);
    expect(snaps[0]!.ownedName).toBe(snaps[2]!.ownedName);
    expect(snaps[1]!.ownedName.startsWith(path.join(other, '.ferry', `ferry-${multi}-`))).toBe(true);
    expect(snaps[2]!.readPath).toBe(path.join(snaps[0]!.ownedName, 'app01-b.img'));
    for (const s of snaps) await provider.remove(s); // the shared one is gone after the first: not an error
    expect(snaps.every((s) => !fs.existsSync(s.ownedName))).toBe(true);
  });

  it('removeLeftovers deletes a killed run\'s snapshots and keeps baselines and snapshots ferry did not make', async () => {
    const baselinesBefore = ferryEntries().filter((e) => e.endsWith('.baseline'));
    const [killed] = await provider.create([disk(image)], deadRun()); // never removed: the run died
    const admins = path.join(mnt, 'ferry-admin-snapshot'); // ferry-named, but not in a .ferry directory
    await mustRun('btrfs', ['subvolume', 'snapshot', '-r', vms, admins]);
    const baselineTargets = baselinesBefore.map((l) => path.join(vms, '.ferry', fs.readlinkSync(path.join(vms, '.ferry', l))));

    const removed = await provider.removeLeftovers();

    expectSwept(removed, killed!.ownedName);
    expect(fs.existsSync(admins)).toBe(true);
    expect(baselineTargets.length).toBeGreaterThan(0);
    for (const t of baselineTargets) expect(fs.existsSync(t)).toBe(true);
  });

  it('removeLeftovers keeps the snapshots of a run that still runs on this host (one with another run directory), and removes a dead run\'s', async () => {
    expect(parseRunId(newRunId(new Date('2026-12-03T02:00:00Z'), 0x4d2))?.pid).toBe(0x4d2);
    const [live] = await provider.create([disk(image)], liveRun());
    const [dead] = await provider.create([disk(image)], deadRun());
    try {
      expectSwept(await provider.removeLeftovers(), dead!.ownedName);
      expect(fs.existsSync(live!.ownedName)).toBe(true);
    } finally {
      await provider.remove(live!);
    }
    expect(fs.existsSync(live!.ownedName)).toBe(false);
  });

  it('removeLeftovers finds snapshots through a mount of the subvolume itself (subvol=vms)', async () => {
    const device = (await mustRun('findmnt', ['-n', '-o', 'SOURCE', mnt])).trim();
    const vmsMount = scratch.mkdir('vms-mnt');
    await mustRun('mount', ['-o', 'subvol=vms', device, vmsMount]);
    try {
      const onVmsMount = new BtrfsSnapshotProvider({ runner: new ExecFileCommandRunner(), searchRoots: [vmsMount] });
      const killed2 = deadRun();
      const [killed] = await onVmsMount.create([disk(path.join(vmsMount, 'web01.img'))], killed2);
      expect(killed!.ownedName.startsWith(path.join(vmsMount, '.ferry', `ferry-${killed2}-`))).toBe(true);
      expectSwept(await onVmsMount.removeLeftovers(), killed!.ownedName);
    } finally {
      await mustRun('umount', [vmsMount]);
    }
  });

  it('refuses to remove a path that is not a ferry snapshot', async () => {
    await expect(provider.remove({ disk: disk(image), readPath: image, ownedName: vms }))
      .rejects.toThrow(`refusing to touch ${vms}: not a ferry btrfs snapshot`);
    expect(fs.existsSync(image)).toBe(true);
  });
});
