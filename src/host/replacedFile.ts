// Small state files ferry keeps between runs (journals, cursors, records, a
// textfile for node_exporter, unit files) are replaced whole: written under
// a temporary name beside the file, fsynced, renamed over it. A reader, or
// a run after a crash, sees the old content or the new, never a torn one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface ReplacedFileOptions {
  /** Permission bits of the file, set exactly (the umask does not take any). */
  mode: number;
  /** Create the folder (and its parents) with these bits when missing; without it a missing folder is an error. */
  folderMode?: number;
}

/**
 * Replace `file` with `content`. Throws the system error as it came (the
 * caller knows what the file is and words the message); no temporary file
 * is left behind.
 */
export function replaceFileSync(file: string, content: string, options: ReplacedFileOptions): void {
  if (options.folderMode !== undefined) fs.mkdirSync(path.dirname(file), { recursive: true, mode: options.folderMode });
  // `.tmp-` then random hex: other tools match `*.json`, `*.prom`, `*.timer` and skip it.
  const temp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    const fd = fs.openSync(temp, 'wx', options.mode);
    try {
      fs.fchmodSync(fd, options.mode);
      fs.writeSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
}
