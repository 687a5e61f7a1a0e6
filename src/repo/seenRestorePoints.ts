// What this host has seen of a repository's restore points, kept outside the
// repository (in a state directory of this host), so that a restore point that
// disappears — deleted by hand, or an old copy of the drive presented in its
// place — does not go unnoticed: the repository itself cannot tell, since a
// rollback is a valid repository (borg keeps its manifest timestamp per host for
// the same reason).
//
// One JSON file per repository id, with one record per location: a sync target
// is the same repository (same id) but may rightly hold fewer points, so points
// seen at one location are only expected at that location.
//
// A point forgotten by this host is kept as a tombstone: a concurrent `list`
// that read the point just before it was removed must not put it back as
// "expected". Only the newest MAX_TOMBSTONES are kept, so a nightly job's
// record stays small over the years (the file is rewritten at every backup). Files are replaced whole (temp file + rename); two processes
// saving at once can lose one's additions (a missed warning, never a false one).
//
// The record only adds warnings: a record that cannot be read or saved (a
// read-only home, a damaged file) never stops a backup or a restore; it is
// reported in `problems` for the caller to print.
import { replaceFileSync } from '../host/replacedFile';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeSystemError } from '../errors';

export interface SeenPoint {
  guest: string;
  time: string;
}

/** Tombstones kept per location, newest last: about two years of 4 guests forgotten nightly. */
export const MAX_TOMBSTONES = 3000;

interface LocationRecord {
  points: Record<string, SeenPoint>;
  forgotten: string[];
}

interface RecordFile {
  version: 1;
  locations: Record<string, LocationRecord>;
}

export class SeenRestorePoints {
  /** What went wrong reading or saving the record, one sentence each (the command goes on). */
  readonly problems: string[] = [];
  private record: LocationRecord = { points: {}, forgotten: [] };

  private constructor(
    private readonly file: string,
    private readonly location: string,
  ) {}

  /** The record of `location` (of repository `repositoryId`) in `stateDir`; empty if none yet. */
  static load(stateDir: string, repositoryId: Buffer, location: string): SeenRestorePoints {
    const seen = new SeenRestorePoints(path.join(stateDir, 'repositories', `${repositoryId.toString('hex')}.json`), location);
    seen.record = seen.read().locations[location] ?? { points: {}, forgotten: [] };
    return seen;
  }

  /** What this host knows about a restore point (e.g. one that is damaged now). */
  about(id: string): SeenPoint | undefined {
    return this.record.points[id];
  }

  /** Points this host saw here that are not among `present` (every name now under snapshots/). */
  vanished(present: Iterable<string>): (SeenPoint & { id: string })[] {
    const here = new Set(present);
    return Object.entries(this.record.points)
      .filter(([id]) => !here.has(id))
      .map(([id, p]) => ({ id, ...p }))
      .sort((a, b) => a.time.localeCompare(b.time));
  }

  /** Remember points as seen (forgotten ones stay forgotten), and save. */
  saw(points: (SeenPoint & { id: string })[]): void {
    this.update((rec) => {
      const forgotten = new Set(rec.forgotten);
      for (const p of points) if (!forgotten.has(p.id)) rec.points[p.id] = { guest: p.guest, time: p.time };
    });
  }

  /** This host removed (or acknowledged the loss of) these points: expect them no more, and save. */
  forgot(ids: string[]): void {
    this.update((rec) => {
      const known = new Set(rec.forgotten);
      for (const id of ids) {
        delete rec.points[id];
        if (!known.has(id)) rec.forgotten.push(id);
        known.add(id);
      }
      if (rec.forgotten.length > MAX_TOMBSTONES) rec.forgotten = rec.forgotten.slice(-MAX_TOMBSTONES);
    });
  }

  /** Re-read just before writing, so a concurrent command's changes are kept (all but a tiny window). */
  private update(change: (rec: LocationRecord) => void): void {
    const file = this.read();
    const rec = file.locations[this.location] ?? { points: {}, forgotten: [] };
    change(rec);
    file.locations[this.location] = rec;
    this.record = rec;
    this.write(file);
  }

  private read(): RecordFile {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.problems.push(`cannot read this host's record of restore points ${this.file}: ${describeSystemError(err)}`);
      }
      return { version: 1, locations: {} };
    }
    try {
      const parsed = JSON.parse(text) as RecordFile;
      if (parsed.version === 1 && parsed.locations && typeof parsed.locations === 'object') return parsed;
    } catch {
      // fall through: same answer as a wrong shape
    }
    // Kept aside, not deleted: it may help to see what it held.
    const aside = `${this.file}.malformed-${Date.now()}`;
    try {
      fs.renameSync(this.file, aside);
      this.problems.push(`this host's record of restore points was malformed and is kept as ${aside}; a new record starts now`);
    } catch (err) {
      this.problems.push(`this host's record of restore points ${this.file} is malformed and cannot be moved aside (${describeSystemError(err)}); delete it`);
    }
    return { version: 1, locations: {} };
  }

  private write(content: RecordFile): void {
    try {
      // Private: it names guests and times of backups.
      replaceFileSync(this.file, JSON.stringify(content), { mode: 0o600, folderMode: 0o700 });
    } catch (err) {
      this.problems.push(
        `cannot save this host's record of restore points ${this.file}: ${describeSystemError(err)}; vanished restore points go unnoticed until it can (--state-dir, FERRY_STATE_DIR)`,
      );
    }
  }
}
