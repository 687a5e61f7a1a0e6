// Whether a file already holds a disk of a restore point, byte for byte: the
// resume rule of `restore`. A re-run after a killed restore keeps each disk
// file that verifies (so it needs no --force for what it finished) and still
// refuses to overwrite any file that does not.
import * as fs from 'node:fs';
import { Repository } from '../repo/repository';
import { DiskRecord } from '../repo/restorePoint';
import { decodeRegionMap } from '../repo/regionMap';
import { ChunkHasher } from '../crypto/chunkId';

/**
 * True when `file` is a regular file of the disk's size whose every chunk
 * hashes to the id the restore point names and whose every other byte is
 * zero. Reads the whole file (cheaper than writing it again) but no chunk data
 * from the repository, only the region maps.
 */
export async function fileHoldsDisk(repo: Repository, disk: DiskRecord, file: string): Promise<boolean> {
  const st = fs.statSync(file, { throwIfNoEntry: false });
  if (!st?.isFile() || st.size !== disk.size) return false;
  const hasher = new ChunkHasher(repo.keys.idKey);
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(disk.regionSize);
    for (const [r, mapId] of disk.regions.entries()) {
      const start = r * disk.regionSize;
      const length = Math.min(disk.regionSize, disk.size - start);
      const region = buf.subarray(0, length);
      let got = 0;
      while (got < length) {
        const n = fs.readSync(fd, region, got, length - got, start + got);
        if (n === 0) return false;
        got += n;
      }
      const entries = mapId ? decodeRegionMap(await repo.readBlobPlaintext(Buffer.from(mapId, 'hex')), disk.regionSize) : [];
      if (!entries) return false;
      let at = 0;
      for (const e of entries) {
        if (!isZero(region.subarray(at, e.offset))) return false;
        if (!hasher.hash(region.subarray(e.offset, e.offset + e.length)).equals(e.id)) return false;
        at = e.offset + e.length;
      }
      if (!isZero(region.subarray(at))) return false;
    }
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
