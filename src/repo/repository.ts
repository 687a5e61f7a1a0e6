// A repository on a Backend: opens it with a key slot and holds the decrypted
// settings. A thin facade over the parts that each do one job:
//   keySlots.ts          key slots: unlock, list, add, remove, rotate
//   packIndex.ts         index files, the in-memory blob index, orphan packs, pack listing
//   blobReader.ts        reading blobs out of packs
//   restorePointStore.ts restore points: save, load, list, find, remove
// Packs' insides are PackWriter's (packWriter.ts), locks are lock.ts's.
import { Backend, NotFoundError, ObjectType } from '../storage/backend';
import { CorruptionError, RepositoryNotFoundError, UsageError, WrongPasswordError } from '../errors';
import { RepositoryKeys, deriveKeys, newMasterKey } from '../crypto/keys';
import { KdfParams, KeySlot } from '../crypto/keySlot';
import { randomBytes } from '../crypto/aead';
import { ChunkerParams, REGION_SIZE } from './format';
import { BlobLocation } from './chunkIndex';
import { FORMAT_VERSION, RepositorySettings, decodeConfigBody, encodeConfig, parseConfigHeader } from './configFile';
import { IndexedPack } from './indexFile';
import { PackEntry } from './packFormat';
import { RestorePoint, RestorePointSummary, StoredRestorePoint } from './restorePoint';
import { KeySlotInfo, KeySlots, unlockKeySlot, writeKeySlot } from './keySlots';
import { OrphanIndexing, PackIndex } from './packIndex';
import { BlobReader, ChainInScratch, ChunkScratch } from './blobReader';
import { RestorePointListing, RestorePointStore } from './restorePointStore';
import { objectPath } from './storedObject';

export interface InitOptions {
  chunker: ChunkerParams;
  packSize: number;
  compressionLevel: number;
  kdf: KdfParams;
  secretKind: KeySlot['kind'];
}

export class Repository {
  private readonly keySlots: KeySlots;
  private readonly packs: PackIndex;
  private readonly blobs: BlobReader;
  private readonly restorePoints: RestorePointStore;

  private constructor(
    readonly backend: Backend,
    readonly repositoryId: Buffer,
    readonly keys: RepositoryKeys,
    readonly settings: RepositorySettings,
    master: Buffer,
    readonly openedWithSlot: string,
  ) {
    this.keySlots = new KeySlots(backend, repositoryId, master, openedWithSlot);
    this.packs = new PackIndex(backend, keys);
    this.blobs = new BlobReader(backend, keys, this.packs);
    this.restorePoints = new RestorePointStore(backend, keys);
  }

  get location(): string {
    return this.backend.location;
  }

  static async init(backend: Backend, secret: Buffer, opts: InitOptions): Promise<Repository> {
    if (await backend.stat('config', 'config')) {
      throw new UsageError(`${backend.location}: a repository already exists here; use it, or choose an empty location`);
    }
    const repositoryId = randomBytes(16);
    const master = newMasterKey();
    const keys = deriveKeys(master);
    const settings: RepositorySettings = {
      chunker: opts.chunker,
      regionSize: REGION_SIZE,
      packSize: opts.packSize,
      compressionLevel: opts.compressionLevel,
      created: new Date().toISOString(),
    };
    // Key slot first, config last: a location with a config is a complete repository.
    const slotId = await writeKeySlot(backend, repositoryId, master, secret, opts.kdf, opts.secretKind);
    await backend.write('config', 'config', encodeConfig(keys.dataKey, repositoryId, settings));
    return new Repository(backend, repositoryId, keys, settings, master, slotId);
  }

