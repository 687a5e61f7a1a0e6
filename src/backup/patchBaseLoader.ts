// Page-patch bases on their way to a packChunks task, read without a fresh
// buffer per blob: a nightly backup reads a base chain (root and patches) for
// nearly every chunk it stores, and fresh buffers for each sealed and opened
// patch piled up on the main thread until V8's next full collection (with the
// bases' carriers, 185-190 MiB against 150 without patches, issue 11).
// Each chain's patches are read into a reused scratch buffer and opened in
// place there (the decoder's own scratch in between), then laid into the
// carrier with the roots still sealed, as workers/sealedChains.ts lays them.
import { Repository } from '../repo/repository';
import { BlobLocation } from '../repo/chunkIndex';
import { BlobDecoder, BlobType, blobType } from '../crypto/blobCodec';
import { MAX_PATCH_DEPTH, decodePatchHeader } from '../repo/pagePatchFormat';
import { CorruptionError } from '../errors';
import { SealedChain } from '../workers/tasks';

/** A base's chain as read: its opened patches (oldest first) in one scratch, where its root lies. */
interface ReadChain {
  scratch: Buffer;
  /** Patch k is scratch[patches[k].at, +length). */
  patches: { at: number; length: number }[];
  root: { id: Buffer; loc: BlobLocation };
}

/** The smallest scratch a chain starts with: a few pages of patch. */
const SCRATCH_BYTES = 64 * 1024;

export class PatchBaseLoader {
  private readonly decoder: BlobDecoder;
  /** Scratch buffers of chains already laid out, for the next chains (each only grows). */
  private readonly spareScratches: Buffer[] = [];

  constructor(private readonly repo: Repository) {
    this.decoder = new BlobDecoder(repo.keys.dataKeys);
  }

  /** The bytes `ids`' chains take in a carrier: opened patches and sealed roots (what `layOut` writes). */
  async read(ids: Buffer[]): Promise<ReadChains> {
    const chains = await Promise.all(ids.map((id) => this.readChain(id)));
    const bytes = chains.reduce((n, c) => n + c.root.loc.storedLength + c.patches.reduce((m, p) => m + p.length, 0), 0);
    return { chains, bytes };
  }

  /** Lay chains read by `read` out from the start of `into` (at least their bytes): patches copied, roots read in place. */
  async layOut(read: ReadChains, into: Uint8Array): Promise<SealedChain[]> {
    const data = Buffer.from(into.buffer, into.byteOffset, into.byteLength);
    let at = 0;
    const place = (length: number) => {
      const range = { at, length };
      at += length;
      return range;
    };
    const laid = read.chains.map((c) => ({
      root: { ...place(c.root.loc.storedLength), typeFlags: c.root.loc.typeFlags, rawLength: c.root.loc.rawLength, id: c.root.id },
      patches: c.patches.map((p) => {
        const range = place(p.length);
        c.scratch.copy(data, range.at, p.at, p.at + p.length);
        return range;
      }),
    }));
    for (const c of read.chains) this.spareScratches.push(c.scratch);
    await Promise.all(read.chains.map((c, i) => this.repo.readSealedInto(c.root.id, data.subarray(laid[i].root.at, laid[i].root.at + laid[i].root.length))));
    return laid;
  }

  /** Walk one chain from `id` down to its whole root chunk, opening each patch inside the chain's scratch. */
  private async readChain(id: Buffer): Promise<ReadChain> {
    let scratch = this.spareScratches.pop() ?? Buffer.allocUnsafe(SCRATCH_BYTES);
    const patches: { at: number; length: number }[] = [];
    let end = 0;
    let current = id;
    for (;;) {
      const loc = this.repo.blobLocation(current);
      if (loc && blobType(loc.typeFlags) !== BlobType.Patch) {
        // Oldest first, as a worker lays them over the root.
        patches.reverse();
        return { scratch, patches, root: { id: current, loc } };
      }
      if (!loc || patches.length > MAX_PATCH_DEPTH) {
        if (!loc) throw new CorruptionError(`${this.repo.location}: blob ${current.toString('hex').slice(0, 16)} is not in any index; run 'ferry check'`, 'index');
        throw this.malformed(current, loc);
      }
      // The sealed patch is read where its opened bytes go (room for the larger of the two).
      const room = Math.max(loc.storedLength, loc.rawLength);
      if (end + room > scratch.length) {
        const grown = Buffer.allocUnsafe(Math.max(2 * scratch.length, end + room));
        scratch.copy(grown, 0, 0, end);
        scratch = grown;
      }
      const sealed = scratch.subarray(end, end + loc.storedLength);
      await this.repo.readSealedInto(current, sealed);
      const plain = this.decoder.decodeScratch(loc.typeFlags, current, sealed, loc.rawLength);
      // The repository's own reader names the damage (authentication, or another pack's content).
      if (!plain) this.repo.unsealBlob(loc, current, Buffer.from(sealed));
      const header = plain && decodePatchHeader(plain);
      if (!plain || !header) throw this.malformed(current, loc);
      plain.copy(scratch, end);
      patches.push({ at: end, length: plain.length });
      end += plain.length;
      current = header.baseId;
    }
  }

  private malformed(id: Buffer, loc: BlobLocation): CorruptionError {
    return new CorruptionError(
      `${this.repo.location}: page patch ${id.toString('hex').slice(0, 16)} is malformed; run 'ferry check --read-data'`,
      `data/${this.repo.packIds[loc.pack]}`,
    );
  }
}

/** Chains read, waiting for a carrier of `bytes`. */
export interface ReadChains {
  chains: ReadChain[];
  bytes: number;
}
