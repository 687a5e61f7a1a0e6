// Progress of long commands on stderr, one presentation for backup (one guest
// or the fleet), restore, check --read-data, sync, export/import and site restore.
// On a terminal: one row per thing in progress (a bar, bytes done/total, rate,
// ETA, and what the command adds, e.g. the dedupe ratio), redrawn in place:
// `\r` for one row, cursor-up for several. Not on a terminal (cron, a pipe):
// plain lines, each starting with a timestamp, one per row each interval
// at most (the first after one; so cron mail stays short), and each row's
// final line always.
// Own renderer rather than a library: the timestamped plain mode and log
// lines between redrawn rows are what a library would have to be bent to.
import { UsageError } from '../errors';
import { formatBytes, formatDuration } from './format';
import { parseWaitDuration } from './lockWaitOption';

/** Where progress goes: redrawn rows, timestamped lines, or nowhere. */
export type ProgressMode = 'bar' | 'lines' | 'off';

/** The part of a stream the display uses (process.stderr, or a test's capture). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOutput {
  mode: ProgressMode;
  /** 'lines': the least time between two lines of one row. */
  intervalMs: number;
  stream: ProgressStream;
  /** The clock (tests give their own). */
  now?: () => number;
}

/** Plain lines under cron: one a minute per row at most, unless --progress-interval says otherwise. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 60_000;
/** Redraws on a terminal: at most this often (a final state is always drawn). */
const REDRAW_MS = 150;
/** Rate and ETA follow the last few seconds, not the whole run (zero regions fly, data crawls). */
const RATE_WINDOW_MS = 10_000;
const MAX_BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 8;

/** The global flags (--no-progress, --progress-interval) and the command's --json, read once per command. */
export interface ProgressFlags {
  /** false with --no-progress. */
  progress?: boolean;
  progressInterval?: string;
  json?: boolean;
}

/**
 * How this command shows progress: nothing with --json (a script reads the
 * result) or --no-progress; redrawn rows when stderr is a terminal; else lines.
 */
export function progressOutput(flags: ProgressFlags, stream: ProgressStream = process.stderr): ProgressOutput {
  const intervalMs = flags.progressInterval === undefined ? DEFAULT_PROGRESS_INTERVAL_MS : parseProgressInterval(flags.progressInterval);
  const mode: ProgressMode = flags.json || flags.progress === false ? 'off' : stream.isTTY ? 'bar' : 'lines';
  return { mode, intervalMs, stream };
}

/** A bad --progress-interval fails before the command does anything. */
export function checkProgressFlags(flags: ProgressFlags): void {
  progressOutput(flags);
}

/** No progress at all (a step that has no bytes to count). */
export function noProgress(): ProgressOutput {
  return { mode: 'off', intervalMs: DEFAULT_PROGRESS_INTERVAL_MS, stream: process.stderr };
}

function parseProgressInterval(text: string): number {
  let ms: number;
  try {
    ms = parseWaitDuration(text);
  } catch {
    ms = NaN;
  }
  if (!(ms >= 1000)) throw new UsageError(`--progress-interval: '${text}' is not a duration of at least 1 s; use e.g. 30s or 5m`);
  return ms;
}

/** What a row shows besides bytes, rate and ETA: short fields such as `dedupe 3.1x` or `2/5 guests`. */
export type ProgressDetails = readonly string[];

/** One thing in progress: a guest's backup, a restore, a host of a site restore. */
export class ProgressRow {
  private done = 0;
  private total = 0;
  private details: ProgressDetails = [];
  private readonly started: number;
  private samples: Array<{ at: number; done: number }> = [];
  /** When the last plain line was written (none yet: the row's start, so a short run prints only its final line). */
  private lastLine: number;
  private linesWritten = 0;
  private barWidth: number | undefined;
  finished: 'done' | 'failed' | undefined;

  constructor(
    private readonly board: ProgressBoard,
    readonly label: string,
  ) {
    this.started = board.now();
    this.lastLine = this.started;
  }

  /** Whether it has anything to show yet (a row is drawn from its first update on). */
  get shown(): boolean {
    return this.samples.length > 0 || this.finished !== undefined;
  }

