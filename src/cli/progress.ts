// Progress on a terminal: one status line rewritten in place with rate and ETA.
// Under cron (no TTY) nothing is drawn; the final summary line is enough.
import { formatBytes } from './format';

export class ProgressLine {
  private readonly enabled: boolean;
  private readonly started = Date.now();
  private lastDraw = 0;

  constructor(private readonly label: string, quiet = false) {
    this.enabled = !quiet && Boolean(process.stderr.isTTY);
  }

  update(done: number, total: number, extra = ''): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 200 && done < total) return;
    this.lastDraw = now;
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 && total > done ? Math.round((total - done) / rate) : 0;
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    process.stderr.write(
      `\r\x1b[K${this.label} ${pct}% ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ETA ${eta}s${extra ? ` ${extra}` : ''}`,
    );
  }

  done(): void {
    if (this.enabled) process.stderr.write('\r\x1b[K');
  }
}
