// Reading blobs out of packs: by range from the pack the index names, opened
// (authenticated, decompressed) and checked against the id, with page patches
// resolved against their base chain. Names say what comes back:
//   readBlobPlaintext   the chunk or map the id names (patches resolved, id checked)
//   unsealBlob          a sealed blob the caller already read, opened
//   readPatchChainInto        a patch chain's patches opened in a scratch, where its root lies (backup's bases, restore, check)
//   readChunkInScratch  readBlobPlaintext of a chunk into reused buffers (prune's rule 7)
import { Backend, NotFoundError } from '../storage/backend';
import { CorruptionError } from '../errors';
import { RepositoryKeys } from '../crypto/keys';
import { BlobDecoder, BlobType, blobType } from '../crypto/blobCodec';
import { ChunkHasher } from '../crypto/chunkId';
import { MAX_PATCH_DEPTH, applyPatch, decodePatchHeader } from './pagePatchFormat';
import { BlobLocation } from './chunkIndex';
import { PackIndex } from './packIndex';
import { objectPath } from './storedObject';

/** A patch chain read into one scratch buffer: the patches opened, oldest first; where its root lies. */
export interface ChainInScratch {
  scratch: Buffer;
  /** Patch k is scratch[at, at + length); `id` is its blob id (the chunk it makes), oldest first as the patches. */
  patches: { at: number; length: number; id: Buffer }[];
  root: { id: Buffer; loc: BlobLocation };
}

/** The buffers readChunkInScratch reuses; the chunk it returns lies in them until its next call. */
export class ChunkScratch {
  chain: Buffer = Buffer.alloc(0);
  root: Buffer = Buffer.alloc(0);
  private readonly levels: Buffer[] = [Buffer.alloc(0), Buffer.alloc(0)];

  /** Level buffer `k` (patches are laid from one into the other), at least `length` bytes. */
  level(k: number, length: number): Buffer {
    if (this.levels[k].length < length) this.levels[k] = Buffer.allocUnsafe(length);
    return this.levels[k];
  }
}

export class BlobReader {
  private readonly decoder: BlobDecoder;
  private readonly hasher: ChunkHasher;

  constructor(
    private readonly backend: Backend,
    keys: RepositoryKeys,
    private readonly packs: PackIndex,
  ) {
    this.decoder = new BlobDecoder(keys.dataKeys);
    this.hasher = new ChunkHasher(keys.idKey);
  }

  private get location(): string {
    return this.backend.location;
  }

  /** Open (authenticate, decompress) a blob's sealed bytes as stored: a page patch stays a patch. */
  unsealBlob(loc: BlobLocation, id: Buffer, sealed: Buffer, transient = false): Buffer {
    const plain = transient ? this.decoder.decodeScratch(loc.typeFlags, id, sealed, loc.rawLength) : this.decoder.decode(loc.typeFlags, id, sealed, loc.rawLength);
    const packId = this.packs.packIds[loc.pack];
    if (!plain) {
      throw new CorruptionError(
        `${this.location}/data/${packId.slice(0, 2)}/${packId}: blob ${id.toString('hex').slice(0, 16)} at offset ${loc.offset} fails authentication (damaged); run 'ferry check --read-data'`,
        `data/${packId}`,
      );
    }
    return plain;
  }

  /** The plaintext of the chunk or region map the id names: page patches resolved, checked against the id. */
  async readBlobPlaintext(id: Buffer): Promise<Buffer> {
    return (await this.readBlobPlaintextAndDepth(id)).data;
  }

  /** As readBlobPlaintext, with the blob's patch depth (0 for a whole chunk), which a new patch on top must exceed by one. */
  async readBlobPlaintextAndDepth(id: Buffer): Promise<{ data: Buffer; depth: number }> {
    const { loc, sealed } = await this.readSealed(id);
    let plain: Buffer;
    try {
      plain = this.unsealBlob(loc, id, sealed);
    } catch (err) {
      throw (await this.wrongPackError(this.packs.packIds[loc.pack], id)) ?? err;
    }
    if (blobType(loc.typeFlags) !== BlobType.Patch) {
      // FORMAT.md: the plaintext must hash to the id (authentication alone does not prove that the
      // writer stored the right chunk under it). Workers check the chunks they restore; this covers
      // region maps and the bases a backup or a patch chain reads here.
      if (!this.hasher.hash(plain).equals(id)) {
        const packId = this.packs.packIds[loc.pack];
        throw new CorruptionError(
          `${objectPath(this.location, 'data', packId)}: blob ${id.toString('hex').slice(0, 16)} at offset ${loc.offset} does not hash to its id (damaged); run 'ferry check --read-data'`,
          `data/${packId}`,
        );
      }
      return { data: plain, depth: 0 };
    }
    const header = decodePatchHeader(plain);
    const base = header ? await this.readBlobPlaintextAndDepth(header.baseId) : undefined;
    const data = base ? applyPatch(base.data, plain) : undefined;
    if (!header || !data || !this.hasher.hash(data).equals(id)) {
      const packId = this.packs.packIds[loc.pack];
      throw new CorruptionError(
        `${this.location}/data/${packId.slice(0, 2)}/${packId}: page patch ${id.toString('hex').slice(0, 16)} does not rebuild its chunk; run 'ferry check --read-data'`,
        `data/${packId}`,
      );
    }
    return { data, depth: header.depth };
  }

