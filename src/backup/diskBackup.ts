// One disk image into the repository: region by region on the worker pool,
// storing only chunks the repository lacks, then one region map per region.
import { Repository } from '../repo/repository';
import { PackWriter } from '../repo/packWriter';
import { indexHasDroppedBlobs } from '../repo/packHealth';
import { encodeRegionMap, MapEntry } from '../repo/regionMap';
import { DiskRecord } from '../repo/restorePoint';
import { BlobEncoder, BlobType } from '../crypto/blobCodec';
import { ChunkHasher } from '../crypto/chunkId';
import { ImageSource } from '../dedupe/imageSource';
import { Span, clipSpans, mergeSpans, overlapsAny } from '../dedupe/spans';
import { decodeRegionMap } from '../repo/regionMap';
import { CorruptionError } from '../errors';
import { PipelinePool } from '../workers/pipelinePool';
import { PackedChunks, PatchBases } from '../workers/tasks';
import { PatchBaseLoader } from './patchBaseLoader';
import { TaskSlots } from './taskSlots';
import { forEachLimit } from '../concurrency/forEachLimit';

export interface DiskProgress {
  /** Logical bytes of the disk covered so far. */
  doneBytes: number;
  readBytes: number;
}

export interface DiskBackupResult {
  record: DiskRecord;
  readBytes: number;
  /** Regions whose fingerprint matched the previous restore point's: its map reused, nothing cut or hashed. */
  reusedRegions: number;
}

/**
 * What the previous restore point of this disk offers: page-patch bases (a new
 * chunk in the place of an old one is stored as its changed pages) and, with
 * changed-block tracking, the ranges that differ from it.
 */
export interface IncrementalBase {
  previous: DiskRecord;
  /** Absolute byte ranges that may have changed, ascending (see SnapshotProvider); undefined: read everything. */
  changed?: Span[];
}

export class DiskBackup {
  private readonly mapEncoder: BlobEncoder;
  private readonly hasher: ChunkHasher;
  /** Sealed-output buffers whose blobs are packed, for the next batches to seal into (at most one per batch in flight). */
  private readonly spareOutputs: Uint8Array[] = [];
  /** Buffers page-patch bases travelled in, back from the workers, to carry the next ones. */
  private readonly spareBases: Uint8Array[] = [];

  private readonly baseLoader: PatchBaseLoader;
  /** Page-patch tasks holding buffers: one per worker (see storeRegion). */
  private readonly patchSlots: TaskSlots;

  constructor(
    private readonly repo: Repository,
    private readonly pool: PipelinePool,
    private readonly writer: PackWriter,
  ) {
    this.baseLoader = new PatchBaseLoader(repo);
    this.patchSlots = new TaskSlots(pool.threads);
    this.mapEncoder = new BlobEncoder(repo.keys.dataKey, repo.settings.compressionLevel);
    this.hasher = new ChunkHasher(repo.keys.idKey);
  }

  /**
   * Back up one disk. With `base` (changed-block tracking), regions without
   * changes reuse the previous region maps unread, and in changed regions
   * only the changed ranges are read from `source`.
   */
  /**
   * One region per worker plus one keeps every core busy (a region waits on
   * the main thread's dedupe decision between its two worker tasks) while
   * bounding memory: each region in flight may hold ~2 region sizes of data.
   */
  private get regionsInFlight(): number {
    // Tasks on the main thread (the smallest budgets) run one at a time: a second region would only hold buffers.
    return this.pool.sizing.placement === 'main-thread' ? 1 : this.pool.threads + 1;
  }

