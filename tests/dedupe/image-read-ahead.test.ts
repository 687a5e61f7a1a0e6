// A scan's read ahead (ImageReadAhead): what it hands over is the image's
// bytes with zeros in its holes, read past the page cache where the file
// system allows it; a read that began elsewhere, or none, hands over nothing,
// and the window then reads the bytes itself.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageReadAhead } from '../../src/dedupe/imageReadAhead';
import { clipSpans, complementSpans } from '../../src/dedupe/spans';
import { useScratch } from '../support/scratch';
import { writeRegion } from '../support/regionImage';

const MiB = 1024 * 1024;
const dir = useScratch('image-read-ahead').dir;

/** Region bytes [start, end) as a scan sees them: the file's data extents, zeros elsewhere. */
function expected(file: string, regionStart: number, extents: { start: number; end: number }[], start: number, end: number): Buffer {
  const want = Buffer.alloc(end - start);
  const fd = fs.openSync(file, 'r');
  try {
    for (const e of clipSpans(extents, start, end)) fs.readSync(fd, want, e.start, e.end - e.start, regionStart + start + e.start);
  } finally {
    fs.closeSync(fd);
  }
  return want;
}

/** Bytes this process got from read system calls so far. */
function bytesRead(): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
}

describe('reading a region ahead of the scan', () => {
  it('hands over the bytes from where it began, holes as zeros, up to what was asked and what was read', async () => {
    const file = path.join(dir, 'image.img');
    const regionStart = 32 * MiB;
    const length = 12 * MiB + 777;
    const extents = writeRegion(file, 3, regionStart, length);
    expect(complementSpans(extents, length).length, 'the region has holes').toBeGreaterThan(0);
    const buffer = Buffer.alloc(3 * MiB);
    const ahead = new ImageReadAhead(file, regionStart + extents[0].start, regionStart, length, extents, buffer);
    try {
      // Every start, aligned or not, through the whole region to its unaligned end.
      let start = 12_345;
      let served = 0;
      while (start < length) {
        ahead.begin(start, 2 * MiB + 4321);
        const into = Buffer.alloc(3 * MiB);
        const upTo = await ahead.take(start, length, into, 100);
        expect(upTo, `a read that began at ${start}`).toBeGreaterThan(start);
        expect(upTo - start).toBeLessThanOrEqual(2 * MiB + 4321);
        expect(into.subarray(100, 100 + upTo - start).equals(expected(file, regionStart, extents, start, upTo)), `bytes [${start}, ${upTo})`).toBe(true);
        served += upTo - start;
        start = upTo;
      }
      expect(served).toBe(length - 12_345);
    } finally {
      await ahead.close();
    }
  });

  it('hands over nothing for a read that began elsewhere or none, and reads the data extents once', async () => {
    const file = path.join(dir, 'other.img');
    const length = 8 * MiB;
    const extents = writeRegion(file, 4, 0, length);
    const allocated = extents.reduce((n, e) => n + e.end - e.start, 0);
    const ahead = new ImageReadAhead(file, extents[0].start, 0, length, extents, Buffer.alloc(3 * MiB));
    try {
      const into = Buffer.alloc(3 * MiB);
      expect(await ahead.take(0, length, into, 0), 'nothing begun').toBe(0);
      ahead.begin(4096, MiB);
      expect(await ahead.take(8192, length, into, 0), 'begun elsewhere').toBe(8192);
      expect(await ahead.take(4096, length, into, 0), 'taken once').toBe(4096);
      const before = bytesRead();
      for (let start = 0; start < length; start += MiB) {
        ahead.begin(start, MiB);
        expect(await ahead.take(start, length, into, 0)).toBe(start + MiB);
      }
      const read = bytesRead() - before;
      // The data extents, widened to 4 KiB blocks; the holes are not read.
      expect(read).toBeGreaterThanOrEqual(allocated);
      expect(read).toBeLessThan(allocated + 16 * 4096);
    } finally {
      await ahead.close();
    }
  });
});
