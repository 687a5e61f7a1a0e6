// Byte ranges as the engine passes them around: a provider's changed ranges
// are clipped to the disk and merged before a backup uses them.
import { describe, expect, it } from 'vitest';
import { clippedMerged } from '../../src/dedupe/spans';

describe('clippedMerged', () => {
  it('clips to the disk, drops empty ranges, sorts and merges overlapping or touching ones', () => {
    const given = [
      { start: 300, end: 400 },
      { start: -10, end: 20 },
      { start: 20, end: 30 }, // touches the one before
      { start: 50, end: 50 }, // empty
      { start: 350, end: 380 }, // inside another
      { start: 990, end: 2000 }, // past the end
    ];
    expect(clippedMerged(given, 1000)).toEqual([{ start: 0, end: 30 }, { start: 300, end: 400 }, { start: 990, end: 1000 }]);
    expect(given[0]).toEqual({ start: 300, end: 400 }); // the caller's ranges are left as they were
  });

  it('returns ranges that already are clipped and merged as they are, not a copy', () => {
    const ready = [{ start: 0, end: 4096 }, { start: 8192, end: 12288 }];
    expect(clippedMerged(ready, 16384)).toBe(ready);
    expect(clippedMerged(ready, 10000)).not.toBe(ready);
    expect(clippedMerged([{ start: 0, end: 4096 }, { start: 4096, end: 8192 }], 16384)).toEqual([{ start: 0, end: 8192 }]);
  });
});
