// docs/FORMAT.md, "Chunking", written out again from the text alone: a writer
// that follows the document must cut a region exactly where ferry does, or it
// would not deduplicate against an existing repository.
import { describe, expect, it } from 'vitest';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { Chunker } from '../../src/dedupe/chunker';
import { gearTable } from '../../src/dedupe/gearTable';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { nonZeroSpans } from '../../src/dedupe/zeroRuns';
import { pseudoRandomBytes } from '../support/files';

function specGear(kg: Buffer): Int32Array {
  const blocks: Buffer[] = [];
  for (let i = 0; i < 32; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32LE(i);
    blocks.push(Blake3Hasher.newKeyed(kg).update(counter).digestBuffer());
  }
  const t = Buffer.concat(blocks);
  return Int32Array.from({ length: 256 }, (_, i) => t.readInt32LE(4 * i));
}

function topBits(n: number): number {
  return Number((0xffffffffn << BigInt(32 - n)) & 0xffffffffn) | 0;
}

/** Zero runs: 4 KiB blocks from the region start; a run goes when >= 64 KiB, or when it ends the region and is all that is left of the stretch. */
function specStretches(region: Buffer): Array<[number, number]> {
  const zero = (b: number) => region.subarray(b, Math.min(region.length, b + 4096)).every((x) => x === 0);
  const out: Array<[number, number]> = [];
  let dataStart = 0;
  let b = 0;
  while (b < region.length) {
    if (!zero(b)) { b += 4096; continue; }
    let e = b;
    while (e < region.length && zero(e)) e += 4096;
    e = Math.min(e, region.length);
    if (e - b >= 64 * 1024 || (e === region.length && b === dataStart)) {
      if (b > dataStart) out.push([dataStart, b]);
      dataStart = e;
    }
    b = e;
  }
  if (dataStart < region.length) out.push([dataStart, region.length]);
  return out;
}

function specCut(bytes: Buffer, s: number, n: number, avg: number, G: Int32Array): number {
  const min = avg / 4;
  const max = Math.min(4 * avg, (32 * 1024 * 1024) / 2);
  if (n <= min) return n;
  const b = Math.log2(avg);
  const maskS = topBits(b + 2);
  const maskL = topBits(b - 2);
  const limit = Math.min(n, max);
  const normal = Math.min(limit, avg);
  let h = 0;
  for (let i = s + min; i < s + normal; i++) {
    h = ((h << 1) + G[bytes[i]]) | 0;
    if ((h & maskS) === 0) return i - s + 1;
  }
  for (let i = s + normal; i < s + limit; i++) {
    h = ((h << 1) + G[bytes[i]]) | 0;
    if ((h & maskL) === 0) return i - s + 1;
  }
  return limit;
}

function specChunks(region: Buffer, avg: number, G: Int32Array): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [start, end] of specStretches(region)) {
    for (let at = start; at < end; ) {
      const len = specCut(region, at, end - at, avg, G);
      out.push([at, len]);
      at += len;
    }
  }
  return out;
}

function ferryChunks(region: Buffer, spec: string, gear: Int32Array): Array<[number, number]> {
  const chunker = new Chunker(parseChunkerSpec(spec), gear);
  const out: Array<[number, number]> = [];
  for (const span of nonZeroSpans(region, region.length, [])) {
    let at = span.start;
    for (const len of chunker.cut(region, span.start, span.end, span.start)) {
      out.push([at, len]);
      at += len;
    }
  }
  return out;
}

/** A region with data, a short zero island (kept), a long zero run (taken out) and a short zero tail (kept). */
function sampleRegion(size: number): Buffer {
  const region = pseudoRandomBytes(7, 0, size);
  region.fill(0, 100 * 4096, 102 * 4096); // 8 KiB island: stays inside a chunk
  region.fill(0, 300 * 4096, 340 * 4096); // 160 KiB run: out
  region.fill(0, size - 3 * 4096); // 12 KiB tail after data: stays in the last chunk
  return region;
}

describe('chunking as docs/FORMAT.md specifies it', () => {
  const kg = Buffer.from('6b'.repeat(32), 'hex');

  it('derives the gear table from Kg as the document says', () => {
    expect(Array.from(specGear(kg))).toEqual(Array.from(gearTable(kg)));
  });

  it('gives the default masks the document prints (fastcdc:256K: 0xFFFFF000, 0xFFFF0000)', () => {
    expect(topBits(20) >>> 0).toBe(0xfffff000);
    expect(topBits(16) >>> 0).toBe(0xffff0000);
  });

  it('takes out a zero tail that follows a taken-out run, however short', () => {
    const region = pseudoRandomBytes(8, 0, 1024 * 1024);
    region.fill(0, 512 * 1024); // 512 KiB of zeros to the end: out
    region.fill(0, 100 * 1024, 200 * 1024);
    expect(specStretches(region)).toEqual([[0, 100 * 1024], [200 * 1024, 512 * 1024]]);
    expect(nonZeroSpans(region, region.length, []).map((s) => [s.start, s.end])).toEqual(specStretches(region));
    const short = Buffer.concat([pseudoRandomBytes(8, 1, 64 * 1024), Buffer.alloc(96 * 1024), Buffer.alloc(8 * 1024, 0)]);
    expect(nonZeroSpans(short, short.length, []).map((s) => [s.start, s.end])).toEqual([[0, 64 * 1024]]);
  });

  for (const spec of ['fastcdc:256K', 'fastcdc:64K', 'fastcdc:1M']) {
    it(`cuts a region where ferry cuts it (${spec})`, () => {
      const region = sampleRegion(6 * 1024 * 1024);
      const gear = gearTable(kg);
      const expected = specChunks(region, parseChunkerSpec(spec).avgSize, specGear(kg));
      expect(expected.length).toBeGreaterThan(4);
      expect(ferryChunks(region, spec, gear)).toEqual(expected);
    });
  }
});
