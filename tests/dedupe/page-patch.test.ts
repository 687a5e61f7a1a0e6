import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { differingPages, touchedPages, worthPatching } from '../../src/dedupe/pagePatch';
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

  it('knows the pages that may differ from where the changes fell, without the base', () => {
    // A chunk at disk byte 100 000 (not page-aligned), 10 pages and a bit long; its base ends at 100 000 + 9.5 pages.
    const pos = 100_000;
    const length = 10 * PAGE + 300;
    const changed = [
      { start: 0, end: 50_000 }, // before the chunk
      { start: pos + PAGE + 10, end: pos + PAGE + 20 }, // inside page 1
      { start: pos + 3 * PAGE - 1, end: pos + 3 * PAGE + 1 }, // the last byte of page 2 and the first of page 3
      { start: pos + 5 * PAGE, end: pos + 5 * PAGE + 2 * PAGE }, // pages 5 and 6, exactly
    ];
    expect(touchedPages(changed, pos, length, pos + length)).toEqual([1, 2, 3, 5, 6]);
    // Pages reaching past the base's end differ too (9 and the short page 10), once each.
    expect(touchedPages(changed, pos, length, pos + 9 * PAGE + PAGE / 2)).toEqual([1, 2, 3, 5, 6, 9, 10]);
    expect(touchedPages([...changed, { start: pos + 9 * PAGE, end: pos + 12 * PAGE }], pos, length, pos + 9 * PAGE + 1)).toEqual([1, 2, 3, 5, 6, 9, 10]);
    expect(touchedPages(changed.slice(0, 1), pos, length, pos + length)).toEqual([]);
    // The same pages a comparison finds, when the changes are all there is.
    const old = randomBytes(length);
    const now = Buffer.from(old);
    // Every changed byte really differs (random bytes equal the old ones 1 time in 256: a 2-byte change then left a page alike).
    for (const c of changed.slice(1)) for (let i = c.start - pos; i < c.end - pos; i++) now[i] = old[i] ^ (1 + (i % 255));
    expect(touchedPages(changed, pos, length, pos + length)).toEqual(differingPages(old, now));
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
