// The live set of garbage-collection rules 1 and 2 (docs/FORMAT.md): every
// region map a restore point names, every chunk those maps name, and, for page
// patches, their bases down the chain. Anything unsure stops prune before it
// deletes: a live blob no pack holds, a map or patch that cannot be read.
import { CorruptionError } from '../errors';
import { BlobType, blobType } from '../crypto/blobCodec';
import { Repository } from '../repo/repository';
import { RestorePointSummary, StoredRestorePoint } from '../repo/restorePoint';
import { decodeRegionMap } from '../repo/regionMap';
import { PatchBaseMemo } from './patchBaseMemo';

/** Blob ids (hex) that some restore point needs. */
export type LiveBlobs = Set<string>;

/** The live blobs and how page patches hang together: what rule 7 (chains) starts from. */
export interface LiveGraph {
  live: LiveBlobs;
  /** Blobs a restore point names itself (region maps and their chunks), not only as some patch's base. */
  named: Set<string>;
  /** Each live page patch → the base its body names (for the copy the in-memory index reads). */
  baseOf: Map<string, string>;
}

export interface LiveGraphOptions {
  /** Ids (hex) some pack stores as a whole chunk (type 0). */
  storedWhole: ReadonlySet<string>;
  /** Where patches' bases are read (each body once per prune). */
  bases: PatchBaseMemo;
}

/**
 * The live blobs of `points`, with which of them restore points name and each
 * live patch's base, read through `repo`'s in-memory index (which must know
 * every pack: index files and unindexed packs alike).
 */
export async function findLiveGraph(repo: Repository, points: readonly RestorePointSummary[], opts: LiveGraphOptions): Promise<LiveGraph> {
  const live: LiveBlobs = new Set();
  const graph: LiveGraph = { live, named: new Set(), baseOf: new Map() };
  const ctx = { graph, storedWhole: opts.storedWhole, bases: opts.bases };
  for (const listed of points) {
    const point = await repo.loadRestorePointByName(listed.id); // one point's region maps at a time
    for (const disk of point.disks) {
      for (const mapHex of disk.regions) {
        if (mapHex === null || live.has(mapHex)) continue;
        const mapId = Buffer.from(mapHex, 'hex');
        requireStored(repo, mapId, point, disk.name);
        live.add(mapHex);
        graph.named.add(mapHex);
        const entries = decodeRegionMap(await readForPrune(repo, mapId, point), disk.regionSize);
        if (!entries) {
          throw new CorruptionError(
            `${repo.location}: region map ${mapHex.slice(0, 16)} of restore point ${point.id.slice(0, 8)} is malformed; prune deletes nothing: run 'ferry check --read-data'`,
            repo.blobObject(mapId),
          );
        }
        // The map's patches are read a few at a time ahead of the walk, which takes them in order.
        const prefetching = opts.bases.prefetch(entries.filter((e) => isPatch(repo, e.id) && !live.has(e.id.toString('hex'))).map((e) => e.id));
        for (const entry of entries) {
          graph.named.add(entry.id.toString('hex'));
          await addChunk(repo, ctx, entry.id, point, disk.name);
        }
        await prefetching;
      }
    }
  }
  return graph;
}

/** A chunk and, when it is a page patch, its base chain (read from the patches' bodies). */
async function addChunk(repo: Repository, ctx: { graph: LiveGraph; storedWhole: ReadonlySet<string>; bases: PatchBaseMemo }, id: Buffer, point: StoredRestorePoint, disk: string): Promise<void> {
  const { graph } = ctx;
  const { live } = graph;
  const hex = id.toString('hex');
  if (live.has(hex)) return;
  const loc = requireStored(repo, id, point, disk);
  live.add(hex);
  // A chunk also stored whole (e.g. by rule 7 in a prune killed before its index files) needs no base; a patch
  // copy of it that stays stored still keeps its own (prunePlan.ts follows every kept copy).
  if (blobType(loc.typeFlags) !== BlobType.Patch || ctx.storedWhole.has(hex)) return;
  let chain: Buffer[];
  try {
    chain = await repo.blobDependencies(id, (patchId) => ctx.bases.ofIndexed(patchId));
  } catch (err) {
    throw refusal(repo, `page patch ${hex.slice(0, 16)} of restore point ${point.id.slice(0, 8)} cannot be read (${messageOf(err)})`, id);
  }
  for (let i = 1; i < chain.length; i++) {
    requireStored(repo, chain[i], point, disk);
    live.add(chain[i].toString('hex'));
    graph.baseOf.set(chain[i - 1].toString('hex'), chain[i].toString('hex'));
  }
  // blobDependencies stops at a patch whose body it cannot parse, or past the depth limit: its base is unknown.
  const last = chain[chain.length - 1];
  const lastLoc = repo.blobLocation(last);
  if (lastLoc && blobType(lastLoc.typeFlags) === BlobType.Patch) {
    throw refusal(repo, `page patch ${last.toString('hex').slice(0, 16)} (restore point ${point.id.slice(0, 8)}) names no readable base`, last);
  }
}

function isPatch(repo: Repository, id: Buffer): boolean {
  const loc = repo.blobLocation(id);
  return loc !== undefined && blobType(loc.typeFlags) === BlobType.Patch;
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