  update(done: number, total: number, details: ProgressDetails = []): void {
    if (this.finished) return;
    const at = this.board.now();
    this.done = done;
    this.total = total;
    this.details = details;
    this.samples.push({ at, done });
    // Keep one sample older than the window, so the rate spans it whole.
    while (this.samples.length > 2 && at - this.samples[1].at >= RATE_WINDOW_MS) this.samples.shift();
    this.board.changed(this);
  }

  /** The row's last state: always shown (a final line, or the bar at its end). */
  finish(outcome: 'done' | 'failed' = 'done', details?: ProgressDetails): void {
    if (this.finished) return;
    if (details) this.details = details;
    this.finished = outcome;
    this.board.changed(this);
  }

  /** Bytes a second over the last seconds (over the whole run until a window has passed). */
  rate(): number {
    const now = this.board.now();
    const first = this.samples[0];
    if (first && now - first.at >= 1000) return Math.max(0, (this.done - first.done) / ((now - first.at) / 1000));
    const elapsed = (now - this.started) / 1000;
    return elapsed > 0 ? this.done / elapsed : 0;
  }

  /** `--:--` until a rate is known. */
  eta(): string {
    if (this.finished || this.done >= this.total) return '0:00';
    const rate = this.rate();
    if (!(rate > 0)) return '--:--';
    return clock(Math.round((this.total - this.done) / rate));
  }

  /**
   * Whether a plain line of this row is due: one per interval, and the final
   * one; a failure's only if lines were written before (otherwise the
   * command's error line is the whole story, and stays the one line).
   */
  lineDue(intervalMs: number): boolean {
    if (this.finished === 'done') return true;
    if (this.finished === 'failed') return this.linesWritten > 0;
    return this.board.now() - this.lastLine >= intervalMs;
  }

  markLine(): void {
    this.lastLine = this.board.now();
    this.linesWritten++;
  }

  /** The row on a terminal of `width` columns: the bar takes what the figures leave (none when they fill it). */
  barText(width: number): string {
    const pct = this.percent();
    const figures = [
      `${String(pct).padStart(3)}%${this.finished === 'failed' ? ' FAILED' : ''}`,
      `${formatBytes(this.done)}/${formatBytes(this.total)}`,
      `${formatRate(this.finished ? this.averageRate() : this.rate())}`,
      this.finished ? `in ${formatDuration(this.board.now() - this.started)}` : `ETA ${this.eta()}`,
      ...this.details,
    ].join(' ');
    // The bar only ever narrows, so it does not jump about as the figures change length.
    const room = width - this.label.length - figures.length - 4;
    if (this.barWidth === undefined || room < this.barWidth) this.barWidth = Math.min(MAX_BAR_WIDTH, room);
    if (this.barWidth < MIN_BAR_WIDTH) return cut(`${this.label} ${figures}`, width);
    const filled = Math.round((pct / 100) * this.barWidth);
    return `${this.label} [${'#'.repeat(filled)}${'.'.repeat(this.barWidth - filled)}] ${figures}`;
  }

  plainText(): string {
    if (this.finished) {
      return `${this.label}: ${this.finished === 'failed' ? 'FAILED after' : 'done,'} ${formatBytes(this.done)} of ${formatBytes(this.total)} in ${formatDuration(this.board.now() - this.started)}, ` +
        `${formatRate(this.averageRate())}${this.details.map((d) => `, ${d}`).join('')}`;
    }
    return `${this.label}: ${this.percent()}%, ${formatBytes(this.done)} of ${formatBytes(this.total)}, ${formatRate(this.rate())}, ETA ${this.eta()}` +
      this.details.map((d) => `, ${d}`).join('');
  }

  private percent(): number {
    if (this.total <= 0) return this.finished ? 100 : 0;
    return Math.min(100, Math.floor((this.done / this.total) * 100));
  }

  private averageRate(): number {
    const elapsed = (this.board.now() - this.started) / 1000;
    return elapsed > 0 ? this.done / elapsed : 0;
  }
}

/**
 * The rows of one command. On a terminal they are drawn as a block at the
 * bottom and redrawn in place; `log` puts a line above the block, so log
 * lines and the rows never overwrite each other.
 */
export class ProgressBoard {
  private readonly rows: ProgressRow[] = [];
  /** Rows currently on the screen (bar mode), the cursor at the end of the last. */
  private drawnRows = 0;
  private lastDraw = -Infinity;
  private closed = false;
  readonly now: () => number;

