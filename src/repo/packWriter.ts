// Collects sealed blobs into pack files of about `packSize` bytes and records
// the packs in index files every `indexEvery` packs and at the end. Order on
// storage is always pack, then the index naming it, so an interrupted run
// leaves only complete packs (indexed, or found again by
// Repository.indexOrphanPacks) and never an index pointing at nothing.
//
// A pack goes to storage as it fills (Backend.openStream): blobs are copied
// into a small staging buffer that is appended to the pack when full, and the
// pack is named (the hash of its bytes) and committed after its header. A
// backup held a pack-sized buffer before (16 MiB, 12-14 MiB of a nightly
// backup's peak RSS); a backend that cannot stream collects the pieces
// (storage/objectStream.ts). A blob's sealed buffer (a worker's output) is
// released as soon as it is copied.
import { Repository } from './repository';
import { ContentNameHasher } from '../crypto/chunkId';
import { encodePackHeader, PackEntry } from './packFormat';
import { IndexedPack } from './indexFile';
import { ObjectStream } from '../storage/backend';
import { openObjectStream } from '../storage/objectStream';

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

/** Blobs are copied into the pack's next piece up to this size; larger ones are appended as they are. */
const PIECE_BYTES = 2 * 1024 * 1024;

/** The pack being written: its stream, the hash that names it, its entries and the piece not yet appended. */
interface OpenPack {
  stream: ObjectStream;
  name: ContentNameHasher;
  entries: PackEntry[];
  size: number;
}

export class PackWriter {
  private open: OpenPack | undefined;
  private abandoned = false;
  private pieceBuffer: Buffer | undefined;
  private pieceBytes = 0;
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

  /** Queue a blob; resolves once it is copied or appended (or its pack committed, when that was due). */
  add(blob: BlobForPack): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (this.abandoned) throw new Error('PackWriter: a blob was added after the writer was abandoned');
      const pack = (this.open ??= { stream: await openObjectStream(this.repo.backend, 'data', this.packBytes), name: new ContentNameHasher(), entries: [], size: 0 });
      pack.entries.push({ id: blob.id, typeFlags: blob.typeFlags, offset: pack.size, storedLength: blob.sealed.length, rawLength: blob.rawLength });
      await this.put(pack, blob.sealed);
      this.newBlobs++;
      if (pack.size >= this.packBytes) await this.writePack();
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

  /**
   * `fill` the writer, then finish; if either fails, abandon the pack being
   * written (nothing of it is left) and rethrow. Packs committed before stay.
   */
  async fillAndFinish(fill: () => Promise<void>): Promise<void> {
    try {
      await fill();
      await this.finish();
    } catch (e) {
      await this.abandon();
      throw e;
    }
  }

  /**
   * After a failure: wait for what is under way and drop the pack being written,
   * so that nothing of it is left in the repository. Packs already committed
   * stay (the next backup reuses them). Never throws.
   */
  async abandon(): Promise<void> {
    this.abandoned = true;
    await this.chain.catch(() => undefined);
    const pack = this.open;
    this.open = undefined;
    this.pieceBytes = 0;
    await pack?.stream.abort();
  }

  /** `bytes` onto the open pack: into its piece, or appended as they are when they would take most of one. */
  private async put(pack: OpenPack, bytes: Uint8Array): Promise<void> {
    const large = bytes.length > PIECE_BYTES / 2;
    // The piece goes first: the pack's bytes are in the order of its entries.
    if (large || this.pieceBytes + bytes.length > PIECE_BYTES) await this.appendPiece(pack);
    pack.size += bytes.length;
    if (large) return this.append(pack, bytes);
    this.pieceBuffer ??= Buffer.allocUnsafe(PIECE_BYTES);
    this.pieceBuffer.set(bytes, this.pieceBytes);
    this.pieceBytes += bytes.length;
  }

  private async appendPiece(pack: OpenPack): Promise<void> {
    if (this.pieceBytes === 0 || !this.pieceBuffer) return;
    const piece = this.pieceBuffer.subarray(0, this.pieceBytes);
    this.pieceBytes = 0;
    await this.append(pack, piece);
  }

  /** Bytes onto the pack's stream (and its name); a pack whose append failed is dropped. */
  private async append(pack: OpenPack, bytes: Uint8Array): Promise<void> {
    pack.name.update(bytes);
    try {
      await pack.stream.append(bytes);
    } catch (e) {
      this.open = undefined;
      this.pieceBytes = 0;
      await pack.stream.abort();
      throw e;
    }
  }

  private async writePack(): Promise<void> {
    const pack = this.open;
    if (!pack || pack.entries.length === 0) return;
    await this.appendPiece(pack);
    const header = encodePackHeader(this.repo.keys.dataKey, pack.entries);
    await this.append(pack, header);
    const packId = pack.name.digest();
    this.open = undefined;
    await pack.stream.commit(packId);
    pack.size += header.length;
    this.repo.addPackEntries(packId, pack.entries);
    // Kept only for a caller that indexes them: a backup's would grow with every blob it stores.
    if (this.indexing === 'by-caller') this.writtenPacks.push({ packId, entries: pack.entries });
    else this.unindexed.push({ packId, entries: pack.entries });
    this.packsWritten++;
    this.newBytes += pack.size;
    if (this.unindexed.length >= this.indexEvery) await this.writeIndex();
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    await this.repo.writeIndexFile(this.unindexed);
    this.unindexed = [];
  }
}
