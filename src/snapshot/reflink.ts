// SnapshotProvider that clones image files with FICLONE (reflink): on xfs
// made with `-m reflink=1` and on btrfs, the clone shares the image's extents,
// takes about a millisecond whatever the image size, and stays unchanged when
// the guest writes to the image afterwards (copy on write). No change
// tracking: a clone carries no record of what changed since the last one.
//
// The clone is a work file next to the image, `<dir>/.ferry/ferry-<runId>-<image name>`,
// because FICLONE only works within one file system and the image's own
// directory is the one place known to be on it. `.ferry` is mode 0700.
// removeLeftovers() deletes `ferry-*` files in the `.ferry` directories of
// every image this provider was asked about, plus the configured searchDirs.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HypervisorError, UsageError, describeSystemError } from '../errors';
import type { GuestDisk } from '../hypervisor/driver';
import { checkRunId, ownedByLiveRun, type Snapshot, type SnapshotProvider } from './provider';
import { LeftoverSweep } from './providerParts';

export const REFLINK_WORK_DIR = '.ferry';
export const REFLINK_PREFIX = 'ferry-';
const MAX_NAME = 255;

export interface ReflinkSnapshotOptions {
  /** Image directories whose `.ferry` work files removeLeftovers() also cleans (besides those seen by canHandle/create). */
  searchDirs?: readonly string[];
}

/** FICLONE failed: the file system cannot share extents here. */
export class ReflinkUnsupportedError extends HypervisorError {}

export class ReflinkSnapshotProvider implements SnapshotProvider {
  readonly kind = 'reflink';
  private readonly dirs = new Set<string>();
  /** st_dev → whether a probe clone worked there (a file system answers the same for every file). */
  private readonly probed = new Map<number, boolean>();

  constructor(options: ReflinkSnapshotOptions = {}) {
    for (const d of options.searchDirs ?? []) this.dirs.add(path.resolve(d));
  }

  async canHandle(disk: GuestDisk): Promise<boolean> {
    let real: string;
    let st: fs.Stats;
    try {
      real = fs.realpathSync(disk.path);
      st = fs.statSync(real);
    } catch {
      return false;
    }
    if (!st.isFile()) return false; // block devices cannot be cloned
    const dir = path.dirname(real);
    this.dirs.add(dir);
    const known = this.probed.get(st.dev);
    if (known !== undefined) return known;
    const ok = probeClone(dir);
    this.probed.set(st.dev, ok);
    return ok;
  }

  async create(disks: GuestDisk[], runId: string): Promise<Snapshot[]> {
    checkRunId(runId, 'a file name');
    const plan = disks.map((disk) => {
      let real: string;
      try {
        real = fs.realpathSync(disk.path);
        if (!fs.statSync(real).isFile()) throw new HypervisorError(`disk ${disk.device} (${disk.path}) is not a regular file: reflink clones only image files`);
      } catch (err) {
        if (err instanceof HypervisorError) throw err;
        throw new HypervisorError(`disk ${disk.device} (${disk.path}): ${describeSystemError(err)}`);
      }
      const workDir = path.join(path.dirname(real), REFLINK_WORK_DIR);
      const name = `${REFLINK_PREFIX}${runId}-${path.basename(real)}`;
      if (name.length > MAX_NAME) throw new UsageError(`work file name ${name} is longer than ${MAX_NAME} bytes: use a shorter run id`);
      const target = path.join(workDir, name);
      if (fs.existsSync(target)) {
        throw new HypervisorError(`${target} already exists: an earlier run with the same id left it; run removeLeftovers first`);
      }
      this.dirs.add(path.dirname(real));
      return { disk, real, workDir, target };
    });

    const made: Snapshot[] = [];
    try {
      for (const p of plan) {
        fs.mkdirSync(p.workDir, { recursive: true, mode: 0o700 });
        cloneFile(p.real, p.target, p.disk);
        made.push({ disk: p.disk, readPath: p.target, ownedName: p.target });
      }
    } catch (err) {
      // All or nothing: a guest whose disks are only partly cloned is not a consistent backup.
      for (const s of made) fs.rmSync(s.ownedName, { force: true });
      throw err;
    }
    return made;
  }

  async remove(snapshot: Snapshot): Promise<void> {
    if (!isOwnedPath(snapshot.ownedName)) {
      throw new UsageError(`refusing to remove ${snapshot.ownedName}: not a ferry work file (.../${REFLINK_WORK_DIR}/${REFLINK_PREFIX}*)`);
    }
    try {
      fs.unlinkSync(snapshot.ownedName);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // already gone
      throw new HypervisorError(`cannot remove reflink work file ${snapshot.ownedName}: ${describeSystemError(err)}`);
    }
  }

  async removeLeftovers(): Promise<string[]> {
    const sweep = new LeftoverSweep('leftover reflink work file(s)');
    for (const dir of [...this.dirs].sort()) {
      const workDir = path.join(dir, REFLINK_WORK_DIR);
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(workDir, { withFileTypes: true });
      } catch {
        continue; // no work directory: nothing was ever cloned here
      }
      for (const e of entries) {
        // Regular files only: a btrfs snapshot (a directory) in the same `.ferry` belongs to the btrfs provider.
        if (!e.isFile() || !e.name.startsWith(REFLINK_PREFIX) || ownedByLiveRun(e.name, REFLINK_PREFIX)) continue;
        const p = path.join(workDir, e.name);
        await sweep.remove(p, () => fs.unlinkSync(p), (err) => `${p}: ${describeSystemError(err)}`);
      }
    }
    return sweep.done();
  }
}

function isOwnedPath(p: string): boolean {
  return path.basename(p).startsWith(REFLINK_PREFIX) && path.basename(path.dirname(p)) === REFLINK_WORK_DIR;
}

/** Clones `src` to `dst` sharing extents, or throws a ReflinkUnsupportedError that says why and what to do. */
function cloneFile(src: string, dst: string, disk: GuestDisk): void {
  try {
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_FICLONE_FORCE | fs.constants.COPYFILE_EXCL);
  } catch (err) {
    fs.rmSync(dst, { force: true }); // a failed clone may leave an empty file
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EXDEV') {
      throw new ReflinkUnsupportedError(`cannot reflink disk ${disk.device} (${src}) to ${dst}: they are on different file systems (EXDEV)`, { cause: err });
    }
    if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'EINVAL' || code === 'ENOTTY' || code === 'ENOSYS') {
      throw new ReflinkUnsupportedError(
        `cannot reflink disk ${disk.device} (${src}): its file system does not support cloning (${code}); ` +
          'reflink needs xfs made with `mkfs.xfs -m reflink=1` or btrfs (ext4 has none): use another snapshot provider, or back the guest up shut off',
        { cause: err },
      );
    }
    throw new HypervisorError(`cannot reflink disk ${disk.device} (${src}) to ${dst}: ${describeSystemError(err)}`, { cause: err });
  }
}

/** Whether FICLONE works in `dir`: clone a one-block probe file and delete both. */
function probeClone(dir: string): boolean {
  const base = path.join(dir, `.ferry-probe-${process.pid}-${Date.now()}`);
  try {
    fs.writeFileSync(base, Buffer.alloc(4096, 1), { flag: 'wx', mode: 0o600 });
    fs.copyFileSync(base, `${base}.clone`, fs.constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false; // no reflink, read-only directory, full disk: in every case this provider cannot help
  } finally {
    fs.rmSync(base, { force: true });
    fs.rmSync(`${base}.clone`, { force: true });
  }
}
