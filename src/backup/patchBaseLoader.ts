// Page-patch bases on their way to a packChunks task, read without a fresh
// buffer per blob: a nightly backup reads a base chain (root and patches) for
// nearly every chunk it stores, and fresh buffers for each sealed and opened
// patch piled up on the main thread until V8's next full collection (with the
// bases' carriers, 185-190 MiB against 150 without patches, issue 11).
// Each chain's patches are read into a reused scratch buffer and opened in
// place there (Repository.readPatchChainInto), then laid into the carrier
// with the roots still sealed, as workers/sealedChains.ts lays them.
import { Repository } from '../repo/repository';
import type { ChainInScratch } from '../repo/blobReader';
import { SealedChain } from '../workers/tasks';
import { loadSealedChains, sealedChainBytes } from '../workers/sealedChains';

/** The smallest scratch a chain starts with: a few pages of patch. */
const SCRATCH_BYTES = 64 * 1024;

export class PatchBaseLoader {
  /** Scratch buffers of chains already laid out, for the next chains (each only grows). */
  private readonly spareScratches: Buffer[] = [];

  constructor(private readonly repo: Repository) {}

  /** The bytes `ids`' chains take in a carrier: opened patches and sealed roots (what `layOut` writes). */
  async read(ids: Buffer[]): Promise<ReadChains> {
    const chains = await Promise.all(ids.map((id) => this.readChain(id)));
    const bytes = chains.reduce((n, c) => n + sealedChainBytes(c), 0);
    return { chains, bytes };
  }

  /** Lay chains read by `read` out from the start of `into` (at least their bytes): patches copied, roots read in place. */
  async layOut(read: ReadChains, into: Uint8Array): Promise<SealedChain[]> {
    const laid = await loadSealedChains(this.repo, read.chains, into);
    for (const c of read.chains) this.spareScratches.push(c.scratch);
    return laid;
  }

  /** The patch depth of each of `ids` (0: a whole chunk), from its chain's patches, read and checked; no root is read. */
  async depths(ids: Buffer[]): Promise<number[]> {
    const chains = await Promise.all(ids.map((id) => this.readChain(id)));
    for (const c of chains) this.spareScratches.push(c.scratch);
    return chains.map((c) => c.patches.length);
  }

  /** One chain from `id` down to its whole root chunk, its patches opened inside a reused scratch. */
  private readChain(id: Buffer): Promise<ChainInScratch> {
    return this.repo.readPatchChainInto(id, this.spareScratches.pop() ?? Buffer.allocUnsafe(SCRATCH_BYTES));
  }
}

/** Chains read, waiting for a carrier of `bytes`. */
export interface ReadChains {
  chains: ChainInScratch[];
  bytes: number;
}
