// Changed-block tracking re-stores the old chunks a change touched, and what
// was written where no chunk was. In one region that can be all 32 MiB of it
// (4 KiB pages written all over a disk touch nearly every chunk), so it goes
// to the workers in batches of bounded size. A batch holds whole old chunks:
// a worker rebuilds each one from the repository in its place, beside the
// changed bytes it reads from the snapshot.
import { MapEntry } from '../repo/regionMap';
import { Span, mergeSpans, overlapsAny } from '../dedupe/spans';

export interface ChangedBatch {
  /** Region offsets to store again: ascending, disjoint, together at most the batch size. */
  spans: Span[];
  /** The touched old chunks, each wholly inside one of the spans, ascending. */
  olds: MapEntry[];
}

export interface ChangedRegionPlan {
  batches: ChangedBatch[];
  /** Old chunks no change touched: the new region map names them as before. */
  kept: MapEntry[];
}

/**
 * Split a region's changed ranges (region offsets, ascending) and its old map
 * entries into batches of at most `batchBytes` (at least the largest chunk).
 * Batches split only between old chunks, or every `batchBytes` inside new
 * data where no old chunk was.
 */
export function changedBatches(changed: Span[], oldEntries: MapEntry[], batchBytes: number): ChangedRegionPlan {
  const touched: MapEntry[] = [];
  const kept: MapEntry[] = [];
  for (const e of oldEntries) (overlapsAny({ start: e.offset, end: e.offset + e.length }, changed) ? touched : kept).push(e);
  const dirty = mergeSpans([...changed, ...touched.map((e) => ({ start: e.offset, end: e.offset + e.length }))]);

  const batches: ChangedBatch[] = [];
  let current: ChangedBatch = { spans: [], olds: [] };
  let currentBytes = 0;
  const add = (piece: Span, old?: MapEntry) => {
    const length = piece.end - piece.start;
    if (length > batchBytes) throw new RangeError(`a chunk of ${length} bytes does not fit a batch of ${batchBytes}`);
    if (currentBytes + length > batchBytes) {
      batches.push(current);
      current = { spans: [], olds: [] };
      currentBytes = 0;
    }
    const last = current.spans[current.spans.length - 1];
    if (last && last.end === piece.start) last.end = piece.end;
    else current.spans.push({ ...piece });
    if (old) current.olds.push(old);
    currentBytes += length;
  };
  let t = 0; // touched and dirty are both ascending; every touched chunk lies in one dirty span
  for (const span of dirty) {
    for (let pos = span.start; pos < span.end; ) {
      const old = touched[t];
      if (old && old.offset === pos) {
        add({ start: pos, end: pos + old.length }, old);
        pos += old.length;
        t++;
      } else {
        const end = Math.min(span.end, old && old.offset < span.end ? old.offset : span.end, pos + batchBytes);
        add({ start: pos, end });
        pos = end;
      }
    }
  }
  if (current.spans.length > 0) batches.push(current);
  return { batches, kept };
}
