// Byte ranges [start, end) and the few operations the pipeline needs on
// ascending, non-overlapping lists of them.
import type { ByteRange } from '../snapshot/provider';

/** One type for byte ranges from the snapshot seam on (a snapshot's `changed` ranges are spans here). */
export type Span = ByteRange;

/** The parts of `spans` inside [start, end), relative to `start`. */
export function clipSpans(spans: Span[], start: number, end: number): Span[] {
  const out: Span[] = [];
  // Binary search for the first span ending after `start`: images can have many extents.
  let lo = 0;
  let hi = spans.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (spans[mid].end <= start) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < spans.length && spans[i].start < end; i++) {
    out.push({ start: Math.max(spans[i].start, start) - start, end: Math.min(spans[i].end, end) - start });
  }
  return out;
}

/** The complement of `spans` within [0, length). */
export function complementSpans(spans: Span[], length: number): Span[] {
  const out: Span[] = [];
  let pos = 0;
  for (const s of spans) {
    if (s.start > pos) out.push({ start: pos, end: s.start });
    pos = Math.max(pos, s.end);
  }
  if (pos < length) out.push({ start: pos, end: length });
  return out;
}

/** Sort and merge overlapping or touching spans. */
export function mergeSpans(spans: Span[]): Span[] {
  const sorted = spans.filter((s) => s.end > s.start).sort((a, b) => a.start - b.start);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

export function overlapsAny(s: Span, sorted: Span[]): boolean {
  return clipSpans(sorted, s.start, s.end).length > 0;
}
