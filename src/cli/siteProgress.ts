// Site restore's progress: one row per target host (guests done, bytes, rate,
// ETA), redrawn together on a terminal, timestamped lines otherwise.
import type { SiteHostProgress } from '../site/siteProgress';
import { ProgressBoard, type ProgressOutput, type ProgressRow } from './progress';

export class SiteProgressBoard {
  readonly board: ProgressBoard;
  private readonly rows = new Map<string, ProgressRow>();

  /** `hosts` in the order their rows are drawn (the plan's). */
  constructor(output: ProgressOutput, hosts: readonly string[]) {
    this.board = new ProgressBoard(output);
    for (const host of hosts) this.rows.set(host, this.board.row(host));
  }

  readonly onProgress = (p: SiteHostProgress): void => {
    let row = this.rows.get(p.host);
    if (!row) {
      row = this.board.row(p.host);
      this.rows.set(p.host, row);
    }
    const details = [`${p.guestsDone}/${p.guests} guests${p.failedGuests ? ` (${p.failedGuests} failed)` : ''}`];
    row.update(p.doneBytes, p.totalBytes, details);
    if (p.state === 'done') row.finish(p.failedGuests > 0 ? 'failed' : 'done', details);
  };

  close(): void {
    this.board.close();
  }
}
