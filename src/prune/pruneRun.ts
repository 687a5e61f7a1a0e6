// `prune`: remove what no restore point needs, by the garbage-collection rules
// of docs/FORMAT.md. The caller holds the exclusive lock (rule 3). Writes go
// in rule 8's order, so a prune killed at any moment leaves a valid repository
// that the next prune finishes:
//   new packs (live blobs of repacked packs, sealed bytes copied unchanged)
//   → new index files naming every kept pack and every new pack (merged)
//   → a bridge index file naming the packs to drop (when they hold page patches)
//   → deletion of every index file that was there before, then of the bridge
//   → deletion of the dropped packs.
// Object Lock (rule 6): an old index file or a pack whose retention has not
// passed is left where it is and reported; a pack a left index file names is
// not deleted either (that index file would name a missing pack), and a left
// pack is merely unindexed, which rule 4 allows. A later run deletes them.
// Rule 7: a live patch whose chain the plan frees is rebuilt (read through its
// chain, checked against its id) and sealed whole into the same new packs, so
// it is indexed with them; its bases go with the dropped packs.
import { CorruptionError, FerryError } from '../errors';
import { BlobEncoder, BlobType, blobType } from '../crypto/blobCodec';
import { SEAL_OVERHEAD } from '../crypto/aead';
import { ObjectLockedError } from '../storage/errors';
import { IndexedPack } from '../repo/indexFile';
import { PackEntry } from '../repo/packFormat';
import { PackWriter } from '../repo/packWriter';
import { Repository } from '../repo/repository';
import { ChunkScratch } from '../repo/blobReader';
import { PatchBaseMemo } from './patchBaseMemo';
import { findLiveGraph } from './liveBlobs';
import { PackContents, planPrune } from './prunePlan';

export interface PruneOptions {
  /** Repack packs whose live share is below this (0..1). */
  repackBelow: number;
  /** Repack at most this many bytes of packs in this run (lowest live share first); the rest waits for a later run. */
  maxRepackBytes?: number;
  /** 'dry-run' computes and reports, and writes and deletes nothing. */
  mode: 'dry-run' | 'prune';
  /** Called before each step, for a progress line. */
  onStep?: (step: string) => void;
  /**
   * Confirms the exclusive lock right before the first deletion of each kind
   * (RepositoryLock.verify); throws to stop. A prune suspended past the stale
   * age may have lost its lock to a backup that now needs what it would delete.
   */
  confirmLock?: () => Promise<void>;
  /**
   * Restore point ids to count as already removed: a `forget --prune --dry-run`
   * reports what prune would free once they are gone.
   */
  forgotten?: ReadonlySet<string>;
}

export interface PruneReport {
  dryRun: boolean;
  restorePointsKept: number;
  liveBlobs: number;
  blobsFreed: number;
  /** Pack bytes before minus after (new packs counted). */
  bytesFreed: number;
  packBytesBefore: number;
  packBytesAfter: number;
  packsBefore: number;
  packsAfter: number;
  packsDeleted: number;
  packsRepacked: number;
  packsWritten: number;
  /** Stored bytes of the packs repacked (read and rewritten). */
  bytesRepacked: number;
  /** Packs that need a repack but stay whole this run, over the repack budget; a later prune repacks them. */
  packsRepackDeferred: number;
  bytesRepackDeferred: number;
  indexFilesBefore: number;
  indexFilesAfter: number;
  /** Unindexed packs whose header cannot be read: left alone ('ferry repair' salvages them). */
  unreadablePacks: string[];
  /** Bases named only by dead patches in packs that stay, and stored nowhere already before this prune. */
  missingDeadBases: number;
  /** S3 Object Lock: old index files whose retention has not passed, left for a later run. */
  lockedIndexFiles: string[];
  /** S3 Object Lock: packs to drop whose retention has not passed, left (unindexed) for a later run. */
  lockedPacks: string[];
  /** Packs to drop that a locked index file still names: left for a later run too. */
  packsHeldByLockedIndex: string[];
  /** Rule 7: live page patches stored whole (type 0, same id), so their bases could go. */
  chainsRewritten: number;
  /** Stored bytes of those patches and of the bases deleted with them. */
  chainBytesFreed: number;
  /** Sealed bytes of the whole chunks written for them (in the new packs). */
  chainBytesWritten: number;
  durationMs: number;
}

