// `ferry sync SRC DST`: make DST hold what SRC holds (or a selection of its
// restore points), copying only the objects DST lacks, byte for byte.
//
// Why byte for byte: DST is a copy target (same config and key slots, see
// copyTarget.ts), and packs, index files and restore points are named by the
// BLAKE3 of their bytes. A copy needs no key for the full sync, a damaged
// source object is recognised by its name alone, and an object DST already
// has under that name is the same object.
//
// Why this order — key slots, packs, index files, restore points: each kind
// only refers to kinds written before it, so a sync killed at any moment
// leaves DST a valid repository (complete packs, maybe not yet indexed, which
// is allowed; restore points only when all they need is there). A re-run
// lists both sides again and copies only what is still missing: it resumes.
//
// Key slots mirror SRC's: a slot removed from SRC (`ferry key remove`) is
// removed from DST after everything is copied, so a passphrase shut out of
// the source does not keep opening its copies.
import { Backend, ObjectInfo, ObjectType, TruncatedObjectError } from '../storage/backend';
import { Repository } from '../repo/repository';
import { contentName } from '../crypto/chunkId';
import { BlobType, blobType } from '../crypto/blobCodec';
import { CorruptionError, DamageFoundError, DoesNotFitError, StorageError, UsageError } from '../errors';
import { forEachLimit } from '../concurrency/forEachLimit';
import { checkSameIdentity, readIdentity } from './copyTarget';
import { Selection, blobsNeeded, indexRecords, selectRestorePoints } from './selection';
import { checkMirrorSource, mirrorTarget, MirrorOptions, MirrorSummary } from './mirror';
import { SyncRecord, targetContents, writeSyncRecord } from './syncRecord';
import { coverTargetRetention } from './targetRetention';
import type { RetentionCoverage } from '../repo/retentionCoverage';

export type SyncedType = 'keys' | 'data' | 'index' | 'restorepoints';
const SYNCED_TYPES: readonly SyncedType[] = ['keys', 'data', 'index', 'restorepoints'];

export interface SyncOptions {
  /** Objects copied at once (packs are up to `packSize` each in memory). */
  concurrency: number;
  /** Read every copied object back from DST and check it against its name. */
  verify: boolean;
  /** Copy only these restore points and what they need; opens SRC and DST with `secret`. */
  selection?: Selection & { secret: Buffer };
  /** Also remove from DST what SRC no longer has, then prune DST (mirror.ts); not with a selection. */
  mirror?: MirrorOptions;
  /**
   * DST is pruned on its own (nightly's offsite_retention = "follow"; --mirror is too): copy every
   * restore point, but a pack only if it holds a blob they need that DST's index lacks. Needs `secret`.
   */
  targetPrunes?: boolean;
  /** Free bytes at the target, when known (a local file system): a copy that needs more stops before copying. */
  targetFreeBytes?: () => Promise<number>;
  /**
   * The passphrase, when the run has it: on a target under S3 Object Lock the sync then raises the
   * retention of only what the copied restore points need (targetRetention.ts), else of all it holds.
   */
  secret?: Buffer;
  /** Write the target a sync record at the end (syncRecord.ts): the host running the sync. */
  record?: { host: string };
  onProgress?: (p: SyncProgress) => void;
}

export interface SyncProgress {
  doneBytes: number;
  totalBytes: number;
  doneObjects: number;
  totalObjects: number;
}

export interface TypeCounts {
  copied: number;
  copiedBytes: number;
  skipped: number;
  skippedBytes: number;
}

export interface SyncSummary {
  source: string;
  target: string;
  /** Restore points the sync covered (all of SRC's, or the selection). */
  restorePoints: number;
  copied: { objects: number; bytes: number };
  skipped: { objects: number; bytes: number };
  /** Objects read back from DST and found equal to their names (with verify). */
  verified: number;
  byType: Record<SyncedType, TypeCounts>;
  /** Selective sync: the index file written to DST for the packs it copied, if any. */
  newIndex?: string;
  /** Key slots DST had and SRC no longer has, removed from DST after the copy. */
  removedKeySlots: string[];
  /** With `mirror`: the restore points removed from DST and the prune that followed. */
  mirror?: MirrorSummary;
  /** The sync record written to the target, if asked for. */
  record?: SyncRecord;
  /** S3 Object Lock at the target: the packs and index files the copied restore points need, raised to outlast them. */
  retention?: RetentionCoverage;
  durationMs: number;
  /** Copied bytes per second of the whole run. */
  bytesPerSec: number;
}

