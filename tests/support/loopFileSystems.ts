// A fresh file system of a given type (btrfs, xfs, ext4) on a sparse file,
// loop-mounted for the whole test file and unmounted by the scratch space's
// clean-up, also when a test fails half-way.
import * as fs from 'node:fs';
import { isMounted } from './mounts';
import type { Scratch } from './scratch';
import { mustRun, runCommand } from './system';

export interface LoopFileSystemOptions {
  /** mkfs command and its options, without the target, e.g. `['mkfs.xfs', '-q', '-m', 'reflink=1']`. */
  mkfs: string[];
  sizeMiB: number;
}

/** Makes and mounts the file system; returns its mount point. */
export async function mountLoopFileSystem(scratch: Scratch, name: string, opts: LoopFileSystemOptions): Promise<string> {
  const image = scratch.path(`${name}.fs`);
  fs.closeSync(fs.openSync(image, 'w'));
  fs.truncateSync(image, opts.sizeMiB * 1024 * 1024);
  await mustRun(opts.mkfs[0]!, [...opts.mkfs.slice(1), image]);
  const mountPoint = scratch.mkdir(`${name}-mnt`);
  await mustRun('mount', ['-o', 'loop', image, mountPoint]);
  scratch.defer(async () => {
    if (!isMounted(mountPoint)) return;
    // `mount -o loop` made the loop device auto-clear: unmounting frees it.
    for (let attempt = 0; attempt < 20; attempt++) {
      if ((await runCommand('umount', [mountPoint])).code === 0) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    await mustRun('umount', ['-l', mountPoint]);
  });
  return mountPoint;
}