/** A chunk sealed whole (type 0) for rule 7. */
interface SealedWhole {
  sealed: Buffer;
  typeFlags: number;
  rawLength: number;
}

/** Bytes of sealed whole chunks kept in memory between planning and writing (rule 7). */
const SEALED_WHOLE_CACHE = 16 * 1024 * 1024;

/** Index payload per file (FORMAT.md rule 8): merged, but not one huge object. */
const INDEX_PAYLOAD_LIMIT = 8 * 1024 * 1024;
const INDEX_PACK_RECORD = 32 + 4;
const INDEX_ENTRY = 45;

export async function pruneRepository(repo: Repository, opts: PruneOptions): Promise<PruneReport> {
  const started = Date.now();
  const step = opts.onStep ?? (() => undefined);

  step('reading restore points');
  const listed = await repo.listAllRestorePoints();
  const forgotten = opts.forgotten ?? new Set<string>();
  const listing = { points: listed.points.filter((p) => !forgotten.has(p.id)), damaged: listed.damaged.filter((d) => !forgotten.has(d.id)) };
  if (listing.damaged.length > 0) {
    const d = listing.damaged[0];
    throw new CorruptionError(
      `${repo.location}: restore point ${d.id} cannot be read (${d.problem}), so what it needs is unknown; prune deletes nothing: forget it by id or run 'ferry repair' first`,
      `snapshots/${d.id}`,
    );
  }

  step('reading index files');
  const indexNames: string[] = [];
  for await (const info of repo.backend.list('index')) indexNames.push(info.name);
  const packsOfIndex = new Map<string, string[]>();
  const entriesByPack = new Map<string, Map<string, PackEntry>>();
  const addEntries = (packId: string, entries: readonly PackEntry[]) => {
    let m = entriesByPack.get(packId);
    if (!m) entriesByPack.set(packId, (m = new Map()));
    for (const e of entries) m.set(e.id.toString('hex'), e);
  };
  for (const name of indexNames) {
    const packs = await repo.readIndexFile(name);
    if (!packs) {
      throw new CorruptionError(
        `${repo.location}/index/${name}: index file is damaged; prune deletes nothing: run 'ferry repair' first`,
        `index/${name}`,
      );
    }
    for (const p of packs) addEntries(p.packId, p.entries);
    packsOfIndex.set(name, packs.map((p) => p.packId));
  }

  step('listing packs');
  const sizes = await repo.listPacks();
  const unreadablePacks: string[] = [];
  const packs: PackContents[] = [];
  const unindexed: PackContents[] = [];
  for (const [packId, size] of sizes) {
    // Index entries of packs that are not there are left out: a live blob only they name is missing (rule 2).
    const indexedEntries = entriesByPack.get(packId);
    if (indexedEntries) {
      packs.push({ packId, size, entries: [...indexedEntries.values()] });
      continue;
    }
    // Rule 4: an unindexed pack (a dead writer's, or an earlier prune's) counts by its own header, all but its
    // page patches, as a backup re-indexes it (rule 8): a killed prune may have deleted a patch's base already.
    const header = await repo.readPackHeader(packId, size);
    if (!header) unreadablePacks.push(packId);
    else unindexed.push({ packId, size, entries: header.filter((e) => blobType(e.typeFlags) !== BlobType.Patch) });
  }
  // What the live set is read through: the copies index files name, as readers load them (a whole copy
  // before a patch); an unindexed pack's blobs only fill gaps (so the walk below follows the chains restore follows).
  for (const p of packs) repo.addPackEntries(p.packId, p.entries);
  for (const p of unindexed) repo.addPackEntries(p.packId, p.entries, { fillGaps: true });
  packs.push(...unindexed);

  step('finding live blobs');
  const storedWhole = new Set<string>();
  for (const p of packs) for (const e of p.entries) if (blobType(e.typeFlags) === BlobType.Data) storedWhole.add(e.id.toString('hex'));
  // Each patch body is read once in this run: the live set's walk and every plan (a budget plans more than once) share it.
  const bases = new PatchBaseMemo(repo);
  const graph = await findLiveGraph(repo, listing.points, { storedWhole, bases });
  const live = graph.live;
  step('following page patches of kept copies');
  const readBase = (pack: PackContents, entry: PackEntry): Promise<Buffer> => readPatchBase(repo, bases, pack, entry);
  const sealer = new WholeSealer(repo, new BlobEncoder(repo.keys.dataKey, repo.settings.compressionLevel));
  const wholeSizes = new Map<string, number>();
  // Sealed whole chunks kept from planning for the writes, up to a bound; past it a chunk is rebuilt again when written.
  const sealedWhole = new Map<string, SealedWhole>();
  let sealedWholeBytes = 0;
  // Rule 7's cost of a candidate: its chunk, rebuilt and sealed whole, measured once.
  const wholeSize = async (hex: string): Promise<number> => {
    let size = wholeSizes.get(hex);
    if (size === undefined) {
      const whole = await sealer.seal(hex);
      wholeSizes.set(hex, (size = whole.sealed.length));
      if (sealedWholeBytes + size <= SEALED_WHOLE_CACHE) {
        sealedWhole.set(hex, { ...whole, sealed: Buffer.from(whole.sealed) });
        sealedWholeBytes += size;
      }
    }
    return size;
  };
  const plan = await planPrune(packs, live, {
    repackBelow: opts.repackBelow,
    maxRepackBytes: opts.maxRepackBytes,
    readBase,
    chains: { graph, wholeSize },
  });
  if (plan.missing.length > 0) {
    throw new CorruptionError(
      `${repo.location}: ${plan.missing.length} blob(s) restore points need are in no pack (first ${plan.missing[0].slice(0, 16)}); prune deletes nothing: run 'ferry check'`,
      'index',
    );
  }

  const packBytesBefore = sum(packs.map((p) => p.size)) + sum(unreadablePacks.map((id) => sizes.get(id) ?? 0));
  const storedBefore = new Set<string>();
  for (const p of packs) for (const e of p.entries) storedBefore.add(e.id.toString('hex'));
  const storedAfter = new Set<string>();
  for (const p of plan.keep) for (const e of p.entries) storedAfter.add(e.id.toString('hex'));
  for (const r of plan.repack) for (const e of r.copy) storedAfter.add(e.id.toString('hex'));
  for (const r of plan.rewrite) storedAfter.add(r.id);
  const dropped = [...plan.remove, ...plan.repack.map((r) => r.pack)];
  const report: PruneReport = {
    dryRun: opts.mode === 'dry-run',
    restorePointsKept: listing.points.length,
    liveBlobs: live.size,
    blobsFreed: storedBefore.size - storedAfter.size,
    bytesFreed: 0,
    packBytesBefore,
    packBytesAfter: 0,
    packsBefore: sizes.size,
    packsAfter: 0,
    packsDeleted: dropped.length,
    packsRepacked: plan.repack.length,
    packsWritten: 0,
    bytesRepacked: sum(plan.repack.map((r) => r.pack.size)),
    packsRepackDeferred: plan.deferred.length,
    bytesRepackDeferred: sum(plan.deferred.map((p) => p.size)),
    indexFilesBefore: indexNames.length,
    indexFilesAfter: indexNames.length,
    unreadablePacks,
    missingDeadBases: plan.missingDeadBases.length,
    lockedIndexFiles: [],
    lockedPacks: [],
    packsHeldByLockedIndex: [],
    chainsRewritten: plan.rewrite.length,
    chainBytesFreed: sum(plan.rewrite.map((r) => r.bytesFreed)),
    chainBytesWritten: sum(plan.rewrite.map((r) => r.bytesWritten)),
    durationMs: 0,
  };

  if (opts.mode === 'dry-run') {
    const copiedBytes = sum(plan.repack.flatMap((r) => r.copy.map((e) => e.storedLength))) + report.chainBytesWritten;
    report.packBytesAfter = packBytesBefore - sum(dropped.map((p) => p.size)) + copiedBytes;
    report.bytesFreed = packBytesBefore - report.packBytesAfter;
    report.packsWritten = copiedBytes > 0 ? Math.ceil(copiedBytes / repo.settings.packSize) : 0;
    report.packsAfter = sizes.size - dropped.length + report.packsWritten;
    const copied = plan.repack.flatMap((r) => r.copy);
    report.indexFilesAfter = indexGroups([...plan.keep.map((p) => ({ packId: p.packId, entries: [...p.entries] })), { packId: '', entries: copied }]).length;
    report.durationMs = Date.now() - started;
    return report;
  }

  // 1. New packs: each repacked pack is read once, its live blobs authenticated
  // (damage is never copied over a good original's deletion) and their sealed bytes copied.
  step('repacking');
  const writer = new PackWriter(repo, 8, 'by-caller');
  // One buffer for every pack read, as large as the largest, and blobs opened into the reader's own: a fresh
  // 16 MiB per pack (and a plaintext per blob) stayed until the collector ran and made prune's peak, and so
  // did a buffer grown for each slightly larger pack (3 of them, 48 MiB, in a 60-night repository).
  const packBuffer = Buffer.allocUnsafe(Math.max(0, ...plan.repack.map((r) => r.pack.size)));
  await writer.fillAndFinish(async () => {
    for (const { pack, copy } of plan.repack) {
      const bytes = await repo.backend.readRange('data', pack.packId, 0, pack.size, packBuffer.subarray(0, pack.size));
      const packNumber = repo.packNumber(pack.packId);
      for (const e of copy) {
        const sealed = bytes.subarray(e.offset, e.offset + e.storedLength);
        repo.unsealBlob({ pack: packNumber, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags }, e.id, sealed, true);
        await writer.add({ id: e.id, typeFlags: e.typeFlags, rawLength: e.rawLength, sealed });
      }
    }
    if (plan.rewrite.length > 0) step('rewriting patch chains');
    for (const r of plan.rewrite) {
      const whole = sealedWhole.get(r.id) ?? (await sealer.seal(r.id));
      sealedWhole.delete(r.id);
      await writer.add({ id: Buffer.from(r.id, 'hex'), ...whole }); // copied into the pack before the next seal
    }
  });

  // 2. New index files, merged: every kept pack (all its entries, so the index agrees with its header) and every new pack.
  step('writing index files');
  const indexed: IndexedPack[] = [...plan.keep.map((p) => ({ packId: p.packId, entries: [...p.entries] })), ...writer.writtenPacks];
  const newIndexNames = new Set<string>();
  for (const group of indexGroups(indexed)) newIndexNames.add(await repo.writeIndexFile(group));

  // 2b. A bridge: the packs to drop as the old index files name them, while those go one by one. Without it a
  // kill between two deletions could leave an old index file naming a page patch whose base only a deleted one named.
  const bridgePacks: IndexedPack[] = dropped.filter((p) => entriesByPack.has(p.packId)).map((p) => ({ packId: p.packId, entries: [...entriesByPack.get(p.packId)!.values()] }));
  const bridges = new Map<string, string[]>();
  if (bridgePacks.some((p) => p.entries.some((e) => blobType(e.typeFlags) === BlobType.Patch))) {
    step('writing a bridge index file');
    for (const group of indexGroups(bridgePacks)) bridges.set(await repo.writeIndexFile(group), group.map((p) => p.packId));
  }

  // 3. Every older index file: the new ones already name every live blob; then the bridge, in one deletion.
  step('removing old index files');
  await opts.confirmLock?.();
  const heldByIndex = new Set<string>();
  for (const name of [...indexNames.filter((n) => !bridges.has(n)), ...bridges.keys()]) {
    if (newIndexNames.has(name)) continue;
    if (await removeUnlessLocked(repo, 'index', name)) continue;
    report.lockedIndexFiles.push(name);
    for (const packId of bridges.get(name) ?? packsOfIndex.get(name) ?? []) heldByIndex.add(packId);
  }

  // 4. The dropped packs: no index names them any more (but a locked one left in step 3).
  step('removing packs');
  await opts.confirmLock?.();
  const deleted: PackContents[] = [];
  for (const pack of dropped) {
    if (heldByIndex.has(pack.packId)) report.packsHeldByLockedIndex.push(pack.packId);
    else if (await removeUnlessLocked(repo, 'data', pack.packId)) deleted.push(pack);
    else report.lockedPacks.push(pack.packId);
  }

  const newPackBytes = writer.newBytes;
  report.packsDeleted = deleted.length;
  report.packsWritten = writer.writtenPacks.length;
  report.packBytesAfter = packBytesBefore - sum(deleted.map((p) => p.size)) + newPackBytes;
  report.bytesFreed = packBytesBefore - report.packBytesAfter;
  report.packsAfter = sizes.size - deleted.length + writer.writtenPacks.length;
  report.indexFilesAfter = newIndexNames.size + report.lockedIndexFiles.length;
  report.durationMs = Date.now() - started;
  return report;
}