  /** A blob's sealed bytes, as stored in its pack, and where they lie. */
  private async readSealed(id: Buffer, into?: Uint8Array): Promise<{ loc: BlobLocation; sealed: Buffer }> {
    const loc = this.packs.blobLocation(id);
    if (!loc) {
      throw new CorruptionError(`${this.location}: blob ${id.toString('hex').slice(0, 16)} is not in any index; run 'ferry check'`, 'index');
    }
    const packId = this.packs.packIds[loc.pack];
    const sealed = await this.backend.readRange('data', packId, loc.offset, loc.storedLength, into).catch(async (err: unknown) => {
      if (err instanceof NotFoundError) {
        throw new CorruptionError(`${this.location}: pack ${packId} is missing; run 'ferry check'`, `data/${packId}`);
      }
      throw (await this.wrongPackError(packId, id)) ?? err;
    });
    return { loc, sealed };
  }

  /**
   * After a blob could not be read from a pack: if the pack's own header is
   * intact but does not list the blob, the file under that name is another
   * pack (renamed or swapped), which "truncated" or "damaged" would misname.
   * Only on the failure path: it costs a stat and a header read.
   */
  async wrongPackError(packId: string, id: Buffer): Promise<CorruptionError | undefined> {
    const info = await this.backend.stat('data', packId).catch(() => undefined);
    const header = info ? await this.packs.readPackHeader(packId, info.size).catch(() => undefined) : undefined;
    if (!header || header.some((e) => e.id.equals(id))) return undefined;
    return new CorruptionError(
      `${objectPath(this.location, 'data', packId)}: wrong pack: the file's own header does not list blob ${id.toString('hex').slice(0, 16)}, so it holds another pack's content (packs renamed or swapped); run 'ferry check --read-data'`,
      `data/${packId}`,
    );
  }

  /** A blob's sealed bytes read into `into` (exactly its stored length), for a worker to open. */
  async readSealedInto(id: Buffer, into: Buffer): Promise<void> {
    const { sealed } = await this.readSealed(id, into);
    if (sealed.length !== into.length) throw new CorruptionError(`${this.location}: blob ${id.toString('hex').slice(0, 16)} is not where its index says; run 'ferry check'`, 'index');
    if (sealed.buffer !== into.buffer || sealed.byteOffset !== into.byteOffset) sealed.copy(into);
  }

  /**
   * The ids a blob needs to be read: itself and, for a page patch, its base chain down to a whole chunk.
   * Stops at a patch whose body holds no readable header, or past the depth limit. `baseOf`: where a
   * patch's base is read instead of its body (prune's memo reads each body once per run).
   */
  async blobDependencies(id: Buffer, baseOf: (patchId: Buffer) => Promise<Buffer | undefined> = (p) => this.patchBase(p)): Promise<Buffer[]> {
    const chain = [id];
    let loc = this.packs.blobLocation(id);
    while (loc && blobType(loc.typeFlags) === BlobType.Patch && chain.length <= MAX_PATCH_DEPTH + 1) {
      const base = await baseOf(chain[chain.length - 1]);
      if (!base) break;
      chain.push(base);
      loc = this.packs.blobLocation(base);
    }
    return chain;
  }

  /** The base a stored patch's body names (undefined if the body holds no readable header). */
  private async patchBase(patchId: Buffer): Promise<Buffer | undefined> {
    const { loc, sealed } = await this.readSealed(patchId);
    return decodePatchHeader(this.unsealBlob(loc, patchId, sealed))?.baseId;
  }

