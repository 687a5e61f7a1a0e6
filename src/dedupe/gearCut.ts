// The chunker's gear loop in WebAssembly (gearCut.wat): ~4x faster than the
// JavaScript loop. Its memory holds the gear table, a scratch area that bytes
// from elsewhere are copied into, and a buffer a caller may read into so that
// cutting them needs no copy (the pipeline workers' read window).
import { DIRECT_ALIGN, pageAlignedMemory } from '../host/directIo';
import { GEAR_CUT_WASM_BASE64 } from './gearCutWasm';

const GEAR_BYTES = 1024;

interface GearCutExports {
  cut(i: number, normalEnd: number, limitEnd: number, maskS: number, maskL: number): number;
}

let compiled: WebAssembly.Module | undefined;

export class WasmGearLoop {
  private readonly memory: WebAssembly.Memory;
  private readonly exports: GearCutExports;
  private readonly scratch: Buffer;
  /** Bytes in this buffer are cut where they lie. */
  readonly buffer: Buffer;

  /** `scratchBytes`: the most bytes one cut looks at; `bufferBytes`: the caller's buffer. Untouched pages cost no memory. */
  constructor(gear: Int32Array, scratchBytes: number, bufferBytes: number) {
    // The caller's buffer starts on a page: direct I/O into it is slow otherwise (host/directIo.ts, pageAlignedMemory).
    const bufferAt = Math.ceil((GEAR_BYTES + scratchBytes) / DIRECT_ALIGN) * DIRECT_ALIGN;
    this.memory = pageAlignedMemory(bufferAt + bufferBytes);
    compiled ??= new WebAssembly.Module(Buffer.from(GEAR_CUT_WASM_BASE64, 'base64'));
    this.exports = new WebAssembly.Instance(compiled, { ferry: { memory: this.memory } }).exports as unknown as GearCutExports;
    const table = new DataView(this.memory.buffer, 0, GEAR_BYTES);
    gear.forEach((g, i) => table.setInt32(4 * i, g, true));
    this.scratch = Buffer.from(this.memory.buffer, GEAR_BYTES, scratchBytes);
    this.buffer = Buffer.from(this.memory.buffer, bufferAt, bufferBytes);
  }

  /**
   * The FastCDC loop over `data[from, limitEnd)` (see Chunker.nextCut): the
   * index just past the cut, or `limitEnd`. `data` is copied into the scratch
   * area unless it lies in `buffer`.
   */
  cut(data: Uint8Array, from: number, normalEnd: number, limitEnd: number, maskS: number, maskL: number): number {
    let base: number;
    if (data.buffer === this.memory.buffer) {
      base = data.byteOffset;
    } else {
      this.scratch.set(data.subarray(from, limitEnd));
      base = this.scratch.byteOffset - from;
    }
    return this.exports.cut(base + from, base + normalEnd, base + limitEnd, maskS, maskL) - base;
  }
}
