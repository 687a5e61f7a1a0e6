// Restoring page-patched chunks. Only the main thread can follow a chain (each
// patch names its base, and only the repository can fetch it); only a worker
// should open the root chunk, lay the patches over it, check and write it.
// A few walkers each fill one read buffer chain by chain: a chain's patches
// are opened into buffers the walker reuses and copied into its batch, its
// root is read sealed straight into it, and a full batch goes to a worker and
// comes back. Nothing is allocated per patch or per chain, so a night of
// hundreds of patched chunks costs no more memory than whole chunks do
// (before: ~40 MiB more peak RSS, garbage of one buffer per patch).
import { BlobType, blobType } from '../crypto/blobCodec';
import { Repository } from '../repo/repository';
import { PipelinePool } from '../workers/pipelinePool';
import type { PatchedChunkToWrite, WriteBlobsResult } from '../workers/tasks';
import type { PlannedBlob } from './restorePlan';

export interface PatchedChunkWrites {
  targetPath: string;
  /** Read buffers of `pool.sizing.readRangeBytes` shared with the rest of the restore (taken and given back). */
  spareReadBuffers: Uint8Array[];
  /** After each batch a worker wrote: its result and the chunks it held, in task order. */
  onBatch: (result: WriteBlobsResult, chunks: readonly PlannedBlob[]) => void;
}

/** Rebuild, check and write every chunk of `patched` (page patches) at its targets. */
export async function restorePatchedChunks(repo: Repository, pool: PipelinePool, patched: readonly PlannedBlob[], opts: PatchedChunkWrites): Promise<void> {
  const { readRangeBytes, readsInFlight } = pool.sizing;
  let next = 0;
  const walker = async () => {
    let readScratch: Buffer = Buffer.alloc(0);
    /** The current chain's patch plaintexts, newest first, before they move into the batch. */
    let chainScratch: Buffer = Buffer.alloc(0);
    let batch = new BatchBuffer(opts.spareReadBuffers.pop() ?? new Uint8Array(readRangeBytes));
    const send = async () => {
      if (batch.chunks.length === 0) return;
      const { buffer, chunks, planned } = batch;
      const result = await pool.writePatched({ targetPath: opts.targetPath, data: buffer, chunks });
      const back = result.returned?.byteLength === readRangeBytes ? result.returned : new Uint8Array(readRangeBytes);
      batch = new BatchBuffer(back);
      opts.onBatch(result, planned);
    };
    for (let i = next++; i < patched.length; i = next++) {
      const blob = patched[i];
      // Walk the chain down to its root, each patch's plaintext laid after the last in chainScratch.
      const links: { at: number; length: number }[] = [];
      let used = 0;
      let current = blob.id;
      let root = repo.blobLocation(current);
      for (; root && isPatch(root.typeFlags); root = repo.blobLocation(current)) {
        const step = await repo.openPatchLink(current, readScratch, (length) => {
          if (chainScratch.length < used + length) chainScratch = grown(chainScratch, used, used + length);
          links.push({ at: used, length });
          used += length;
          return chainScratch.subarray(used - length, used);
        });
        readScratch = step.readScratch;
        current = step.baseId;
      }
      // (A base missing from the index fails in readSealedInto below with the repository's own message.)
      const rootLength = root?.storedLength ?? 0;
      if (batch.used + used + rootLength > batch.buffer.byteLength) await send();
      if (used + rootLength > batch.buffer.byteLength) {
        // A chain larger than a read buffer travels alone in a buffer of its own.
        opts.spareReadBuffers.push(batch.buffer);
        batch = new BatchBuffer(new Uint8Array(used + rootLength));
      }
      const into = Buffer.from(batch.buffer.buffer, batch.buffer.byteOffset, batch.buffer.byteLength);
      const rootAt = batch.take(rootLength);
      await repo.readSealedInto(current, into.subarray(rootAt, rootAt + rootLength));
      // The worker lays patches oldest first: the walk found them newest first.
      const patches = links.reverse().map((l) => {
        const at = batch.take(l.length);
        chainScratch.copy(into, at, l.at, l.at + l.length);
        return { at, length: l.length };
      });
      batch.add(
        { root: { at: rootAt, length: rootLength, typeFlags: root?.typeFlags ?? 0, rawLength: root?.rawLength ?? 0, id: current }, patches, id: blob.id, targets: blob.targets },
        blob,
      );
    }
    await send();
    if (batch.buffer.byteLength === readRangeBytes) opts.spareReadBuffers.push(batch.buffer);
  };
  const stopOthersOnFailure = () =>
    walker().catch((err: unknown) => {
      next = patched.length;
      throw err;
    });
  await Promise.all(Array.from({ length: Math.min(readsInFlight, patched.length) }, stopOthersOnFailure));
}

/** A read buffer being filled with chains for one worker task. */
class BatchBuffer {
  used = 0;
  readonly chunks: PatchedChunkToWrite[] = [];
  readonly planned: PlannedBlob[] = [];
  constructor(readonly buffer: Uint8Array) {}
  take(length: number): number {
    this.used += length;
    return this.used - length;
  }
  add(chunk: PatchedChunkToWrite, blob: PlannedBlob): void {
    this.chunks.push(chunk);
    this.planned.push(blob);
  }
}

function isPatch(typeFlags: number): boolean {
  return blobType(typeFlags) === BlobType.Patch;
}

/** `old`'s first `keep` bytes in a buffer of at least `length` (doubling, so a walk grows it a few times at most). */
function grown(old: Buffer, keep: number, length: number): Buffer {
  const next = Buffer.allocUnsafe(Math.max(length, 2 * old.length, 64 * 1024));
  old.copy(next, 0, 0, keep);
  return next;
}