  /**
   * A patch chain read without fresh buffers per patch (a nightly backup reads
   * one per chunk it stores, a restore one per patched chunk: hundreds of
   * buffers a night for the collector otherwise). Each patch's sealed bytes
   * are read into `scratch` where its opened bytes then go (a larger scratch
   * is made when it is short; the one used is returned). Patches are listed
   * oldest first, as a worker lays them over the root; the root, a whole
   * chunk, is only located, not read.
   */
  async readPatchChainInto(id: Buffer, scratch: Buffer): Promise<ChainInScratch> {
    const patches: { at: number; length: number; id: Buffer }[] = [];
    let end = 0;
    let current = id;
    for (;;) {
      const loc = this.packs.blobLocation(current);
      if (!loc) throw new CorruptionError(`${this.location}: blob ${current.toString('hex').slice(0, 16)} is not in any index; run 'ferry check'`, 'index');
      if (blobType(loc.typeFlags) !== BlobType.Patch) return { scratch, patches: patches.reverse(), root: { id: current, loc } };
      if (patches.length > MAX_PATCH_DEPTH) throw this.malformedPatch(current, loc);
      const room = Math.max(loc.storedLength, loc.rawLength);
      if (end + room > scratch.length) {
        const grown = Buffer.allocUnsafe(Math.max(2 * scratch.length, end + room));
        scratch.copy(grown, 0, 0, end);
        scratch = grown;
      }
      const { sealed } = await this.readSealed(current, scratch.subarray(end, end + loc.storedLength));
      const plain = this.decoder.decodeScratch(loc.typeFlags, current, sealed, loc.rawLength);
      // unsealBlob names the damage (authentication, or another pack's content).
      if (!plain) this.unsealBlob(loc, current, Buffer.from(sealed));
      const header = plain && decodePatchHeader(plain);
      if (!plain || !header) throw this.malformedPatch(current, loc);
      plain.copy(scratch, end);
      patches.push({ at: end, length: plain.length, id: current });
      end += plain.length;
      current = header.baseId;
    }
  }

  /**
   * readBlobPlaintext of a chunk without fresh buffers: its patch chain and
   * root are read into `scratch` and the patches laid from one level buffer
   * into the other (prune rebuilds hundreds of chains a run, and a fresh
   * buffer per level and per blob waited for the collector and made its
   * peak). The chunk made is checked against `id`: what comes back is the
   * chunk `id` names, valid until the next call with `scratch`, or it throws.
   */
  async readChunkInScratch(id: Buffer, scratch: ChunkScratch): Promise<Buffer> {
    const chain = await this.readPatchChainInto(id, scratch.chain);
    scratch.chain = chain.scratch;
    const { loc } = chain.root;
    if (scratch.root.length < loc.storedLength) scratch.root = Buffer.allocUnsafe(loc.storedLength);
    const { sealed } = await this.readSealed(chain.root.id, scratch.root.subarray(0, loc.storedLength));
    let chunk: Buffer | undefined;
    try {
      // Opened into the decoder's scratch: the chain's patches were opened (and copied out) before.
      chunk = this.unsealBlob(loc, chain.root.id, sealed, true);
    } catch (err) {
      throw (await this.wrongPackError(this.packs.packIds[loc.pack], chain.root.id)) ?? err;
    }
    chain.patches.forEach((p, k) => {
      const plain = chain.scratch.subarray(p.at, p.at + p.length);
      chunk = chunk && applyPatch(chunk, plain, scratch.level(k % 2, decodePatchHeader(plain)?.length ?? 0));
    });
    // A whole chunk is still in the decoder's buffer, which the next blob opened anywhere overwrites.
    if (chunk && chain.patches.length === 0) {
      const owned = scratch.level(0, chunk.length).subarray(0, chunk.length);
      chunk.copy(owned);
      chunk = owned;
    }
    if (!chunk || !this.hasher.hash(chunk).equals(id)) {
      const packId = this.packs.packIds[(this.packs.blobLocation(id) ?? loc).pack];
      const what = chain.patches.length > 0 ? 'page patch' : 'blob';
      throw new CorruptionError(`${objectPath(this.location, 'data', packId)}: ${what} ${id.toString('hex').slice(0, 16)} does not rebuild its chunk; run 'ferry check --read-data'`, `data/${packId}`);
    }
    return chunk;
  }

  private malformedPatch(id: Buffer, loc: BlobLocation): CorruptionError {
    return new CorruptionError(`${this.location}: page patch ${id.toString('hex').slice(0, 16)} is malformed; run 'ferry check --read-data'`, `data/${this.packs.packIds[loc.pack]}`);
  }
}
