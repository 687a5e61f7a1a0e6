// The progress of a site restore, per target host, as events for whoever
// shows it (the CLI draws one line per host): the library writes nothing to a
// terminal itself. Bytes are the data bytes the plan gives each disk; a disk
// counts in full once it is complete (written now or by an earlier run), a
// disk being written by how far it got, and a failed guest's disks leave the
// total (they will not be written).
import type { PlannedDisk, PlannedGuest } from './sitePlan';

/** What progress needs of a planned guest: its disks' data bytes. */
export type ProgressGuest = Pick<PlannedGuest, 'guest'> & { disks: ReadonlyArray<Pick<PlannedDisk, 'name' | 'dataBytes'>> };

/** One host's state, sent each time it changes. */
export interface SiteHostProgress {
  host: string;
  /** Guests of the plan on this host that are finished (restored, left as they were, or failed). */
  guestsDone: number;
  guests: number;
  failedGuests: number;
  doneBytes: number;
  totalBytes: number;
  /** 'done' once every guest of the host is finished (sent once, last). */
  state: 'restoring' | 'done';
}

export type SiteProgressListener = (p: SiteHostProgress) => void;

/** What one host's data phase reports as it goes; every method sends the host's new state. */
export class HostProgress {
  private readonly planned = new Map<string, number>();
  /** Bytes counted of each disk (key guest/disk) that is under way or complete. */
  private readonly counted = new Map<string, number>();
  private guestsDone = 0;
  private failedGuests = 0;
  private totalBytes: number;

  constructor(
    private readonly host: string,
    private readonly guests: readonly ProgressGuest[],
    private readonly listener: SiteProgressListener | undefined,
  ) {
    for (const g of guests) for (const d of g.disks) this.planned.set(key(g.guest, d.name), d.dataBytes);
    this.totalBytes = [...this.planned.values()].reduce((n, b) => n + b, 0);
    this.send('restoring');
  }

  /**
   * A disk got this far: `bytes` of its data, counted from its start (an
   * earlier run's regions included). An estimate (regions done as a share of
   * the data, plus bytes written since), so a disk's count never goes back.
   */
  disk(guest: string, disk: string, bytes: number): void {
    const planned = this.planned.get(key(guest, disk));
    if (planned === undefined) return;
    const before = this.counted.get(key(guest, disk)) ?? 0;
    this.counted.set(key(guest, disk), Math.min(planned, Math.max(before, bytes)));
    this.send('restoring');
  }

  diskComplete(guest: string, disk: string): void {
    this.disk(guest, disk, this.planned.get(key(guest, disk)) ?? 0);
  }

  guestFinished(guest: string, outcome: 'ok' | 'failed'): void {
    this.guestsDone++;
    if (outcome === 'failed') {
      this.failedGuests++;
      // What was not written will not be: out of the total, so the ETA is about what is left.
      for (const [k, planned] of this.planned) {
        if (!k.startsWith(`${guest}/`)) continue;
        const got = this.counted.get(k) ?? 0;
        this.totalBytes -= planned - got;
        this.planned.set(k, got);
      }
    } else {
      for (const [k, planned] of this.planned) if (k.startsWith(`${guest}/`)) this.counted.set(k, planned);
    }
    this.send('restoring');
  }

  hostFinished(): void {
    this.send('done');
  }

  private send(state: SiteHostProgress['state']): void {
    if (!this.listener) return;
    let doneBytes = 0;
    for (const b of this.counted.values()) doneBytes += b;
    this.listener({
      host: this.host, guestsDone: this.guestsDone, guests: this.guests.length, failedGuests: this.failedGuests,
      doneBytes, totalBytes: this.totalBytes, state,
    });
  }
}

function key(guest: string, disk: string): string {
  return `${guest}/${disk}`;
}