interface PlannedCopy {
  type: SyncedType;
  name: string;
  size: number;
}

async function listing(backend: Backend, type: ObjectType): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const info of backend.list(type)) out.set(info.name, info.size);
  return out;
}

/** Content-named objects are verified by their name; key slots by comparison with the source. */
function matchesName(type: SyncedType, name: string, bytes: Buffer): boolean {
  return type === 'keys' ? true : contentName(bytes) === name;
}

/** Counts kept as the run goes. */
interface Tally {
  byType: Record<SyncedType, TypeCounts>;
  /** Objects read back from DST and found equal to their names. */
  verified: number;
}

/** Phase 1's result: what to copy, in order. */
interface SyncPlan {
  /** SRC's key slots (all of them, copied or not). */
  srcKeys: Map<string, number>;
  keys: PlannedCopy[];
  data: PlannedCopy[];
  index: PlannedCopy[];
  restorePointCopies: PlannedCopy[];
  /** How many restore points the copy covers (all of SRC, or the selection). */
  restorePoints: number;
  /** Full sync: the names of every restore point SRC listed. */
  sourceRestorePoints?: Set<string>;
  /** Selective sync: after the packs are copied, write DST one index file for them; its name. */
  writeSelectionIndex?: () => Promise<string | undefined>;
}

/** Plan a copy unless DST has the object at the same size (a different size is a damaged copy: replace it). */
type Planner = (type: SyncedType, objects: Iterable<ObjectInfo>) => PlannedCopy[];

export async function syncRepositories(source: Backend, target: Backend, opts: SyncOptions): Promise<SyncSummary> {
  const started = Date.now();
  if (opts.mirror && opts.selection) {
    throw new UsageError('--mirror copies and mirrors every restore point; it cannot be combined with --guest or --latest');
  }
  await checkSameIdentity(source, target);
  const tally: Tally = {
    byType: Object.fromEntries(
      SYNCED_TYPES.map((t) => [t, { copied: 0, copiedBytes: 0, skipped: 0, skippedBytes: 0 }]),
    ) as Record<SyncedType, TypeCounts>,
    verified: 0,
  };
  const dstHas = new Map<SyncedType, Map<string, number>>();
  for (const t of SYNCED_TYPES) dstHas.set(t, await listing(target, t));

  const planned = await planSync(source, target, opts, copyPlanner(dstHas, tally), tally);
  if (opts.mirror) checkMirrorSource(source, target, planned.restorePoints, opts.mirror);
  if (opts.targetFreeBytes) checkFits(target, planned, await opts.targetFreeBytes());
  const { newIndex, damaged, retention } = await copyPlanned(source, target, planned, opts, tally);
  const removedKeySlots = await removeKeySlotsGoneFromSource(target, planned.srcKeys, dstHas.get('keys')!);

  if (damaged.length > 0) {
    throw new DamageFoundError(
      `${source.location}: ${damaged.length} object(s) do not match their names and were not copied (first: ${damaged[0]}); everything else was copied — run 'ferry check --read-data --repo ${source.location}'`,
    );
  }
  // Only after a complete, undamaged copy: DST then holds every restore point SRC listed.
  const mirror = opts.mirror ? await mirrorTarget(target, planned.sourceRestorePoints!, opts.mirror) : undefined;
  let record: SyncRecord | undefined;
  if (opts.record) {
    const { repositoryId } = await readIdentity(target);
    record = {
      time: new Date().toISOString(),
      source: source.location,
      host: opts.record.host,
      repositoryId: repositoryId.toString('hex'),
      mirror: Boolean(opts.mirror),
      ...(await targetContents(target)),
    };
    await writeSyncRecord(target, record);
  }
  const { byType, verified } = tally;
  const copied = SYNCED_TYPES.reduce((a, t) => ({ objects: a.objects + byType[t].copied, bytes: a.bytes + byType[t].copiedBytes }), { objects: 0, bytes: 0 });
  const skipped = SYNCED_TYPES.reduce((a, t) => ({ objects: a.objects + byType[t].skipped, bytes: a.bytes + byType[t].skippedBytes }), { objects: 0, bytes: 0 });
  const durationMs = Date.now() - started;
  return {
    source: source.location,
    target: target.location,
    restorePoints: planned.restorePoints,
    copied,
    skipped,
    verified,
    byType,
    newIndex,
    removedKeySlots,
    mirror,
    record,
    ...(retention ? { retention } : {}),
    durationMs,
    bytesPerSec: Math.round(copied.bytes / Math.max(durationMs / 1000, 0.001)),
  };
}