  constructor(private readonly output: ProgressOutput) {
    this.now = output.now ?? Date.now;
  }

  get mode(): ProgressMode {
    return this.output.mode;
  }

  row(label: string): ProgressRow {
    const row = new ProgressRow(this, label);
    this.rows.push(row);
    return row;
  }

  /** A line of the command's own (a log line), above the rows; written whatever the mode. */
  log(line: string): void {
    this.above(() => this.output.stream.write(`${line}\n`));
  }

  /** Lets `write` print whole lines on the stream (above the rows on a terminal: they are cleared first and redrawn after). */
  above(write: () => void): void {
    if (this.output.mode !== 'bar' || this.drawnRows === 0 || this.closed) {
      write();
      return;
    }
    this.output.stream.write(`${this.toBlockStart()}\x1b[J`);
    this.drawnRows = 0;
    write();
    this.draw();
  }

  changed(row: ProgressRow): void {
    if (this.closed) return;
    if (this.output.mode === 'lines') {
      if (row.lineDue(this.output.intervalMs)) {
        row.markLine();
        this.output.stream.write(`${timestamp(new Date(this.now()))} ${row.plainText()}\n`);
      }
      return;
    }
    if (this.output.mode !== 'bar') return;
    if (!row.finished && this.drawnRows === this.shownRows().length && this.now() - this.lastDraw < REDRAW_MS) return;
    this.draw();
  }

  /** The end: on a terminal the rows stay as last drawn and the cursor moves below them. */
  close(): void {
    if (this.closed) return;
    if (this.output.mode === 'bar' && this.shownRows().length > 0) {
      if (this.drawnRows !== this.shownRows().length || this.rows.some((r) => !r.finished)) this.draw();
      this.output.stream.write('\n');
    }
    this.closed = true;
  }

  private draw(): void {
    this.lastDraw = this.now();
    const width = Math.max(20, (this.output.stream.columns || 80) - 1);
    // A row longer than the terminal would wrap, and cursor-up would then miss its start.
    const rows = this.shownRows();
    const text = rows.map((r) => `\x1b[K${r.barText(width)}`).join('\n');
    this.output.stream.write(`${this.toBlockStart()}${text}`);
    this.drawnRows = rows.length;
  }

  private shownRows(): ProgressRow[] {
    return this.rows.filter((r) => r.shown);
  }

  /** From the end of the drawn block back to the start of its first row. */
  private toBlockStart(): string {
    return this.drawnRows > 1 ? `\x1b[${this.drawnRows - 1}A\r` : '\r';
  }
}

/** One row on its own board: the progress of a single-subject command. */
export class ProgressLine {
  private readonly board: ProgressBoard;
  private readonly row: ProgressRow;

  constructor(label: string, output: ProgressOutput) {
    this.board = new ProgressBoard(output);
    this.row = this.board.row(label);
  }

  update(done: number, total: number, details: ProgressDetails = []): void {
    this.row.update(done, total, details);
  }

  /** A line of the command's own while the row is shown (above it on a terminal). */
  log(line: string): void {
    this.board.log(line);
  }

  /** The final state, then the cursor below it; 'failed' when the work threw. */
  finish(outcome: 'done' | 'failed' = 'done'): void {
    this.row.finish(outcome);
    this.board.close();
  }

  /**
   * Runs `work` with this line, finishing it whatever happens (an error line
   * must not land on a half-drawn bar); `outcome` says whether a result the
   * command will fail on (damage found) counts as failed.
   */
  async around<T>(work: () => Promise<T>, outcome: (result: T) => 'done' | 'failed' = () => 'done'): Promise<T> {
    try {
      const result = await work();
      this.finish(outcome(result));
      return result;
    } catch (err) {
      this.finish('failed');
      throw err;
    }
  }
}

/** `read 1.2 GiB ÷ stored 12 MiB`, as a factor: how much less a backup stored than it read. */
export function dedupeField(readBytes: number, storedBytes: number): string {
  if (readBytes <= 0) return 'dedupe -';
  if (storedBytes <= 0) return 'all deduplicated';
  return `dedupe ${(readBytes / storedBytes).toFixed(1)}x`;
}

function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

function clock(totalSeconds: number): string {
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** To the second, in the form of ferry's other timestamped lines (site restore's log, nightly --verbose): `2026-12-01T02:14:05Z`. */
export function timestamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}
