// S3 Object Lock over time: a new restore point is written with a retention
// of N days, but it deduplicates against packs written earlier, whose
// retention runs out sooner. Before such a point is written (its packs and
// index files are already stored), every object it needs — the packs holding
// its region maps, chunks and page-patch bases, the index files naming those
// packs, and the config — whose retention ends before the new objects' gets
// it raised, so immutability covers every restore point until its own
// retention passes (docs/FORMAT.md, "Object Lock").
//
// Raised past that date by a margin (storage/backend.ts, objectLockMargin: a
// tenth of the lock period, at least a day), which packs and index files also
// get when written: a pack every night's point needs is then raised about
// every N/10 days instead of every night, and a pack this backup wrote needs
// no raise, at the cost of being kept that much longer. With
// the retention memo (storage/retentionMemo.ts) an object whose remembered
// retention is long enough costs no request; each object not remembered
// costs one GetObjectRetention, each raise one PutObjectRetention.
import { CorruptionError } from '../errors';
import { BlobType, blobType } from '../crypto/blobCodec';
import { ObjectLock, ObjectType, objectLockMargin } from '../storage/backend';
import { Repository } from './repository';
import { DiskRecord } from './restorePoint';
import { decodeRegionMap } from './regionMap';
import { forEachLimit } from '../concurrency/forEachLimit';

const DAY_MS = 86_400_000;
/** Region maps read and retentions asked for at once: hides S3's latency. */
const IN_FLIGHT = 8;

export interface RetentionCoverage {
  /** Packs, index files and the config the new restore points need. */
  objects: number;
  /** Of those, the ones whose retention was raised. */
  extended: number;
  /** Ended before the new objects' retention (`floor`), raised to this. */
  until: string;
  floor: string;
}

/**
 * Raise the retention of what `disks` need (see top of file). Undefined when
 * the repository's backend writes no retention. The index must know every
 * blob the disks name (after a backup's packs and index files are written).
 */
export async function coverRetention(repo: Repository, disks: readonly DiskRecord[], now = Date.now()): Promise<RetentionCoverage | undefined> {
  const lock = repo.backend.objectLock;
  if (!lock) return undefined;
  const packs = await packsNeeded(repo, disks);
  const objects: { type: ObjectType; name: string }[] = [{ type: 'config', name: 'config' }];
  const indexFiles = new Set<string>();
  for (const packId of packs) {
    objects.push({ type: 'data', name: packId });
    for (const name of repo.indexFilesNaming(packId)) indexFiles.add(name);
  }
  for (const name of indexFiles) objects.push({ type: 'index', name });
  return coverObjectsRetention(lock, objects, now);
}

/** Raise the retention of each of `objects` that ends before the new objects' (see top of file). */
export async function coverObjectsRetention(
  lock: ObjectLock,
  objects: readonly { type: ObjectType; name: string }[],
  now = Date.now(),
): Promise<RetentionCoverage> {
  const floor = new Date(now + lock.days * DAY_MS);
  const until = new Date(floor.getTime() + objectLockMargin(lock.days));
  let extended = 0;
  await forEachLimit(objects, IN_FLIGHT, async ({ type, name }) => {
    if (await raiseIfShort(lock, type, name, floor, until)) extended++;
  });
  return { objects: objects.length, extended, until: until.toISOString(), floor: floor.toISOString() };
}

/** Raise one object's retention to `until` when it ends before `floor`; its mode stays (a COMPLIANCE lock is never turned into GOVERNANCE). */
async function raiseIfShort(lock: ObjectLock, type: ObjectType, name: string, floor: Date, until: Date): Promise<boolean> {
  const current = await lock.retention(type, name);
  if (current && current.until >= floor) return false;
  await lock.extendRetention(type, name, { mode: current?.mode ?? lock.mode, until });
  return true;
}

/** Pack ids holding the disks' region maps, their chunks and the bases of their page patches. */
async function packsNeeded(repo: Repository, disks: readonly DiskRecord[]): Promise<Set<string>> {
  const packs = new Set<string>();
  const locate = (id: Buffer, what: string) => {
    const loc = repo.blobLocation(id);
    if (!loc) {
      throw new CorruptionError(`${repo.location}: ${what} ${id.toString('hex').slice(0, 16)} is in no index; run 'ferry check'`, 'index');
    }
    packs.add(repo.packIds[loc.pack]);
    return loc;
  };
  const maps = new Map<string, number>();
  for (const disk of disks) for (const m of disk.regions) if (m) maps.set(m, disk.regionSize);
  const chunksSeen = new Set<string>();
  await forEachLimit([...maps], IN_FLIGHT, async ([mapHex, regionSize]) => {
    const mapId = Buffer.from(mapHex, 'hex');
    locate(mapId, 'region map');
    const entries = decodeRegionMap(await repo.readBlobPlaintext(mapId), regionSize);
    if (!entries) throw new CorruptionError(`${repo.location}: region map ${mapHex.slice(0, 16)} is malformed; run 'ferry check'`, repo.blobObject(mapId));
    for (const e of entries) {
      const hex = e.id.toString('hex');
      if (chunksSeen.has(hex)) continue;
      chunksSeen.add(hex);
      const loc = locate(e.id, 'chunk');
      // A page patch is read through its bases, which may sit in older packs.
      if (blobType(loc.typeFlags) === BlobType.Patch) {
        for (const base of (await repo.blobDependencies(e.id)).slice(1)) locate(base, 'page-patch base');
      }
    }
  });
  return packs;
}
