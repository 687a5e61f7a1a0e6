// Where btrfs subvolumes are, as seen from this host: the subvolume root that
// holds a file, and which mount point reaches a subvolume that
// `btrfs subvolume list` names by its path from the top of the file system.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** statfs(2) f_type of btrfs (BTRFS_SUPER_MAGIC). */
export const BTRFS_SUPER_MAGIC = 0x9123683e;
/** Inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
export const SUBVOLUME_ROOT_INODE = 256;

export interface BtrfsMount {
  /** The mounted file system's device, e.g. `/dev/loop3`: one per file system. */
  source: string;
  /** Path inside the file system that is mounted, `/` for the top level, `/vm` for `subvol=/vm`. */
  root: string;
  mountPoint: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The btrfs mounts in /proc/self/mountinfo text. */
export function parseBtrfsMounts(mountinfo: string): BtrfsMount[] {
  const mounts: BtrfsMount[] = [];
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    if (right[0] !== 'btrfs' || left.length < 5) continue;
    mounts.push({ source: unescapeMountinfo(right[1] ?? ''), root: unescapeMountinfo(left[3]!), mountPoint: unescapeMountinfo(left[4]!) });
  }
  return mounts;
}

/**
 * The path under `mount` of the subvolume whose path from the file system's
 * top is `fsPath` (as `btrfs subvolume list` prints it), or undefined if the
 * mount does not reach it.
 */
export function pathOnMount(fsPath: string, mount: BtrfsMount): string | undefined {
  const abs = path.posix.join('/', fsPath.replace(/^<FS_TREE>\//, ''));
  const root = mount.root.replace(/\/+$/, '');
  if (root === '') return path.join(mount.mountPoint, abs);
  if (abs === root) return mount.mountPoint;
  if (abs.startsWith(`${root}/`)) return path.join(mount.mountPoint, abs.slice(root.length));
  return undefined;
}

export interface BtrfsLocation {
  /** The image, symlinks resolved. */
  realPath: string;
  /** Root directory of the subvolume holding it. */
  subvolume: string;
  /** The image's path relative to `subvolume`. */
  relativePath: string;
}

/**
 * Finds the subvolume holding `file`, or says why it has none: not a regular
 * file, not on btrfs, or the subvolume root is not reachable (the file is
 * under a bind mount of a plain directory).
 */
export function locateOnBtrfs(file: string): BtrfsLocation | { problem: string } {
  let realPath: string;
  let st: fs.Stats;
  try {
    realPath = fs.realpathSync(file);
    st = fs.statSync(realPath);
  } catch (err) {
    return { problem: `cannot stat ${file}: ${(err as Error).message}` };
  }
  if (!st.isFile()) return { problem: `${file} is not a regular file` };
  if (fs.statfsSync(realPath).type !== BTRFS_SUPER_MAGIC) return { problem: `${file} is not on a btrfs file system` };
  // Each btrfs subvolume has its own st_dev, so the subvolume root is the
  // topmost ancestor with the file's st_dev; it must have inode 256.
  let dir = path.dirname(realPath);
  for (;;) {
    const parent = path.dirname(dir);
    if (parent === dir || fs.statSync(parent).dev !== st.dev) break;
    dir = parent;
  }
  if (fs.statSync(dir).ino !== SUBVOLUME_ROOT_INODE) {
    return { problem: `${file} is on btrfs, but the root of its subvolume is not reachable from ${dir} (a bind mount of a directory?)` };
  }
  return { realPath, subvolume: dir, relativePath: path.relative(dir, realPath) };
}