  async run(source: ImageSource, name: string, onProgress?: (p: DiskProgress) => void, base?: IncrementalBase): Promise<DiskBackupResult> {
    const comparable = base && base.previous.regionSize === this.repo.settings.regionSize ? base.previous : undefined;
    // Reusing unread regions is only safe while every blob the previous point names is indexed.
    if (comparable && base?.changed && comparable.size === source.size && !indexHasDroppedBlobs(this.repo)) {
      return this.runIncremental(source, name, comparable, base.changed, onProgress);
    }
    const regionSize = this.repo.settings.regionSize;
    const regionCount = Math.ceil(source.size / regionSize);
    const regions: (string | null)[] = new Array(regionCount).fill(null);
    const fingerprints: (string | null)[] = new Array(regionCount).fill(null);
    const progress: DiskProgress = { doneBytes: 0, readBytes: 0 };
    let dataBytes = 0;
    let reusedRegions = 0;
    // Like changed-block tracking, reusing a map needs every blob the previous point names indexed.
    const reusable = comparable && !indexHasDroppedBlobs(this.repo) ? comparable : undefined;
    await forEachLimit(regionNumbers(regionCount), this.regionsInFlight, async (r) => {
      const regionStart = r * regionSize;
      const regionLength = Math.min(regionSize, source.size - regionStart);
      const dataExtents = clipSpans(source.dataExtents, regionStart, regionStart + regionLength);
      if (dataExtents.length > 0) {
        const previousMap = comparable?.regions[r] ?? null;
        // Read at most once per region: the reuse check and the page-patch bases both need it.
        const previousEntries = once(() => (previousMap === null ? Promise.resolve(undefined) : this.previousMapEntries(previousMap)));
        const stored = await this.storeRegion(source.path, regionStart, regionLength, dataExtents, progress, previousEntries, reusable && (await this.reusableFingerprint(reusable, r, previousEntries)));
        fingerprints[r] = stored.fingerprint ?? null;
        if (stored.kind === 'reused') {
          regions[r] = previousMap;
          dataBytes += stored.nonZeroBytes;
          reusedRegions++;
        } else if (stored.entries.length > 0) {
          regions[r] = await this.storeMap(stored.entries);
          for (const e of stored.entries) dataBytes += e.length;
        }
      }
      progress.doneBytes += regionLength;
      onProgress?.(progress);
    });
    return {
      record: { name, sourcePath: source.path, size: source.size, regionSize, regions, dataBytes, fingerprints },
      readBytes: progress.readBytes,
      reusedRegions,
    };
  }

