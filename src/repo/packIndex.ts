// What the repository knows of its packs: the index files (loaded, written),
// the in-memory ChunkIndex of every blob's location, packs no index file names
// yet (left by an interrupted backup) and the listing of data/. The ChunkIndex
// stays private: callers look blobs up and claim them through the methods here.
import { Backend } from '../storage/backend';
import { CorruptionError } from '../errors';
import { contentName } from '../crypto/chunkId';
import { BlobType, blobType } from '../crypto/blobCodec';
import { RepositoryKeys } from '../crypto/keys';
import { ChunkIndex, BlobLocation, PENDING_PACK } from './chunkIndex';
import { IndexedPack, decodeIndexFile, encodeIndexFile } from './indexFile';
import { decodePackHeader, PackEntry } from './packFormat';
import { readDecodedObject } from './storedObject';

export interface OrphanIndexing {
  /** Where the orphan packs' index records go: a new index file, or only this process's memory. */
  keep: 'index-file' | 'memory-only';
  /** Every pack with its stored size, when the caller has listed them already. */
  packs?: ReadonlyMap<string, number>;
}

export class PackIndex {
  private readonly index = new ChunkIndex();
  /** Pack number (as stored in the index) → pack id. */
  readonly packIds: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  /** Pack number → where its last indexed blob ends (packHealth.ts compares this with the stored size). */
  readonly packEnds: number[] = [];
  /** Index files loaded, by name. */
  readonly indexFiles = new Set<string>();
  /** Pack number → the index files loaded or written that name it (Object Lock keeps them with the pack: retentionCoverage.ts). */
  private readonly indexFilesOfPack = new Map<number, string[]>();

  constructor(
    private readonly backend: Backend,
    private readonly keys: RepositoryKeys,
  ) {}

  // ---- packs and index files ----

  packNumber(packId: string): number {
    let n = this.packNumbers.get(packId);
    if (n === undefined) {
      n = this.packIds.length;
      this.packIds.push(packId);
      this.packNumbers.set(packId, n);
    }
    return n;
  }

  hasPack(packId: string): boolean {
    return this.packNumbers.has(packId);
  }

  /**
   * Record a pack's blobs. Of two copies of one blob, a whole one is read rather than a page patch,
   * whichever comes first (FORMAT.md, "Copies of one blob": a backup sizes its patch chains by the copy
   * it reads, so every reader must read the same one); between two copies of one kind the later wins.
   * With `fillGaps` (an orphan pack's blobs) only ids not yet indexed are taken: see indexOrphanPacks.
   */
  addPackEntries(packId: string, entries: readonly PackEntry[], opts: { fillGaps?: boolean } = {}): void {
    const pack = this.packNumber(packId);
    let end = this.packEnds[pack] ?? 0;
    for (const e of entries) {
      end = Math.max(end, e.offset + e.storedLength);
      const held = this.index.storedTypeFlags(e.id);
      if (held !== undefined && (opts.fillGaps || (blobType(held) !== BlobType.Patch && blobType(e.typeFlags) === BlobType.Patch))) continue;
      this.index.set(e.id, { pack, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags });
    }
    this.packEnds[pack] = end;
  }

  /** Load every index file. Damaged ones are reported through `onDamaged` and skipped. */
  async loadIndex(onDamaged?: (name: string) => void): Promise<void> {
    for await (const info of this.backend.list('index')) {
      if (this.indexFiles.has(info.name)) continue;
      const packs = await readDecodedObject(this.backend, 'index', info.name, (bytes) =>
        contentName(bytes) === info.name ? decodeIndexFile(this.keys.dataKeys, bytes) : undefined,
      );
      if (!packs) {
        if (onDamaged) {
          onDamaged(info.name);
          continue;
        }
        throw new CorruptionError(
          `${this.backend.location}/index/${info.name}: index file is damaged; run 'ferry check' to see what it affects`,
          `index/${info.name}`,
        );
      }
      for (const p of packs) this.addPackEntries(p.packId, p.entries);
      this.indexFiles.add(info.name);
      this.noteIndexFile(info.name, packs);
    }
    this.index.fit();
  }

  /** One index file's pack records, or undefined when it is damaged (prune reads them one by one). */
  async readIndexFile(name: string): Promise<IndexedPack[] | undefined> {
    return readDecodedObject(this.backend, 'index', name, (bytes) =>
      contentName(bytes) === name ? decodeIndexFile(this.keys.dataKeys, bytes) : undefined,
    );
  }

  async writeIndexFile(packs: IndexedPack[]): Promise<string> {
    const bytes = encodeIndexFile(this.keys.dataKey, packs);
    const name = contentName(bytes);
    await this.backend.write('index', name, bytes);
    this.indexFiles.add(name);
    this.noteIndexFile(name, packs);
    return name;
  }

  /** The index files loaded or written that name the pack. */
  indexFilesNaming(packId: string): readonly string[] {
    const n = this.packNumbers.get(packId);
    return (n !== undefined && this.indexFilesOfPack.get(n)) || [];
  }

