// The real Debian disk image (scripts/testbed/debian-image.sh), built once
// per test run and copied sparsely for each test that modifies it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './ferry';
import { runDir } from './scratch';
import { mustRun } from './system';

/** Copy a (sparse) file keeping its holes. */
export async function copySparse(from: string, to: string): Promise<void> {
  await mustRun('cp', ['--sparse=always', '--reflink=auto', from, to]);
}

/**
 * Write a Debian bookworm minbase ext4 image of `sizeMiB` to `dest`.
 * The first call in a run builds it (seconds when the testbed cache is warm,
 * about a minute with debootstrap when cold); later calls only copy.
 */
export async function debianImage(dest: string, sizeMiB = 1024): Promise<string> {
  const master = path.join(runDir(), `debian-${sizeMiB}M.img`);
  if (!fs.existsSync(master)) {
    // The script replaces its output atomically, so racing callers are safe.
    await mustRun('bash', [path.join(REPO_ROOT, 'scripts/testbed/debian-image.sh'), master, String(sizeMiB)]);
  }
  await copySparse(master, dest);
  return dest;
}
