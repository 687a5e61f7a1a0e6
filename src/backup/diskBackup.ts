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
import { Span, clipSpans, clippedMerged } from '../dedupe/spans';
import { decodeRegionMap } from '../repo/regionMap';
import { CorruptionError } from '../errors';
import { PipelinePool } from '../workers/pipelinePool';
import { FreshChunkDesk } from '../workers/freshChunkChannel';
import { PackedChunks, PatchBases, PreviousChunks, ScanAndSealResult, SealedBlobs, SealChangedResult, SealChangedTask, StoredChains } from '../workers/tasks';
import { ChangedBatch, changedBatches } from './changedBatches';
import { PatchBaseLoader } from './patchBaseLoader';
import { BackupBuffers } from './backupBuffers';
import { PendingWork } from '../concurrency/pendingWork';
import { forEachLimit } from '../concurrency/forEachLimit';

export interface DiskProgress {
  /** Logical bytes of the disk covered so far. */
  doneBytes: number;
  readBytes: number;
}

export interface DiskBackupResult {
  record: DiskRecord;
  readBytes: number;
  /** Regions whose fingerprint matched the previous restore point's: its map reused, no new map stored. */
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
  /**
   * The snapshot holds every byte of the disk, not only `changed` (a btrfs
   * snapshot, not a QEMU incremental copy): old chunks a change touched are
   * read from it instead of being rebuilt from the repository.
   */
  wholeDisk?: boolean;
}

export class DiskBackup {
  private readonly mapEncoder: BlobEncoder;
  private readonly hasher: ChunkHasher;
  /** Slots and spare buffers shared with every disk backup on the pool (backupBuffers.ts). */
  private readonly buffers: BackupBuffers;

  private readonly baseLoader: PatchBaseLoader;
  /** Sealed blobs handed over by workers that seal as they scan, being packed. */
  private readonly sealed = new PendingWork();

  constructor(
    private readonly repo: Repository,
    private readonly pool: PipelinePool,
    private readonly writer: PackWriter,
  ) {
    this.baseLoader = new PatchBaseLoader(repo);
    this.buffers = BackupBuffers.of(pool);
    this.mapEncoder = new BlobEncoder(repo.keys.dataKey, repo.settings.compressionLevel);
    this.hasher = new ChunkHasher(repo.keys.idKey);
  }

