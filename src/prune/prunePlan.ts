// Which packs prune keeps whole, repacks and deletes: garbage-collection rules
// 4-6 of docs/FORMAT.md. It touches no storage itself: the bases of page
// patches come from `readBase`, which reads one stored copy's body.
//
// Bases are followed per stored copy, not per blob id: two copies of one chunk
// may be patches on different bases, and every patch that stays stored keeps
// its base stored (FORMAT.md: "a base must stay stored as long as a patch
// names it"), also a dead patch inside a pack that stays whole, which the new
// index still names.
//
// Rule 7 (chains) is planned around that: a live patch whose bases nothing
// else needs is taken out of the plan (its stored copies count as garbage, its
// bases are not live), the plan is made, and the rewrite stays only if no pack
// that stays whole still holds a copy of the patch and the bytes this run then
// deletes exceed the whole chunk's; otherwise it is dropped and the plan made
// again. Whatever the rewrites, every stored patch copy still keeps its base.
import { BlobType, blobType } from '../crypto/blobCodec';
import { PackEntry } from '../repo/packFormat';
import { MAX_PATCH_DEPTH } from '../repo/pagePatchFormat';
import { LiveBlobs, LiveGraph } from './liveBlobs';

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
  /** Rule 7: live page patches written whole (type 0, same id) into new packs instead of being copied. */
  rewrite: ChainRewrite[];
}

export interface ChainRewrite {
  /** The patch's id (hex): the chunk it rebuilds. */
  id: string;
  /** Its bases down the chain that no pack keeps once it is whole. */
  freedBases: string[];
  /** Stored bytes this run deletes with it: the patch's copies and those bases' copies. */
  bytesFreed: number;
  /** Sealed bytes of the chunk stored whole. */
  bytesWritten: number;
}

/** What rule 7 needs: the live graph and the cost of a chunk stored whole. */
export interface ChainRewriting {
  graph: Pick<LiveGraph, 'named' | 'baseOf'>;
  /** Sealed bytes of chunk `id` (hex) stored whole (type 0), compressed as a backup would: rule 7's "bytes stored". */
  wholeSize: (id: string) => Promise<number>;
}

export interface PlanOptions {
  /** Repack a pack whose live blobs take less than this share of its blobs' bytes (rule 6; 0.5 by default). */
  repackBelow: number;
  /**
   * The base id a stored page patch (this copy, in this pack) names; throws when its body cannot be read.
   * Asked again for the same copy (ahead of need, and by each plan of a budget): it should read each body once.
   */
  readBase: (pack: PackContents, entry: PackEntry) => Promise<Buffer>;
  /**
   * At most this many bytes of packs (their stored size) are repacked; the
   * packs with the lowest live share go first, the rest stay whole this run.
   */
  maxRepackBytes?: number;
  /** Rewrite patch chains (rule 7); without it bases simply stay. */
  chains?: ChainRewriting;
}

type Need = 'restore-point' | 'stored-patch';

/** Patch bodies read ahead of the one the plan waits for. */
const BASES_READ_AHEAD = 8;

/**
 * The plan. With a repack budget, the packs over it are kept whole and the
 * plan is made again: a pack kept whole keeps its dead patches, whose bases
 * may then need copying out of packs that were to go, so it repeats until
 * what is repacked fits (the set of packs kept whole only grows).
 */
export async function planPrune(packs: readonly PackContents[], live: LiveBlobs, opts: PlanOptions): Promise<PrunePlan> {
  const deferred = new Set<PackContents>();
  // Rule 7's candidates only shrink and the packs kept whole only grow, so this ends.
  const candidates = opts.chains ? chainCandidates(opts.chains.graph) : new Map<string, string[]>();
  // Ids some pack holds whole: the same for every plan of this run.
  const storedWhole = new Set<string>();
  for (const pack of packs) for (const e of pack.entries) if (isWhole(e)) storedWhole.add(e.id.toString('hex'));
  for (;;) {
    const freeable = new Set([...candidates.values()].flat());
    const liveNow = freeable.size === 0 ? live : new Set([...live].filter((hex) => !freeable.has(hex)));
    const plan = await planOnce(packs, liveNow, opts, deferred, new Set(candidates.keys()), storedWhole);
    if (opts.chains && candidates.size > 0) {
      const { rewrite, dropped } = await settleRewrites(plan, candidates, opts.chains);
      if (dropped.length > 0) {
        for (const id of dropped) candidates.delete(id);
        continue;
      }
      plan.rewrite = rewrite;
    }
    if (opts.maxRepackBytes === undefined) return plan;
    const over = overBudget(plan.repack, opts.maxRepackBytes);
    if (over.length === 0) return { ...plan, deferred: plan.keep.filter((p) => deferred.has(p)) };
    for (const r of over) deferred.add(r.pack);
  }
}

