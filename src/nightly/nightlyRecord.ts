// What `ferry nightly` remembers between nights on this host, per repository
// location: when it last pruned and checked (prune runs weekly, so the .prom
// file must say how long ago). `<stateDir>/nightly/<hash of the location>.json`.
import { replaceFileSync } from '../host/replacedFile';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';

export interface NightlyTimes {
  lastPrune?: string;
  lastCheck?: string;
}

export class NightlyRecord {
  private constructor(readonly file: string) {}

  static at(stateDir: string, location: string): NightlyRecord {
    const key = createHash('sha256').update(location).digest('hex').slice(0, 32);
    return new NightlyRecord(path.join(stateDir, 'nightly', `${key}.json`));
  }

  read(): NightlyTimes {
    try {
      const saved = JSON.parse(fs.readFileSync(this.file, 'utf8')) as Record<string, unknown>;
      const times: NightlyTimes = {};
      if (typeof saved.lastPrune === 'string') times.lastPrune = saved.lastPrune;
      if (typeof saved.lastCheck === 'string') times.lastCheck = saved.lastCheck;
      return times;
    } catch {
      return {}; // first night, or a torn file: the times are only reported
    }
  }

  /** Atomic (temp file, rename); throws the system error, which the caller reports. */
  write(times: NightlyTimes): void {
    replaceFileSync(this.file, JSON.stringify(times) + '\n', { mode: 0o600, folderMode: 0o700 });
  }
}
