// The page-patch body (blob type 2), byte by byte as docs/FORMAT.md "Page
// patches" specifies it: encoding, decoding, and rebuilding the chunk from its
// base. Deciding *whether* to patch is dedupe's (dedupe/pagePatch.ts); reading
// chains is the repository's (blobReader.ts).

export const PAGE = 4096;
/** A chain of patches is at most this deep; then a whole chunk is stored again. */
export const MAX_PATCH_DEPTH = 8;

const HEADER = 32 + 1 + 4 + 4 + 4; // base id | depth | chunk length | shift | page count

export interface PatchHeader {
  baseId: Buffer;
  /** 1 for a patch on a full chunk, n+1 for a patch on a depth-n patch. */
  depth: number;
  length: number;
  /** New chunk byte i is base byte shift + i, outside the patched pages. */
  shift: number;
  pages: number[];
}

export function encodePatch(baseId: Uint8Array, baseDepth: number, next: Uint8Array, pages: number[], shift = 0, into?: Buffer): Buffer {
  const dataBytes = pages.reduce((n, p) => n + Math.min(PAGE, next.length - p * PAGE), 0);
  const length = HEADER + pages.length * 4 + dataBytes;
  // `into` (at least patchBytesAtMost(next.length)): a caller's scratch, so a backup makes no fresh buffer per patch.
  const out = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  out.set(baseId, 0);
  out[32] = baseDepth + 1;
  out.writeUInt32LE(next.length, 33);
  out.writeUInt32LE(shift, 37);
  out.writeUInt32LE(pages.length, 41);
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

/** The most bytes a patch of a chunk of `length` bytes takes (every page changed). */
export function patchBytesAtMost(length: number): number {
  return HEADER + Math.ceil(length / PAGE) * 4 + length;
}

/** Undefined when the bytes are not a well-formed patch. */
export function decodePatchHeader(plain: Buffer): PatchHeader | undefined {
  if (plain.length < HEADER) return undefined;
  const length = plain.readUInt32LE(33);
  const shift = plain.readUInt32LE(37);
  const count = plain.readUInt32LE(41);
  if (HEADER + count * 4 > plain.length) return undefined;
  const pages: number[] = [];
  for (let i = 0; i < count; i++) pages.push(plain.readUInt32LE(HEADER + i * 4));
  return { baseId: Buffer.from(plain.subarray(0, 32)), depth: plain[32], length, shift, pages };
}

/** The new chunk: `base` with the patch's pages laid over it. Undefined if they do not fit. */
export function applyPatch(base: Buffer, plain: Buffer, into?: Buffer): Buffer | undefined {
  const h = decodePatchHeader(plain);
  if (!h || h.shift >= base.length || (into && into.length < h.length)) return undefined;
  // Every byte of `out` is written below (from the base, or by a page the check requires), so a reused buffer needs no zeroing.
  const out = into ? into.subarray(0, h.length) : Buffer.alloc(h.length);
  const fromBase = Math.min(h.length, base.length - h.shift);
  base.copy(out, 0, h.shift, h.shift + fromBase);
  // Every page the base does not reach must come with the patch.
  const patched = new Set(h.pages);
  if (fromBase < h.length) {
    for (let p = Math.floor(fromBase / PAGE); p * PAGE < h.length; p++) if (!patched.has(p)) return undefined;
  }
  let at = HEADER + h.pages.length * 4;
  for (const p of h.pages) {
    const len = Math.min(PAGE, h.length - p * PAGE);
    if (len <= 0 || at + len > plain.length) return undefined;
    plain.copy(out, p * PAGE, at, at + len);
    at += len;
  }
  return at === plain.length ? out : undefined;
}
