// How far a site restore got with each disk, kept on the machine running it:
// the regions [0, regionsDone) of the disk's partial target are written and
// fsynced. A re-run of the same plan continues after them instead of starting
// over, and a disk marked complete is not written again. Each record is one
// small JSON file, replaced atomically (written aside, fsynced, renamed).
import { replaceFileSync } from '../host/replacedFile';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { StorageError, describeSystemError } from '../errors';

export interface DiskJournalRecord {
  /** The restore point the written regions came from: another one's regions are not reused. */
  restorePoint: string;
  disk: string;
  size: number;
  regionsDone: number;
  complete: boolean;
  /** For a complete file: its size and modification time then (`stat -c '%s %Y'`), so a file changed since is not taken for ours. */
  stamp?: string;
}

export class RestoreJournal {
  constructor(private readonly dir: string) {}

  private file(host: string, target: string): string {
    return path.join(this.dir, `${createHash('sha256').update(`${host}\0${target}`).digest('hex').slice(0, 32)}.json`);
  }

  /** The record of `host:target`, if there is one for this restore point and disk. */
  read(host: string, target: string, restorePoint: string, disk: string): DiskJournalRecord | undefined {
    let record: DiskJournalRecord;
    try {
      record = JSON.parse(fs.readFileSync(this.file(host, target), 'utf8')) as DiskJournalRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      // A torn or foreign record only costs rewriting the disk.
      if (err instanceof SyntaxError) return undefined;
      throw new StorageError(`cannot read the site restore journal in ${this.dir}: ${describeSystemError(err)}`, { cause: err });
    }
    return record.restorePoint === restorePoint && record.disk === disk && Number.isInteger(record.regionsDone) ? record : undefined;
  }

  write(host: string, target: string, record: DiskJournalRecord): void {
    const file = this.file(host, target);
    try {
      replaceFileSync(file, JSON.stringify(record), { mode: 0o600, folderMode: 0o700 });
    } catch (err) {
      throw new StorageError(`cannot write the site restore journal in ${this.dir}: ${describeSystemError(err)}`, { cause: err });
    }
  }

  forget(host: string, target: string): void {
    fs.rmSync(this.file(host, target), { force: true });
  }
}
