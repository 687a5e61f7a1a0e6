// Page patches: a changed chunk stored as the 4 KiB pages that differ from the
// chunk that stood at the same place in the previous restore point (the old
// chunk covering the new chunk's first byte, compared at the same disk
// offsets, so a write that moved a chunk boundary still patches). Disk
// images change by scattered page writes (databases, journals); with chunks of
// 256 KiB, every such write would otherwise store a whole new chunk, ~60x the
// real change. A patch is still addressed by the keyed hash of the full new
// chunk, so dedupe and verification are unchanged; chains are capped at
// MAX_PATCH_DEPTH so a restore never resolves more than that many bases.

import { MAX_PATCH_DEPTH, PAGE } from '../repo/pagePatchFormat';
import { Span, firstEndingAfter } from './spans';

/** Store a patch only when at most this fraction of the pages changed. */
export const MAX_PATCHED_FRACTION = 0.5;

/**
 * Indexes of the pages of `next` that differ from `base` read from `shift` on;
 * pages reaching past the end of the base count as different.
 */
export function differingPages(base: Uint8Array, next: Uint8Array, shift = 0): number[] | undefined {
  if (shift < 0 || shift >= base.length) return undefined;
  const a = Buffer.from(base.buffer, base.byteOffset, base.length);
  const b = Buffer.from(next.buffer, next.byteOffset, next.length);
  const pages: number[] = [];
  for (let p = 0, at = 0; at < b.length; p++, at += PAGE) {
    const end = Math.min(b.length, at + PAGE);
    // compare() with ranges: no view objects per page (a backup compares every page of every patched chunk).
    if (shift + end > a.length || a.compare(b, at, end, shift + at, shift + end) !== 0) pages.push(p);
  }
  return pages;
}

/**
 * The pages of the chunk [pos, pos + length) that `changed` (ascending,
 * disjoint, same offsets) touches, and those reaching past `baseEnd`, where
 * its base ends: the pages that may differ from the base, known without
 * reading it when changed-block tracking says the rest is as it was.
 */
export function touchedPages(changed: Span[], pos: number, length: number, baseEnd: number): number[] {
  const end = pos + length;
  const pages: number[] = [];
  const add = (from: number, to: number) => {
    for (let p = Math.max(Math.floor((from - pos) / PAGE), pages.length > 0 ? pages[pages.length - 1] + 1 : 0); p <= Math.floor((to - 1 - pos) / PAGE); p++) pages.push(p);
  };
  for (let i = firstEndingAfter(changed, pos); i < changed.length && changed[i].start < end; i++) add(Math.max(pos, changed[i].start), Math.min(end, changed[i].end));
  if (baseEnd < end) add(Math.max(pos, baseEnd), end);
  return pages;
}

/** Whether a patch with `pages` changed pages is worth storing instead of the chunk. */
export function worthPatching(pages: number[] | undefined, length: number, baseDepth: number): pages is number[] {
  return pages !== undefined && baseDepth < MAX_PATCH_DEPTH && pages.length > 0 && pages.length * PAGE <= length * MAX_PATCHED_FRACTION;
}
