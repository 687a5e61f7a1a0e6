// Packs the index names but storage cannot serve whole: missing, or shorter
// than their last indexed blob plus the smallest possible header. Found from
// one listing of data/ (sizes only, no reads), so every backup can afford it:
// a backup must never dedupe against a blob it can see is gone, or its new
// restore point would not restore. `ferry repair` (src/repair/) fixes the
// index for good; until then commands step around the damage here.
import { Repository } from './repository';
import { decodeIndexFile } from './indexFile';
import { BlobLocation } from './chunkIndex';
import { BlobType, blobType } from '../crypto/blobCodec';

/**
 * The least a pack can hold after its last blob: the sealed header's nonce and
 * tag (40 bytes) and the 4-byte header length. The header's zstd body is not
 * counted, so a pack shorter than this is short whatever its header held.
 */
export const MIN_PACK_TAIL = 40 + 4;

export interface DamagedPack {
  packId: string;
  /** Size on storage; undefined when the pack is missing. */
  size: number | undefined;
  /** The least size the index implies. */
  expectedAtLeast: number;
}

/** Indexed packs that are missing or short, from one listing. */
export async function findDamagedPacks(repo: Repository, packs?: ReadonlyMap<string, number>): Promise<DamagedPack[]> {
  const sizes = packs ?? (await repo.listPacks());
  const damaged: DamagedPack[] = [];
  repo.packIds.forEach((packId, n) => {
    const end = repo.packEnds[n];
    if (end === undefined) return; // a pack number without indexed blobs
    const size = sizes.get(packId);
    const expectedAtLeast = end + MIN_PACK_TAIL;
    if (size === undefined || size < expectedAtLeast) damaged.push({ packId, size, expectedAtLeast });
  });
  return damaged;
}

export interface Avoided {
  /** Blobs whose only indexed copy is in a damaged pack. */
  lostBlobs: number;
  /** Blobs moved to another indexed copy in an intact pack (stored again by a later backup). */
  relocatedBlobs: number;
}

/** Repositories whose index had blobs dropped by `avoidDamagedPacks(…, 'drop')`. */
const dropped = new WeakSet<Repository>();

/** Whether this open repository's index had blobs of damaged packs dropped: its restore points may name them. */
export function indexHasDroppedBlobs(repo: Repository): boolean {
  return dropped.has(repo);
}

/**
 * Point the in-memory index away from damaged packs. A blob that also sits in
 * an intact pack (stored again after the damage) gets that location, a whole
 * copy rather than a page patch as when the index loads (FORMAT.md, "Copies
 * of one blob"): the in-memory index keeps one location per blob, so the index
 * files are read again to find it. With 'drop' (a
 * backup) blobs with no intact copy leave the index, so they count as new and
 * are stored again; with 'keep' (restore) they stay, and reading one fails
 * with a clear error, or succeeds if it lies before where the pack was cut.
 */
export async function avoidDamagedPacks(repo: Repository, damaged: DamagedPack[], mode: 'drop' | 'keep'): Promise<Avoided> {
  if (damaged.length === 0) return { lostBlobs: 0, relocatedBlobs: 0 };
  const bad = new Set(damaged.map((d) => repo.packNumber(d.packId)));
  const stranded = new Map<string, Buffer>();
  repo.forEachBlob((id, loc) => {
    if (bad.has(loc.pack)) stranded.set(id.toString('hex'), id);
  });
  let relocatedBlobs = 0;
  // An intact page-patch copy is taken only when no intact whole copy turns up.
  const patchCopies = new Map<string, { id: Buffer; loc: BlobLocation }>();
  for (const name of repo.indexFiles) {
    if (stranded.size === 0) break;
    const packs = decodeIndexFile(repo.keys.dataKeys, await repo.backend.read('index', name));
    if (!packs) continue; // damaged since it was loaded: it offers no intact copy
    for (const p of packs) {
      const pack = repo.packNumber(p.packId);
      if (bad.has(pack)) continue;
      for (const e of p.entries) {
        const key = e.id.toString('hex');
        if (!stranded.has(key)) continue;
        const loc = { pack, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags };
        if (blobType(e.typeFlags) === BlobType.Patch) {
          if (!patchCopies.has(key)) patchCopies.set(key, { id: e.id, loc });
          continue;
        }
        stranded.delete(key);
        patchCopies.delete(key);
        repo.relocateBlob(e.id, loc);
        relocatedBlobs++;
      }
    }
  }
  for (const [key, { id, loc }] of patchCopies) {
    stranded.delete(key);
    repo.relocateBlob(id, loc);
    relocatedBlobs++;
  }
  if (mode === 'drop' && stranded.size > 0) {
    for (const id of stranded.values()) repo.dropBlob(id);
    dropped.add(repo);
  }
  return { lostBlobs: stranded.size, relocatedBlobs };
}

/** The one warning line for commands that stepped around damaged packs. */
export function damagedPacksWarning(damaged: DamagedPack[], avoided: Avoided, mode: 'drop' | 'keep'): string {
  const missing = damaged.filter((d) => d.size === undefined).length;
  const short = damaged.length - missing;
  const what = [short ? `${short} short` : '', missing ? `${missing} missing` : ''].filter(Boolean).join(', ');
  const consequence = mode === 'drop'
    ? `${avoided.lostBlobs} blob(s) they held will be stored again by this backup`
    : `${avoided.lostBlobs} blob(s) they held may not restore`;
  return `ferry: warning: ${damaged.length} pack(s) damaged or missing (${what}); ${consequence}; run 'ferry repair'`;
}

/** For readers (restore, export): take a blob from an intact pack when the index also names a damaged one. */
export async function preferIntactCopies(repo: Repository, packs?: ReadonlyMap<string, number>): Promise<void> {
  await avoidDamagedPacks(repo, await findDamagedPacks(repo, packs), 'keep');
}
