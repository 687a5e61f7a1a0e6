// Zero runs are never stored: a disk image is mostly holes and zeroed blocks.
// A run of all-zero 4 KiB blocks at least MIN_ZERO_RUN long becomes a gap in
// the region map; shorter zero islands stay inside chunks (they compress to
// nothing), so small zero pages do not shatter data into tiny chunks.

export const ZERO_BLOCK = 4096;
export const MIN_ZERO_RUN = 64 * 1024;

const ZEROS = Buffer.alloc(ZERO_BLOCK);

import { Span } from './spans';

/**
 * The non-zero spans of `data[0, length)`, given spans known to be zero already
 * (holes), which are not scanned. Offsets are relative to `data`; 4 KiB blocks
 * are aligned to `data[0]` (regions start on 4 KiB boundaries of the image).
 */
export function nonZeroSpans(data: Buffer, length: number, knownZero: Span[]): Span[] {
  return nonZeroSpansOf((start, end) => data.subarray(start, end), length, knownZero);
}

/**
 * `nonZeroSpans` of bytes handed over block by block: `bytes(start, end)`
 * returns [start, end) (at most 4 KiB, asked for in ascending order), so a
 * region can be scanned through a small window instead of held whole.
 */
export function nonZeroSpansOf(bytes: (start: number, end: number) => Uint8Array, length: number, knownZero: Span[]): Span[] {
  const scanner = new ZeroRunScanner(length, knownZero);
  scanner.advance(length, bytes);
  return scanner.spans;
}

/**
 * nonZeroSpans a piece at a time, for a scan that cuts chunks behind it in the
 * same pass (workers/pipelineWorker.ts): `spans` holds the spans known so far,
 * and `openSpan` says what is known of the one still open.
 */
export class ZeroRunScanner {
  /** Non-zero spans whose ends are known, ascending. */
  readonly spans: Span[] = [];
  /** Bytes [0, scanned) are classified. */
  scanned = 0;
  private runStart = -1; // start of the current candidate zero run, or -1
  private dataStart = 0; // start of the current non-zero span
  private hole = 0;

  constructor(
    readonly length: number,
    private readonly knownZero: Span[],
  ) {}

  get done(): boolean {
    return this.scanned >= this.length && this.dataStart >= this.length;
  }

  /**
   * The span still open: it starts at `start`, and ends at `end` when a zero
   * run long enough to end it has been seen (undefined: at or after
   * `scanned` - MIN_ZERO_RUN). Undefined when the scan is done.
   */
  get openSpan(): { start: number; end?: number } | undefined {
    if (this.done) return undefined;
    const endsAtRun = this.runStart >= 0 && this.scanned - this.runStart >= MIN_ZERO_RUN;
    return endsAtRun ? { start: this.dataStart, end: this.runStart } : { start: this.dataStart };
  }

  /** Classify blocks up to `limit` (the region's end at the latest; holes are passed without reading). */
  advance(limit: number, bytes: (start: number, end: number) => Uint8Array): void {
    const { length, knownZero } = this;
    let pos = this.scanned;
    while (pos < length) {
      if (this.hole < knownZero.length && knownZero[this.hole].start <= pos) {
        // A hole: zero by definition; extend or start the zero run without reading.
        const end = Math.min(length, knownZero[this.hole].end);
        if (this.runStart < 0) this.runStart = pos;
        pos = Math.max(pos, end);
        this.hole++;
        continue;
      }
      const blockEnd = Math.min(length, pos + ZERO_BLOCK);
      if (blockEnd > limit) break;
      const block = bytes(pos, blockEnd);
      const isZero = block.length === ZERO_BLOCK ? ZEROS.equals(block) : isAllZero(block);
      if (isZero) {
        if (this.runStart < 0) this.runStart = pos;
      } else if (this.runStart >= 0) {
        this.closeZeroRun(this.runStart, pos);
        this.runStart = -1;
      }
      pos = blockEnd;
    }
    this.scanned = pos;
    if (pos >= length && this.dataStart < length) this.finish();
  }

  private closeZeroRun(zeroStart: number, zeroEnd: number): void {
    if (zeroEnd - zeroStart >= MIN_ZERO_RUN) {
      if (zeroStart > this.dataStart) this.spans.push({ start: this.dataStart, end: zeroStart });
      this.dataStart = zeroEnd;
    }
  }

  private finish(): void {
    const { length, runStart } = this;
    if (runStart >= 0) {
      // A short trailing zero run stays in the last chunk, unless nothing but zeros follows the last gap.
      if (length - runStart >= MIN_ZERO_RUN || runStart === this.dataStart) {
        if (runStart > this.dataStart) this.spans.push({ start: this.dataStart, end: runStart });
        this.dataStart = length;
      }
    }
    if (this.dataStart < length) this.spans.push({ start: this.dataStart, end: length });
    this.dataStart = length;
    this.runStart = -1;
  }
}

function isAllZero(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}