/**
 * Rule 7's candidates: each patch a restore point names, with the bases down
 * its chain that no restore point names and no other live patch needs (they
 * stop at the first base something else needs). Patches with none are left out.
 */
function chainCandidates(graph: ChainRewriting['graph']): Map<string, string[]> {
  const namedBy = new Map<string, number>();
  for (const base of graph.baseOf.values()) namedBy.set(base, (namedBy.get(base) ?? 0) + 1);
  const candidates = new Map<string, string[]>();
  for (const patch of graph.baseOf.keys()) {
    if (!graph.named.has(patch)) continue;
    const freed: string[] = [];
    let base = graph.baseOf.get(patch);
    while (base !== undefined && !graph.named.has(base) && namedBy.get(base) === 1 && freed.length <= MAX_PATCH_DEPTH && !freed.includes(base)) {
      freed.push(base);
      base = graph.baseOf.get(base);
    }
    if (freed.length > 0) candidates.set(patch, freed);
  }
  return candidates;
}

/**
 * Which candidates the plan lets pay: none of the patch's copies is in a pack
 * that stays whole (that copy, and so its bases, would stay stored), and the
 * stored bytes this run deletes (the patch's copies, and the copies of its
 * bases the plan keeps nowhere) exceed the whole chunk's.
 */
