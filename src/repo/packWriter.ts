// Collects sealed blobs into pack files of about `packSize` bytes, writes each
// pack whole, and records the packs in index files every `indexEvery` packs
// and at the end. Order on storage is always pack, then the index naming it,
// so an interrupted run leaves only complete packs (indexed, or found again by
// Repository.indexOrphanPacks) and never an index pointing at nothing.
//
// Blobs are copied into one pack buffer that every pack of the writer reuses
// and that is written with the header as two parts: no pack-sized copy per pack
// (Buffer.concat) and no fresh pages to fault in, and a blob's sealed buffer
// (a worker's output) is released as soon as it is copied.
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

/** Room beyond the target pack size, so the blob that crosses it usually still fits. */
const PACK_BUFFER_SLACK = 2 * 1024 * 1024;

export class PackWriter {
  private body: Buffer = Buffer.alloc(0);
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
    /** Cut packs at this size when it is below the repository's pack size (a small memory budget). */
    targetPackBytes = repo.settings.packSize,
  ) {
    this.packBytes = Math.min(repo.settings.packSize, targetPackBytes);
  }

  /** Where this writer cuts its packs. */
  private readonly packBytes: number;

  /** Queue a blob; resolves once it is buffered (or its pack written, when that was due). */
  add(blob: BlobForPack): Promise<void> {
    this.chain = this.chain.then(async () => {
      this.entries.push({ id: blob.id, typeFlags: blob.typeFlags, offset: this.size, storedLength: blob.sealed.length, rawLength: blob.rawLength });
      this.reserve(blob.sealed.length);
      this.body.set(blob.sealed, this.size);
      this.size += blob.sealed.length;
      this.newBlobs++;
      if (this.size >= this.packBytes) await this.writePack();
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

  /** Room for `length` more bytes in the pack buffer (allocated at the first blob, grown only for an oversized blob). */
  private reserve(length: number): void {
    if (this.size + length <= this.body.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.size + length, this.packBytes + PACK_BUFFER_SLACK));
    this.body.copy(grown, 0, 0, this.size);
    this.body = grown;
  }

  private async writePack(): Promise<void> {
    if (this.entries.length === 0) return;
    const entries = this.entries;
    const pack = [this.body.subarray(0, this.size), encodePackHeader(this.repo.keys.dataKey, entries)];
    const packBytes = this.size + pack[1].length;
    this.entries = [];
    const packId = contentName(pack);
    // The buffer is reused for the next pack only after this write settles (adds wait on the chain).
    try {
      await this.repo.backend.write('data', packId, pack);
    } finally {
      this.size = 0;
    }
    this.repo.addPackEntries(packId, entries);
    // Kept only for a caller that indexes them: a backup's would grow with every blob it stores.
    if (this.indexing === 'by-caller') this.writtenPacks.push({ packId, entries });
    else this.unindexed.push({ packId, entries });
    this.packsWritten++;
    this.newBytes += packBytes;
    if (this.unindexed.length >= this.indexEvery) await this.writeIndex();
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    await this.repo.writeIndexFile(this.unindexed);
    this.unindexed = [];
  }
}
