// SnapshotProvider for image files on btrfs, with changed-block tracking.
//
// Layout. A guest's disks that live in one subvolume SUBVOL share one
// read-only snapshot, `SUBVOL/.ferry/ferry-<runId>-<key>`, where <key> is a
// hash of the disks' paths inside SUBVOL (so two guests in one subvolume get
// different snapshots, and the same guest gets the same key every night).
// Inside the subvolume rather than beside it because the subvolume root is
// the one place known to be on the same file system, writable, and reachable
// through the same mount; `.ferry` is mode 0700. A snapshot of SUBVOL does
// not descend into nested subvolumes, so older ferry snapshots appear in a
// new one as empty directories and cost nothing.
//
// Tracking. Each snapshot's tracking token names it (path and UUID). The
// snapshot of the last successful backup is kept as the *baseline*; the next
// run asks `btrfs send --no-data -p BASELINE NEW | btrfs receive --dump`
// which extents of the image differ (see btrfsDump.ts). Cost grows with the
// change, not the image size: send only walks tree nodes newer than the
// baseline. Anything doubtful (baseline gone or replaced, image replaced,
// resized, hard-linked, send failing) gives a full read with the reason.
//
// Baseline life cycle, made explicit so a failed backup never loses tracking:
//   create()  → new snapshot, not yet a baseline
//   commit()  → after the restore point is saved: `.ferry/<key>.baseline`
//               (a symlink) is switched atomically to the new snapshot, and
//               the baseline it replaces is deleted
//   remove()  → deletes a snapshot unless it is the current baseline
// Without commit() (backup failed) remove() deletes the new snapshot and the
// old baseline stays the next run's reference. removeLeftovers() deletes
// every ferry snapshot (`.ferry/ferry-*`) that no baseline link points to.
// It assumes no other ferry backs up on this host at the same time (the same
// assumption the LVM provider makes). A guest deleted for good keeps its
// baseline until `.ferry/<key>.baseline` and its snapshot are deleted by hand.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HypervisorError, UsageError } from '../errors';
import { type CommandRunner, lastErrorLine, runChecked } from '../hypervisor/commandRunner';
import type { GuestDisk } from '../hypervisor/driver';
import { changesFromDump, parseDumpHeader } from './btrfsDump';
import { SUBVOLUME_ROOT_INODE, type BtrfsLocation, locateOnBtrfs, parseBtrfsMounts, pathOnMount } from './btrfsMounts';
import { checkRunId, ownedByLiveRun, type ChangeTracking, type Snapshot, type SnapshotProvider } from './provider';
import { LeftoverSweep } from './providerParts';

export const BTRFS_SNAPSHOT_DIR = '.ferry';
export const BTRFS_SNAPSHOT_PREFIX = 'ferry-';
export const BTRFS_BASELINE_SUFFIX = '.baseline';
const MAX_NAME = 255; // btrfs file name limit
const KEY_HEX_CHARS = 12;

export interface BtrfsSnapshotOptions {
  runner: CommandRunner;
  /**
   * removeLeftovers() only looks at snapshots under these directories.
   * Default `/`: every btrfs file system mounted on the host.
   */
  searchRoots?: readonly string[];
  /** Where the send stream is spooled (metadata only, small). Default os.tmpdir(). */
  tmpDir?: string;
}

/** What a btrfs tracking token holds (JSON in ChangeTracking.token). */
export interface BtrfsTrackingToken {
  v: 1;
  /** Absolute path of the read-only snapshot. */
  snapshot: string;
  /** Its UUID: a snapshot deleted and re-created under the same name is not the baseline. */
  uuid: string;
}

interface Group {
  subvolume: string;
  snapshotPath: string;
  /** Indexes into the disks passed to create(). */
  members: number[];
}

export class BtrfsSnapshotProvider implements SnapshotProvider {
  readonly kind = 'btrfs';
  private readonly runner: CommandRunner;
  private readonly searchRoots: readonly string[];
  private readonly tmpDir: string;
  /** Snapshot path → baselines named by `since` when it was made: commit() deletes them. */
  private readonly replaces = new Map<string, Set<string>>();

  constructor(options: BtrfsSnapshotOptions) {
    this.runner = options.runner;
    this.searchRoots = (options.searchRoots ?? ['/']).map((r) => path.resolve(r));
    this.tmpDir = options.tmpDir ?? os.tmpdir();
  }

  async canHandle(disk: GuestDisk): Promise<boolean> {
    return !('problem' in locateOnBtrfs(disk.path));
  }