async function settleRewrites(plan: PrunePlan, candidates: ReadonlyMap<string, string[]>, chains: ChainRewriting): Promise<{ rewrite: ChainRewrite[]; dropped: string[] }> {
  const kept = new Set<string>();
  for (const p of plan.keep) for (const e of p.entries) kept.add(e.id.toString('hex'));
  for (const r of plan.repack) for (const e of r.copy) kept.add(e.id.toString('hex'));
  const deletedBytes = new Map<string, number>();
  for (const pack of [...plan.remove, ...plan.repack.map((r) => r.pack)]) {
    for (const e of pack.entries) {
      const hex = e.id.toString('hex');
      deletedBytes.set(hex, (deletedBytes.get(hex) ?? 0) + e.storedLength);
    }
  }
  const rewrite: ChainRewrite[] = [];
  const dropped: string[] = [];
  for (const [id, bases] of [...candidates].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const freedBases = bases.filter((hex) => !kept.has(hex));
    const bytesFreed = (deletedBytes.get(id) ?? 0) + sum(freedBases.map((hex) => deletedBytes.get(hex) ?? 0));
    const bytesWritten = kept.has(id) || bytesFreed === 0 ? 0 : await chains.wholeSize(id);
    if (kept.has(id) || bytesFreed <= bytesWritten) dropped.push(id);
    else rewrite.push({ id, freedBases, bytesFreed, bytesWritten });
  }
  return { rewrite, dropped };
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

/** One plan; `rewriting`: live patches to be written whole, whose stored copies are not needed. */
async function planOnce(
  packs: readonly PackContents[],
  live: LiveBlobs,
  opts: PlanOptions,
  keepWhole: ReadonlySet<PackContents>,
  rewriting: ReadonlySet<string>,
  storedWhole: ReadonlySet<string>,
): Promise<PrunePlan> {
  const byName = [...packs].sort((a, b) => (a.packId < b.packId ? -1 : a.packId > b.packId ? 1 : 0));
  // A live blob stored twice counts for one pack only, so that of two copies of the same blobs (an
  // interrupted prune's new pack beside its source) one goes: the first in name order holding it
  // whole, else the first holding it at all (a whole copy is the one readers read: isWhole).
  const owner = new Map<string, { pack: PackContents; entry: PackEntry }>();
  for (const pack of byName) {
    for (const e of pack.entries) {
      const hex = e.id.toString('hex');
      if (!live.has(hex) || rewriting.has(hex)) continue;
      if (prefers(owner.get(hex)?.entry, e)) owner.set(hex, { pack, entry: e });
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
      if (owner.get(hex)?.pack === pack) liveBytes += e.storedLength;
    }
    // The share is of the blobs' bytes, not the file's, so a pack that is all live counts 1 whatever its header takes.
    if (keepWhole.has(pack) || (liveBytes > 0 && liveBytes >= opts.repackBelow * blobBytes)) whole.push(pack);
    else others.push(pack);
  }

  // Rule 5: a blob's kept copy is in a pack that stays whole if there is one, else in the first in name
  // order; and a blob stored whole anywhere keeps a whole copy, beside any patch copy a pack kept whole
  // holds (readers read the whole one, and later patches were sized on it: FORMAT.md, "Copies of one blob").
  const kept = new Set<string>();
  const keptWhole = new Set<string>();
  const patchesToFollow: Array<{ pack: PackContents; entry: PackEntry; need: Need }> = [];
  for (const pack of whole) {
    for (const entry of pack.entries) {
      const hex = entry.id.toString('hex');
      kept.add(hex);
      if (isWhole(entry)) keptWhole.add(hex);
      // Restore reads a chunk's whole copy where there is one (kept below): then this patch copy is only stored.
      else patchesToFollow.push({ pack, entry, need: live.has(hex) && !storedWhole.has(hex) ? 'restore-point' : 'stored-patch' });
    }
  }
  const firstCopy = new Map<string, { pack: PackContents; entry: PackEntry }>();
  for (const pack of others) {
    for (const entry of pack.entries) {
      const hex = entry.id.toString('hex');
      if (prefers(firstCopy.get(hex)?.entry, entry)) firstCopy.set(hex, { pack, entry });
    }
  }
  const copies = new Map<PackContents, PackEntry[]>();
  const missing = new Set<string>();
  const missingDeadBases = new Set<string>();
  const require = (hex: string, need: Need) => {
    // A patch being rewritten is stored anew, whole: none of its copies is needed (one in a pack kept whole stays, above).
    if (keptWhole.has(hex) || rewriting.has(hex)) return;
    const copy = firstCopy.get(hex);
    if (kept.has(hex) && !(copy && isWhole(copy.entry))) return;
    if (!copy) {
      (need === 'restore-point' ? missing : missingDeadBases).add(hex);
      return;
    }
    kept.add(hex);
    if (isWhole(copy.entry)) keptWhole.add(hex);
    let list = copies.get(copy.pack);
    if (!list) copies.set(copy.pack, (list = []));
    list.push(copy.entry);
    if (blobType(copy.entry.typeFlags) === BlobType.Patch) patchesToFollow.push({ ...copy, need });
  };
  for (const hex of live) require(hex, 'restore-point');
  // Each kept patch keeps its own base, and so on down its chain.
  const askedAhead = new WeakSet<PackEntry>();
  while (patchesToFollow.length > 0) {
    // The next few are read while this one is awaited (readBase answers a copy it has read from memory).
    for (let i = Math.max(0, patchesToFollow.length - 1 - BASES_READ_AHEAD); i < patchesToFollow.length - 1; i++) {
      const next = patchesToFollow[i];
      if (askedAhead.has(next.entry)) continue;
      askedAhead.add(next.entry);
      opts.readBase(next.pack, next.entry).catch(() => undefined);
    }
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
  return { keep: whole, deferred: [], repack, remove, missing: [...missing], missingDeadBases: [...missingDeadBases], rewrite: [] };
}

/** A whole copy (a chunk or region map), not a page patch. */
function isWhole(entry: PackEntry): boolean {
  return blobType(entry.typeFlags) !== BlobType.Patch;
}

/** Whether `copy` (met later in pack order) is taken over `held`: when none is held, or it is whole and `held` a patch. */
function prefers(held: PackEntry | undefined, copy: PackEntry): boolean {
  return !held || (!isWhole(held) && isWhole(copy));
}
