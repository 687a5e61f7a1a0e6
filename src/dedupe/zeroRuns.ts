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
  const out: Span[] = [];
  let runStart = -1; // start of the current candidate zero run, or -1
  let dataStart = 0; // start of the current non-zero span
  let hole = 0;
  const closeZeroRun = (zeroStart: number, zeroEnd: number) => {
    if (zeroEnd - zeroStart >= MIN_ZERO_RUN) {
      if (zeroStart > dataStart) out.push({ start: dataStart, end: zeroStart });
      dataStart = zeroEnd;
    }
  };
  let pos = 0;
  while (pos < length) {
    if (hole < knownZero.length && knownZero[hole].start <= pos) {
      // A hole: zero by definition; extend or start the zero run without reading.
      const end = Math.min(length, knownZero[hole].end);
      if (runStart < 0) runStart = pos;
      pos = Math.max(pos, end);
      hole++;
      continue;
    }
    const blockEnd = Math.min(length, pos + ZERO_BLOCK);
    const block = bytes(pos, blockEnd);
    const isZero = block.length === ZERO_BLOCK ? ZEROS.equals(block) : isAllZero(block);
    if (isZero) {
      if (runStart < 0) runStart = pos;
    } else if (runStart >= 0) {
      closeZeroRun(runStart, pos);
      runStart = -1;
    }
    pos = blockEnd;
  }
  if (runStart >= 0) {
    // A short trailing zero run stays in the last chunk, unless nothing but zeros follows the last gap.
    if (length - runStart >= MIN_ZERO_RUN || runStart === dataStart) {
      if (runStart > dataStart) out.push({ start: dataStart, end: runStart });
      dataStart = length;
    }
  }
  if (dataStart < length) out.push({ start: dataStart, end: length });
  return out;
}

function isAllZero(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}
