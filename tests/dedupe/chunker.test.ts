import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Chunker } from '../../src/dedupe/chunker';
import { gearTable } from '../../src/dedupe/gearTable';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';

const params = parseChunkerSpec('fastcdc:64K');
const gear = gearTable(Buffer.alloc(32, 7));
const chunker = new Chunker(params, gear);

function cuts(data: Buffer, c = chunker): number[] {
  const out: number[] = [];
  let pos = 0;
  for (const len of c.cut(data, 0, data.length, 0)) out.push((pos += len));
  return out;
}

describe('FastCDC chunker', () => {
  const data = randomBytes(8 * 1024 * 1024);

  it('covers the input exactly, respecting min and max sizes', () => {
    const lengths = chunker.cut(data, 0, data.length, 0);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
    lengths.slice(0, -1).forEach((l) => {
      expect(l).toBeGreaterThanOrEqual(params.minSize);
      expect(l).toBeLessThanOrEqual(params.maxSize);
    });
  });

  it('averages near the target size on random data', () => {
    const lengths = chunker.cut(data, 0, data.length, 0);
    const avg = data.length / lengths.length;
    expect(avg).toBeGreaterThan(params.avgSize * 0.6);
    expect(avg).toBeLessThan(params.avgSize * 1.6);
  });

  it('keeps boundaries after an insertion: only chunks near it change', () => {
    const inserted = Buffer.concat([data.subarray(0, 3_000_000), randomBytes(100), data.subarray(3_000_000)]);
    const before = cuts(data);
    const after = new Set(cuts(inserted).map((c) => (c > 3_000_000 ? c - 100 : c)));
    const kept = before.filter((c) => after.has(c)).length;
    expect(kept / before.length).toBeGreaterThan(0.9);
    // Boundaries well before the change are identical.
    expect(cuts(inserted).filter((c) => c < 2_800_000)).toEqual(before.filter((c) => c < 2_800_000));
  });

  it('finds the same boundaries in shifted content', () => {
    const shifted = Buffer.concat([randomBytes(12345), data]);
    const a = new Set(cuts(data));
    const b = cuts(shifted).map((c) => c - 12345);
    const common = b.filter((c) => a.has(c)).length;
    expect(common / a.size).toBeGreaterThan(0.9);
  });

  it('cuts differently under another gear key', () => {
    const other = new Chunker(params, gearTable(Buffer.alloc(32, 8)));
    const a = new Set(cuts(data));
    const same = cuts(data, other).filter((c) => a.has(c)).length;
    expect(same / a.size).toBeLessThan(0.2);
  });

  it('cuts fixed-size blocks aligned to the image, not to the span', () => {
    const fixed = new Chunker(parseChunkerSpec('fixed:64K'), gear);
    expect(fixed.cut(data, 1000, 1000 + 200_000, 1000)).toEqual([65536 - 1000, 65536, 65536, 200_000 - (65536 - 1000) - 131072]);
  });

  it('rejects chunker specs that are not sizes or powers of two', () => {
    expect(() => parseChunkerSpec('fastcdc:300K')).toThrow(/power of two/);
    expect(() => parseChunkerSpec('rabin:1M')).toThrow(/not a chunker/);
  });
});

describe('Chunker.cutsAgainAt: a chunk of the same bytes at the same start', () => {
  // The property a nightly scan relies on to skip the gear loop over unchanged chunks: for the bytes
  // of a chunk once cut to length L, cutsAgainAt says L exactly when nextLength would cut at L,
  // whatever follows the chunk now (changed bytes, a nearer span end) and with any chunker.
  it.each(['fastcdc:64K', 'fastcdc:256K', 'fixed:64K'])('agrees with nextLength for every chunk, whatever follows it (%s)', (spec) => {
    const c = new Chunker(parseChunkerSpec(spec), gear);
    const before = randomBytes(8 * 1024 * 1024);
    let start = 0;
    let checked = 0;
    let reused = 0;
    for (const len of c.cut(before, 0, before.length, 0)) {
      // After the chunk: other bytes, and spans that end right after it, a little later, or far on.
      const after = Buffer.from(before);
      randomBytes(8192).copy(after, start + len);
      // The chunk as cut then: to its content-defined end, or to a span's end (a zero run) short of it.
      const short = c.nextLength(before, start, start + Math.ceil(len / 2), start);
      for (const old of [len, short]) {
        for (const end of [start + old, start + old + 1, start + old + 5000, after.length]) {
          if (end > after.length) continue;
          const expected = c.nextLength(after, start, end, start) === old;
          expect(c.cutsAgainAt(after, start, end, start, old), `${spec}: chunk at ${start}, ${old} bytes, span to ${end}`).toBe(expected);
          checked++;
          if (expected) reused++;
        }
      }
      start += len;
    }
    expect(checked).toBeGreaterThan(120);
    // Chunks with content-defined ends end where they did; those cut short by a span's end, only at one.
    expect(reused).toBeGreaterThan(checked / 4);
    expect(reused).toBeLessThan(checked);
  });

  it('is false for a span shorter than the chunk', () => {
    const bytes = randomBytes(1024 * 1024);
    const len = chunker.nextLength(bytes, 0, bytes.length, 0);
    expect(chunker.cutsAgainAt(bytes, 0, len - 1, 0, len)).toBe(false);
  });
});
