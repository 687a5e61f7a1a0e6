// Page patches: a changed chunk stored as the 4 KiB pages that differ from the
// chunk that stood at the same place in the previous restore point. Disk
// images change by scattered page writes (databases, journals); with chunks of
// 256 KiB, every such write would otherwise store a whole new chunk, ~60x the
// real change. A patch is still addressed by the keyed hash of the full new
// chunk, so dedupe and verification are unchanged; chains are capped at
// MAX_PATCH_DEPTH so a restore never resolves more than that many bases.

export const PAGE = 4096;
export const MAX_PATCH_DEPTH = 8;
/** Store a patch only when at most this fraction of the pages changed. */
export const MAX_PATCHED_FRACTION = 0.5;

const HEADER = 32 + 1 + 4 + 4; // base id | depth | chunk length | page count

export interface PatchHeader {
  baseId: Buffer;
  /** 1 for a patch on a full chunk, n+1 for a patch on a depth-n patch. */
  depth: number;
  length: number;
  pages: number[];
}

/** Indexes of the pages where `next` differs from `base`; undefined if the lengths differ. */
export function differingPages(base: Uint8Array, next: Uint8Array): number[] | undefined {
  if (base.length !== next.length) return undefined;
  const a = Buffer.from(base.buffer, base.byteOffset, base.length);
  const b = Buffer.from(next.buffer, next.byteOffset, next.length);
  const pages: number[] = [];
  for (let p = 0, at = 0; at < b.length; p++, at += PAGE) {
    const end = Math.min(b.length, at + PAGE);
    if (!a.subarray(at, end).equals(b.subarray(at, end))) pages.push(p);
  }
  return pages;
}

/** Whether a patch with `pages` changed pages is worth storing instead of the chunk. */
export function worthPatching(pages: number[] | undefined, length: number, baseDepth: number): pages is number[] {
  return pages !== undefined && baseDepth < MAX_PATCH_DEPTH && pages.length > 0 && pages.length * PAGE <= length * MAX_PATCHED_FRACTION;
}

export function encodePatch(baseId: Uint8Array, baseDepth: number, next: Uint8Array, pages: number[]): Buffer {
  const dataBytes = pages.reduce((n, p) => n + Math.min(PAGE, next.length - p * PAGE), 0);
  const out = Buffer.allocUnsafe(HEADER + pages.length * 4 + dataBytes);
  out.set(baseId, 0);
  out[32] = baseDepth + 1;
  out.writeUInt32LE(next.length, 33);
  out.writeUInt32LE(pages.length, 37);
  let at = HEADER;
  for (const p of pages) {
    out.writeUInt32LE(p, at);
    at += 4;
  }
  for (const p of pages) {
    const page = next.subarray(p * PAGE, Math.min(next.length, (p + 1) * PAGE));
    out.set(page, at);
    at += page.length;
  }
  return out;
}

/** Undefined when the bytes are not a well-formed patch. */
export function decodePatchHeader(plain: Buffer): PatchHeader | undefined {
  if (plain.length < HEADER) return undefined;
  const length = plain.readUInt32LE(33);
  const count = plain.readUInt32LE(37);
  if (HEADER + count * 4 > plain.length) return undefined;
  const pages: number[] = [];
  for (let i = 0; i < count; i++) pages.push(plain.readUInt32LE(HEADER + i * 4));
  return { baseId: Buffer.from(plain.subarray(0, 32)), depth: plain[32], length, pages };
}

/** The new chunk: `base` with the patch's pages laid over it. Undefined if they do not fit. */
export function applyPatch(base: Buffer, plain: Buffer): Buffer | undefined {
  const h = decodePatchHeader(plain);
  if (!h || base.length !== h.length) return undefined;
  const out = Buffer.from(base);
  let at = HEADER + h.pages.length * 4;
  for (const p of h.pages) {
    const len = Math.min(PAGE, h.length - p * PAGE);
    if (len <= 0 || at + len > plain.length) return undefined;
    plain.copy(out, p * PAGE, at, at + len);
    at += len;
  }
  return at === plain.length ? out : undefined;
}
