// Loop devices, loop mounts and small tmpfs mounts, each undone by the
// scratch space's clean-up even when a test fails half-way.
import * as fs from 'node:fs';
import { Scratch } from './scratch';
import { mustRun, runCommand } from './system';

let mountCount = 0;

async function unmount(dir: string): Promise<void> {
  // A just-exited process can keep the mount busy for a moment.
  for (let attempt = 0; attempt < 20; attempt++) {
    const r = await runCommand('umount', [dir]);
    if (r.code === 0 || !isMounted(dir)) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  await mustRun('umount', ['-l', dir]);
}

export function isMounted(dir: string): boolean {
  return fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

/**
 * Mount an ext4 (or other) image read-write through a loop device, run `fn`
 * on the mount point, then sync and unmount (the loop device goes with it).
 */
export async function withLoopMount<T>(scratch: Scratch, image: string, fn: (mountPoint: string) => Promise<T> | T): Promise<T> {
  const mountPoint = scratch.mkdir(`mnt-${++mountCount}`);
  await mustRun('mount', ['-o', 'loop', image, mountPoint]);
  let unmounted = false;
  scratch.defer(async () => {
    if (!unmounted && isMounted(mountPoint)) await unmount(mountPoint);
  });
  try {
    return await fn(mountPoint);
  } finally {
    await mustRun('sync', ['-f', mountPoint]);
    await unmount(mountPoint);
    unmounted = true;
    fs.rmdirSync(mountPoint);
  }
}

/** Attach `file` to a free loop device; returns /dev/loopN, detached at clean-up. */
export async function attachLoop(scratch: Scratch, file: string): Promise<string> {
  const dev = (await mustRun('losetup', ['--find', '--show', file])).trim();
  scratch.defer(async () => {
    await runCommand('losetup', ['-d', dev]);
  });
  return dev;
}

/** A tmpfs of `sizeMiB` mounted at a new directory, to run a command into a full disk. */
export async function mountTmpfs(scratch: Scratch, name: string, sizeMiB: number): Promise<string> {
  const dir = scratch.mkdir(name);
  await mustRun('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', dir]);
  scratch.defer(async () => {
    if (isMounted(dir)) await unmount(dir);
  });
  return dir;
}