  /**
   * Back up one disk. With `base` (changed-block tracking), regions without
   * changes reuse the previous region maps unread, and in changed regions
   * only the changed ranges are read from `source`.
   */
  async run(source: ImageSource, name: string, onProgress?: (p: DiskProgress) => void, base?: IncrementalBase): Promise<DiskBackupResult> {
    const comparable = base && base.previous.regionSize === this.repo.settings.regionSize ? base.previous : undefined;
    // Reusing unread regions is only safe while every blob the previous point names is indexed.
    if (comparable && base?.changed && comparable.size === source.size && !indexHasDroppedBlobs(this.repo)) {
      return this.runIncremental(source, name, comparable, base.changed, base.wholeDisk === true, onProgress);
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
    await forEachLimit(regionNumbers(regionCount), this.buffers.regionsInFlight, (r) => this.inRegionSlot(async () => {
      const regionStart = r * regionSize;
      const regionLength = Math.min(regionSize, source.size - regionStart);
      const dataExtents = clipSpans(source.dataExtents, regionStart, regionStart + regionLength);
      if (dataExtents.length > 0) {
        const previousMap = comparable?.regions[r] ?? null;
        // Read at most once per region: the reuse check and the page-patch bases both need it.
        const previousEntries = once(() => (previousMap === null ? Promise.resolve(undefined) : this.previousMapEntries(previousMap)));
        const previousFingerprint = reusable && (await this.reusableFingerprint(reusable, r, previousEntries));
        const previous = previousMap === null ? undefined : { entries: previousEntries, fingerprint: previousFingerprint };
        const stored = this.pool.sealsWhileScanning
          ? await this.scanAndSealRegion(source.path, regionStart, regionLength, dataExtents, progress, previous)
          : await this.storeRegion(source.path, regionStart, regionLength, dataExtents, progress, previousEntries, previousFingerprint);
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
    }));
    // Blobs sealed as the regions were scanned are in packs (or their failure is this disk's).
    await this.sealed.settled();
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
    wholeDisk: boolean,
    onProgress?: (p: DiskProgress) => void,
  ): Promise<DiskBackupResult> {
    const regionSize = previous.regionSize;
    const changed = clippedMerged(changedRanges, source.size);
    const regions = [...previous.regions];
    // An unread region keeps its map and so its fingerprint; a changed one is not read whole and gets none.
    const fingerprints = regions.map((_, r) => previous.fingerprints?.[r] ?? null);
    const progress: DiskProgress = { doneBytes: 0, readBytes: 0 };
    let dataBytes = previous.dataBytes;
    await forEachLimit(regionNumbers(regions.length), this.buffers.regionsInFlight, (r) => this.inRegionSlot(async () => {
      const regionStart = r * regionSize;
      const regionLength = Math.min(regionSize, source.size - regionStart);
      const changedHere = clipSpans(changed, regionStart, regionStart + regionLength);
      if (changedHere.length > 0) {
        const oldMapId = previous.regions[r];
        const oldEntries = oldMapId ? decodeRegionMap(await this.repo.readBlobPlaintext(Buffer.from(oldMapId, 'hex')), regionSize) : [];
        if (!oldEntries) throw new CorruptionError(`${this.repo.location}: region map ${oldMapId} of ${name} is malformed; run 'ferry check'`, this.repo.blobObject(Buffer.from(oldMapId!, 'hex')));
        const entries = await this.storeChangedRegion(source.path, regionStart, changedHere, oldEntries, wholeDisk, progress);
        regions[r] = entries.length > 0 ? await this.storeMap(entries) : null;
        fingerprints[r] = null;
        dataBytes += entries.reduce((n, e) => n + e.length, 0) - oldEntries.reduce((n, e) => n + e.length, 0);
      }
      progress.doneBytes += regionLength;
      onProgress?.(progress);
    }));
    return {
      record: { name, sourcePath: source.path, size: source.size, regionSize, regions, dataBytes, fingerprints },
      readBytes: progress.readBytes,
      reusedRegions: 0,
    };
  }

  /**
   * Old chunks touched by a change are stored again with the changed bytes,
   * batch by batch (changedBatches.ts); untouched chunks are kept. Unless the
   * snapshot holds the whole disk, it is read only inside `changed` (it may
   * hold nothing else), and the old chunks are rebuilt from the repository in
   * the workers; a whole-disk snapshot gives them unread, at the cost of
   * reading the bytes of theirs that did not change from it (sequential reads
   * of the image instead of a repository read, decryption and decompression
   * per chunk: 4 KiB writes scattered over a disk touch nearly every chunk).
   */
  private async storeChangedRegion(
    path: string,
    regionStart: number,
    changed: Span[],
    oldEntries: MapEntry[],
    wholeDisk: boolean,
    progress: DiskProgress,
  ): Promise<MapEntry[]> {
    const { batches, kept } = changedBatches(changed, oldEntries, this.changedBatchBytes(wholeDisk));
    const fresh: MapEntry[] = [];
    // The next batch's old chunks are read while a worker seals this one: the reads (one per chunk, cold
    // on a nightly run) overlap the work instead of alternating with it.
    const load = (batch: ChangedBatch): Promise<OldChunks> => {
      if (batch.olds.length === 0) return Promise.resolve({});
      const ids = batch.olds.map((e) => e.id);
      return wholeDisk
        ? this.baseLoader.depths(ids).then((depths) => ({ oldsInSnapshot: { ids: Buffer.concat(ids), depths } }))
        : this.storedChains(ids).then((bases) => ({ bases }));
    };
    let next: Promise<OldChunks> | undefined = batches.length > 0 ? load(batches[0]) : undefined;
    try {
      for (let b = 0; b < batches.length; b++) {
        const batch = batches[b];
        await this.storeChangedBatch(path, regionStart, changed, batch, progress, fresh, async () => {
          const olds = await next!;
          next = b + 1 < batches.length ? load(batches[b + 1]) : undefined;
          return olds;
        });
      }
    } finally {
      // A read begun for a batch that an error kept from running: its failure is not this one's.
      next?.catch(() => undefined);
    }
    return [...kept, ...fresh].sort((a, b) => a.offset - b.offset);
  }

  /** One batch of storeChangedRegion: its old chunks (`olds`, read by then) and the changed bytes sealed by a worker. */
  private async storeChangedBatch(
    path: string,
    regionStart: number,
    changed: Span[],
    batch: ChangedBatch,
    progress: DiskProgress,
    fresh: MapEntry[],
    olds: () => Promise<OldChunks>,
  ): Promise<void> {
    // A task holds its buffers from its old chunks' read on: only as many as workers.
    const release = await this.buffers.patchSlots.acquire();
    let result: SealChangedResult;
    try {
      result = await this.pool.sealChanged({
        path,
        regionStart,
        spans: batch.spans,
        filePieces: batch.spans.flatMap((s) => clipSpans(changed, s.start, s.end).map((p) => ({ start: s.start + p.start, end: s.start + p.end }))),
        olds: batch.olds.map((e) => ({ start: e.offset, end: e.offset + e.length })),
        ...(await olds()),
        recycled: this.buffers.spareOutputs.pop(),
      });
    } finally {
      release();
    }
    this.buffers.keepBases(result.returnedBases);
    if (result.damagedBase !== undefined) throw this.damagedBase(batch.olds[result.damagedBase].id);
    progress.readBytes += result.readBytes;
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
    this.buffers.keepOutput(result.data);
  }

  /** Run one region's work in a slot shared with every disk backup on the pool (backupBuffers.ts). */
  private async inRegionSlot(work: () => Promise<void>): Promise<void> {
    const release = await this.buffers.regionSlots.acquire();
    try {
      await work();
    } finally {
      release();
    }
  }

  /**
   * A batch of changed-block tracking: half a worker's read window when the other half holds the old
   * chunks rebuilt from the repository, the whole window when they are read from a whole-disk snapshot
   * in their place (half as many tasks). The window holds at least twice the largest chunk
   * (workers/pipelineWorker.ts), so whole old chunks fit.
   */
  private changedBatchBytes(wholeDisk: boolean): number {
    const largestChunk = Math.max(this.repo.settings.chunker.maxSize, this.repo.settings.chunker.avgSize);
    const window = Math.max(this.pool.sizing.windowBytes, 2 * largestChunk);
    return wholeDisk ? window : Math.floor(window / 2);
  }

  /**
   * A region read once on worker threads: the worker seals the fresh chunks
   * from the bytes it scans, as page patches against the chunks at the same
   * place in `previous` (the region's map in the previous restore point) when
   * that is smaller; a region whose fingerprint is `previous.fingerprint`
   * keeps that map.
   */
  private async scanAndSealRegion(
    path: string,
    regionStart: number,
    regionLength: number,
    dataExtents: { start: number; end: number }[],
    progress: DiskProgress,
    previous?: { entries: () => Promise<MapEntry[] | undefined>; fingerprint?: Buffer },
  ): Promise<StoredRegion> {
    const backlog = this.buffers.sealedBacklog;
    const desk: FreshChunkDesk = {
      // Claimed as they are cut, so a parallel region with the same chunk does not store it twice.
      claim: (ids, lengths) => {
        const fresh = new Uint8Array(lengths.length);
        for (let i = 0; i < lengths.length; i++) fresh[i] = this.repo.claimBlob(Buffer.from(ids.buffer, ids.byteOffset + 32 * i, 32), lengths[i], BlobType.Data) ? 1 : 0;
        return fresh;
      },
      roomForMore: async () => {
        this.sealed.throwIfFailed();
        await backlog.room();
        this.sealed.throwIfFailed();
      },
      store: (ids, blobs) => {
        const packed = this.sealed.track(this.packSealed(blobs, (i) => Buffer.from(ids.subarray(32 * i, 32 * i + 32))));
        backlog.hold(blobs.starts[blobs.starts.length - 1], packed);
      },
      spareOutput: () => this.buffers.spareOutputs.pop(),
      ...(previous && {
        // Two carriers per scan at most: one read while the worker seals against the other.
        bases: async ({ ids, offsets, lengths, fresh }) => {
          const entries = await previous.entries();
          if (!entries) return undefined;
          const chunks: FreshChunks = { offsets: [], lengths: [], ids: [] };
          for (let i = 0; i < fresh.length; i++) {
            if (!fresh[i]) continue;
            chunks.offsets.push(offsets[i]);
            chunks.lengths.push(lengths[i]);
            chunks.ids.push(Buffer.from(ids.buffer, ids.byteOffset + 32 * i, 32));
          }
          return this.patchBases(entries, chunks);
        },
        basesReturned: (carrier: Uint8Array) => this.buffers.keepBases(carrier),
      }),
    };
    const previousEntries = previous && (await previous.entries());
    const previousChunks = previousEntries && this.previousChunks(previousEntries);
    let scan: ScanAndSealResult;
    try {
      scan = await this.pool.scanAndSealRegion({ path, regionStart, regionLength, dataExtents, previousFingerprint: previous?.fingerprint, previousChunks }, desk);
    } catch (e) {
      // A pack that did not write stopped the worker with its message: the typed error is the one to report.
      this.sealed.throwIfFailed();
      throw e;
    }
    if (scan.damagedBase) throw this.damagedBase(Buffer.from(scan.damagedBase));
    progress.readBytes += scan.readBytes;
    const fingerprint = scan.fingerprint ? Buffer.from(scan.fingerprint).toString('hex') : undefined;
    if (scan.sameAsPrevious) return { kind: 'reused', fingerprint, nonZeroBytes: scan.nonZeroBytes };
    return { kind: 'scanned', fingerprint, entries: scannedEntries(scan) };
  }

  /** A previous map for a scan: its chunks, and which the index holds (those a scan need not claim). */
  private previousChunks(entries: MapEntry[]): PreviousChunks {
    return {
      offsets: entries.map((e) => e.offset),
      lengths: entries.map((e) => e.length),
      ids: Buffer.concat(entries.map((e) => e.id)),
      indexed: Uint8Array.from(entries, (e) => (this.repo.blobLocation(e.id) ? 1 : 0)),
    };
  }

  /** Add sealed blobs (blob i has id `idAt(i)`) to packs, then keep their buffer for the next seal (add resolves after the copy). */
  private async packSealed(blobs: SealedBlobs, idAt: (i: number) => Buffer): Promise<void> {
    // Queued at once, so the region's map (added when its scan settles) follows its chunks in the packs.
    const added: Promise<void>[] = [];
    for (let i = 0; i < blobs.typeFlags.length; i++) {
      added.push(
        this.writer.add({
          id: idAt(i),
          typeFlags: blobs.typeFlags[i],
          rawLength: blobs.rawLengths[i],
          sealed: blobs.data.subarray(blobs.starts[i], blobs.starts[i + 1]),
        }),
      );
    }
    await Promise.all(added);
    this.buffers.keepOutput(blobs.data);
  }

  /**
   * A region with tasks on the main thread (the smallest budgets: no worker to
   * wait for answers while it scans): scanned, then its fresh chunks read
   * again and sealed in batches, against the previous map's chunks.
   */
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
    const entries = scannedEntries(scan);
    const fresh: FreshChunks = { offsets: [], lengths: [], ids: [] };
    for (const e of entries) {
      // Claim it now so a parallel region with the same chunk does not store it twice.
      if (this.repo.claimBlob(e.id, e.length, BlobType.Data)) {
        fresh.offsets.push(e.offset);
        fresh.lengths.push(e.length);
        fresh.ids.push(e.id);
      }
    }
    // Sealed in batches of a bounded size: a batch's sealed output is held here until the pack writer copies it.
    const previousEntries = fresh.ids.length > 0 ? await previousMapEntries() : undefined;
    for (const batch of sealBatches(fresh, this.pool.sizing.sealBatchBytes)) {
      // With page-patch bases, a task holds its buffers from reading the bases on: only as many as workers.
      const release = previousEntries ? await this.buffers.patchSlots.acquire() : undefined;
      let bases: PatchBases | undefined;
      let sealed: PackedChunks;
      try {
        bases = previousEntries ? await this.patchBases(previousEntries, batch) : undefined;
        sealed = await this.pool.packChunks({
          path, regionStart, offsets: batch.offsets, lengths: batch.lengths, ids: Buffer.concat(batch.ids), bases, recycled: this.buffers.spareOutputs.pop(),
        });
      } finally {
        release?.();
      }
      this.buffers.keepBases(sealed.returnedBases);
      if (sealed.damagedBase !== undefined) throw this.damagedBase(Buffer.from(bases!.ids.subarray(sealed.damagedBase * 32, sealed.damagedBase * 32 + 32)));
      await this.packSealed(sealed, (i) => batch.ids[i]);
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
    return { of, shifts, ...(await this.storedChains(chosen.map((e) => e.id))) };
  }

  /**
   * Chunks as stored (roots sealed, patches opened) in a carrier for a worker: it rebuilds and checks
   * them off the main thread, and the main thread holds compressed bytes, not plaintext copies.
   */
  private async storedChains(ids: Buffer[]): Promise<StoredChains> {
    const read = await this.baseLoader.read(ids);
    const spare = this.buffers.spareBases.findIndex((b) => b.byteLength >= read.bytes);
    const carrier = spare >= 0 ? this.buffers.spareBases.splice(spare, 1)[0] : new Uint8Array(Math.max(read.bytes, this.pool.sizing.sealBatchBytes));
    const chains = await this.baseLoader.layOut(read, carrier);
    return { ids: Buffer.concat(ids), chains, data: carrier };
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

/** What a changed batch's worker gets of its old chunks (SealChangedTask). */
type OldChunks = Pick<SealChangedTask, 'bases' | 'oldsInSnapshot'>;

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

/** A scan's chunks as region map entries: chunk i is at offsets[i], lengths[i] long, with id ids[32i, 32i + 32). */
function scannedEntries(scan: { offsets: number[]; lengths: number[]; ids: Uint8Array }): MapEntry[] {
  const entries: MapEntry[] = [];
  for (let i = 0; i < scan.offsets.length; i++) entries.push({ offset: scan.offsets[i], length: scan.lengths[i], id: Buffer.from(scan.ids.subarray(i * 32, i * 32 + 32)) });
  return entries;
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
