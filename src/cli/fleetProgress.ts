// The progress of a fleet backup (backup --all, nightly's backup step) as one
// row: bytes of all guests, guests finished, what was stored and the dedupe
// ratio. A guest's size is known only once its disks are open, so until every
// guest has started the total counts each one not started yet at the mean
// size of those that have.
import type { FleetProgress } from '../backup/fleetBackup';
import { formatBytes } from './format';
import { type ProgressRow, dedupeField } from './progress';

interface GuestBytes {
  done: number;
  total: number;
  read: number;
  stored: number;
}

export class FleetProgressRow {
  private readonly guests = new Map<string, GuestBytes>();
  private finished = 0;
  private failed = 0;

  constructor(
    private readonly row: ProgressRow,
    private readonly guestCount: number,
  ) {}

  readonly onProgress = (p: FleetProgress): void => {
    if (p.kind === 'finished') {
      this.finished++;
      if (!p.ok) this.failed++;
      const g = this.guests.get(p.guest);
      // A failed guest reads no further: what it did not read leaves the total.
      if (g && !p.ok) g.total = g.done;
      if (g && p.ok) g.done = g.total;
    } else {
      this.guests.set(p.guest, { done: p.doneBytes, total: p.totalBytes, read: p.readBytes, stored: p.newBytes });
    }
    this.show();
  };

  /** The last state: done, or failed when a guest failed or the run threw. */
  finish(outcome: 'done' | 'failed'): void {
    this.show();
    this.row.finish(outcome === 'done' && this.failed === 0 ? 'done' : 'failed', this.details());
  }

  private show(): void {
    let done = 0;
    let total = 0;
    for (const g of this.guests.values()) {
      done += g.done;
      total += g.total;
    }
    const notStarted = Math.max(0, this.guestCount - Math.max(this.guests.size, this.finished));
    if (this.guests.size > 0) total += Math.round((total / this.guests.size) * notStarted);
    this.row.update(done, total, this.details());
  }

  private details(): string[] {
    let read = 0;
    let stored = 0;
    for (const g of this.guests.values()) {
      read += g.read;
      stored += g.stored;
    }
    return [
      `${this.finished}/${this.guestCount} guests${this.failed ? ` (${this.failed} failed)` : ''}`,
      `new ${formatBytes(stored)}`,
      dedupeField(read, stored),
    ];
  }
}