  /**
   * The previous point's fingerprint of region r, if its map may be reused when the bytes are the same:
   * the map and every chunk it names must still be indexed. After `repair` dropped a damaged pack, the
   * points that named its blobs stay as they were, and reusing such a map would make a new point that
   * names lost chunks instead of storing them again.
   */
  private async reusableFingerprint(previous: DiskRecord, r: number, previousEntries: () => Promise<MapEntry[] | undefined>): Promise<Buffer | undefined> {
    const hex = previous.fingerprints?.[r];
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) return undefined;
    if (previous.regions[r] !== null) {
      const entries = await previousEntries();
      if (!entries || entries.some((e) => !this.repo.blobLocation(e.id))) return undefined;
    }
    return Buffer.from(hex, 'hex');
  }

  private async runIncremental(
    source: ImageSource,
    name: string,
    previous: DiskRecord,
    changedRanges: Span[],
    onProgress?: (p: DiskProgress) => void,
  ): Promise<DiskBackupResult> {
    const regionSize = previous.regionSize;
    const changed = mergeSpans(changedRanges.map((c) => ({ start: Math.max(0, c.start), end: Math.min(source.size, c.end) })));
    const regions = [...previous.regions];
    // An unread region keeps its map and so its fingerprint; a changed one is not read whole and gets none.
    const fingerprints = regions.map((_, r) => previous.fingerprints?.[r] ?? null);
    const progress: DiskProgress = { doneBytes: 0, readBytes: 0 };
    let dataBytes = previous.dataBytes;
    await forEachLimit(regionNumbers(regions.length), this.regionsInFlight, async (r) => {
      const regionStart = r * regionSize;
      const regionLength = Math.min(regionSize, source.size - regionStart);
      const changedHere = clipSpans(changed, regionStart, regionStart + regionLength);
      if (changedHere.length > 0) {
        const oldMapId = previous.regions[r];
        const oldEntries = oldMapId ? decodeRegionMap(await this.repo.readBlobPlaintext(Buffer.from(oldMapId, 'hex')), regionSize) : [];
        if (!oldEntries) throw new CorruptionError(`${this.repo.location}: region map ${oldMapId} of ${name} is malformed; run 'ferry check'`, this.repo.blobObject(Buffer.from(oldMapId!, 'hex')));
        const entries = await this.storeChangedRegion(source.path, regionStart, changedHere, oldEntries, progress);
        regions[r] = entries.length > 0 ? await this.storeMap(entries) : null;
        fingerprints[r] = null;
        dataBytes += entries.reduce((n, e) => n + e.length, 0) - oldEntries.reduce((n, e) => n + e.length, 0);
      }
      progress.doneBytes += regionLength;
      onProgress?.(progress);
    });
    return {
      record: { name, sourcePath: source.path, size: source.size, regionSize, regions, dataBytes, fingerprints },
      readBytes: progress.readBytes,
      reusedRegions: 0,
    };
  }

  /**
   * Old chunks touched by a change are rebuilt from their stored plaintext
   * overlaid with the changed bytes, then re-cut; untouched chunks are kept.
   * The snapshot is read only inside `changed` (it may hold nothing else).
   */
  private async storeChangedRegion(
    path: string,
    regionStart: number,
    changed: Span[],
    oldEntries: MapEntry[],
    progress: DiskProgress,
  ): Promise<MapEntry[]> {
    const touched: MapEntry[] = [];
    const kept: MapEntry[] = [];
    for (const e of oldEntries) (overlapsAny({ start: e.offset, end: e.offset + e.length }, changed) ? touched : kept).push(e);
    const dirtySpans = mergeSpans([...changed, ...touched.map((e) => ({ start: e.offset, end: e.offset + e.length }))]);
    const old = await Promise.all(touched.map((e) => this.repo.readBlobPlaintextAndDepth(e.id)));
    const oldData = new Uint8Array(new ArrayBuffer(old.reduce((n, b) => n + b.data.length, 0)));
    let at = 0;
    for (const b of old) {
      oldData.set(b.data, at);
      at += b.data.length;
    }
    const result = await this.pool.sealSpans({
      path,
      regionStart,
      dirtySpans,
      filePieces: changed,
      oldData,
      oldPlacements: touched.map((e) => ({ start: e.offset, end: e.offset + e.length })),
      oldIds: Buffer.concat(touched.map((e) => e.id)),
      oldDepths: old.map((b) => b.depth),
    });
    progress.readBytes += result.readBytes;
    const fresh: MapEntry[] = [];
    for (let i = 0; i < result.offsets.length; i++) {
      const id = Buffer.from(result.ids.subarray(i * 32, i * 32 + 32));
      fresh.push({ offset: result.offsets[i], length: result.lengths[i], id });
      if (!this.repo.claimBlob(id, result.lengths[i], BlobType.Data)) continue;
      await this.writer.add({
        id,
        typeFlags: result.typeFlags[i],
        rawLength: result.rawLengths[i],
        sealed: result.data.subarray(result.starts[i], result.starts[i + 1]),
      });
    }
    return [...kept, ...fresh].sort((a, b) => a.offset - b.offset);
  }

  private async storeRegion(
    path: string,
    regionStart: number,
    regionLength: number,
    dataExtents: { start: number; end: number }[],
    progress: DiskProgress,
    previousMapEntries: () => Promise<MapEntry[] | undefined>,
    previousFingerprint: Buffer | undefined,
  ): Promise<StoredRegion> {
    const scan = await this.pool.scanRegion({ path, regionStart, regionLength, dataExtents, previousFingerprint });
    progress.readBytes += scan.readBytes;
    const fingerprint = scan.fingerprint ? Buffer.from(scan.fingerprint).toString('hex') : undefined;
    if (scan.sameAsPrevious) return { kind: 'reused', fingerprint, nonZeroBytes: scan.nonZeroBytes };
    const entries: MapEntry[] = [];
    const fresh: FreshChunks = { offsets: [], lengths: [], ids: [] };
    for (let i = 0; i < scan.offsets.length; i++) {
      const id = Buffer.from(scan.ids.subarray(i * 32, i * 32 + 32));
      entries.push({ offset: scan.offsets[i], length: scan.lengths[i], id });
      // Claim it now so a parallel region with the same chunk does not store it twice.
      if (this.repo.claimBlob(id, scan.lengths[i], BlobType.Data)) {
        fresh.offsets.push(scan.offsets[i]);
        fresh.lengths.push(scan.lengths[i]);
        fresh.ids.push(id);
      }
    }
    // Sealed in batches of a bounded size: a batch's sealed output is held here until the pack writer copies it.
    const previousEntries = fresh.ids.length > 0 ? await previousMapEntries() : undefined;
    for (const batch of sealBatches(fresh, this.pool.sizing.sealBatchBytes)) {
      // With page-patch bases, a task holds its buffers from reading the bases on: only as many as workers.
      const release = previousEntries ? await this.patchSlots.acquire() : undefined;
      let bases: PatchBases | undefined;
      let sealed: PackedChunks;
      try {
        bases = previousEntries ? await this.patchBases(previousEntries, batch) : undefined;
        sealed = await this.pool.packChunks({
          path, regionStart, offsets: batch.offsets, lengths: batch.lengths, ids: Buffer.concat(batch.ids), bases, recycled: this.spareOutputs.pop(),
        });
      } finally {
        release?.();
      }
      if (sealed.returnedBases && this.spareBases.length < this.regionsInFlight) this.spareBases.push(sealed.returnedBases);
      if (sealed.damagedBase !== undefined) throw this.damagedBase(Buffer.from(bases!.ids.subarray(sealed.damagedBase * 32, sealed.damagedBase * 32 + 32)));
      for (let i = 0; i < batch.ids.length; i++) {
        await this.writer.add({
          id: batch.ids[i],
          typeFlags: sealed.typeFlags[i],
          rawLength: sealed.rawLengths[i],
          sealed: sealed.data.subarray(sealed.starts[i], sealed.starts[i + 1]),
        });
      }
      // Every blob is copied into the pack buffer by now (add resolves after the copy).
      if (this.spareOutputs.length < this.regionsInFlight) this.spareOutputs.push(sealed.data);
    }
    return { kind: 'scanned', fingerprint, entries };
  }

  /** The previous region map's entries, if it can still be read: a map lost with a damaged pack offers no bases (see repo/packHealth.ts). */
  private async previousMapEntries(previousMapId: string): Promise<MapEntry[] | undefined> {
    if (!this.repo.blobLocation(Buffer.from(previousMapId, 'hex'))) return undefined;
    return decodeRegionMap(await this.repo.readBlobPlaintext(Buffer.from(previousMapId, 'hex')), this.repo.settings.regionSize);
  }

  /** A base that did not rebuild: the previous restore point's data is damaged there (as a read of it would have said). */
  private damagedBase(id: Buffer): CorruptionError {
    const loc = this.repo.blobLocation(id);
    const packId = loc ? this.repo.packIds[loc.pack] : undefined;
    return new CorruptionError(
      `${this.repo.location}: chunk ${id.toString('hex').slice(0, 16)} of the previous restore point does not rebuild to its id (damaged); run 'ferry check --read-data'`,
      packId ? `data/${packId}` : 'index',
    );
  }

  /** The previous chunks covering the first byte of each new chunk: the bases page patches are made against. */
  private async patchBases(entries: MapEntry[], fresh: FreshChunks): Promise<PatchBases | undefined> {
    const of: number[] = [];
    const shifts: number[] = [];
    const chosen: MapEntry[] = [];
    const chosenIndex = new Map<MapEntry, number>();
    let k = 0; // entries and fresh offsets are both ascending
    for (const offset of fresh.offsets) {
      while (k < entries.length && entries[k].offset + entries[k].length <= offset) k++;
      const e = entries[k];
      if (e && e.offset <= offset && this.repo.blobLocation(e.id)) {
        let j = chosenIndex.get(e);
        if (j === undefined) {
          j = chosen.length;
          chosen.push(e);
          chosenIndex.set(e, j);
        }
        of.push(j);
        shifts.push(offset - e.offset);
      } else {
        of.push(-1);
        shifts.push(0);
      }
    }
    if (chosen.length === 0) return undefined;
    // The bases go to the worker as stored (roots sealed, patches opened): it rebuilds and checks them
    // off the main thread, and the main thread holds compressed bytes, not plaintext copies.
    const read = await this.baseLoader.read(chosen.map((e) => e.id));
    const spare = this.spareBases.findIndex((b) => b.byteLength >= read.bytes);
    const carrier = spare >= 0 ? this.spareBases.splice(spare, 1)[0] : new Uint8Array(Math.max(read.bytes, this.pool.sizing.sealBatchBytes));
    const chains = await this.baseLoader.layOut(read, carrier);
    return { of, shifts, ids: Buffer.concat(chosen.map((e) => e.id)), chains, data: carrier };
  }

  private async storeMap(entries: MapEntry[]): Promise<string> {
    const plain = encodeRegionMap(entries);
    const id = this.hasher.hash(plain);
    if (!this.repo.hasBlob(id)) {
      const blob = this.mapEncoder.encode(BlobType.Map, id, plain);
      this.repo.claimBlob(id, plain.length, blob.typeFlags);
      await this.writer.add({ id, ...blob });
    }
    return id.toString('hex');
  }
}

