// Content-defined chunking, FastCDC style: a gear rolling hash with normalized
// chunking (a stricter mask before the average size, a looser one after), so
// chunk sizes cluster around the average. Boundaries depend only on nearby
// bytes, so an in-place change re-cuts only the chunks around it.
import { ChunkerParams } from '../repo/format';
import { pageAlignedBuffer } from '../host/directIo';
import { WasmGearLoop } from './gearCut';

export interface ChunkerOptions {
  /** Where the gear loop runs: WebAssembly (default, ~4x faster) or JavaScript (the reference it is tested against). */
  gearLoop?: 'wasm' | 'js';
  /** Size of `buffer`: bytes read into it are cut without a copy. */
  bufferBytes?: number;
}

/** A mask with `bits` one-bits at the top of a 32-bit word (the gear hash mixes upward). */
function topBits(bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1) | 0;
}

export class Chunker {
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly wasm?: WasmGearLoop;
  /** A buffer of `bufferBytes` to read into: with the WebAssembly loop, cutting its bytes needs no copy. */
  readonly buffer: Buffer;

  constructor(readonly params: ChunkerParams, private readonly gear: Int32Array, opts: ChunkerOptions = {}) {
    const bits = Math.round(Math.log2(params.avgSize));
    this.maskS = topBits(bits + 2);
    this.maskL = topBits(bits - 2);
    const bufferBytes = opts.bufferBytes ?? 0;
    if ((opts.gearLoop ?? 'wasm') === 'wasm' && params.kind === 'fastcdc') {
      this.wasm = new WasmGearLoop(gear, this.maxBytes, bufferBytes);
      this.buffer = this.wasm.buffer;
    } else {
      this.buffer = pageAlignedBuffer(bufferBytes);
    }
  }

  /**
   * Cut `data[start, end)` into chunks; returns the chunk lengths in order.
   * `absoluteStart` is where `start` lies in the image, for fixed-size cuts.
   */
  cut(data: Uint8Array, start: number, end: number, absoluteStart: number): number[] {
    const lengths: number[] = [];
    if (this.params.kind === 'fixed') {
      const size = this.params.avgSize;
      let pos = start;
      while (pos < end) {
        const abs = absoluteStart + (pos - start);
        const next = Math.min(end, pos + (size - (abs % size)));
        lengths.push(next - pos);
        pos = next;
      }
      return lengths;
    }
    let pos = start;
    while (pos < end) {
      const len = this.nextCut(data, pos, end);
      lengths.push(len);
      pos += len;
    }
    return lengths;
  }

  /**
   * The length of the chunk starting at `data[start]`, the bytes up to `end`
   * being the rest of the span. The same as `cut`'s next length as long as
   * `data` holds the span up to `start + maxBytes` (or its end): a caller can
   * cut through a window of the span.
   */
  nextLength(data: Uint8Array, start: number, end: number, absoluteStart: number): number {
    if (this.params.kind === 'fixed') return Math.min(end - start, this.params.avgSize - (absoluteStart % this.params.avgSize));
    return this.nextCut(data, start, end);
  }

  /**
   * Whether `nextLength(data, start, end, absoluteStart)` is `length`, given that `data[start, start + length)`
   * are the bytes of a chunk this chunker once cut to `length` (the caller checked its id), with
   * whatever followed it then. No position before its end fired then, so none fires now: only the
   * end is to be checked, from the 32 bytes the gear hash holds there, instead of the whole chunk.
   */
  cutsAgainAt(data: Uint8Array, start: number, end: number, absoluteStart: number, length: number): boolean {
    if (this.params.kind === 'fixed') return this.nextLength(data, start, end, absoluteStart) === length;
    const { minSize, avgSize, maxSize } = this.params;
    const remaining = end - start;
    if (length > remaining) return false;
    if (remaining <= minSize) return length === remaining;
    const limit = Math.min(remaining, maxSize);
    if (length === limit) return true;
    if (length <= minSize) return false;
    const mask = length <= Math.min(limit, avgSize) ? this.maskS : this.maskL;
    // A 32-bit gear hash shifts each byte out after 32 more: the last 32 bytes make it.
    let h = 0;
    for (let i = start + Math.max(minSize, length - 32); i < start + length; i++) h = ((h << 1) + this.gear[data[i]]) | 0;
    return (h & mask) === 0;
  }

  /** The most bytes past a chunk's start that decide its length. */
  get maxBytes(): number {
    return Math.max(this.params.maxSize, this.params.avgSize);
  }

  private nextCut(data: Uint8Array, start: number, end: number): number {
    const { minSize, avgSize, maxSize } = this.params;
    const remaining = end - start;
    if (remaining <= minSize) return remaining;
    const limit = Math.min(remaining, maxSize);
    const normal = Math.min(limit, avgSize);
    if (this.wasm) return this.wasm.cut(data, start + minSize, start + normal, start + limit, this.maskS, this.maskL) - start;
    const gear = this.gear;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + minSize;
    const normalEnd = start + normal;
    const limitEnd = start + limit;
    for (; i < normalEnd; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & maskS) === 0) return i - start + 1;
    }
    for (; i < limitEnd; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & maskL) === 0) return i - start + 1;
    }
    return limit;
  }
}