  async create(disks: GuestDisk[], runId: string, since?: (ChangeTracking | undefined)[]): Promise<Snapshot[]> {
    checkRunId(runId, 'a btrfs snapshot name');
    const locations = disks.map((disk) => {
      const loc = locateOnBtrfs(disk.path);
      if ('problem' in loc) {
        throw new HypervisorError(`cannot take a btrfs snapshot of disk ${disk.device}: ${loc.problem}; choose another snapshot provider`);
      }
      return loc;
    });
    const groups = planGroups(locations, runId);

    const made: string[] = [];
    try {
      for (const g of groups) {
        fs.mkdirSync(path.dirname(g.snapshotPath), { recursive: true, mode: 0o700 });
        await runChecked(this.runner, 'btrfs', ['subvolume', 'snapshot', '-r', g.subvolume, g.snapshotPath]);
        made.push(g.snapshotPath);
      }
      // Every disk is frozen in a snapshot now; what follows only reads them.
      const snapshots: Snapshot[] = new Array<Snapshot>(disks.length);
      for (const g of groups) {
        const uuid = await this.uuidOf(g.snapshotPath);
        const tracking: ChangeTracking = {
          kind: this.kind,
          token: JSON.stringify({ v: 1, snapshot: g.snapshotPath, uuid } satisfies BtrfsTrackingToken),
        };
        for (const i of g.members) {
          snapshots[i] = {
            disk: disks[i]!,
            readPath: path.join(g.snapshotPath, locations[i]!.relativePath),
            ownedName: g.snapshotPath,
            tracking,
            wholeDisk: true,
          };
        }
      }
      if (since) await this.findChanges(snapshots, since);
      return snapshots;
    } catch (err) {
      // All or nothing: a guest whose disks are only partly snapshotted is not a consistent backup.
      for (const p of made.reverse()) await this.deleteSubvolume(p).catch(() => undefined);
      throw err;
    }
  }

  async commit(snapshots: Snapshot[]): Promise<void> {
    for (const snapshotPath of new Set(snapshots.map((s) => s.ownedName))) {
      const { dir, name } = checkOwned(snapshotPath);
      const key = name.slice(name.lastIndexOf('-') + 1);
      const link = path.join(dir, `${key}${BTRFS_BASELINE_SUFFIX}`);
      const tmp = `${link}.tmp-${process.pid}`;
      fs.rmSync(tmp, { force: true });
      fs.symlinkSync(name, tmp);
      fs.renameSync(tmp, link); // atomic switch: the link names the old or the new baseline, never neither
      fsyncDir(dir);

      // The replaced baseline(s): those `since` named, and any older snapshot of the same key.
      const old = new Set(this.replaces.get(snapshotPath) ?? []);
      for (const entry of fs.readdirSync(dir)) {
        if (entry.startsWith(BTRFS_SNAPSHOT_PREFIX) && entry.endsWith(`-${key}`)) old.add(path.join(dir, entry));
      }
      old.delete(snapshotPath);
      for (const p of old) {
        // A failure here is not the backup's: p is no baseline any more, so the next removeLeftovers() retries.
        if (isOwnedPath(p) && !this.isBaseline(p)) await this.deleteSubvolume(p).catch(() => undefined);
      }
      this.replaces.delete(snapshotPath);
    }
  }

  async remove(snapshot: Snapshot): Promise<void> {
    checkOwned(snapshot.ownedName);
    if (this.isBaseline(snapshot.ownedName)) return; // kept for the next run's comparison
    await this.deleteSubvolume(snapshot.ownedName);
    this.replaces.delete(snapshot.ownedName);
  }

  async removeLeftovers(): Promise<string[]> {
    const sweep = new LeftoverSweep('leftover btrfs snapshot(s)');
    for (const p of await this.findOwnedSnapshots()) {
      // The search covers every btrfs mount, so another run's live snapshots are in it too.
      if (this.isBaseline(p) || ownedByLiveRun(path.basename(p), BTRFS_SNAPSHOT_PREFIX)) continue;
      await sweep.remove(p, () => this.deleteSubvolume(p));
    }
    return sweep.done();
  }