/** A file system allocates whole blocks: each object is counted rounded up to 4 KiB, plus one block for its directory entry. */
const BLOCK = 4096;

/** Stop before copying when the objects to copy need more than the target has free (one line, nothing copied). */
function checkFits(target: Backend, { keys, data, index, restorePointCopies }: SyncPlan, freeBytes: number): void {
  const all = [...keys, ...data, ...index, ...restorePointCopies];
  const needed = all.reduce((n, c) => n + Math.ceil(c.size / BLOCK) * BLOCK + BLOCK, 0);
  if (needed <= freeBytes) return;
  const packBytes = data.reduce((n, c) => n + c.size, 0);
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  throw new DoesNotFitError(
    `${target.location}: the sync does not fit: it needs about ${mib(needed)} for ${all.length} missing object(s) (${data.length} packs, ${mib(packBytes)}) and ${mib(freeBytes)} is free; nothing was copied — free space there, use a larger drive, or forget and prune at the source first`,
  );
}

function copyPlanner(dstHas: Map<SyncedType, Map<string, number>>, { byType }: Tally): Planner {
  return (type, objects) => {
    const out: PlannedCopy[] = [];
    for (const o of objects) {
      if (dstHas.get(type)!.get(o.name) === o.size) {
        byType[type].skipped++;
        byType[type].skippedBytes += o.size;
      } else {
        out.push({ type, name: o.name, size: o.size });
      }
    }
    return out;
  };
}

const infos = (m: Map<string, number>, names?: Iterable<string>): ObjectInfo[] =>
  [...(names ?? m.keys())].map((name) => ({ name, size: m.get(name) ?? 0 }));

/** Phase 1: list SRC and plan what DST lacks: everything, or what the selected restore points need. */
async function planSync(source: Backend, target: Backend, opts: SyncOptions, plan: Planner, tally: Tally): Promise<SyncPlan> {
  // Key slots added to SRC since `init --from` open DST too; slots removed from SRC are removed
  // from DST at the end, once DST holds every slot SRC has (so it never has none).
  const srcKeys = await listing(source, 'keys');
  const keys = plan('keys', infos(srcKeys));
  const ownPruneSecret = opts.mirror?.secret ?? (opts.targetPrunes ? opts.secret : undefined);
  if (opts.targetPrunes && !ownPruneSecret) throw new UsageError('a sync to a target pruned on its own needs the passphrase');
  if (ownPruneSecret) {
    return { srcKeys, keys, index: [], ...(await planSelection(source, target, { secret: ownPruneSecret, guests: [] }, opts.verify, plan, tally, 'blobs-target-lacks')) };
  }
  if (!opts.selection) {
    const srcRestorePoints = await listing(source, 'restorepoints');
    const data = plan('data', infos(await listing(source, 'data')));
    const index = plan('index', infos(await listing(source, 'index')));
    const restorePointCopies = plan('restorepoints', infos(srcRestorePoints));
    return { srcKeys, keys, data, index, restorePointCopies, restorePoints: srcRestorePoints.size, sourceRestorePoints: new Set(srcRestorePoints.keys()) };
  }
  return { srcKeys, keys, index: [], ...(await planSelection(source, target, opts.selection, opts.verify, plan, tally, 'every-pack-needed')) };
}

/**
 * Selective sync: the chosen restore points, the packs they need, and one new DST index file for those packs.
 * Also the copy to a target pruned on its own, --mirror's or nightly's (every restore point,
 * `blobs-target-lacks`): DST is pruned and so no longer
 * holds SRC's packs by name, so a pack is copied only if it holds a needed blob that DST's index
 * lacks; copying SRC's packs and index files by name would bring back, on every run, the garbage
 * that DST's last prune removed.
 */
