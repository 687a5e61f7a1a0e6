// A repository on a Backend: opens it with a key slot, holds the decrypted
// settings and the in-memory chunk index, and reads and writes every object
// kind except packs' insides (PackWriter) and locks (lock.ts).
import { Backend, NotFoundError, ObjectType } from '../storage/backend';
import { CorruptionError, RepositoryNotFoundError, UsageError, WrongPasswordError } from '../errors';
import { RepositoryKeys, deriveKeys, newMasterKey } from '../crypto/keys';
import { KdfParams, KeySlot, createKeySlot, openKeySlot, parseKeySlot, usableKeySlotProblem } from '../crypto/keySlot';
import { randomBytes } from '../crypto/aead';
import { contentName } from '../crypto/chunkId';
import { sealObject, openObject } from '../crypto/objectCodec';
import { BlobDecoder, BlobType, blobType } from '../crypto/blobCodec';
import { ChunkHasher } from '../crypto/chunkId';
import { MAX_PATCH_DEPTH, applyPatch, decodePatchHeader } from '../dedupe/pagePatch';
import { ChunkerParams, REGION_SIZE } from './format';
import { ChunkIndex, BlobLocation, PENDING_PACK } from './chunkIndex';
import { FORMAT_VERSION, RepositorySettings, decodeConfigBody, encodeConfig, parseConfigHeader } from './configFile';
import { IndexedPack, decodeIndexFile, encodeIndexFile } from './indexFile';
import { decodePackHeader, PackEntry } from './packFormat';
import { RestorePoint, StoredRestorePoint } from './restorePoint';

/** A restore point file that cannot be read (torn, damaged, or not sealed with this repository's key). */
export interface DamagedRestorePoint {
  id: string;
  problem: string;
}

export interface RestorePointListing {
  points: StoredRestorePoint[];
  damaged: DamagedRestorePoint[];
}

export interface InitOptions {
  chunker: ChunkerParams;
  packSize: number;
  compressionLevel: number;
  kdf: KdfParams;
  secretKind: KeySlot['kind'];
}

export interface OrphanIndexing {
  /** Where the orphan packs' index records go: a new index file, or only this process's memory. */
  keep: 'index-file' | 'memory-only';
  /** Every pack with its stored size, when the caller has listed them already. */
  packs?: ReadonlyMap<string, number>;
}

export interface KeySlotInfo {
  id: string;
  slot: KeySlot;
  /** The slot this process opened the repository with. */
  current: boolean;
}

export class Repository {
  private readonly index = new ChunkIndex();
  /** Pack number (as stored in the index) → pack id. */
  readonly packIds: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  /** Pack number → where its last indexed blob ends (packHealth.ts compares this with the stored size). */
  readonly packEnds: number[] = [];
  /** Index files loaded, by name. */
  readonly indexFiles = new Set<string>();
  private readonly decoder: BlobDecoder;
  private readonly hasher: ChunkHasher;

  private constructor(
    readonly backend: Backend,
    readonly repositoryId: Buffer,
    readonly keys: RepositoryKeys,
    readonly settings: RepositorySettings,
    private readonly master: Buffer,
    readonly openedWithSlot: string,
  ) {
    this.decoder = new BlobDecoder(keys.dataKeys);
    this.hasher = new ChunkHasher(keys.idKey);
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
    const slotId = randomBytes(8).toString('hex');
    const slot = createKeySlot(master, secret, repositoryId, opts.kdf, opts.secretKind);
    await backend.write('keys', slotId, Buffer.from(JSON.stringify(slot, null, 1)));
    await backend.write('config', 'config', encodeConfig(keys.dataKey, repositoryId, settings));
    return new Repository(backend, repositoryId, keys, settings, master, slotId);
  }

