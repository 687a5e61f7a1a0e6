// Collects sealed blobs into pack files of about `packSize` bytes, writes each
// pack whole, and records the packs in index files every `indexEvery` packs
// and at the end. Order on storage is always pack, then the index naming it,
// so an interrupted run leaves only complete packs (indexed, or found again by
// Repository.indexOrphanPacks) and never an index pointing at nothing.
import { Repository } from './repository';
import { contentName } from '../crypto/chunkId';
import { encodePackHeader, PackEntry } from './packFormat';
import { IndexedPack } from './indexFile';

export interface BlobForPack {
  id: Buffer;
  typeFlags: number;
  rawLength: number;
  sealed: Uint8Array;
}

/**
 * Who writes the index files naming the new packs: the writer (every
 * `indexEvery` packs and at the end), or its caller, from `writtenPacks`
 * (prune merges them with the packs it keeps).
 */
export type PackIndexing = 'index-files' | 'by-caller';

export class PackWriter {
  private parts: Uint8Array[] = [];
  private entries: PackEntry[] = [];
  private size = 0;
  private unindexed: IndexedPack[] = [];
  private chain: Promise<void> = Promise.resolve();
  newBlobs = 0;
  newBytes = 0;
  packsWritten = 0;
  /** With 'by-caller': every pack written, with its entries. */
  readonly writtenPacks: IndexedPack[] = [];

  constructor(
    private readonly repo: Repository,
    private readonly indexEvery = 8,
    private readonly indexing: PackIndexing = 'index-files',
  ) {}

  /** Queue a blob; resolves once it is buffered (or its pack written, when that was due). */
  add(blob: BlobForPack): Promise<void> {
    this.chain = this.chain.then(async () => {
      this.entries.push({ id: blob.id, typeFlags: blob.typeFlags, offset: this.size, storedLength: blob.sealed.length, rawLength: blob.rawLength });
      this.parts.push(blob.sealed);
      this.size += blob.sealed.length;
      this.newBlobs++;
      if (this.size >= this.repo.settings.packSize) await this.writePack();
    });
    return this.chain;
  }

  /** Write the open pack and an index file for every pack not yet indexed. */
  finish(): Promise<void> {
    this.chain = this.chain.then(async () => {
      await this.writePack();
      await this.writeIndex();
    });
    return this.chain;
  }

  private async writePack(): Promise<void> {
    if (this.entries.length === 0) return;
    const entries = this.entries;
    const pack = Buffer.concat([...this.parts, encodePackHeader(this.repo.keys.dataKey, entries)]);
    this.entries = [];
    this.parts = [];
    this.size = 0;
    const packId = contentName(pack);
    await this.repo.backend.write('data', packId, pack);
    this.repo.addPackEntries(packId, entries);
    // Kept only for a caller that indexes them: a backup's would grow with every blob it stores.
    if (this.indexing === 'by-caller') this.writtenPacks.push({ packId, entries });
    else this.unindexed.push({ packId, entries });
    this.packsWritten++;
    this.newBytes += pack.length;
    if (this.unindexed.length >= this.indexEvery) await this.writeIndex();
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    await this.repo.writeIndexFile(this.unindexed);
    this.unindexed = [];
  }
}