  /** The raw `config` object; a clear error when the location holds no repository. */
  static async readConfigBytes(backend: Backend): Promise<Buffer> {
    try {
      return await backend.read('config', 'config');
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new RepositoryNotFoundError(`${backend.location}: not a ferry repository (no config); create one with 'ferry init --repo ${backend.location}'`);
      }
      throw err;
    }
  }

  /**
   * Open with the first key slot `secret` opens. A slot whose KDF parameters
   * are out of bounds (crypto/keySlot.ts, KDF_BOUNDS) is skipped, never run:
   * `onSkippedSlot` hears which and why.
   */
  static async open(backend: Backend, secret: Buffer, onSkippedSlot?: (id: string, problem: string) => void): Promise<Repository> {
    try {
      return await Repository.openOnce(backend, secret, onSkippedSlot);
    } catch (err) {
      // Through a local cache, a damaged cached config or key slot must not pass for a wrong
      // passphrase, a missing repository or damage: drop those copies and ask the repository once more.
      const cacheMayLie = err instanceof WrongPasswordError || err instanceof RepositoryNotFoundError || err instanceof CorruptionError;
      if (!backend.evict || !cacheMayLie) throw err;
      await backend.evict('config', 'config');
      for await (const info of backend.list('keys')) await backend.evict('keys', info.name);
      return Repository.openOnce(backend, secret, onSkippedSlot);
    }
  }

  private static async openOnce(backend: Backend, secret: Buffer, onSkippedSlot?: (id: string, problem: string) => void): Promise<Repository> {
    const configBytes = await Repository.readConfigBytes(backend);
    const header = parseConfigHeader(configBytes);
    if (!header) {
      throw new RepositoryNotFoundError(`${backend.location}/config: not a ferry repository config (bad magic); check the --repo path`);
    }
    if (header.version !== FORMAT_VERSION) {
      throw new RepositoryNotFoundError(
        `${backend.location}: repository format version ${header.version} is not supported (this ferry reads version ${FORMAT_VERSION}); use a matching ferry release`,
      );
    }
    const { master, slotId } = await unlockKeySlot(backend, header.repositoryId, secret, onSkippedSlot);
    const keys = deriveKeys(master);
    // Sealed at init, i.e. with the oldest data key: the last of a rotated keyring's.
    const settings = decodeConfigBody(keys.dataKeys, configBytes);
    if (!settings) {
      throw new CorruptionError(`${backend.location}/config: fails authentication (damaged); restore it from a copy of the repository`, 'config/config');
    }
    return new Repository(backend, header.repositoryId, keys, settings, master, slotId);
  }

  // ---- key slots (keySlots.ts) ----

  listKeySlots(): Promise<KeySlotInfo[]> {
    return this.keySlots.list();
  }

  addKeySlot(secret: Buffer, kdf: KdfParams, kind: KeySlot['kind']): Promise<string> {
    return this.keySlots.add(secret, kdf, kind);
  }

  removeKeySlot(idOrPrefix: string): Promise<string> {
    return this.keySlots.remove(idOrPrefix);
  }

  /** `ferry key rotate`: see KeySlots.rotateDataKey. */
  rotateDataKey(secret: Buffer): Promise<{ slot: string; removed: string[] }> {
    return this.keySlots.rotateDataKey(secret);
  }

  // ---- packs and index files (packIndex.ts) ----

  /** Pack number (as stored in the index) → pack id. */
  get packIds(): readonly string[] {
    return this.packs.packIds;
  }

  /** Pack number → where its last indexed blob ends. */
  get packEnds(): readonly number[] {
    return this.packs.packEnds;
  }

  /** Index files loaded or written, by name. */
  get indexFiles(): ReadonlySet<string> {
    return this.packs.indexFiles;
  }

  packNumber(packId: string): number {
    return this.packs.packNumber(packId);
  }

  hasPack(packId: string): boolean {
    return this.packs.hasPack(packId);
  }

  /** See PackIndex.addPackEntries: a whole copy is read rather than a page patch. */
  addPackEntries(packId: string, entries: readonly PackEntry[], opts: { fillGaps?: boolean } = {}): void {
    this.packs.addPackEntries(packId, entries, opts);
  }

  /** Load every index file. Damaged ones are reported through `onDamaged` and skipped. */
  loadIndex(onDamaged?: (name: string) => void): Promise<void> {
    return this.packs.loadIndex(onDamaged);
  }

  /** One index file's pack records without loading them; undefined when it is damaged. */
  readIndexFile(name: string): Promise<IndexedPack[] | undefined> {
    return this.packs.readIndexFile(name);
  }

  writeIndexFile(packs: IndexedPack[]): Promise<string> {
    return this.packs.writeIndexFile(packs);
  }

  /** The index files loaded or written that name the pack. */
  indexFilesNaming(packId: string): readonly string[] {
    return this.packs.indexFilesNaming(packId);
  }

  /** Index packs no index file names (an interrupted backup's): see PackIndex.indexOrphanPacks. */
  indexOrphanPacks(opts: OrphanIndexing): Promise<{ indexed: number; unreadable: string[] }> {
    return this.packs.indexOrphanPacks(opts);
  }

  /** Every pack in the repository with its stored size: one listing, which callers share. */
  listPacks(): Promise<Map<string, number>> {
    return this.packs.listPacks();
  }

  readPackHeader(packId: string, size: number): Promise<PackEntry[] | undefined> {
    return this.packs.readPackHeader(packId, size);
  }

  // ---- the blob index (packIndex.ts) ----

  /** Where a blob is stored; undefined when no index names it, or it is only claimed by this run. */
  blobLocation(id: Buffer): BlobLocation | undefined {
    return this.packs.blobLocation(id);
  }

  /** Whether the index knows the blob: stored in an indexed pack, or claimed by this run. */
  hasBlob(id: Buffer): boolean {
    return this.packs.hasBlob(id);
  }

  /** Claim a blob for storing in this run: true when the caller must now write it (PackIndex.claimBlob). */
  claimBlob(id: Buffer, rawLength: number, typeFlags: number): boolean {
    return this.packs.claimBlob(id, rawLength, typeFlags);
  }

  /** Every indexed (or claimed) blob with its location; `fn` gets a fresh id buffer. */
  forEachBlob(fn: (id: Buffer, loc: BlobLocation) => void): void {
    this.packs.forEachBlob(fn);
  }

  /** Point a blob at another indexed copy (packHealth.ts steps around damaged packs). */
  relocateBlob(id: Buffer, loc: BlobLocation): void {
    this.packs.relocateBlob(id, loc);
  }

  /** Take a blob out of the in-memory index, so a backup stores it again. */
  dropBlob(id: Buffer): void {
    this.packs.dropBlob(id);
  }

  /** The stored object holding a blob, as CorruptionError.object names it: its pack, or `index` when no index names it. */
  blobObject(id: Buffer): string {
    return this.packs.blobObject(id);
  }

  /** Blobs in the in-memory index and the bytes its table holds (`ferry stats`). */
  get indexFootprint(): { blobs: number; memoryBytes: number } {
    return this.packs.footprint;
  }

  // ---- reading blobs (blobReader.ts) ----

  /** The plaintext of the chunk or region map the id names: page patches resolved, checked against the id. */
  readBlobPlaintext(id: Buffer): Promise<Buffer> {
    return this.blobs.readBlobPlaintext(id);
  }

  /**
   * Open (authenticate, decompress) sealed bytes the caller read itself: a page patch stays a patch.
   * `transient`: into buffers the reader reuses, valid only until its next blob (no fresh buffers per blob).
   */
  unsealBlob(loc: BlobLocation, id: Buffer, sealed: Buffer, transient = false): Buffer {
    return this.blobs.unsealBlob(loc, id, sealed, transient);
  }

  /** readBlobPlaintext of a chunk into reused buffers, valid until the next call with `scratch` (BlobReader.readChunkInScratch). */
  readChunkInScratch(id: Buffer, scratch: ChunkScratch): Promise<Buffer> {
    return this.blobs.readChunkInScratch(id, scratch);
  }

  /** A patch chain read into one scratch buffer, without fresh buffers per patch (BlobReader.readPatchChainInto). */
  readPatchChainInto(id: Buffer, scratch: Buffer): Promise<ChainInScratch> {
    return this.blobs.readPatchChainInto(id, scratch);
  }


  /** A blob's sealed bytes into `into` (its stored length, as the index says), for a worker to open and check. */
  readSealedInto(id: Buffer, into: Buffer): Promise<void> {
    return this.blobs.readSealedInto(id, into);
  }

  /**
   * The ids a blob needs to be read: itself and, for a page patch, its base chain down to a whole chunk
   * (BlobReader.blobDependencies; `baseOf` reads a patch's base instead of its body).
   */
  blobDependencies(id: Buffer, baseOf?: (patchId: Buffer) => Promise<Buffer | undefined>): Promise<Buffer[]> {
    return this.blobs.blobDependencies(id, baseOf);
  }

  /** After a failed read: the error naming a pack file that holds another pack's content, if that is the cause. */
  wrongPackError(packId: string, id: Buffer): Promise<CorruptionError | undefined> {
    return this.blobs.wrongPackError(packId, id);
  }

  // ---- restore points (restorePointStore.ts) ----

  saveRestorePoint(rp: RestorePoint): Promise<string> {
    return this.restorePoints.saveRestorePoint(rp);
  }

  loadRestorePointByName(name: string): Promise<StoredRestorePoint> {
    return this.restorePoints.loadRestorePointByName(name);
  }

  /** Every readable restore point, oldest first, without region maps; damaged ones go to `onDamaged`. */
  listRestorePoints(onDamaged?: (name: string, err: CorruptionError) => void): Promise<RestorePointSummary[]> {
    return this.restorePoints.listRestorePoints(onDamaged);
  }

  /** Every restore point: the readable ones, oldest first, and the names of those that cannot be read. */
  listAllRestorePoints(): Promise<RestorePointListing> {
    return this.restorePoints.listAllRestorePoints();
  }

  /** Resolve `latest`, an id, or a unique id prefix: see RestorePointStore.findRestorePoint. */
  findRestorePoint(
    ref: string,
    guest?: string,
    known: { about?: (id: string) => { guest: string; time: string } | undefined; listing?: RestorePointListing } = {},
  ): Promise<StoredRestorePoint> {
    return this.restorePoints.findRestorePoint(ref, guest, known);
  }

  /** The full name of the restore point an id or unique prefix names, without reading it. */
  restorePointName(ref: string): Promise<string> {
    return this.restorePoints.restorePointName(ref);
  }

  removeRestorePoint(id: string): Promise<void> {
    return this.restorePoints.removeRestorePoint(id);
  }

  objectPath(type: ObjectType, name: string): string {
    return objectPath(this.location, type, name);
  }
}