/** Remove an object; false if S3 Object Lock still protects it (the run goes on, rule 6). */
async function removeUnlessLocked(repo: Repository, type: 'index' | 'data', name: string): Promise<boolean> {
  try {
    await repo.backend.remove(type, name);
    return true;
  } catch (err) {
    if (err instanceof ObjectLockedError) return false;
    throw err;
  }
}

/** The base a stored page patch names: this copy's body, read from its pack (a small ranged read) and authenticated. */
async function readPatchBase(repo: Repository, bases: PatchBaseMemo, pack: PackContents, entry: PackEntry): Promise<Buffer> {
  const what = `page patch ${entry.id.toString('hex').slice(0, 16)} in pack ${pack.packId.slice(0, 16)}`;
  let base: Buffer | undefined;
  try {
    base = await bases.ofCopy(pack.packId, entry);
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    throw new CorruptionError(`${repo.location}: ${what} cannot be read (${err.message}); prune deletes nothing: run 'ferry check --read-data'`, `data/${pack.packId}`);
  }
  if (!base) {
    throw new CorruptionError(`${repo.location}: ${what} is malformed, so its base is unknown; prune deletes nothing: run 'ferry check --read-data'`, `data/${pack.packId}`);
  }
  return base;
}

/**
 * Rule 7's chunks (live page patches) rebuilt through their chains (every blob
 * on them authenticated, the result checked against the id) and sealed whole,
 * as type 0, in buffers reused from one to the next: what `seal` returns lies
 * in them until its next call (copy it to keep it).
 */
