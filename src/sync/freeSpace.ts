// Free space of a local target, for the fit check before a sync copies.
import * as fs from 'node:fs';
import { StorageError, describeSystemError } from '../errors';

/** Bytes an unprivileged writer may still use on the file system holding `dir` (statfs f_bavail × f_bsize). */
export async function localFreeBytes(dir: string): Promise<number> {
  try {
    const st = await fs.promises.statfs(dir);
    return st.bavail * st.bsize;
  } catch (err) {
    throw new StorageError(`${dir}: cannot read the free space of its file system (${describeSystemError(err)}); check that it is mounted`, { cause: err });
  }
}
