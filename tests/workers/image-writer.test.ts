// Restored chunks are written past the page cache where the file system
// allows it: runs of neighbouring chunks laid in a staging buffer, their
// aligned interior written direct in the background, their partial blocks
// through the page cache. Whatever the order, the writer (two workers write
// one image) and the offsets, the image holds exactly the chunks, its holes
// stay holes, and little of it passes through the page cache.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { ChunkRun, ImageWriter } from '../../src/workers/imageWriter';
import { useScratch } from '../support/scratch';
import { SeededRandom } from '../support/files';
import { mustRun } from '../support/system';

const scratch = useScratch('image-writer');
const MiB = 1024 * 1024;
const SIZE = 24 * MiB + 777;

interface Chunk {
  at: number;
  bytes: Buffer;
}

/** Chunks of 1 byte to 1 MiB at any offsets covering [0, SIZE) but for a few holes; shuffled into runs of neighbours, as packs hold them. */
function chunksOf(seed: number): { runs: Chunk[][]; image: Buffer } {
  const rng = new SeededRandom(seed);
  const image = Buffer.alloc(SIZE);
  const runs: Chunk[][] = [];
  let run: Chunk[] = [];
  for (let at = 0; at < SIZE; ) {
    const length = Math.min(SIZE - at, [1, 100, 4096, 5000, 64 * 1024, 300 * 1024, MiB][rng.int(7)] + rng.int(3000));
    if (rng.int(10) === 0) {
      // A hole: nothing restored here.
      if (run.length > 0) runs.push(run);
      run = [];
    } else {
      const bytes = rng.fill(Buffer.alloc(length));
      bytes.copy(image, at);
      run.push({ at, bytes });
      if (rng.int(6) === 0) {
        runs.push(run);
        run = [];
      }
    }
    at += length;
  }
  if (run.length > 0) runs.push(run);
  for (let i = runs.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [runs[i], runs[j]] = [runs[j], runs[i]];
  }
  return { runs, image };
}

/** Writes `runs` the way a worker does: two halves of a window, one filling while the other is written. */
async function writeRuns(writer: ImageWriter, window: Buffer, runs: Chunk[][]): Promise<void> {
  const half = window.length / 2;
  const halves = [new ChunkRun(writer, window.subarray(0, half)), new ChunkRun(writer, window.subarray(half))];
  const writing: (Promise<number> | undefined)[] = [undefined, undefined];
  let k = 0;
  for (const chunk of runs.flat()) {
    let place = halves[k].next(chunk.at, chunk.bytes.length);
    if (!place) {
      if (!halves[k].empty) {
        writing[k] = halves[k].flush();
        k = 1 - k;
      }
      await writing[k];
      place = halves[k].begin(chunk.at, chunk.bytes.length);
    }
    if (!place) {
      writer.writeBuffered(chunk.bytes, chunk.at);
      continue;
    }
    chunk.bytes.copy(place);
    halves[k].add(chunk.bytes.length);
  }
  writing[k] = halves[k].flush();
  await Promise.all(writing);
}

async function writeImage(file: string, seed: number): Promise<{ image: Buffer; direct: boolean }> {
  const { runs, image } = chunksOf(seed);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, SIZE);
  // Two writers on one image, as two workers: every other run to each, both in flight at once.
  const writers = [ImageWriter.open(file), ImageWriter.open(file)];
  try {
    await Promise.all(writers.map((w, n) => writeRuns(w, Buffer.alloc(3 * MiB + 16 * 1024).subarray(n * 3), runs.filter((_, i) => i % 2 === n))));
    return { image, direct: writers.every((w) => w.bypassesPageCache) };
  } finally {
    for (const w of writers) w.close();
  }
}

describe('writing restored chunks into an image', () => {
  it('lands every chunk bit-exact, whatever the order, the writer and the offsets; holes stay holes; little passes through the page cache', async () => {
    for (const seed of [1, 2]) {
      const file = scratch.path(`target-${seed}.img`);
      const { image, direct } = await writeImage(file, seed);
      expect(direct).toBe(true);
      // Resident now: only the partial blocks at the runs' ends went through the page cache.
      const cached = Number(await mustRun('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', file]));
      expect(cached).toBeLessThan(SIZE / 4096 / 4);
      const fd = fs.openSync(file, 'r+');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      expect(fs.readFileSync(file).equals(image), `seed ${seed}`).toBe(true);
      expect(fs.statSync(file).blocks * 512).toBeLessThan(SIZE);
    }
  });

  it('writes through the page cache where the file system refuses O_DIRECT (ramfs), with the same bytes', async () => {
    const mnt = scratch.mkdir('ramfs');
    await mustRun('mount', ['-t', 'ramfs', 'ramfs', mnt]);
    scratch.defer(() => mustRun('umount', [mnt]));
    const file = `${mnt}/target.img`;
    const { image, direct } = await writeImage(file, 3);
    expect(direct).toBe(false);
    expect(fs.readFileSync(file).equals(image)).toBe(true);
  });
});
