// Chunks as stored, on their way to a worker: a patch chain's opened patches
// and its root chunk still sealed, laid one after another in one buffer that
// is transferred (restore's patched chunks, backup's page-patch bases).
import type { Repository } from '../repo/repository';
import type { BlobLocation } from '../repo/chunkIndex';
import type { SealedChain } from './tasks';

/** What Repository.readPatchChain gives: the patches opened, where the root lies. */
export interface StoredChain {
  root: { id: Buffer; loc: BlobLocation };
  patches: Buffer[];
}

/** The bytes a chain takes in a task's buffer. */
export function sealedChainBytes(chain: StoredChain): number {
  return chain.root.loc.storedLength + chain.patches.reduce((n, p) => n + p.length, 0);
}

/** Lay `chains` out from the start of `into` (at least their sealedChainBytes together): patches copied, roots read in place. */
export async function loadSealedChains(repo: Repository, chains: StoredChain[], into: Uint8Array): Promise<SealedChain[]> {
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
      p.copy(data, range.at);
      return range;
    }),
  }));
  await Promise.all(chains.map((c, i) => repo.readSealedInto(c.root.id, data.subarray(laid[i].root.at, laid[i].root.at + laid[i].root.length))));
  return laid;
}
