// How changed-block tracking splits a region's work into batches
// (src/backup/changedBatches.ts): bounded in size, whole old chunks only,
// every changed byte and every touched chunk in exactly one batch.
import { describe, expect, it } from 'vitest';
import { changedBatches } from '../../src/backup/changedBatches';
import { MapEntry } from '../../src/repo/regionMap';

const KiB = 1024;

/** Old chunks of `length` bytes back to back from `start`. */
function chunks(start: number, count: number, length: number): MapEntry[] {
  return Array.from({ length: count }, (_, i) => ({ offset: start + i * length, length, id: Buffer.alloc(32, i) }));
}

const bytes = (spans: { start: number; end: number }[]) => spans.reduce((n, s) => n + s.end - s.start, 0);

describe('changedBatches', () => {
  it('keeps untouched chunks, and puts each touched one whole into one batch of at most the batch size', () => {
    const old = chunks(0, 16, 256 * KiB); // 4 MiB of chunks
    // A page in chunks 1, 2, 3 and 9; one page straddling chunks 12 and 13.
    const changed = [1, 2, 3, 9].map((c) => ({ start: c * 256 * KiB + 8 * KiB, end: c * 256 * KiB + 12 * KiB }));
    changed.push({ start: 13 * 256 * KiB - 2 * KiB, end: 13 * 256 * KiB + 2 * KiB });
    const { batches, kept } = changedBatches(changed, old, 768 * KiB);
    expect(kept.map((e) => e.offset / (256 * KiB))).toEqual([0, 4, 5, 6, 7, 8, 10, 11, 14, 15]);
    const olds = batches.flatMap((b) => b.olds.map((e) => e.offset / (256 * KiB)));
    expect(olds).toEqual([1, 2, 3, 9, 12, 13]);
    for (const b of batches) {
      expect(bytes(b.spans)).toBeLessThanOrEqual(768 * KiB);
      for (const e of b.olds) expect(b.spans.some((s) => s.start <= e.offset && e.offset + e.length <= s.end)).toBe(true);
    }
    // Chunks 1-3 are one span, 9 another, 12-13 a third: two batches of 768 KiB at most.
    expect(batches.map((b) => b.spans.map((s) => [s.start / KiB, s.end / KiB]))).toEqual([[[256, 1024]], [[2304, 2560], [3072, 3584]]]);
  });

  it('splits data written where no chunk was every batch size, and covers every changed byte once', () => {
    const old = chunks(0, 2, 256 * KiB);
    const changed = [{ start: 100 * KiB, end: 104 * KiB }, { start: 1024 * KiB, end: 3072 * KiB + 4 * KiB }];
    const { batches, kept } = changedBatches(changed, old, 768 * KiB);
    expect(kept.map((e) => e.offset)).toEqual([256 * KiB]);
    const spans = batches.flatMap((b) => b.spans);
    expect(spans.map((s) => [s.start / KiB, s.end / KiB])).toEqual([[0, 256], [1024, 1792], [1792, 2560], [2560, 3076]]);
    expect(batches.every((b) => bytes(b.spans) <= 768 * KiB)).toBe(true);
  });

  it('refuses a batch size smaller than a touched chunk', () => {
    expect(() => changedBatches([{ start: 0, end: 4096 }], chunks(0, 1, 1024 * KiB), 512 * KiB)).toThrow(RangeError);
  });
});
