// What reads past the page cache (O_DIRECT) need: file offsets and lengths
// in whole blocks, and memory at an address the device can take. JavaScript
// cannot see an address, so the first offset of a buffer that a direct read
// accepts is found by trying (a read of the file's first block), once per
// ArrayBuffer and device. Backups read images so (dedupe/imageReader.ts);
// docs/ARCHITECTURE.md, "Past the page cache", says why restores do not write so.
import * as fs from 'node:fs';

/** File offsets and lengths of direct I/O are multiples of this: every common logical block size divides it. */
export const DIRECT_ALIGN = 4096;

/** Memory offsets tried, in steps of this, for a buffer's first aligned byte. */
const PROBE_STEP = 16;

/** Per ArrayBuffer and device: the offset into the ArrayBuffer the kernel takes for direct I/O, or null when none did. */
const alignedOffsets = new WeakMap<ArrayBufferLike, Map<number, number | null>>();

/** FERRY_DIRECT_IO=off reads through the page cache, to measure against (read at each open: workers and the main thread alike). */
export function directIoOff(): boolean {
  return process.env.FERRY_DIRECT_IO === 'off';
}

/** A second descriptor of `path` with O_DIRECT, or undefined where the file system refuses it (ramfs, some FUSE and network file systems). */
export function openDirect(path: string, flags: number): number | undefined {
  if (directIoOff()) return undefined;
  try {
    return fs.openSync(path, flags | fs.constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

/**
 * The offset into `buf` of its first byte that direct I/O on `directFd`
 * (device `device`) takes as an address, below DIRECT_ALIGN; null when no
 * offset works. Every later such byte is a multiple of DIRECT_ALIGN further.
 * Finding it the first time overwrites up to the first 8 KiB of `buf`.
 */
export function directMemoryPad(directFd: number, device: number, buf: Buffer): number | null {
  let byDevice = alignedOffsets.get(buf.buffer);
  if (!byDevice) alignedOffsets.set(buf.buffer, (byDevice = new Map()));
  let absolute = byDevice.get(device);
  if (absolute === undefined) {
    absolute = null;
    for (let k = 0; k <= DIRECT_ALIGN - PROBE_STEP && k + DIRECT_ALIGN <= buf.length; k += PROBE_STEP) {
      try {
        fs.readSync(directFd, buf, k, DIRECT_ALIGN, 0);
        absolute = buf.byteOffset + k;
        break;
      } catch {
        // EINVAL: this address is not aligned enough; try the next.
      }
    }
    byDevice.set(device, absolute);
  }
  if (absolute === null) return null;
  return (((absolute - buf.byteOffset) % DIRECT_ALIGN) + DIRECT_ALIGN) % DIRECT_ALIGN;
}
