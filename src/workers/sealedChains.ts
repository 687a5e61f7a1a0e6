// Chunks as stored, on their way to a worker: a patch chain's opened patches
// and its root chunk still sealed, laid one after another in one buffer that
// is transferred (backup's page-patch bases, check's patched chunks; restore
// lays its own batches as it walks, restore/patchedChunks.ts).
import type { Repository } from '../repo/repository';
import type { ChainInScratch } from '../repo/blobReader';
import type { SealedChain } from './tasks';

/** The bytes a chain takes in a task's buffer: its sealed root and its opened patches. */
export function sealedChainBytes(chain: ChainInScratch): number {
  return chain.root.loc.storedLength + chain.patches.reduce((n, p) => n + p.length, 0);
}

/** Lay `chains` out from the start of `into` (at least their sealedChainBytes together): patches copied from their scratch, roots read in place. */
export async function loadSealedChains(repo: Repository, chains: ChainInScratch[], into: Uint8Array): Promise<SealedChain[]> {
  const data = Buffer.from(into.buffer, into.byteOffset, into.byteLength);
  let at = 0;
  const place = (length: number) => {
    const range = { at, length };
    at += length;
    return range;
  };
  const laid = chains.map((c) => ({
    root: { ...place(c.root.loc.storedLength), typeFlags: c.root.loc.typeFlags, rawLength: c.root.loc.rawLength, id: c.root.id },
    patches: c.patches.map((p) => {
      const range = place(p.length);
      c.scratch.copy(data, range.at, p.at, p.at + p.length);
      return range;
    }),
  }));
  await Promise.all(chains.map((c, i) => repo.readSealedInto(c.root.id, data.subarray(laid[i].root.at, laid[i].root.at + laid[i].root.length))));
  return laid;
}
