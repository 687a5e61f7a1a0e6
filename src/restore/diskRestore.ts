// Writes one disk's chunks into a target (a pre-sized sparse file or a block
// device) using the worker pool: main thread fetches pack ranges, workers
// authenticate, verify the chunk id, decompress and pwrite. Zero regions are
// never written, so files stay sparse; `zeroFill` writes them (devices).
import * as fs from 'node:fs';
import { Repository } from '../repo/repository';
import { PipelinePool } from '../workers/pipelinePool';
import { CorruptionError, StorageError } from '../errors';
import { complementSpans } from '../dedupe/spans';
import { forEachLimit } from '../concurrency/forEachLimit';
import { PlannedBlob, RestorePlan, readRanges, restorePlan } from './restorePlan';
import { BlobType, blobType } from '../crypto/blobCodec';
import { DiskRecord } from '../repo/restorePoint';
import { BlobToWrite } from '../workers/tasks';
import { restorePatchedChunks } from './patchedChunks';
import { EarlyWriteback } from './earlyWriteback';

/** Regions planned at once: 64 x 32 MiB = 2 GiB of disk, so a 1 TiB disk never needs its whole plan in memory. */
const REGIONS_PER_BATCH = 64;

export interface DiskRestoreOptions {
  zeroFill: boolean;
  onProgress?: (writtenBytes: number) => void;
  /** Only regions [from, to) of the disk (default: all); their bytes land at their own offsets. */
  regions?: { from: number; to: number };
}

export async function restoreDisk(
  repo: Repository,
  pool: PipelinePool,
  disk: DiskRecord,
  targetPath: string,
  opts: DiskRestoreOptions,
): Promise<number> {
  let written = 0;
  const first = opts.regions?.from ?? 0;
  const end = Math.min(disk.regions.length, opts.regions?.to ?? disk.regions.length);
  const writeback = EarlyWriteback.open(targetPath);
  try {
    for (let from = first; from < end; from += REGIONS_PER_BATCH) {
      const plan = await restorePlan(repo, disk, from, Math.min(end, from + REGIONS_PER_BATCH));
      const onProgress = (w: number) => {
        writeback.written(written + w);
        opts.onProgress?.(written + w);
      };
      written += await restorePlanned(repo, pool, plan, targetPath, { ...opts, onProgress });
    }
  } catch (err) {
    await writeback.abandon();
    throw err;
  }
  await writeback.close();
  return written;
}

/** Writes what `plan` (restorePlan.ts) covers into `targetPath`, for a caller that needs the plan itself too. */
export async function restorePlanned(
  repo: Repository,
  pool: PipelinePool,
  plan: RestorePlan,
  targetPath: string,
  opts: DiskRestoreOptions,
): Promise<number> {
  let written = 0;
  // Page patches need their base chain, which only the main thread can fetch (patchedChunks.ts); everything else goes to the workers.
  const isPatch = (b: PlannedBlob) => blobType(b.loc.typeFlags) === BlobType.Patch;
  const patches = plan.packs.flatMap((p) => p.blobs.filter(isPatch));
  // Reads of a bounded size, a bounded number in flight (the memory budget's, see workers/memoryBudget.ts).
  const { readRangeBytes, readsInFlight } = pool.sizing;
  const jobs = plan.packs.flatMap((p) => readRanges(p.blobs.filter((b) => !isPatch(b)), undefined, readRangeBytes).map((r) => ({ packId: p.packId, ...r })));
  // Read buffers go to a worker and come back with its result: at most one per read in flight, none fresh per read or disk.
  const spareReadBuffers = pool.spareReadBuffers;
  await restorePatchedChunks(repo, pool, patches, {
    targetPath,
    spareReadBuffers,
    onBatch: (result, chunks) => {
      if (result.bad.length > 0) {
        const b = chunks[result.bad[0]];
        throw new CorruptionError(
          `${repo.location}: page-patched chunk ${b.id.toString('hex').slice(0, 16)} does not rebuild (a patch or its base is damaged); run 'ferry check --read-data'`,
          `data/${repo.packIds[b.loc.pack]}`,
        );
      }
      if (result.writeError) throw writeFailure(targetPath, result.writeError);
      written += result.writtenBytes;
      opts.onProgress?.(written);
    },
  });
  await forEachLimit(jobs, readsInFlight, async (job) => {
    const length = job.end - job.start;
    const into = length <= readRangeBytes ? spareReadBuffers.pop() ?? new Uint8Array(readRangeBytes) : undefined;
    const data = await repo.backend.readRange('data', job.packId, job.start, length, into).catch(async (err: unknown) => {
      throw (await repo.wrongPackError(job.packId, job.blobs[0].id)) ?? err;
    });
    // Hand the bytes to a worker without a copy: the whole recycled buffer (the blobs lie in its first `length`
    // bytes), or a Buffer that owns its memory (large reads do).
    const recycled = into && data.buffer === into.buffer ? into : undefined;
    const owned = recycled ?? (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : Uint8Array.from(data));
    const blobs: BlobToWrite[] = job.blobs.map((b) => ({
      at: b.loc.offset - job.start,
      storedLength: b.loc.storedLength,
      rawLength: b.loc.rawLength,
      typeFlags: b.loc.typeFlags,
      id: b.id,
      targets: b.targets,
    }));
    const result = await pool.writeBlobs({ targetPath, data: owned, blobs });
    if (recycled && result.returned?.length === readRangeBytes) spareReadBuffers.push(result.returned);
    if (result.bad.length > 0) {
      const b = job.blobs[result.bad[0]];
      const wrong = await repo.wrongPackError(job.packId, b.id);
      if (wrong) throw wrong;
      throw new CorruptionError(
        `${repo.objectPath('data', job.packId)}: chunk ${b.id.toString('hex').slice(0, 16)} at offset ${b.loc.offset} fails verification (damaged); this restore point cannot be restored bit-exact from this repository — run 'ferry check --read-data'`,
        `data/${job.packId}`,
      );
    }
    if (result.writeError) throw writeFailure(targetPath, result.writeError);
    written += result.writtenBytes;
    opts.onProgress?.(written);
  });
  if (opts.zeroFill) {
    const relative = plan.dataSpans.map((s) => ({ start: s.start - plan.start, end: s.end - plan.start }));
    await writeZeros(targetPath, complementSpans(relative, plan.end - plan.start).map((s) => ({ start: s.start + plan.start, end: s.end + plan.start })));
  }
  return written;
}

function writeFailure(targetPath: string, e: { code?: string; message: string }): StorageError {
  const nospace = e.code === 'ENOSPC';
  return new StorageError(`writing ${targetPath}: ${nospace ? 'no space left on device (ENOSPC); free space on the target or restore elsewhere' : e.message}`);
}

async function writeZeros(targetPath: string, spans: { start: number; end: number }[]): Promise<void> {
  const zeros = Buffer.alloc(1024 * 1024);
  const fd = fs.openSync(targetPath, 'r+');
  try {
    for (const s of spans) {
      for (let pos = s.start; pos < s.end; ) {
        pos += fs.writeSync(fd, zeros, 0, Math.min(zeros.length, s.end - pos), pos);
      }
    }
  } catch (err) {
    throw new StorageError(`writing zeros to ${targetPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    fs.closeSync(fd);
  }
}
