// A region of an image for scan tests: data with holes (never read) and zero
// runs of every length around the 64 KiB a zero run needs, at and across
// window boundaries.
import * as fs from 'node:fs';
import { Span } from '../../src/dedupe/spans';
import { SeededRandom } from './files';

export const REGION = 32 * 1024 * 1024;

/**
 * A region of data with holes (not read) and zero runs of every length around 64 KiB and window boundaries,
 * `length` bytes at `regionStart` of the file, which ends there. Returns its data extents, relative to regionStart.
 */
export function writeRegion(file: string, seed: number, regionStart = 0, length = REGION): Span[] {
  const rng = new SeededRandom(seed);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, regionStart + length);
  const fd = fs.openSync(file, 'r+');
  const extents: Span[] = [];
  let at = 0;
  while (at < length) {
    const len = Math.min(length - at, (1 + rng.int(3 * 1024)) * 1024);
    if (rng.int(4) > 0) {
      const data = rng.fill(Buffer.alloc(len));
      // Zero runs just under, at and over 64 KiB, 4 KiB-aligned or not.
      const zeroAt = rng.int(len);
      data.fill(0, zeroAt, Math.min(len, zeroAt + [60 * 1024, 64 * 1024, 70 * 1024, 300 * 1024][rng.int(4)] + rng.int(2) * 100));
      fs.writeSync(fd, data, 0, len, regionStart + at);
      const s = Math.floor(at / 4096) * 4096;
      const e = Math.min(length, Math.ceil((at + len) / 4096) * 4096);
      const last = extents[extents.length - 1];
      if (last && last.end >= s) last.end = e;
      else extents.push({ start: s, end: e });
    }
    at += len;
  }
  // Written back, so that its pages can be dropped from the page cache (the test sees what a scan leaves there).
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return extents;
}

