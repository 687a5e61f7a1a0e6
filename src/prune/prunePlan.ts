// Which packs prune keeps whole, repacks and deletes: garbage-collection rules
// 4-6 of docs/FORMAT.md. Pure: it decides from the packs' entries and the
// live set, and touches no storage.
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
  /** The live blobs whose kept copy is this pack's: copied into new packs. */
  copy: PackEntry[];
}

export interface PrunePlan {
  /** Packs that stay as they are (never read). */
  keep: PackContents[];
  repack: Repack[];
  /** Packs holding no blob whose kept copy they are. */
  remove: PackContents[];
  /** Live blob ids no pack holds: prune must refuse (rule 2). */
  missing: string[];
}

export interface PlanOptions {
  /** Repack a pack whose live blobs take less than this share of its blobs' bytes (rule 6; 0.5 by default). */
  repackBelow: number;
}

export function planPrune(packs: readonly PackContents[], live: LiveBlobs, opts: PlanOptions): PrunePlan {
  const byName = [...packs].sort((a, b) => (a.packId < b.packId ? -1 : a.packId > b.packId ? 1 : 0));
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
      if (live.has(hex)) liveBytes += e.storedLength;
    }
    // The share is of the blobs' bytes, not the file's, so a pack that is all live counts 1 whatever its header takes.
    if (liveBytes > 0 && liveBytes >= opts.repackBelow * blobBytes) whole.push(pack);
    else others.push(pack);
  }
  // Rule 5: a live blob's kept copy is in a pack that stays whole if there is one, else in the first in name order.
  const kept = new Set<string>();
  for (const pack of whole) for (const e of pack.entries) if (live.has(e.id.toString('hex'))) kept.add(e.id.toString('hex'));
  const repack: Repack[] = [];
  const remove: PackContents[] = [];
  for (const pack of others) {
    const copy: PackEntry[] = [];
    for (const e of pack.entries) {
      const hex = e.id.toString('hex');
      if (!live.has(hex) || kept.has(hex)) continue;
      kept.add(hex);
      copy.push(e);
    }
    if (copy.length > 0) repack.push({ pack, copy });
    else remove.push(pack);
  }
  const missing = [...live].filter((hex) => !kept.has(hex));
  return { keep: whole, repack, remove, missing };
}
