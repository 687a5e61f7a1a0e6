// A backup reads images past the page cache (O_DIRECT) where the file system
// allows it, and through it where not: the bytes are the file's either way,
// at any offset and length, into any buffer, and a direct read leaves nothing
// in the page cache (a Dom0's memory belongs to its guests).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { DIRECT_ALIGN, ImageReader } from '../../src/dedupe/imageReader';
import { useScratch } from '../support/scratch';
import { SeededRandom } from '../support/files';
import { mustRun, runCommand } from '../support/system';

const scratch = useScratch('image-reader');
const MiB = 1024 * 1024;

/** A file of seeded bytes whose size is not a multiple of DIRECT_ALIGN. */
function writeImage(file: string): Buffer {
  const data = new SeededRandom(7).fill(Buffer.alloc(5 * MiB + 123));
  fs.writeFileSync(file, data);
  return data;
}

/** Offsets and lengths around aligned boundaries, and up to the file's unaligned end. */
function ranges(size: number): Array<[number, number]> {
  return [
    [0, 1], [0, DIRECT_ALIGN], [1, DIRECT_ALIGN], [DIRECT_ALIGN - 1, 2], [12345, 256 * 1024], [3 * DIRECT_ALIGN, MiB],
    [size - 1, 1], [size - 100, 100], [size - MiB - 7, MiB + 7], [2 * MiB + 17, MiB - 33],
  ];
}

/** Pages of `file` in the page cache (fincore). */
async function residentPages(file: string): Promise<number> {
  const out = await runCommand('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', file]);
  expect(out.code, out.stderr).toBe(0);
  return Number(out.stdout.trim());
}

describe('reading an image for a backup', () => {
  it('gives the file\'s bytes past the page cache, at any offset and length and into buffers at any offset', async () => {
    const file = scratch.path('direct.img');
    const data = writeImage(file);
    // Out of the page cache first (sync, then drop this file's pages), so the test sees what reading adds.
    await mustRun('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    await mustRun('sync', []);
    await mustRun('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    const reader = ImageReader.open(file, 0);
    try {
      expect(reader.bypassesPageCache).toBe(true);
      const backing = Buffer.alloc(2 * MiB + 8 * DIRECT_ALIGN);
      for (const shift of [0, 1, 17, 512, 4095]) {
        const buf = backing.subarray(shift);
        for (const [position, length] of ranges(data.length)) {
          const view = reader.view(buf, position, length);
          expect(view.equals(data.subarray(position, position + length)), `${position}+${length} at shift ${shift}`).toBe(true);
        }
      }
      expect(reader.bypassesPageCache).toBe(true);
      expect(await residentPages(file)).toBe(0);
    } finally {
      reader.close();
    }
  });

  it('reads extents into their place in a window: what a widened read overwrites around them is the file\'s own bytes', () => {
    const file = scratch.path('extents.img');
    const data = writeImage(file);
    const reader = ImageReader.open(file, 0);
    try {
      const window = Buffer.alloc(3 * MiB);
      for (const from of [0, 1000, DIRECT_ALIGN, 3 * MiB + 5]) {
        const base = reader.baseFor(window, from);
        const length = Math.min(data.length - from, 2 * MiB);
        window.fill(0xaa);
        // Two extents with a gap: the gap keeps the file's bytes or the filler, never anything else.
        reader.readExtent(window, base, 10_000, from);
        reader.readExtent(window, base + 50_000, length - 50_000, from + 50_000);
        expect(window.subarray(base, base + 10_000).equals(data.subarray(from, from + 10_000))).toBe(true);
        expect(window.subarray(base + 50_000, base + length).equals(data.subarray(from + 50_000, from + length))).toBe(true);
        for (let i = base + 10_000; i < base + 50_000; i++) {
          if (window[i] !== 0xaa && window[i] !== data[from + i - base]) throw new Error(`byte ${i - base} of the gap is neither the filler nor the file's`);
        }
      }
    } finally {
      reader.close();
    }
  });

  it('finds a buffer\'s aligned offset at a block that holds data: an image that starts with a hole stays direct', async () => {
    const file = scratch.path('hole-first.img');
    const data = new SeededRandom(9).fill(Buffer.alloc(MiB));
    fs.writeFileSync(file, '');
    fs.truncateSync(file, 8 * MiB);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, data, 0, data.length, 4 * MiB);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    // A direct read of a hole succeeds at any address: probing there would find a wrong offset.
    const reader = ImageReader.open(file, 4 * MiB + 100);
    try {
      const buf = Buffer.alloc(2 * MiB).subarray(3);
      expect(reader.view(buf, 4 * MiB + 5, 300_000).equals(data.subarray(5, 300_005))).toBe(true);
      expect(reader.view(buf, 4 * MiB - 1000, 2000).equals(Buffer.concat([Buffer.alloc(1000), data.subarray(0, 1000)]))).toBe(true);
      expect(reader.bypassesPageCache).toBe(true);
    } finally {
      reader.close();
    }
  });

  it('reads through the page cache where the file system refuses O_DIRECT (ramfs), with the same bytes', async () => {
    const mnt = scratch.mkdir('ramfs');
    await mustRun('mount', ['-t', 'ramfs', 'ramfs', mnt]);
    scratch.defer(() => mustRun('umount', [mnt]));
    const file = `${mnt}/image.img`;
    const data = writeImage(file);
    const reader = ImageReader.open(file, 0);
    try {
      expect(reader.bypassesPageCache).toBe(false);
      const buf = Buffer.alloc(2 * MiB);
      for (const [position, length] of ranges(data.length)) {
        expect(reader.view(buf, position, length).equals(data.subarray(position, position + length))).toBe(true);
      }
    } finally {
      reader.close();
    }
  });

  it('says where an image ends early, direct or not', () => {
    const file = scratch.path('short.img');
    writeImage(file);
    const reader = ImageReader.open(file, 0);
    try {
      expect(() => reader.view(Buffer.alloc(MiB), 5 * MiB, 200)).toThrow(/unexpected end of image at byte 5243003/);
    } finally {
      reader.close();
    }
  });
});