class WholeSealer {
  private readonly chunk = new ChunkScratch();
  private out = Buffer.alloc(0);

  constructor(
    private readonly repo: Repository,
    private readonly encoder: BlobEncoder,
  ) {}

  async seal(hex: string): Promise<SealedWhole> {
    const id = Buffer.from(hex, 'hex');
    let plain: Buffer;
    try {
      plain = await this.repo.readChunkInScratch(id, this.chunk);
    } catch (err) {
      if (!(err instanceof FerryError)) throw err;
      throw new CorruptionError(`${this.repo.location}: page patch ${hex.slice(0, 16)} cannot be rebuilt (${err.message}); prune deletes nothing: run 'ferry check --read-data'`, this.repo.blobObject(id));
    }
    if (this.out.length < plain.length + SEAL_OVERHEAD) this.out = Buffer.allocUnsafe(plain.length + SEAL_OVERHEAD);
    const { length, typeFlags, rawLength } = this.encoder.encodeInto(BlobType.Data, id, plain, this.out);
    return { sealed: this.out.subarray(0, length), typeFlags, rawLength };
  }
}

/** Packs grouped so that each index file's payload stays within the limit (a single huge pack gets a file of its own). */
function indexGroups(packs: IndexedPack[]): IndexedPack[][] {
  const groups: IndexedPack[][] = [];
  let current: IndexedPack[] = [];
  let bytes = 8;
  for (const p of packs) {
    const size = INDEX_PACK_RECORD + INDEX_ENTRY * p.entries.length;
    if (current.length > 0 && bytes + size > INDEX_PAYLOAD_LIMIT) {
      groups.push(current);
      current = [];
      bytes = 8;
    }
    current.push(p);
    bytes += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
