// The gear loop in WebAssembly (src/dedupe/gearCut.wat) cuts exactly where the
// JavaScript loop does: the same chunk boundaries for every chunker size, on
// random and on low-entropy data, on stretches of every length class, whether
// the bytes lie in the chunker's own buffer or are copied in.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Chunker } from '../../src/dedupe/chunker';
import { gearTable } from '../../src/dedupe/gearTable';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { GEAR_CUT_WASM_BASE64 } from '../../src/dedupe/gearCutWasm';
import { pseudoRandomBytes } from '../support/files';

const MiB = 1024 * 1024;

/** Random bytes, then text-like bytes, then a stretch of few distinct values (long runs without a cut). */
function testData(seed: number, length: number): Buffer {
  const third = Math.floor(length / 3);
  const text = pseudoRandomBytes(seed, 1, third).map((b) => 97 + (b % 26));
  const dull = Buffer.alloc(length - 2 * third);
  for (let i = 0; i < dull.length; i++) dull[i] = (i >> 12) & 3;
  return Buffer.concat([pseudoRandomBytes(seed, 0, third), text, dull]);
}

describe('the WebAssembly gear loop', () => {
  for (const spec of ['fastcdc:64K', 'fastcdc:256K', 'fastcdc:1M', 'fastcdc:4M']) {
    it(`cuts as the JavaScript loop does (${spec}), copied in or in place, on every stretch length class`, () => {
      const params = parseChunkerSpec(spec);
      for (const seed of [1, 2]) {
        const gear = gearTable(pseudoRandomBytes(seed, 99, 32));
        const data = testData(seed, Math.max(12 * MiB, 3 * params.maxSize));
        const js = new Chunker(params, gear, { gearLoop: 'js' });
        const wasm = new Chunker(params, gear, { gearLoop: 'wasm', bufferBytes: data.length });
        wasm.buffer.set(data);
        const expected = js.cut(data, 0, data.length, 0);
        expect(expected.length).toBeGreaterThan(2);
        expect(wasm.cut(data, 0, data.length, 0), 'copied in').toEqual(expected);
        expect(wasm.cut(wasm.buffer, 0, data.length, 0), 'in place').toEqual(expected);
        // Stretches shorter than min, between min and avg, between avg and max, and longer, at odd offsets.
        const { minSize, avgSize, maxSize } = params;
        for (const [start, length] of [[7, minSize - 1], [4096 + 3, minSize + 1], [12345, (minSize + avgSize) >> 1], [333, avgSize + 17], [1, (avgSize + maxSize) >> 1], [99, 2 * maxSize + 5]]) {
          const end = Math.min(data.length, start + length);
          const want = js.cut(data, start, end, start);
          expect(wasm.cut(data, start, end, start), `copied, [${start}, ${end})`).toEqual(want);
          expect(wasm.cut(wasm.buffer, start, end, start), `in place, [${start}, ${end})`).toEqual(want);
          expect(wasm.nextLength(data, start, end, start)).toBe(want[0]);
        }
      }
    });
  }

  it('is the committed gearCut.wasm, byte for byte (scripts/build-wasm.sh makes both from gearCut.wat)', () => {
    const committed = fs.readFileSync(path.join(__dirname, '..', '..', 'src', 'dedupe', 'gearCut.wasm'));
    expect(Buffer.from(GEAR_CUT_WASM_BASE64, 'base64').equals(committed)).toBe(true);
  });
});
