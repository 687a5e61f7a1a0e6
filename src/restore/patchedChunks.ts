// Restoring page-patched chunks. Only the main thread can follow a chain (each
// patch names its base, and only the repository can fetch it); only a worker
// should open the root chunk, lay the patches over it, check and write it.
// A few walkers each fill one read buffer chain by chain: a chain's patches
// are opened into a scratch the walker reuses (Repository.readPatchChainInto)
// and copied into its batch, its
// root is read sealed straight into it, and a full batch goes to a worker and
// comes back. Nothing is allocated per patch or per chain, so a night of
// hundreds of patched chunks costs no more memory than whole chunks do
// (before: ~40 MiB more peak RSS, garbage of one buffer per patch).
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
    /** The current chain's opened patches, before they move into the batch. */
    let chainScratch: Buffer = Buffer.alloc(64 * 1024);
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
      const chain = await repo.readPatchChainInto(blob.id, chainScratch);
      chainScratch = chain.scratch;
      const { root, patches: links } = chain;
      const used = links.reduce((n, l) => n + l.length, 0);
      const rootLength = root.loc.storedLength;
      if (batch.used + used + rootLength > batch.buffer.byteLength) await send();
      if (used + rootLength > batch.buffer.byteLength) {
        // A chain larger than a read buffer travels alone in a buffer of its own.
        opts.spareReadBuffers.push(batch.buffer);
        batch = new BatchBuffer(new Uint8Array(used + rootLength));
      }
      const into = Buffer.from(batch.buffer.buffer, batch.buffer.byteOffset, batch.buffer.byteLength);
      const rootAt = batch.take(rootLength);
      await repo.readSealedInto(root.id, into.subarray(rootAt, rootAt + rootLength));
      const patches = links.map((l) => {
        const at = batch.take(l.length);
        chainScratch.copy(into, at, l.at, l.at + l.length);
        return { at, length: l.length };
      });
      batch.add(
        { root: { at: rootAt, length: rootLength, typeFlags: root.loc.typeFlags, rawLength: root.loc.rawLength, id: root.id }, patches, id: blob.id, targets: blob.targets },
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

