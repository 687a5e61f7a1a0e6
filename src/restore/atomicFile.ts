// Files ferry hands to a user (restored images, exported tars) appear under
// their final name only when complete: written under a temporary name in the
// same folder, fsynced, renamed, and the folder fsynced. On any failure the
// temporary file is removed, so nothing half-written looks finished.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryError, StorageError, describeSystemError } from '../errors';
import { syncDirectory } from '../storage/local';
import { partialFileName } from '../storage/leftovers';

/**
 * Create `finalPath` through `fill(tempPath)`. The temporary file exists
 * (empty, or `size` bytes sparse) before `fill` runs.
 */
export async function writeFileAtomically<T>(finalPath: string, fill: (tempPath: string) => Promise<T>, size = 0): Promise<T> {
  const temp = partialFileName(finalPath, randomBytes(4).toString('hex'));
  try {
    const fd = fs.openSync(temp, 'wx');
    try {
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
