// An image to back up: a regular (often sparse) file or a block device. Knows
// its size and which byte ranges hold data, so holes are never read.
import * as fs from 'node:fs';
import * as path from 'node:path';
import loadNativeAddon from 'node-gyp-build';
import { InputError, describeSystemError } from '../errors';
import { Span } from './spans';

export interface SeekAddon {
  seekData(fd: number, offset: number): number;
  seekHole(fd: number, offset: number): number;
}

// Node has no lseek: holes are found by the native addon (native/seek.c), a
// local build or the prebuild for this platform. Without it (no prebuild for
// the platform and no compiler at install time) an image is read in full and
// its zero runs are still found by the chunker, only slower.
let seekAddon: SeekAddon | null | undefined;
let seekAddonDisabledBecause: string | undefined;

/** Load the addon at first use; a missing one costs one warning line per process. */
function seekAddonOrNull(): SeekAddon | null {
  if (seekAddon !== undefined) return seekAddon;
  if (seekAddonDisabledBecause === undefined) {
    try {
      seekAddon = loadNativeAddon(path.join(__dirname, '..', '..')) as SeekAddon;
      return seekAddon;
    } catch (err) {
      seekAddonDisabledBecause = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    }
  }
  seekAddon = null;
  process.stderr.write(
    `ferry: warning: SEEK_DATA addon unavailable (${seekAddonDisabledBecause}); images are read in full and holes found by scanning for zeros, which is slower. ` +
      `To build it: install a C compiler, make and python3, then run 'npm rebuild' in the ferry directory\n`,
  );
  return null;
}

/** Find holes without the addon in this process (the CLI's FERRY_NO_SEEK_ADDON=1): images are read in full. */
export function disableSeekAddon(reason: string): void {
  if (seekAddon === undefined) seekAddonDisabledBecause = reason;
}

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

/** SEEK_DATA/SEEK_HOLE walk; the whole file when the file system (or a missing addon) cannot tell. */
export function fileDataExtents(fd: number, size: number): Span[] {
  const seek = seekAddonOrNull();
  if (!seek) return size > 0 ? [{ start: 0, end: size }] : [];
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
