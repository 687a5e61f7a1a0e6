// One `ferry backup --all` per host at a time. Snapshot providers sweep the
// leftovers of interrupted runs by their ferry-owned names (LVM snapshots,
// btrfs `.ferry/ferry-*`, QEMU bitmaps and targets); the sweeps pass over the
// names of a run whose process still runs (snapshot/provider.ts
// ownedByLiveRun), but two fleet runs would also quiesce and copy the same
// guests at once. A lock file with the holder's pid keeps them apart; a holder
// that is gone leaves a stale file that the next run takes over.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LockedError } from '../errors';
import { processAlive } from '../host/processAlive';

export interface HostRunLock {
  release(): void;
}

/** Take the lock file `backup-all.pid` in `dir` (the CLI's run directory, /run/ferry by default). */
export function acquireHostRunLock(dir: string): HostRunLock {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'backup-all.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      return {
        release: () => {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) {
        throw new LockedError(`another 'ferry backup --all' (pid ${holder}) is running on this host (${file}); wait for it to finish`);
      }
      fs.rmSync(file, { force: true }); // its holder is gone: stale
    }
  }
  throw new LockedError(`cannot take ${file}; another 'ferry backup --all' keeps starting on this host`);
}