async function planSelection(
  source: Backend,
  target: Backend,
  { secret, ...selection }: Selection & { secret: Buffer },
  verify: boolean,
  plan: Planner,
  tally: Tally,
  packsToCopy: 'every-pack-needed' | 'blobs-target-lacks',
): Promise<Pick<SyncPlan, 'data' | 'restorePointCopies' | 'restorePoints' | 'sourceRestorePoints' | 'writeSelectionIndex'>> {
  const srcRepo = await Repository.open(source, secret);
  // A damaged index file in SRC is not fatal: its packs are found again from their headers.
  await srcRepo.loadIndex(() => undefined);
  const srcData = await listing(source, 'data');
  await srcRepo.indexOrphanPacks({ keep: 'memory-only', packs: srcData });
  const chosen = selectRestorePoints(await srcRepo.listRestorePoints(), selection, source.location);
  const dstRepo = await Repository.open(target, secret);
  await dstRepo.loadIndex(() => undefined);
  const targetHas = (id: Buffer) => dstRepo.blobLocation(id) !== undefined;
  const neededBlobs = await blobsNeeded(srcRepo, chosen, packsToCopy === 'blobs-target-lacks' ? targetHas : undefined);
  const needed = new Set<string>();
  for (const [hex, pack] of neededBlobs) {
    if (packsToCopy === 'blobs-target-lacks' && targetHoldsAsWell(srcRepo, dstRepo, Buffer.from(hex, 'hex'))) continue;
    needed.add(srcRepo.packIds[pack]);
  }
  for (const p of needed) {
    if (!srcData.has(p)) {
      throw new CorruptionError(`${source.location}: pack ${p} is named by the index but missing; run 'ferry check' on the source`, `data/${p}`);
    }
  }
  const data = plan('data', infos(srcData, needed));
  const srcRestorePoints = await listing(source, 'restorepoints');
  // A mirror copies every restore point SRC lists, also one it cannot read: its name tells damage on the way.
  const restorePointCopies = plan('restorepoints', infos(srcRestorePoints, packsToCopy === 'blobs-target-lacks' ? undefined : chosen.map((rp) => rp.id)));
  const writeSelectionIndex = async () => {
    // Packs DST has but no DST index names: copied just now, or by an interrupted earlier run.
    const present = await listing(target, 'data');
    const unindexed = [...needed].filter((p) => present.has(p) && !dstRepo.hasPack(p));
    if (unindexed.length === 0) return undefined;
    const name = await dstRepo.writeIndexFile(indexRecords(srcRepo, unindexed));
    if (verify) {
      if (contentName(await target.read('index', name)) !== name) {
        throw new StorageError(`${target.location}: index/${name} reads back different from what was written; check the target storage and run the sync again`);
      }
      tally.verified++;
    }
    tally.byType.index.copied++;
    return name;
  };
  return {
    data,
    restorePointCopies,
    restorePoints: packsToCopy === 'blobs-target-lacks' ? srcRestorePoints.size : chosen.length,
    sourceRestorePoints: new Set(srcRestorePoints.keys()),
    writeSelectionIndex,
  };
}

/**
 * Whether the target holds a blob in a form that serves the source's restore points: any copy,
 * but not a page patch where the source reads a whole copy. The source's later patches were
 * sized on its whole copy (their depth counts from it), so on top of the target's patch their
 * chains would be deeper than recorded, maybe past the limit: the whole copy is copied too,
 * and the target's readers then read it (FORMAT.md, "Copies of one blob").
 */
function targetHoldsAsWell(srcRepo: Repository, dstRepo: Repository, id: Buffer): boolean {
  const held = dstRepo.blobLocation(id);
  if (!held) return false;
  const src = srcRepo.blobLocation(id);
  return blobType(held.typeFlags) !== BlobType.Patch || (src !== undefined && blobType(src.typeFlags) === BlobType.Patch);
}

/**
 * Phase 2: copy in the order that keeps DST valid at every moment (key slots,
 * packs, index files, restore points). Objects that do not match their names
 * are not copied; their names are returned.
 */
