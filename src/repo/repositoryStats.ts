// Repository-wide figures for `ferry stats`.
import { Repository } from './repository';
import { BlobType } from '../crypto/blobCodec';

export interface RepositoryStats {
  restorePoints: number;
  guests: number;
  /** Sum of disk sizes over all restore points. */
  logicalBytes: number;
  /** Sum of non-zero data over all restore points. */
  dataBytes: number;
  /** Plaintext bytes of distinct data chunks. */
  uniqueBytes: number;
  chunks: number;
  /** Bytes of all pack files. */
  storedBytes: number;
  packs: number;
  /** dataBytes / uniqueBytes. */
  dedupeRatio: number;
  /** uniqueBytes / stored bytes of data chunks. */
  compressionRatio: number;
  indexMemoryBytes: number;
  indexBytesPerChunk: number;
  /** Restore points that cannot be read, left out of the figures above. */
  damagedRestorePoints: string[];
}

export async function repositoryStats(repo: Repository): Promise<RepositoryStats> {
  const { points: rps, damaged } = await repo.listAllRestorePoints();
  let uniqueBytes = 0;
  let storedChunkBytes = 0;
  let chunks = 0;
  repo.forEachBlob((_id, loc) => {
    if ((loc.typeFlags & 0x0f) !== BlobType.Data) return;
    chunks++;
    uniqueBytes += loc.rawLength;
    storedChunkBytes += loc.storedLength;
  });
  let storedBytes = 0;
  let packs = 0;
  for await (const p of repo.backend.list('data')) {
    storedBytes += p.size;
    packs++;
  }
  const footprint = repo.indexFootprint;
  const dataBytes = rps.reduce((n, rp) => n + rp.disks.reduce((m, d) => m + d.dataBytes, 0), 0);
  return {
    restorePoints: rps.length,
    guests: new Set(rps.map((rp) => rp.guest)).size,
    logicalBytes: rps.reduce((n, rp) => n + rp.stats.logicalBytes, 0),
    dataBytes,
    uniqueBytes,
    chunks,
    storedBytes,
    packs,
    dedupeRatio: uniqueBytes > 0 ? dataBytes / uniqueBytes : 1,
    compressionRatio: storedChunkBytes > 0 ? uniqueBytes / storedChunkBytes : 1,
    indexMemoryBytes: footprint.memoryBytes,
    indexBytesPerChunk: footprint.blobs > 0 ? footprint.memoryBytes / footprint.blobs : 0,
    damagedRestorePoints: damaged.map((d) => d.id),
  };
}
