// The live set of garbage-collection rules 1 and 2 (docs/FORMAT.md): every
// region map a restore point names, every chunk those maps name, and, for page
// patches, their bases down the chain. Anything unsure stops prune before it
// deletes: a live blob no pack holds, a map or patch that cannot be read.
import { CorruptionError } from '../errors';
import { BlobType, blobType } from '../crypto/blobCodec';
import { Repository } from '../repo/repository';
import { StoredRestorePoint } from '../repo/restorePoint';
import { decodeRegionMap } from '../repo/regionMap';

/** Blob ids (hex) that some restore point needs. */
export type LiveBlobs = Set<string>;

/**
 * The live blobs of `points`, read through `repo`'s in-memory index (which
 * must know every pack: index files and unindexed packs alike).
 */
export async function findLiveBlobs(repo: Repository, points: readonly StoredRestorePoint[]): Promise<LiveBlobs> {
  const live: LiveBlobs = new Set();
  for (const point of points) {
    for (const disk of point.disks) {
      for (const mapHex of disk.regions) {
        if (mapHex === null || live.has(mapHex)) continue;
        const mapId = Buffer.from(mapHex, 'hex');
        requireStored(repo, mapId, point, disk.name);
        live.add(mapHex);
        const entries = decodeRegionMap(await readForPrune(repo, mapId, point), disk.regionSize);
        if (!entries) {
          throw new CorruptionError(
            `${repo.location}: region map ${mapHex.slice(0, 16)} of restore point ${point.id.slice(0, 8)} is malformed; prune deletes nothing: run 'ferry check --read-data'`,
            repo.blobObject(mapId),
          );
        }
        for (const entry of entries) await addChunk(repo, live, entry.id, point, disk.name);
      }
    }
  }
  return live;
}

/** A chunk and, when it is a page patch, its base chain (read from the patches' bodies). */
async function addChunk(repo: Repository, live: LiveBlobs, id: Buffer, point: StoredRestorePoint, disk: string): Promise<void> {
  const hex = id.toString('hex');
  if (live.has(hex)) return;
  const loc = requireStored(repo, id, point, disk);
  live.add(hex);
  if (blobType(loc.typeFlags) !== BlobType.Patch) return;
  let chain: Buffer[];
  try {
    chain = await repo.blobDependencies(id);
  } catch (err) {
    throw refusal(repo, `page patch ${hex.slice(0, 16)} of restore point ${point.id.slice(0, 8)} cannot be read (${messageOf(err)})`, id);
  }
  for (const dep of chain.slice(1)) {
    requireStored(repo, dep, point, disk);
    live.add(dep.toString('hex'));
  }
  // blobDependencies stops at a patch whose body it cannot parse, or past the depth limit: its base is unknown.
  const last = chain[chain.length - 1];
  const lastLoc = repo.blobLocation(last);
  if (lastLoc && blobType(lastLoc.typeFlags) === BlobType.Patch) {
    throw refusal(repo, `page patch ${last.toString('hex').slice(0, 16)} (restore point ${point.id.slice(0, 8)}) names no readable base`, last);
  }
}

function requireStored(repo: Repository, id: Buffer, point: StoredRestorePoint, disk: string) {
  const loc = repo.blobLocation(id);
  if (!loc) {
    throw new CorruptionError(
      `${repo.location}: blob ${id.toString('hex').slice(0, 16)} of restore point ${point.id.slice(0, 8)} (disk ${disk}) is in no pack; ` +
        `prune deletes nothing: run 'ferry check', then 'ferry repair' or forget that restore point`,
      'index',
    );
  }
  return loc;
}

async function readForPrune(repo: Repository, id: Buffer, point: StoredRestorePoint): Promise<Buffer> {
  try {
    return await repo.readBlobPlaintext(id);
  } catch (err) {
    throw refusal(repo, `region map ${id.toString('hex').slice(0, 16)} of restore point ${point.id.slice(0, 8)} cannot be read (${messageOf(err)})`, id);
  }
}

function refusal(repo: Repository, what: string, id: Buffer): CorruptionError {
  return new CorruptionError(`${repo.location}: ${what}; prune deletes nothing: run 'ferry check --read-data'`, repo.blobObject(id));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
