import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { applyPatch, decodePatchHeader, differingPages, encodePatch, MAX_PATCH_DEPTH, PAGE, worthPatching } from '../../src/dedupe/pagePatch';

describe('page patches', () => {
  const base = randomBytes(64 * PAGE + 1000); // a chunk need not end on a page boundary
  const next = Buffer.from(base);
  randomBytes(PAGE).copy(next, 3 * PAGE);
  next[10 * PAGE + 17] ^= 0xff;
  randomBytes(1000).copy(next, 64 * PAGE); // the short last page

  it('finds exactly the pages that differ', () => {
    expect(differingPages(base, next)).toEqual([3, 10, 64]);
    expect(differingPages(base, base)).toEqual([]);
    expect(differingPages(base, next.subarray(1))).toBeUndefined();
  });

  it('rebuilds the new chunk from the base and the changed pages only', () => {
    const pages = differingPages(base, next)!;
    const patch = encodePatch(randomBytes(32), 0, next, pages);
    expect(patch.length).toBeLessThan(3 * PAGE + 100);
    expect(applyPatch(base, patch)).toEqual(next);
    expect(decodePatchHeader(patch)?.depth).toBe(1);
  });

  it('refuses a base of another length and a truncated patch', () => {
    const patch = encodePatch(randomBytes(32), 0, next, differingPages(base, next)!);
    expect(applyPatch(base.subarray(1), patch)).toBeUndefined();
    expect(applyPatch(base, patch.subarray(0, patch.length - 1))).toBeUndefined();
  });

  it('is worth storing only for few changed pages and a bounded chain', () => {
    expect(worthPatching([1, 2], 64 * PAGE, 0)).toBe(true);
    expect(worthPatching(Array.from({ length: 40 }, (_, i) => i), 64 * PAGE, 0)).toBe(false);
    expect(worthPatching([1], 64 * PAGE, MAX_PATCH_DEPTH)).toBe(false);
    expect(worthPatching([], 64 * PAGE, 0)).toBe(false);
  });
});