  /** The raw `config` object; a clear error when the location holds no repository. */
  static async readConfigBytes(backend: Backend): Promise<Buffer> {
    try {
      return await backend.read('config', 'config/config');
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
      await backend.evict('config', 'config/config');
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
    const slots: { id: string; slot: KeySlot }[] = [];
    for await (const info of backend.list('keys')) {
      const slot = parseKeySlot(await backend.read('keys', info.name));
      if (slot) slots.push({ id: info.name, slot });
    }
    if (slots.length === 0) {
      throw new CorruptionError(`${backend.location}/keys: no readable key slot; the repository cannot be opened`, 'keys');
    }
    let skipped = 0;
    for (const { id, slot } of slots) {
      const problem = usableKeySlotProblem(slot);
      if (problem) {
        skipped++;
        onSkippedSlot?.(id, problem);
        continue;
      }
      const master = openKeySlot(slot, secret, header.repositoryId);
      if (!master) continue;
      const keys = deriveKeys(master);
      // Sealed at init, i.e. with the oldest data key: the last of a rotated keyring's.
      const settings = decodeConfigBody(keys.dataKeys, configBytes);
      if (!settings) {
        throw new CorruptionError(`${backend.location}/config: fails authentication (damaged); restore it from a copy of the repository`, 'config/config');
      }
      return new Repository(backend, header.repositoryId, keys, settings, master, id);
    }
    const tried = slots.length - skipped;
    throw new WrongPasswordError(
      `${backend.location}: wrong passphrase or key file (tried ${tried} key slot${tried === 1 ? '' : 's'}` +
        `${skipped > 0 ? `, skipped ${skipped} with unusable KDF parameters` : ''}); check FERRY_PASSWORD / --password-file`,
    );
  }

  // ---- key slots ----

  async listKeySlots(): Promise<KeySlotInfo[]> {
    const out: KeySlotInfo[] = [];
    for await (const info of this.backend.list('keys')) {
      const slot = parseKeySlot(await this.backend.read('keys', info.name));
      if (slot) out.push({ id: info.name, slot, current: info.name === this.openedWithSlot });
    }
    return out.sort((a, b) => a.slot.created.localeCompare(b.slot.created));
  }

  async addKeySlot(secret: Buffer, kdf: KdfParams, kind: KeySlot['kind']): Promise<string> {
    const id = randomBytes(8).toString('hex');
    const slot = createKeySlot(this.master, secret, this.repositoryId, kdf, kind);
    await this.backend.write('keys', id, Buffer.from(JSON.stringify(slot, null, 1)));
    return id;
  }

  async removeKeySlot(idOrPrefix: string): Promise<string> {
    const slots = await this.listKeySlots();
    const matches = slots.filter((s) => s.id.startsWith(idOrPrefix));
    if (matches.length !== 1) {
      throw new UsageError(`key ${idOrPrefix}: ${matches.length === 0 ? 'no such key' : 'ambiguous prefix'}; see 'ferry key list'`);
    }
    if (slots.length === 1) {
      throw new UsageError(`key ${matches[0].id}: it is the last key of ${this.location}; add another with 'ferry key add' before removing it`);
    }
    await this.backend.remove('keys', matches[0].id);
    return matches[0].id;
  }

  /**
   * `ferry key rotate`: a new data key for everything written from now on.
   * The keyring (old keys + the new one) is wrapped in a new slot for
   * `secret` (the passphrase this repository was opened with), then every
   * other slot is removed: they wrap only the old keys, and whoever holds
   * them must not read what comes next. Objects already stored are not
   * rewritten. Returns the new slot and the removed ones.
   */
  async rotateDataKey(secret: Buffer): Promise<{ slot: string; removed: string[] }> {
    const slots = await this.listKeySlots();
    const current = slots.find((s) => s.current);
    if (!current || !openKeySlot(current.slot, secret, this.repositoryId)) {
      throw new WrongPasswordError(`${this.location}: the passphrase given does not open key ${this.openedWithSlot}; give the one the repository was opened with`);
    }
    const keyring = Buffer.concat([this.master, newMasterKey()]);
    const kdf = { opslimit: current.slot.opslimit, memlimit: current.slot.memlimit };
    const slot = randomBytes(8).toString('hex');
    // New slot first: the repository always has a slot that opens everything.
    await this.backend.write('keys', slot, Buffer.from(JSON.stringify(createKeySlot(keyring, secret, this.repositoryId, kdf, current.slot.kind), null, 1)));
    const removed: string[] = [];
    for (const s of slots) {
      await this.backend.remove('keys', s.id);
      removed.push(s.id);
    }
    return { slot, removed };
  }

  // ---- index ----

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

  addPackEntries(packId: string, entries: PackEntry[]): void {
    const pack = this.packNumber(packId);
    let end = this.packEnds[pack] ?? 0;
    for (const e of entries) {
      this.index.set(e.id, { pack, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags });
      end = Math.max(end, e.offset + e.storedLength);
    }
    this.packEnds[pack] = end;
  }

  /** Load every index file. Damaged ones are reported through `onDamaged` and skipped. */
  async loadIndex(onDamaged?: (name: string) => void): Promise<void> {
    for await (const info of this.backend.list('index')) {
      if (this.indexFiles.has(info.name)) continue;
      const packs = await this.readVerified('index', info.name, (bytes) =>
        contentName(bytes) === info.name ? decodeIndexFile(this.keys.dataKeys, bytes) : undefined,
      );
      if (!packs) {
        if (onDamaged) {
          onDamaged(info.name);
          continue;
        }
        throw new CorruptionError(
          `${this.location}/index/${info.name}: index file is damaged; run 'ferry check' to see what it affects`,
          `index/${info.name}`,
        );
      }
      for (const p of packs) this.addPackEntries(p.packId, p.entries);
      this.indexFiles.add(info.name);
    }
  }

  async writeIndexFile(packs: IndexedPack[]): Promise<string> {
    const bytes = encodeIndexFile(this.keys.dataKey, packs);
    const name = contentName(bytes);
    await this.backend.write('index', name, bytes);
    this.indexFiles.add(name);
    return name;
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
    if (orphans.length > 0) {
      if (keep === 'index-file') await this.writeIndexFile(orphans);
      for (const p of orphans) this.addPackEntries(p.packId, p.entries);
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
  get indexFootprint(): { blobs: number; memoryBytes: number } {
    return { blobs: this.index.size, memoryBytes: this.index.memoryBytes };
  }

  blobLocation(id: Buffer): BlobLocation | undefined {
    const loc = this.index.get(id);
    return loc && loc.pack !== PENDING_PACK ? loc : undefined;
  }

  decodeBlob(loc: BlobLocation, id: Buffer, sealed: Buffer): Buffer {
    const plain = this.decoder.decode(loc.typeFlags, id, sealed, loc.rawLength);
    const packId = this.packIds[loc.pack];
    if (!plain) {
      throw new CorruptionError(
        `${this.location}/data/${packId.slice(0, 2)}/${packId}: blob ${id.toString('hex').slice(0, 16)} at offset ${loc.offset} fails authentication (damaged); run 'ferry check --read-data'`,
        `data/${packId}`,
      );
    }
    return plain;
  }

  /**
   * Read one blob: authenticated, decompressed, and for page patches resolved
   * against their base chain and checked against the id.
   */
  async readBlob(id: Buffer): Promise<Buffer> {
    return (await this.readChunk(id)).data;
  }

  /** A blob's plaintext and its patch depth (0 for a whole chunk). */
  async readChunk(id: Buffer): Promise<{ data: Buffer; depth: number }> {
    const { loc, sealed } = await this.readSealedBlob(id);
    let plain: Buffer;
    try {
      plain = this.decodeBlob(loc, id, sealed);
    } catch (err) {
      throw (await this.wrongPackError(this.packIds[loc.pack], id)) ?? err;
    }
    if (blobType(loc.typeFlags) !== BlobType.Patch) {
      // FORMAT.md: the plaintext must hash to the id (authentication alone does not prove that the
      // writer stored the right chunk under it). Workers check the chunks they restore; this covers
      // region maps and the bases a backup or a patch chain reads here.
      if (!this.hasher.hash(plain).equals(id)) {
        const packId = this.packIds[loc.pack];
        throw new CorruptionError(
          `${this.objectPath('data', packId)}: blob ${id.toString('hex').slice(0, 16)} at offset ${loc.offset} does not hash to its id (damaged); run 'ferry check --read-data'`,
          `data/${packId}`,
        );
      }
      return { data: plain, depth: 0 };
    }
    const header = decodePatchHeader(plain);
    const base = header ? await this.readChunk(header.baseId) : undefined;
    const data = base ? applyPatch(base.data, plain) : undefined;
    if (!header || !data || !this.hasher.hash(data).equals(id)) {
      const packId = this.packIds[loc.pack];
      throw new CorruptionError(
        `${this.location}/data/${packId.slice(0, 2)}/${packId}: page patch ${id.toString('hex').slice(0, 16)} does not rebuild its chunk; run 'ferry check --read-data'`,
        `data/${packId}`,
      );
    }
    return { data, depth: header.depth };
  }

  /** Read, authenticate and decompress one stored blob as stored (a patch stays a patch). */
  async readStoredBlob(id: Buffer): Promise<Buffer> {
    const { loc, sealed } = await this.readSealedBlob(id);
    return this.decodeBlob(loc, id, sealed);
  }

  /** A blob's sealed bytes, as stored in its pack. */
  async readSealedBlob(id: Buffer): Promise<{ loc: BlobLocation; sealed: Buffer }> {
    const loc = this.blobLocation(id);
    if (!loc) {
      throw new CorruptionError(`${this.location}: blob ${id.toString('hex').slice(0, 16)} is not in any index; run 'ferry check'`, 'index');
    }
    const packId = this.packIds[loc.pack];
    const sealed = await this.backend.readRange('data', packId, loc.offset, loc.storedLength).catch(async (err: unknown) => {
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
    const header = info ? await this.readPackHeader(packId, info.size).catch(() => undefined) : undefined;
    if (!header || header.some((e) => e.id.equals(id))) return undefined;
    return new CorruptionError(
      `${this.objectPath('data', packId)}: wrong pack: the file's own header does not list blob ${id.toString('hex').slice(0, 16)}, so it holds another pack's content (packs renamed or swapped); run 'ferry check --read-data'`,
      `data/${packId}`,
    );
  }

  /** The ids a blob needs to be read: itself and, for a page patch, its base chain down to a whole chunk. */
  async blobDependencies(id: Buffer): Promise<Buffer[]> {
    const chain = [id];
    let loc = this.blobLocation(id);
    while (loc && blobType(loc.typeFlags) === BlobType.Patch && chain.length <= MAX_PATCH_DEPTH + 1) {
      const header = decodePatchHeader(await this.readStoredBlob(chain[chain.length - 1]));
      if (!header) break;
      chain.push(header.baseId);
      loc = this.blobLocation(header.baseId);
    }
    return chain;
  }

  /**
   * What rebuilding a page-patched chunk takes, without the expensive part:
   * the patches' (small) plaintexts, oldest first, and the whole chunk at the
   * chain's root still sealed, for a worker to decrypt, decompress and patch.
   */
  async readPatchChain(id: Buffer): Promise<{ root: { id: Buffer; loc: BlobLocation; sealed: Buffer }; patches: Buffer[] }> {
    const patches: Buffer[] = [];
    let current = id;
    for (;;) {
      const { loc, sealed } = await this.readSealedBlob(current);
      if (blobType(loc.typeFlags) !== BlobType.Patch) return { root: { id: current, loc, sealed }, patches };
      const plain = this.decodeBlob(loc, current, sealed);
      const header = decodePatchHeader(plain);
      if (!header || patches.length > MAX_PATCH_DEPTH) {
        throw new CorruptionError(`${this.location}: page patch ${current.toString('hex').slice(0, 16)} is malformed; run 'ferry check --read-data'`, `data/${this.packIds[loc.pack]}`);
      }
      patches.unshift(plain);
      current = header.baseId;
    }
  }

  // ---- restore points ----

  async saveRestorePoint(rp: RestorePoint): Promise<string> {
    // Padded to a size class: the exact size would tell how many regions of the guest hold data.
    const bytes = sealObject(this.keys.dataKey, 'snapshot', Buffer.from(JSON.stringify(rp)), { pad: true });
    const name = contentName(bytes);
    await this.backend.write('snapshots', name, bytes);
    return name;
  }

  async loadRestorePointByName(name: string): Promise<StoredRestorePoint> {
    const plain = await this.readVerified('snapshots', name, (bytes) =>
      contentName(bytes) === name ? openObject(this.keys.dataKeys, 'snapshot', bytes) : undefined,
    );
    if (!plain) {
      throw new CorruptionError(`${this.location}/snapshots/${name}: restore point is damaged; run 'ferry check'`, `snapshots/${name}`);
    }
    return { ...(JSON.parse(plain.toString('utf8')) as RestorePoint), id: name };
  }

  /** Every readable restore point, oldest first; damaged ones go to `onDamaged`. */
  async listRestorePoints(onDamaged?: (name: string, err: CorruptionError) => void): Promise<StoredRestorePoint[]> {
    const out: StoredRestorePoint[] = [];
    for await (const info of this.backend.list('snapshots')) {
      try {
        out.push(await this.loadRestorePointByName(info.name));
      } catch (err) {
        if (err instanceof CorruptionError && onDamaged) onDamaged(info.name, err);
        else throw err;
      }
    }
    return out.sort((a, b) => a.time.localeCompare(b.time));
  }

  /** Every restore point: the readable ones, oldest first, and the names of those that cannot be read. */
  async listAllRestorePoints(): Promise<RestorePointListing> {
    const damaged: DamagedRestorePoint[] = [];
    const points = await this.listRestorePoints((id, err) => damaged.push({ id, problem: err.message }));
    return { points, damaged };
  }

  /**
   * Resolve `latest`, an id, or a unique id prefix; `guest` narrows `latest`.
   * A damaged restore point cannot say whose or how old it is, so `latest`
   * refuses to pass over it silently (that would restore older data as if it
   * were the newest) unless `about` (what this host recorded of it) shows it
   * is another guest's or older than the newest readable one.
   */
  async findRestorePoint(
    ref: string,
    guest?: string,
    known: { about?: (id: string) => { guest: string; time: string } | undefined; listing?: RestorePointListing } = {},
  ): Promise<StoredRestorePoint> {
    const about = known.about;
    if (ref === 'latest') {
      const { points, damaged } = known.listing ?? (await this.listAllRestorePoints());
      const all = points.filter((rp) => !guest || rp.guest === guest);
      const newest = all.length > 0 ? all[all.length - 1] : undefined;
      for (const d of damaged) {
        const known = about?.(d.id);
        if (known && ((guest && known.guest !== guest) || (newest && known.time < newest.time))) continue;
        const whose = guest ? ` of guest '${guest}'` : '';
        throw new CorruptionError(
          known
            ? `the newest restore point${whose}, ${d.id} (${known.guest}, ${known.time}), is damaged and cannot be read; restore an older one by id (see 'ferry list') or remove it with 'ferry forget ${d.id.slice(0, 8)}'`
            : `restore point ${d.id} is damaged and cannot be read, so it may be the newest${whose}; restore one by id (see 'ferry list') or remove it with 'ferry forget ${d.id.slice(0, 8)}'`,
          `snapshots/${d.id}`,
        );
      }
      if (!newest) {
        throw new UsageError(`${this.location}: no restore point${guest ? ` for guest '${guest}'` : ''}; see 'ferry list'`);
      }
      return newest;
    }
    const rp = await this.loadRestorePointByName(await this.restorePointName(ref));
    if (guest && rp.guest !== guest) {
      throw new UsageError(`restore point ${rp.id.slice(0, 8)} belongs to guest '${rp.guest}', not '${guest}'`);
    }
    return rp;
  }

  /** The full name of the restore point an id or unique prefix names, without reading it. */
  async restorePointName(ref: string): Promise<string> {
    const names: string[] = [];
    for await (const info of this.backend.list('snapshots')) if (info.name.startsWith(ref)) names.push(info.name);
    if (names.length !== 1 || ref.length < 4) {
      throw new UsageError(`restore point '${ref}': ${names.length === 0 ? 'not found' : 'ambiguous or too short'} in ${this.location}; see 'ferry list'`);
    }
    return names[0];
  }

  async removeRestorePoint(id: string): Promise<void> {
    await this.backend.remove('snapshots', id);
  }

  /**
   * Read an object and decode it (`decode` returns undefined when the bytes fail
   * authentication or their content name). A failure through a local cache is
   * not yet damage: the cached copy is evicted and the repository's copy read
   * once more; only if that fails too is the object damaged (undefined).
   */
  private async readVerified<T>(type: ObjectType, name: string, decode: (bytes: Buffer) => T | undefined): Promise<T | undefined> {
    const value = decode(await this.backend.read(type, name));
    if (value !== undefined || !this.backend.evict) return value;
    await this.backend.evict(type, name);
    return decode(await this.backend.read(type, name));
  }

  objectPath(type: ObjectType, name: string): string {
    return `${this.location}/${type === 'data' ? `data/${name.slice(0, 2)}` : type}/${name}`;
  }
}
