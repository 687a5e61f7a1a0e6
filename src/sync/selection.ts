// Which restore points a selective sync copies (`--guest`, `--latest N`), and
// which packs they need: every pack holding one of their region maps or one of
// the chunks those maps name. Needs the keys (region maps are encrypted).
import { BlobType, blobType } from '../crypto/blobCodec';
import { Repository } from '../repo/repository';
import { RestorePointSummary } from '../repo/restorePoint';
import { decodeRegionMap } from '../repo/regionMap';
import { IndexedPack } from '../repo/indexFile';
import { PackEntry } from '../repo/packFormat';
import { CorruptionError, UsageError } from '../errors';
import { forEachLimit } from '../concurrency/forEachLimit';

export interface Selection {
  /** Guests to copy; empty = every guest. */
  guests: string[];
  /** Only the newest N restore points of each guest. */
  latest?: number;
}

export function selectRestorePoints(all: RestorePointSummary[], sel: Selection, location: string): RestorePointSummary[] {
  for (const g of sel.guests) {
    if (!all.some((rp) => rp.guest === g)) {
      throw new UsageError(`--guest ${g}: ${location} has no restore point of guest '${g}'; see 'ferry list'`);
    }
  }
  const chosen = sel.guests.length > 0 ? all.filter((rp) => sel.guests.includes(rp.guest)) : all;
  if (sel.latest === undefined) return chosen;
  const byGuest = new Map<string, RestorePointSummary[]>();
  for (const rp of chosen) byGuest.set(rp.guest, [...(byGuest.get(rp.guest) ?? []), rp]);
  const keep = new Set<string>();
  // `all` is sorted oldest first, so the newest N are at the end.
  for (const list of byGuest.values()) for (const rp of list.slice(-sel.latest)) keep.add(rp.id);
  return chosen.filter((rp) => keep.has(rp.id));
}

/** Pack ids (hex) that the restore points need, resolved through `repo`'s index. */
export async function packsNeeded(repo: Repository, points: RestorePointSummary[]): Promise<Set<string>> {
  const blobs = await blobsNeeded(repo, points);
  return new Set([...new Set(blobs.values())].map((n) => repo.packIds[n]));
}

/**
 * Every blob the restore points need (region maps, chunks, patch bases): hex id → the number of the pack
 * `repo`'s index has it in. With `heldElsewhere` (a copy target's index), a chunk it holds needs no base
 * chain from `repo`: that copy rebuilds from what it holds (a repository keeps the bases of every patch it
 * stores, FORMAT.md rule 5), perhaps whole where `repo` has a patch (rule 7).
 */
export async function blobsNeeded(repo: Repository, points: RestorePointSummary[], heldElsewhere?: (id: Buffer) => boolean): Promise<Map<string, number>> {
  const blobs = new Map<string, number>();
  const mapsSeen = new Set<string>();
  const maps: { mapId: string; regionSize: number; what: string }[] = [];
  for (const listed of points) {
    const rp = await repo.loadRestorePointByName(listed.id); // one point's region maps at a time
    for (const disk of rp.disks) {
      disk.regions.forEach((mapId, r) => {
        if (!mapId || mapsSeen.has(mapId)) return;
        mapsSeen.add(mapId);
        maps.push({ mapId, regionSize: disk.regionSize, what: `region ${r} of ${disk.name} in restore point ${rp.id.slice(0, 8)}` });
      });
    }
  }
  const locate = (id: Buffer, what: string): void => {
    const loc = repo.blobLocation(id);
    if (!loc) {
      throw new CorruptionError(`${repo.location}: ${what} is in no index; run 'ferry check' on the source`, 'index');
    }
    blobs.set(id.toString('hex'), loc.pack);
  };
  // Region maps are small blobs; a few in flight hides the request latency on S3.
  await forEachLimit(maps, 16, async ({ mapId, regionSize, what }) => {
    const id = Buffer.from(mapId, 'hex');
    locate(id, `the region map of ${what}`);
    const entries = decodeRegionMap(await repo.readBlobPlaintext(id), regionSize);
    if (!entries) throw new CorruptionError(`${repo.location}: the region map of ${what} is malformed; run 'ferry check' on the source`, repo.blobObject(id));
    for (const e of entries) {
      const what2 = `chunk ${e.id.toString('hex').slice(0, 16)} of ${what}`;
      locate(e.id, what2);
      // A page patch needs its base chain, which may live in packs of older restore points.
      const loc = repo.blobLocation(e.id);
      if (loc && blobType(loc.typeFlags) === BlobType.Patch && !heldElsewhere?.(e.id)) {
        for (const base of (await repo.blobDependencies(e.id)).slice(1)) locate(base, `the base of ${what2}`);
      }
    }
  });
  return blobs;
}

/** Index records for `packIds`, from what `repo` has in memory (no extra requests). */
export function indexRecords(repo: Repository, packIds: Iterable<string>): IndexedPack[] {
  const wanted = new Map<number, PackEntry[]>();
  const ids = new Map<number, string>();
  for (const packId of packIds) {
    const n = repo.packNumber(packId);
    wanted.set(n, []);
    ids.set(n, packId);
  }
  repo.forEachBlob((id, loc) => {
    wanted.get(loc.pack)?.push({ id, typeFlags: loc.typeFlags, offset: loc.offset, storedLength: loc.storedLength, rawLength: loc.rawLength });
  });
  return [...wanted.entries()].map(([n, entries]) => ({ packId: ids.get(n)!, entries: entries.sort((a, b) => a.offset - b.offset) }));
}
