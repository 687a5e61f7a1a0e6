// The work directory (`/var/tmp/ferry` by default) holds plaintext,
// point-in-time copies of guest disks while they are read. It must be this
// user's alone: created 0700, and an existing one must be a real directory
// (not a symlink someone planted), owned by this user, with no access for
// group or others. A directory another user made first is refused: its owner
// could read every guest's disk.
import * as fs from 'node:fs';
import { HypervisorError, InputError, describeSystemError } from '../errors';

export const WORK_DIRECTORY_MODE = 0o700;

/** The parameter name errors about the work directory carry (the CLI words it as its flag). */
export const WORK_DIRECTORY = 'work directory';

export function preparePrivateWorkDirectory(dir: string): void {
  const refuse = (detail: string, cause?: unknown) => InputError.about({ parameter: WORK_DIRECTORY, value: dir, detail }, { cause });
  try {
    fs.mkdirSync(dir, { recursive: true, mode: WORK_DIRECTORY_MODE });
  } catch (err) {
    throw refuse(`cannot create it: ${describeSystemError(err)}; choose another work directory`, err);
  }
  const st = fs.lstatSync(dir); // lstat: a symlink is judged itself, never followed
  if (st.isSymbolicLink()) {
    throw refuse('is a symbolic link: ferry writes copies of guest disks there, so it must be a real directory; remove the link or choose another work directory');
  }
  if (!st.isDirectory()) throw refuse('is not a directory; choose another work directory');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw refuse(
      `belongs to uid ${st.uid}, not to this user (uid ${uid}): its owner could read the guest disks copied there; ` +
        'remove it (another user may have created it first) or choose another work directory',
    );
  }
  // Ours but open to others (made by hand, or by an older ferry): close it.
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, WORK_DIRECTORY_MODE);
}

/**
 * Refuses a copy the work directory cannot hold. A hypervisor copy into a
 * full directory is what can hurt a guest (its writes wait on the copy), so
 * this is checked before the copy starts.
 */
export async function checkWorkDirectorySpace(dir: string, needBytes: number, what: string): Promise<void> {
  let free: number;
  try {
    const st = await fs.promises.statfs(dir);
    free = st.bavail * st.bsize;
  } catch (err) {
    throw new HypervisorError(`cannot tell the free space of work directory ${dir}: ${describeSystemError(err)}`, { cause: err });
  }
  if (free < needBytes) {
    throw new HypervisorError(
      `work directory ${dir} has ${mebibytes(free)} free, but ${what} needs about ${mebibytes(needBytes)}: free space there or choose another work directory (--work-dir)`,
    );
  }
}

function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}
