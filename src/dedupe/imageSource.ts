// An image to back up: a regular (often sparse) file or a block device. Knows
// its size and which byte ranges hold data, so holes are never read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError, describeSystemError } from '../errors';
import { Span } from './spans';

interface SeekAddon {
  seekData(fd: number, offset: number): number;
  seekHole(fd: number, offset: number): number;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const seek: SeekAddon = require(path.join(__dirname, '..', '..', 'build', 'Release', 'ferry_seek.node'));

export interface ImageSource {
  path: string;
  size: number;
  isBlockDevice: boolean;
  /** Allocated byte ranges, ascending; everything else reads as zero. */
  dataExtents: Span[];
}

/** Open, validate and map an image; one clear InputError for anything unusable. */
export function openImageSource(imagePath: string): ImageSource {
  let st: fs.Stats;
  try {
    st = fs.statSync(imagePath);
  } catch (err) {
    throw new InputError(`image ${imagePath}: ${describeSystemError(err)}; give the path of a raw disk image file or block device`);
  }
  if (st.isDirectory()) throw new InputError(`image ${imagePath}: is a directory; give the path of a raw disk image file or block device`);
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new InputError(`image ${imagePath}: not a regular file or block device; give the path of a raw disk image`);
  }
  let fd: number;
  try {
    fd = fs.openSync(imagePath, 'r');
  } catch (err) {
    throw new InputError(`image ${imagePath}: cannot open: ${describeSystemError(err)}`);
  }
  try {
    if (st.isBlockDevice()) {
      const size = blockDeviceSize(st);
      return { path: imagePath, size, isBlockDevice: true, dataExtents: size > 0 ? [{ start: 0, end: size }] : [] };
    }
    // ext4 reports delayed-allocation pages as holes until they are written back.
    fs.fsyncSync(fd);
    return { path: imagePath, size: st.size, isBlockDevice: false, dataExtents: fileDataExtents(fd, st.size) };
  } finally {
    fs.closeSync(fd);
  }
}

/** Size of a block device; stat reports 0, so read it from sysfs (no ioctl addon needed). */
export function blockDeviceSize(st: fs.Stats): number {
  const major = Math.floor(st.rdev / 256) & 0xfff;
  const minor = (st.rdev & 0xff) | ((Math.floor(st.rdev / 1048576) & 0xfff) << 8);
  const sectors = fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(sectors.trim()) * 512;
}

/** SEEK_DATA/SEEK_HOLE walk; the whole file when the file system cannot tell. */
export function fileDataExtents(fd: number, size: number): Span[] {
  const extents: Span[] = [];
  let pos = 0;
  while (pos < size) {
    const start = seek.seekData(fd, pos);
    if (start === -2) return size > 0 ? [{ start: 0, end: size }] : [];
    if (start < 0 || start >= size) break;
    let end = seek.seekHole(fd, start);
    if (end < 0 || end > size) end = size;
    extents.push({ start, end });
    pos = end;
  }
  return extents;
}
