// Byte ranges [start, end) and the few operations the pipeline needs on
// ascending, non-overlapping lists of them.
import type { ByteRange } from '../snapshot/provider';

/** One type for byte ranges from the snapshot seam on (a snapshot's `changed` ranges are spans here). */
export type Span = ByteRange;

/** The parts of `spans` inside [start, end), relative to `start`. */
export function clipSpans(spans: Span[], start: number, end: number): Span[] {
  const out: Span[] = [];
  for (let i = firstEndingAfter(spans, start); i < spans.length && spans[i].start < end; i++) {
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

/**
 * `spans` clipped to [0, length), sorted and merged (mergeSpans); the same
 * array when it already is, as providers hand it over: 50,000 changed pages
 * are not held twice.
 */
export function clippedMerged(spans: Span[], length: number): Span[] {
  const ready = spans.every((s, i) => s.start >= 0 && s.end <= length && s.end > s.start && (i === 0 || s.start > spans[i - 1].end));
  return ready ? spans : mergeSpans(spans.map((s) => ({ start: Math.max(0, s.start), end: Math.min(length, s.end) })));
}

export function overlapsAny(s: Span, sorted: Span[]): boolean {
  return clipSpans(sorted, s.start, s.end).length > 0;
}

/** The index of the first of `sorted` (ascending, disjoint) that ends after `pos`, by binary search: images can have many extents, and a night many changed pages. */
export function firstEndingAfter(sorted: Span[], pos: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid].end <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
