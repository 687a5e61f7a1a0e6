import { describe, expect, it } from 'vitest';
import { nonZeroSpans, MIN_ZERO_RUN } from '../../src/dedupe/zeroRuns';

describe('zero runs', () => {
  it('splits data around long zero runs and keeps short zero islands inside data', () => {
    const buf = Buffer.alloc(1024 * 1024);
    buf.fill(1, 0, 8192);
    buf.fill(2, 8192 + 8192, 8192 + 8192 + 4096); // 8 KiB zero island: stays in the span
    buf.fill(3, 512 * 1024, 520 * 1024);
    expect(nonZeroSpans(buf, buf.length, [])).toEqual([
      { start: 0, end: 20480 },
      { start: 512 * 1024, end: 520 * 1024 },
    ]);
  });

  it('treats known holes as zero without reading them', () => {
    const buf = Buffer.alloc(512 * 1024, 9); // garbage where the hole is: must not be looked at
    const spans = nonZeroSpans(buf, buf.length, [{ start: 64 * 1024, end: 64 * 1024 + MIN_ZERO_RUN }]);
    expect(spans).toEqual([
      { start: 0, end: 64 * 1024 },
      { start: 64 * 1024 + MIN_ZERO_RUN, end: 512 * 1024 },
    ]);
  });

  it('returns nothing for an all-zero region', () => {
    expect(nonZeroSpans(Buffer.alloc(256 * 1024), 256 * 1024, [])).toEqual([]);
  });
});
