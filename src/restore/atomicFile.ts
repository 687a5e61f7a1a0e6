// Files ferry hands to a user (restored images, exported tars) appear under
// their final name only when complete: written under a temporary name in the
// same folder, fsynced, renamed, and the folder fsynced. On any failure the
// temporary file is removed, so nothing half-written looks finished. They hold
// plaintext guest data, so they are created owner-only (0600) unless the user
// asks for another mode.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryError, StorageError, describeSystemError } from '../errors';
import { syncDirectory } from '../storage/local';
import { partialFileName } from '../storage/leftovers';

export const DEFAULT_OUTPUT_MODE = 0o600;

/**
 * Create `finalPath` through `fill(tempPath)`. The temporary file exists
 * (empty, or `size` bytes sparse, with permission bits `mode`) before `fill` runs.
 */
export async function writeFileAtomically<T>(
  finalPath: string,
  fill: (tempPath: string) => Promise<T>,
  size = 0,
  mode = DEFAULT_OUTPUT_MODE,
): Promise<T> {
  const temp = partialFileName(finalPath, randomBytes(4).toString('hex'));
  try {
    const fd = fs.openSync(temp, 'wx', mode);
    try {
      setExactMode(fd, mode);
      if (size > 0) fs.ftruncateSync(fd, size);
    } finally {
      fs.closeSync(fd);
    }
    const result = await fill(temp);
    const fd2 = fs.openSync(temp, 'r+');
    try {
      fs.fsyncSync(fd2);
    } finally {
      fs.closeSync(fd2);
    }
    fs.renameSync(temp, finalPath);
    await syncDirectory(path.dirname(finalPath));
    return result;
  } catch (err) {
    fs.rmSync(temp, { force: true });
    if (err instanceof FerryError) throw err;
    const nospace = (err as NodeJS.ErrnoException).code === 'ENOSPC' ? '; free space on the target or write elsewhere' : '';
    throw new StorageError(`writing ${finalPath}: ${describeSystemError(err)}${nospace}`, { cause: err });
  }
}

/**
 * open() applies the umask, which may take bits from an explicit `--mode 0664`;
 * set them exactly. A file system without permission bits (exFAT, FAT) refuses
 * the chmod, and there the mode given to open() is all there is.
 */
function setExactMode(fd: number, mode: number): void {
  try {
    fs.fchmodSync(fd, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
  }
}