async function copyPlanned(
  source: Backend,
  target: Backend,
  { keys, data, index, restorePointCopies, writeSelectionIndex }: SyncPlan,
  opts: SyncOptions,
  tally: Tally,
): Promise<{ newIndex?: string; damaged: string[]; retention?: RetentionCoverage }> {
  const all = [...keys, ...data, ...index, ...restorePointCopies];
  const progress: SyncProgress = {
    doneBytes: 0,
    totalBytes: all.reduce((n, c) => n + c.size, 0),
    doneObjects: 0,
    totalObjects: all.length + (writeSelectionIndex ? 1 : 0),
  };
  const damaged: string[] = [];

  // Objects are read into buffers that the next copies reuse (one per copy in flight): no fresh
  // pack-sized buffer per pack. An object of unknown size (0 listed) is read whole.
  const spareBuffers: Uint8Array[] = [];
  const readObject = async (c: PlannedCopy): Promise<{ bytes: Buffer; buffer?: Uint8Array }> => {
    if (c.size === 0) return { bytes: await source.read(c.type, c.name) };
    let buffer = spareBuffers.pop();
    if (!buffer || buffer.length < c.size) buffer = new Uint8Array(c.size + (c.type === 'data' ? 2 * 1024 * 1024 : 0));
    try {
      return { bytes: await source.readRange(c.type, c.name, 0, c.size, buffer), buffer };
    } catch (err) {
      // Shorter than listed: read what is there, which then fails its name like any damaged object.
      if (!(err instanceof TruncatedObjectError)) throw err;
      spareBuffers.push(buffer);
      return { bytes: await source.read(c.type, c.name) };
    }
  };

  const copyOne = async (c: PlannedCopy): Promise<void> => {
    const { bytes, buffer } = await readObject(c);
    try {
      await copyRead(c, bytes);
    } finally {
      if (buffer) spareBuffers.push(buffer);
    }
  };

  const copyRead = async (c: PlannedCopy, bytes: Buffer): Promise<void> => {
    if (!matchesName(c.type, c.name, bytes)) {
      // Never spread damage: DST keeps lacking the object, and the summary says which.
      damaged.push(`${c.type}/${c.name}`);
    } else {
      await target.write(c.type, c.name, bytes);
      if (opts.verify) {
        const back = await target.read(c.type, c.name);
        if (!(c.type === 'keys' ? back.equals(bytes) : matchesName(c.type, c.name, back))) {
          throw new StorageError(
            `${target.location}: ${c.type}/${c.name} reads back different from what was written (${back.length} of ${bytes.length} bytes); check the target storage and run the sync again`,
          );
        }
        tally.verified++;
      }
      tally.byType[c.type].copied++;
      tally.byType[c.type].copiedBytes += bytes.length;
    }
    progress.doneBytes += c.size || bytes.length;
    progress.doneObjects++;
    opts.onProgress?.(progress);
  };

  for (const c of keys) await copyOne(c);
  await forEachLimit(data, opts.concurrency, copyOne);
  let newIndex: string | undefined;
  if (writeSelectionIndex) {
    newIndex = await writeSelectionIndex();
    progress.doneObjects++;
    opts.onProgress?.(progress);
  } else {
    await forEachLimit(index, opts.concurrency, copyOne);
  }
  const secret = opts.selection?.secret ?? opts.mirror?.secret ?? opts.secret;
  const retention = await coverTargetRetention(source, target, restorePointCopies.map((c) => c.name), secret);
  await forEachLimit(restorePointCopies, opts.concurrency, copyOne);
  return { newIndex, damaged, retention };
}

/** Phase 3: key slots DST has and SRC no longer has go from DST (only once DST holds all of SRC's). */
async function removeKeySlotsGoneFromSource(target: Backend, srcKeys: Map<string, number>, dstKeys: Map<string, number>): Promise<string[]> {
  const removedKeySlots: string[] = [];
  if (srcKeys.size > 0) {
    for (const name of dstKeys.keys()) {
      if (srcKeys.has(name)) continue;
      await target.remove('keys', name);
      removedKeySlots.push(name);
    }
  }
  return removedKeySlots;
}
