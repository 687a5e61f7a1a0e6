import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { differingPages, worthPatching } from '../../src/dedupe/pagePatch';
import { applyPatch, decodePatchHeader, encodePatch, MAX_PATCH_DEPTH, PAGE } from '../../src/repo/pagePatchFormat';

describe('page patches', () => {
  const base = randomBytes(64 * PAGE + 1000); // a chunk need not end on a page boundary
  const next = Buffer.from(base);
  randomBytes(PAGE).copy(next, 3 * PAGE);
  next[10 * PAGE + 17] ^= 0xff;
  randomBytes(1000).copy(next, 64 * PAGE); // the short last page

  it('finds exactly the pages that differ', () => {
    expect(differingPages(base, next)).toEqual([3, 10, 64]);
    expect(differingPages(base, base)).toEqual([]);
    expect(differingPages(base, next, base.length)).toBeUndefined(); // no base byte to compare with
  });

  it('rebuilds the new chunk from the base and the changed pages only', () => {
    const pages = differingPages(base, next)!;
    const patch = encodePatch(randomBytes(32), 0, next, pages);
    expect(patch.length).toBeLessThan(3 * PAGE + 100);
    expect(applyPatch(base, patch)).toEqual(next);
    expect(decodePatchHeader(patch)?.depth).toBe(1);
  });

  it('refuses a base too short for the pages it does not carry, and a truncated patch', () => {
    const patch = encodePatch(randomBytes(32), 0, next, differingPages(base, next)!);
    expect(applyPatch(base.subarray(0, base.length - 5000), patch)).toBeUndefined();
    expect(applyPatch(base, patch.subarray(0, patch.length - 1))).toBeUndefined();
  });

  it('patches a chunk whose boundary moved, comparing the same disk bytes', () => {
    // The new chunk starts 3 pages and 100 bytes into the old one and runs past its end.
    const shift = 3 * PAGE + 100;
    const moved = Buffer.concat([base.subarray(shift), randomBytes(2 * PAGE)]);
    moved[5 * PAGE] ^= 1;
    const pages = differingPages(base, moved, shift)!;
    const lastFromBase = Math.floor((base.length - shift) / PAGE);
    expect(pages).toEqual([5, ...Array.from({ length: Math.ceil(moved.length / PAGE) - lastFromBase }, (_, i) => lastFromBase + i)]);
    const patch = encodePatch(randomBytes(32), 2, moved, pages, shift);
    expect(applyPatch(base, patch)).toEqual(moved);
    expect(decodePatchHeader(patch)).toMatchObject({ depth: 3, shift, length: moved.length });
  });

  it('is worth storing only for few changed pages and a bounded chain', () => {
    expect(worthPatching([1, 2], 64 * PAGE, 0)).toBe(true);
    expect(worthPatching(Array.from({ length: 40 }, (_, i) => i), 64 * PAGE, 0)).toBe(false);
    expect(worthPatching([1], 64 * PAGE, MAX_PATCH_DEPTH)).toBe(false);
    expect(worthPatching([], 64 * PAGE, 0)).toBe(false);
  });
});