/** A region backed up: its new map's entries, or the previous map reused because its fingerprint matched. */
type StoredRegion =
  | { kind: 'scanned'; fingerprint?: string; entries: MapEntry[] }
  | { kind: 'reused'; fingerprint?: string; nonZeroBytes: number };

/** Chunks of a region the repository lacks, ascending by offset. */
interface FreshChunks {
  offsets: number[];
  lengths: number[];
  ids: Buffer[];
}

/** `fresh` cut into runs of at most `maxBytes` of plaintext (a longer chunk is a batch of its own). */
function* sealBatches(fresh: FreshChunks, maxBytes: number): Generator<FreshChunks> {
  for (let from = 0; from < fresh.ids.length; ) {
    let to = from + 1;
    let bytes = fresh.lengths[from];
    while (to < fresh.ids.length && bytes + fresh.lengths[to] <= maxBytes) bytes += fresh.lengths[to++];
    yield { offsets: fresh.offsets.slice(from, to), lengths: fresh.lengths.slice(from, to), ids: fresh.ids.slice(from, to) };
    from = to;
  }
}

function* regionNumbers(count: number): Generator<number> {
  for (let r = 0; r < count; r++) yield r;
}

/** `load` run on the first call only; later calls share its promise. */
function once<T>(load: () => Promise<T>): () => Promise<T> {
  let loaded: Promise<T> | undefined;
  return () => (loaded ??= load());
}
