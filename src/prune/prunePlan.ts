// Which packs prune keeps whole, repacks and deletes: garbage-collection rules
// 4-6 of docs/FORMAT.md. It touches no storage itself: the bases of page
// patches come from `readBase`, which reads one stored copy's body.
//
// Bases are followed per stored copy, not per blob id: two copies of one chunk
// may be patches on different bases, and every patch that stays stored keeps
// its base stored (FORMAT.md: "a base must stay stored as long as a patch
// names it"), also a dead patch inside a pack that stays whole, which the new
// index still names.
import { BlobType, blobType } from '../crypto/blobCodec';
import { PackEntry } from '../repo/packFormat';
import { LiveBlobs } from './liveBlobs';

export interface PackContents {
  packId: string;
  /** Stored size of the pack file. */
  size: number;
  /** Its blobs, from an index file or its own header (an unindexed pack, rule 4). */
  entries: readonly PackEntry[];
}

export interface Repack {
  pack: PackContents;
  /** The blobs whose kept copy is this pack's: copied into new packs. */
  copy: PackEntry[];
}

export interface PrunePlan {
  /** Packs that stay as they are (only their patches' bodies are read); `deferred` ones included. */
  keep: PackContents[];
  /** Packs that would be repacked but stay whole this run, over the repack budget: a later run repacks them. */
  deferred: PackContents[];
  repack: Repack[];
  /** Packs holding no blob whose kept copy they are. */
  remove: PackContents[];
  /** Blob ids restore points need that no pack holds: prune must refuse (rule 2). */
  missing: string[];
  /** Bases that only dead patches in kept packs name and no pack holds: damage that was there before. */
  missingDeadBases: string[];
}

export interface PlanOptions {
  /** Repack a pack whose live blobs take less than this share of its blobs' bytes (rule 6; 0.5 by default). */
  repackBelow: number;
  /** The base id a stored page patch (this copy, in this pack) names; throws when its body cannot be read. */
  readBase: (pack: PackContents, entry: PackEntry) => Promise<Buffer>;
  /**
   * At most this many bytes of packs (their stored size) are repacked; the
   * packs with the lowest live share go first, the rest stay whole this run.
   */
  maxRepackBytes?: number;
}

type Need = 'restore-point' | 'stored-patch';

/**
 * The plan. With a repack budget, the packs over it are kept whole and the
 * plan is made again: a pack kept whole keeps its dead patches, whose bases
 * may then need copying out of packs that were to go, so it repeats until
 * what is repacked fits (the set of packs kept whole only grows).
 */
export async function planPrune(packs: readonly PackContents[], live: LiveBlobs, opts: PlanOptions): Promise<PrunePlan> {
  const deferred = new Set<PackContents>();
  for (;;) {
    const plan = await planOnce(packs, live, opts, deferred);
    if (opts.maxRepackBytes === undefined) return plan;
    const over = overBudget(plan.repack, opts.maxRepackBytes);
    if (over.length === 0) return { ...plan, deferred: plan.keep.filter((p) => deferred.has(p)) };
    for (const r of over) deferred.add(r.pack);
  }
}

/** The repacks that do not fit the budget when the packs with the lowest live share go first. */
function overBudget(repack: readonly Repack[], maxBytes: number): Repack[] {
  const share = (r: Repack) => sum(r.copy.map((e) => e.storedLength)) / Math.max(1, sum(r.pack.entries.map((e) => e.storedLength)));
  const order = [...repack].sort((a, b) => share(a) - share(b) || (a.pack.packId < b.pack.packId ? -1 : 1));
  let used = 0;
  let full = false;
  const over: Repack[] = [];
  for (const r of order) {
    // In order only: a smaller pack with more live data does not jump the queue. The first one is
    // always taken, even if larger than the budget: every run makes progress.
    if (!full && (used === 0 || used + r.pack.size <= maxBytes)) used += r.pack.size;
    else {
      full = true;
      over.push(r);
    }
  }
  return over;
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

async function planOnce(packs: readonly PackContents[], live: LiveBlobs, opts: PlanOptions, keepWhole: ReadonlySet<PackContents>): Promise<PrunePlan> {
  const byName = [...packs].sort((a, b) => (a.packId < b.packId ? -1 : a.packId > b.packId ? 1 : 0));
  // A live blob stored twice counts for the first pack in name order only, so that of two
  // copies of the same blobs (an interrupted prune's new pack beside its source) one goes.
  const owner = new Map<string, PackContents>();
  for (const pack of byName) {
    for (const e of pack.entries) {
      const hex = e.id.toString('hex');
      if (live.has(hex) && !owner.has(hex)) owner.set(hex, pack);
    }
  }
  const whole: PackContents[] = [];
  const others: PackContents[] = [];
  for (const pack of byName) {
    let liveBytes = 0;
    let blobBytes = 0;
    const seen = new Set<string>();
    for (const e of pack.entries) {
      const hex = e.id.toString('hex');
      if (seen.has(hex)) continue;
      seen.add(hex);
      blobBytes += e.storedLength;
      if (owner.get(hex) === pack) liveBytes += e.storedLength;
    }
    // The share is of the blobs' bytes, not the file's, so a pack that is all live counts 1 whatever its header takes.
    if (keepWhole.has(pack) || (liveBytes > 0 && liveBytes >= opts.repackBelow * blobBytes)) whole.push(pack);
    else others.push(pack);
  }

  // Rule 5: a blob's kept copy is in a pack that stays whole if there is one, else in the first in name order.
  const kept = new Set<string>();
  const patchesToFollow: Array<{ pack: PackContents; entry: PackEntry; need: Need }> = [];
  for (const pack of whole) {
    for (const entry of pack.entries) {
      const hex = entry.id.toString('hex');
      kept.add(hex);
      if (blobType(entry.typeFlags) === BlobType.Patch) patchesToFollow.push({ pack, entry, need: live.has(hex) ? 'restore-point' : 'stored-patch' });
    }
  }
  const firstCopy = new Map<string, { pack: PackContents; entry: PackEntry }>();
  for (const pack of others) {
    for (const entry of pack.entries) {
      const hex = entry.id.toString('hex');
      if (!firstCopy.has(hex)) firstCopy.set(hex, { pack, entry });
    }
  }
  const copies = new Map<PackContents, PackEntry[]>();
  const missing = new Set<string>();
  const missingDeadBases = new Set<string>();
  const require = (hex: string, need: Need) => {
    if (kept.has(hex)) return;
    const copy = firstCopy.get(hex);
    if (!copy) {
      (need === 'restore-point' ? missing : missingDeadBases).add(hex);
      return;
    }
    kept.add(hex);
    let list = copies.get(copy.pack);
    if (!list) copies.set(copy.pack, (list = []));
    list.push(copy.entry);
    if (blobType(copy.entry.typeFlags) === BlobType.Patch) patchesToFollow.push({ ...copy, need });
  };
  for (const hex of live) require(hex, 'restore-point');
  // Each kept patch keeps its own base, and so on down its chain.
  while (patchesToFollow.length > 0) {
    const { pack, entry, need } = patchesToFollow.pop()!;
    require((await opts.readBase(pack, entry)).toString('hex'), need);
  }

  const repack: Repack[] = [];
  const remove: PackContents[] = [];
  for (const pack of others) {
    const copy = copies.get(pack);
    if (copy) repack.push({ pack, copy: [...copy].sort((a, b) => a.offset - b.offset) });
    else remove.push(pack);
  }
  return { keep: whole, deferred: [], repack, remove, missing: [...missing], missingDeadBases: [...missingDeadBases] };
}
