// glibc's mmap threshold, pinned for the whole process (main thread and
// workers share one allocator). Left dynamic, it rises to the size of every
// mmap'd block freed (up to 32 MiB): after the first pack or read buffer is
// released, buffers of 1-16 MiB come from malloc's arenas, and what is freed
// there stays in the RSS as fragments (check --read-data crept from 150 to
// 190 MiB on the bench's dense repository). Pinned, each such buffer is its
// own mapping, given back on free.
import * as path from 'node:path';
import loadNativeAddon from 'node-gyp-build';

/** Buffers of this size or more get their own mapping: above the chunker's average chunk (256 KiB), so chunk-sized buffers stay in the arenas and cost no mmap each. */
export const MMAP_THRESHOLD_BYTES = 1024 * 1024;

interface MemoryAddon {
  mallocMmapThreshold?: (bytes: number) => boolean;
}

/**
 * Pins the threshold at `bytes` through the native addon (native/memory.c).
 * 'unavailable' without the addon, with an addon built before this function,
 * or on a C library other than glibc: the process then runs as before.
 */
export function pinMallocMmapThreshold(bytes: number = MMAP_THRESHOLD_BYTES): 'pinned' | 'unavailable' {
  let addon: MemoryAddon;
  try {
    addon = loadNativeAddon(path.join(__dirname, '..', '..')) as MemoryAddon;
  } catch {
    // The same addon finds holes in images; dedupe/imageSource.ts warns once when it is missing and an image is read.
    return 'unavailable';
  }
  return addon.mallocMmapThreshold?.(bytes) ? 'pinned' : 'unavailable';
}