  /** Every `.ferry/ferry-*` snapshot on the btrfs mounts under the search roots, by absolute path. */
  private async findOwnedSnapshots(): Promise<string[]> {
    const within = (p: string, root: string) => p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);
    const mounts = parseBtrfsMounts(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) =>
      this.searchRoots.some((r) => within(m.mountPoint, r) || within(r, m.mountPoint)));
    const found = new Set<string>();
    for (const source of new Set(mounts.map((m) => m.source))) {
      const onSource = mounts.filter((m) => m.source === source);
      const list = await runChecked(this.runner, 'btrfs', ['subvolume', 'list', '-s', onSource[0]!.mountPoint]);
      for (const line of list.stdout.split('\n')) {
        const fsPath = / path (.+)$/.exec(line)?.[1];
        if (!fsPath || !isOwnedPath(fsPath)) continue;
        // btrfs-progs prints paths from the top of the file system, or from the
        // listed mount's own subvolume when it is not the top: try both.
        const candidates = onSource.flatMap((m) => [pathOnMount(fsPath, m), path.join(m.mountPoint, fsPath)]);
        const abs = candidates.find((c): c is string =>
          c !== undefined && this.searchRoots.some((r) => within(c, r)) && isSubvolumeRoot(c));
        if (abs) found.add(abs);
      }
    }
    return [...found].sort();
  }

  /** Whether a `<key>.baseline` link in the snapshot's `.ferry` directory points to it. */
  private isBaseline(snapshotPath: string): boolean {
    const dir = path.dirname(snapshotPath);
    const name = path.basename(snapshotPath);
    let entries: string[];
    try {
      entries = fs.readdirSync(dir);
    } catch {
      return false;
    }
    return entries.some((e) => {
      if (!e.endsWith(BTRFS_BASELINE_SUFFIX)) return false;
      try {
        return fs.readlinkSync(path.join(dir, e)) === name;
      } catch {
        return false;
      }
    });
  }

  private async uuidOf(subvolume: string): Promise<string> {
    const show = await runChecked(this.runner, 'btrfs', ['subvolume', 'show', subvolume]);
    const uuid = /^\s*UUID:\s*([0-9a-f-]{36})\s*$/m.exec(show.stdout)?.[1];
    if (!uuid) throw new HypervisorError(`btrfs subvolume show ${subvolume} printed no UUID`);
    return uuid;
  }

  private async deleteSubvolume(p: string): Promise<void> {
    if (!fs.existsSync(p)) return;
    const result = await this.runner.run('btrfs', ['subvolume', 'delete', p]);
    if (result.code === 0 || !fs.existsSync(p)) return;
    throw new HypervisorError(`btrfs subvolume delete ${p} failed (exit ${result.code}): ${lastErrorLine(result.stderr) || 'no message'}`);
  }

  /**
   * Sets `changed` (or `fullReadReason`) on snapshots this provider made, by
   * comparing each with the baseline its disk's `since` names. Never throws
   * for a tracking problem: the worst outcome is a full read, said out loud.
   * Takes as long as `btrfs send` walks the change (~170 ms for 2% of 1 GiB
   * in 4 KiB writes), so call it after the guest is released.
   */
  async findChanges(snapshots: Snapshot[], since: (ChangeTracking | undefined)[]): Promise<void> {
    // Disks compared between the same two snapshots share one send.
    const pairs = new Map<string, { baseline: BtrfsTrackingToken; current: BtrfsTrackingToken; members: number[] }>();
    snapshots.forEach((snap, i) => {
      const previous = since[i];
      if (previous === undefined) return; // first backup: nothing to compare with, nothing to report
      const current = parseToken(snap.tracking);
      if (!current) {
        snap.fullReadReason = `${snap.ownedName} carries no btrfs tracking token`;
        return;
      }
      const checked = checkBaseline(previous, current, snap);
      if (typeof checked === 'string') {
        snap.fullReadReason = checked;
        return;
      }
      const pairKey = `${checked.snapshot}\0${current.snapshot}`;
      const entry = pairs.get(pairKey) ?? { baseline: checked, current, members: [] };
      entry.members.push(i);
      pairs.set(pairKey, entry);
    });
    for (const { baseline, current, members } of pairs.values()) {
      try {
        const actualUuid = await this.uuidOf(baseline.snapshot);
        if (actualUuid !== baseline.uuid) {
          throw new Error(`${baseline.snapshot} has UUID ${actualUuid}, not the baseline's ${baseline.uuid}: it was re-created`);
        }
        const dump = await this.sendDump(baseline.snapshot, current.snapshot);
        const header = parseDumpHeader(dump);
        if (header.parentUuid !== baseline.uuid || header.uuid !== current.uuid) {
          throw new Error(`btrfs send compared ${header.parentUuid ?? '?'} → ${header.uuid ?? '?'}, expected ${baseline.uuid} → ${current.uuid}`);
        }
        const changes = changesFromDump(
          dump,
          members.map((i) => path.relative(current.snapshot, snapshots[i]!.readPath)),
          members.map((i) => fs.statSync(snapshots[i]!.readPath).size),
        );
        members.forEach((i, n) => {
          const c = changes[n]!;
          if (c.kind === 'ranges') snapshots[i]!.changed = c.ranges;
          else snapshots[i]!.fullReadReason = c.reason;
        });
        const replaced = this.replaces.get(current.snapshot) ?? new Set<string>();
        replaced.add(baseline.snapshot);
        this.replaces.set(current.snapshot, replaced);
      } catch (err) {
        for (const i of members) snapshots[i]!.fullReadReason = `btrfs change tracking failed, reading everything: ${(err as Error).message}`;
      }
    }
  }

  private async sendDump(parent: string, snapshot: string): Promise<string> {
    // A file between the two commands, not a shell pipe: both exit codes count, and no shell is involved.
    const dir = fs.mkdtempSync(path.join(this.tmpDir, 'ferry-btrfs-send-'));
    const stream = path.join(dir, 'stream');
    try {
      await runChecked(this.runner, 'btrfs', ['send', '-q', '--no-data', '-p', parent, '-f', stream, snapshot]);
      return (await runChecked(this.runner, 'btrfs', ['receive', '--dump', '-f', stream])).stdout;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

function parseToken(tracking: ChangeTracking | undefined): BtrfsTrackingToken | undefined {
  if (tracking?.kind !== 'btrfs') return undefined;
  try {
    const t = JSON.parse(tracking.token) as BtrfsTrackingToken;
    return t.v === 1 && typeof t.snapshot === 'string' && typeof t.uuid === 'string' ? t : undefined;
  } catch {
    return undefined;
  }
}

/** The baseline token, or why it cannot serve for this snapshot (a full-read reason). */
function checkBaseline(previous: ChangeTracking, current: BtrfsTrackingToken, snap: Snapshot): BtrfsTrackingToken | string {
  if (previous.kind !== 'btrfs') return `the last backup tracked changes with ${previous.kind}, not btrfs: reading everything once`;
  const baseline = parseToken(previous);
  if (!baseline) return `the btrfs tracking token of the last backup is unreadable (${previous.token.slice(0, 80)})`;
  const relativePath = path.relative(current.snapshot, snap.readPath);
  if (path.dirname(baseline.snapshot) !== path.dirname(current.snapshot)) {
    return `the last backup's snapshot ${baseline.snapshot} is in another subvolume than ${path.dirname(path.dirname(current.snapshot))}: the image moved`;
  }
  if (!fs.existsSync(baseline.snapshot)) {
    return `the last backup's snapshot ${baseline.snapshot} is gone (deleted by hand or by an interrupted run): tracking lost`;
  }
  let before: fs.Stats;
  try {
    before = fs.statSync(path.join(baseline.snapshot, relativePath));
  } catch {
    return `${relativePath} does not exist in the last backup's snapshot ${baseline.snapshot}`;
  }
  const now = fs.statSync(snap.readPath);
  // Snapshots keep inode numbers: another inode at the same path is another file.
  if (before.ino !== now.ino) return `${snap.disk.path} was replaced by another file since the last backup`;
  if (now.nlink > 1) return `${snap.disk.path} has ${now.nlink} hard links; btrfs send may report its changes under another name`;
  if (before.size !== now.size) return `${snap.disk.path} changed size from ${before.size} to ${now.size} bytes since the last backup`;
  return baseline;
}

/** One snapshot per subvolume, named after the run and the disks it holds. */
function planGroups(locations: BtrfsLocation[], runId: string): Group[] {
  const bySubvolume = new Map<string, number[]>();
  locations.forEach((loc, i) => bySubvolume.set(loc.subvolume, [...(bySubvolume.get(loc.subvolume) ?? []), i]));
  return [...bySubvolume].map(([subvolume, members]) => {
    const key = createHash('sha256')
      .update(members.map((i) => locations[i]!.relativePath).sort().join('\0'))
      .digest('hex')
      .slice(0, KEY_HEX_CHARS);
    const name = `${BTRFS_SNAPSHOT_PREFIX}${runId}-${key}`;
    if (name.length > MAX_NAME) throw new UsageError(`snapshot name ${name} is longer than btrfs's ${MAX_NAME} bytes: use a shorter run id`);
    const snapshotPath = path.join(subvolume, BTRFS_SNAPSHOT_DIR, name);
    if (fs.existsSync(snapshotPath)) {
      throw new HypervisorError(`${snapshotPath} already exists: an earlier run with the same id left it; run removeLeftovers first`);
    }
    return { subvolume, snapshotPath, members };
  });
}

/** `…/.ferry/ferry-*`: the only shape of path ferry creates, and so the only one it deletes. */
function isOwnedPath(p: string): boolean {
  return path.basename(p).startsWith(BTRFS_SNAPSHOT_PREFIX) && path.basename(path.dirname(p)) === BTRFS_SNAPSHOT_DIR;
}

function checkOwned(snapshotPath: string): { dir: string; name: string } {
  if (!isOwnedPath(snapshotPath)) {
    throw new UsageError(`refusing to touch ${snapshotPath}: not a ferry btrfs snapshot (.../${BTRFS_SNAPSHOT_DIR}/${BTRFS_SNAPSHOT_PREFIX}*)`);
  }
  return { dir: path.dirname(snapshotPath), name: path.basename(snapshotPath) };
}

function isSubvolumeRoot(p: string): boolean {
  try {
    const st = fs.statSync(p);
    return st.isDirectory() && st.ino === SUBVOLUME_ROOT_INODE;
  } catch {
    return false;
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