  private noteIndexFile(name: string, packs: readonly IndexedPack[]): void {
    for (const p of packs) {
      const n = this.packNumber(p.packId);
      const names = this.indexFilesOfPack.get(n);
      if (!names) this.indexFilesOfPack.set(n, [name]);
      else if (!names.includes(name)) names.push(name);
    }
  }

  /**
   * Packs that exist but no index file names: left by an interrupted backup.
   * Read their headers and index them, so the next backup reuses them (resume).
   * Packs whose header is damaged are returned in `unreadable`. With
   * `keep: 'index-file'` the result is written as a new index file; with
   * 'memory-only' it lasts as long as this Repository. `packs` is a listing the
   * caller already has (listPacks), saving another.
   */
  async indexOrphanPacks(opts: OrphanIndexing): Promise<{ indexed: number; unreadable: string[] }> {
    const { keep, packs } = opts;
    const orphans: IndexedPack[] = [];
    const unreadable: string[] = [];
    for (const [packId, size] of packs ?? (await this.listPacks())) {
      if (this.hasPack(packId)) continue;
      const entries = await this.readPackHeader(packId, size);
      if (entries) orphans.push({ packId, entries });
      else unreadable.push(packId);
    }
    if (keep === 'index-file') {
      // A backup takes an orphan pack's page patches out: their base may be in a pack an interrupted prune
      // already deleted (FORMAT.md, rule 8), and deduplicating against such a patch would name a chunk that
      // cannot be rebuilt. A patch left out is only stored again; whole chunks and maps stand on their own.
      for (const p of orphans) p.entries = p.entries.filter((e) => blobType(e.typeFlags) !== BlobType.Patch);
    }
    if (orphans.length > 0) {
      if (keep === 'index-file') await this.writeIndexFile(orphans);
      // Index files come first: an unindexed copy (an interrupted prune's new pack) only fills gaps,
      // so restore points keep reading the copies their index names and check does not call the orphans needed.
      for (const p of orphans) this.addPackEntries(p.packId, p.entries, { fillGaps: true });
    }
    return { indexed: orphans.length, unreadable };
  }

  /** Every pack in the repository with its stored size: one listing, which callers share. */
  async listPacks(): Promise<Map<string, number>> {
    const sizes = new Map<string, number>();
    for await (const p of this.backend.list('data')) sizes.set(p.name, p.size);
    return sizes;
  }

  async readPackHeader(packId: string, size: number): Promise<PackEntry[] | undefined> {
    const tailLength = Math.min(size, 64 * 1024);
    let tail = await this.backend.readRange('data', packId, size - tailLength, tailLength);
    if (tail.length >= 4) {
      const need = tail.readUInt32LE(tail.length - 4) + 4;
      if (need > tail.length && need <= size) tail = await this.backend.readRange('data', packId, size - need, need);
    }
    return decodePackHeader(this.keys.dataKeys, size, tail);
  }

  // ---- blobs ----

  /** Where a blob is stored; undefined when no index names it, or it is only claimed by this run. */
  blobLocation(id: Buffer): BlobLocation | undefined {
    const loc = this.index.get(id);
    return loc && loc.pack !== PENDING_PACK ? loc : undefined;
  }

  /** Whether the index knows the blob: stored in an indexed pack, or claimed by this run. */
  hasBlob(id: Buffer): boolean {
    return this.index.has(id);
  }

  /**
   * Claim a blob for storing in this run (restic's SaveBlob decision): true when
   * the index did not know it, so the caller must now write it; false when it is
   * stored or already claimed. Claiming at once keeps two parallel regions with
   * the same chunk from storing it twice; PackWriter records the real location.
   */
  claimBlob(id: Buffer, rawLength: number, typeFlags: number): boolean {
    if (this.index.has(id)) return false;
    this.index.set(id, { pack: PENDING_PACK, offset: 0, storedLength: 0, rawLength, typeFlags });
    return true;
  }

  /** Every indexed (or claimed) blob with its location; `fn` gets a fresh id buffer. */
  forEachBlob(fn: (id: Buffer, loc: BlobLocation) => void): void {
    this.index.forEach(fn);
  }

  /** Point a blob at another indexed copy (packHealth.ts steps around damaged packs). */
  relocateBlob(id: Buffer, loc: BlobLocation): void {
    this.index.set(id, loc);
  }

  /** Take a blob out of the in-memory index, so a backup stores it again. */
  dropBlob(id: Buffer): void {
    this.index.delete(id);
  }

  /** The stored object holding a blob, as CorruptionError.object names it: its pack, or `index` when no index names it. */
  blobObject(id: Buffer): string {
    const loc = this.blobLocation(id);
    return loc ? `data/${this.packIds[loc.pack]}` : 'index';
  }

  /** Blobs in the in-memory index and the bytes its table holds (`ferry stats`). */
  get footprint(): { blobs: number; memoryBytes: number } {
    return { blobs: this.index.size, memoryBytes: this.index.memoryBytes };
  }
}
