// `ferry repair`: make the index true again after torn writes and lost files,
// and say exactly what is lost. Runs under the exclusive lock.
//
// 1. Every pack's header is read: the packs' own record of what they hold.
// 2. A pack is damaged when an index names it and it is missing, or its header
//    is unreadable (cut short, overwritten). Blobs of a damaged pack that still
//    authenticate (they lie before where the pack was cut) are salvaged: their
//    sealed bytes go, unchanged, into a new pack. The rest is lost.
// 3. Index files that are damaged, or name a damaged pack, or disagree with a
//    pack's header, are replaced: a new index file names their intact packs and
//    every pack no index names; then they are removed, then damaged packs
//    (a pack with an unreadable header that no index names is left alone).
//    Blobs that are lost are thus in no index, and the next backup of a guest
//    that still has that data stores it again (which makes older restore
//    points that name it whole again: blob ids are content ids).
// 4. Restore points are not changed. Each one that names lost data is
//    reported: which disks, how many bytes, in how many chunks and regions.
import { Repository } from '../repo/repository';
import { IndexedPack, decodeIndexFile } from '../repo/indexFile';
import { PackEntry } from '../repo/packFormat';
import { PackWriter } from '../repo/packWriter';
import { decodeRegionMap } from '../repo/regionMap';
import { StoredRestorePoint } from '../repo/restorePoint';
import { contentName } from '../crypto/chunkId';
import { BlobType, blobType } from '../crypto/blobCodec';
import { CorruptionError } from '../errors';

export interface DamagedPackReport {
  packId: string;
  /** Bytes on storage; undefined when missing. */
  size: number | undefined;
  problem: string;
  salvagedBlobs: number;
  lostBlobs: number;
}

export interface LostDisk {
  name: string;
  size: number;
  /** Data bytes of the disk that can no longer be restored (a lost region map counts its whole region). */
  lostBytes: number;
  lostChunks: number;
  lostRegionMaps: number;
}

export interface AffectedRestorePoint {
  id: string;
  guest: string;
  time: string;
  disks: LostDisk[];
}

export interface RepairReport {
  dryRun: boolean;
  packsRead: number;
  damagedIndexFiles: string[];
  /** Index files removed (replaced by `indexFilesWritten`). */
  indexFilesReplaced: string[];
  indexFilesWritten: number;
  /** Intact packs no kept index file named (an interrupted backup, a lost or replaced index). */
  packsReindexed: number;
  damagedPacks: DamagedPackReport[];
  /**
   * Packs with an unreadable header that no index names: where their blobs lie
   * is unknown, so nothing can be salvaged here, but an index in a copy of the
   * repository may still know. They are left in place.
   */
  unknownPacks: string[];
  salvagedBlobs: number;
  lostBlobs: number;
  /** Restore points that name data the repository no longer holds. */
  affected: AffectedRestorePoint[];
  /** Restore point files that cannot be read at all. */
  damagedRestorePoints: string[];
}

const ENTRIES_PER_INDEX_FILE = 100_000;

export async function repairRepository(repo: Repository, dryRun: boolean, log: (line: string) => void = () => undefined): Promise<RepairReport> {
  // Index files, one by one, so each can be judged on its own.
  const indexFiles = new Map<string, IndexedPack[] | undefined>();
  for await (const info of repo.backend.list('index')) {
    const bytes = await repo.backend.read('index', info.name);
    indexFiles.set(info.name, contentName(bytes) === info.name ? decodeIndexFile(repo.keys.dataKeys, bytes) : undefined);
  }
  const damagedIndexFiles = [...indexFiles].filter(([, packs]) => !packs).map(([name]) => name);

  // What the readable index files say each pack holds (for salvage and for comparison).
  const indexedEntries = new Map<string, PackEntry[]>();
  for (const packs of indexFiles.values()) for (const p of packs ?? []) if (!indexedEntries.has(p.packId)) indexedEntries.set(p.packId, p.entries);

  // Every pack's header.
  const sizes = await repo.listPacks();
  const headers = new Map<string, PackEntry[]>();
  const unreadable = new Set<string>();
  let packsRead = 0;
  for (const [packId, size] of sizes) {
    const entries = await repo.readPackHeader(packId, size);
    packsRead++;
    if (entries) headers.set(packId, entries);
    else unreadable.add(packId);
    if (packsRead % 256 === 0) log(`read ${packsRead} of ${sizes.size} pack headers`);
  }

  // The intact index: every blob of every readable pack.
  for (const [packId, entries] of headers) repo.addPackEntries(packId, entries);

  // Damaged packs: named by an index, but missing or unreadable. Salvage what authenticates.
  const damagedPacks: DamagedPackReport[] = [];
  const salvage: { packId: string; entry: PackEntry; sealed: Buffer }[] = [];
  const lostIds = new Map<string, Buffer>();
  for (const [packId, entries] of indexedEntries) {
    if (headers.has(packId)) continue;
    const size = sizes.get(packId);
    const report: DamagedPackReport = {
      packId,
      size,
      problem: size === undefined ? 'missing' : `header unreadable (${size} bytes on storage; the index needs at least ${Math.max(...entries.map((e) => e.offset + e.storedLength))} for its blobs)`,
      salvagedBlobs: 0,
      lostBlobs: 0,
    };
    for (const e of entries) {
      if (repo.hasBlob(e.id)) continue; // an intact copy exists elsewhere
      const sealed = size !== undefined && e.offset + e.storedLength <= size ? await repo.backend.readRange('data', packId, e.offset, e.storedLength) : undefined;
      if (sealed && authenticates(repo, packId, e, sealed)) {
        salvage.push({ packId, entry: e, sealed });
        report.salvagedBlobs++;
      } else {
        lostIds.set(e.id.toString('hex'), e.id);
        report.lostBlobs++;
      }
    }
    damagedPacks.push(report);
  }
  const unknownPacks = [...unreadable].filter((p) => !indexedEntries.has(p));

  // An index file is kept when it is readable and every pack it names is intact and as its header says.
  const replaced = [...indexFiles].filter(([, packs]) => !packs || packs.some((p) => !sameEntries(p.entries, headers.get(p.packId)))).map(([name]) => name);
  const keptNames = new Set<string>();
  for (const [name, packs] of indexFiles) if (!replaced.includes(name)) for (const p of packs ?? []) keptNames.add(p.packId);
  const toIndex: IndexedPack[] = [...headers].filter(([packId]) => !keptNames.has(packId)).map(([packId, entries]) => ({ packId, entries }));

  let indexFilesWritten = 0;
  if (!dryRun) {
    if (salvage.length > 0) {
      const writer = new PackWriter(repo);
      await writer.fillAndFinish(async () => {
        for (const s of salvage) await writer.add({ id: s.entry.id, typeFlags: s.entry.typeFlags, rawLength: s.entry.rawLength, sealed: s.sealed });
      });
      indexFilesWritten++;
    }
    for (const batch of batches(toIndex, ENTRIES_PER_INDEX_FILE)) {
      await repo.writeIndexFile(batch);
      indexFilesWritten++;
    }
    // Only now that the new index files are durable: remove what they replace.
    for (const name of replaced) await repo.backend.remove('index', name);
    for (const d of damagedPacks) if (d.size !== undefined) await repo.backend.remove('data', d.packId);
  } else {
    // What the index would hold: salvaged blobs are readable where they are.
    for (const s of salvage) repo.addPackEntries(s.packId, [s.entry]);
  }

  // Restore points: which name data that is gone.
  const damagedRestorePoints: string[] = [];
  const points = await repo.listRestorePoints((name) => damagedRestorePoints.push(name));
  const available = new BlobAvailability(repo);
  const affected: AffectedRestorePoint[] = [];
  for (const listed of points) {
    const rp = await repo.loadRestorePointByName(listed.id); // one point's region maps at a time
    const disks = await lostInRestorePoint(repo, rp, available);
    if (disks.length > 0) affected.push({ id: rp.id, guest: rp.guest, time: rp.time, disks });
  }

  return {
    dryRun,
    packsRead,
    damagedIndexFiles,
    indexFilesReplaced: replaced,
    indexFilesWritten,
    packsReindexed: toIndex.length,
    damagedPacks,
    unknownPacks,
    salvagedBlobs: salvage.length,
    lostBlobs: lostIds.size,
    affected,
    damagedRestorePoints,
  };
}

/** The blob's sealed bytes authenticate as this blob (its type and id are bound into the seal). */
function authenticates(repo: Repository, packId: string, e: PackEntry, sealed: Buffer): boolean {
  try {
    repo.unsealBlob({ pack: repo.packNumber(packId), offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags }, e.id, sealed);
    return true;
  } catch (err) {
    if (err instanceof CorruptionError) return false;
    throw err;
  }
}

function sameEntries(indexed: PackEntry[], header: PackEntry[] | undefined): boolean {
  if (!header || header.length !== indexed.length) return false;
  const byId = new Map(header.map((e) => [e.id.toString('hex'), e]));
  return indexed.every((e) => {
    const h = byId.get(e.id.toString('hex'));
    return h !== undefined && h.offset === e.offset && h.storedLength === e.storedLength && h.typeFlags === e.typeFlags;
  });
}

function batches(packs: IndexedPack[], maxEntries: number): IndexedPack[][] {
  const out: IndexedPack[][] = [];
  let current: IndexedPack[] = [];
  let entries = 0;
  for (const p of packs) {
    if (current.length > 0 && entries + p.entries.length > maxEntries) {
      out.push(current);
      current = [];
      entries = 0;
    }
    current.push(p);
    entries += p.entries.length;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Whether a blob can be read whole: indexed, and for a page patch, its base chain too. Memoized. */
class BlobAvailability {
  private readonly known = new Map<string, boolean>();
  constructor(private readonly repo: Repository) {}

  async has(id: Buffer): Promise<boolean> {
    const key = id.toString('hex');
    let ok = this.known.get(key);
    if (ok === undefined) {
      const loc = this.repo.blobLocation(id);
      ok = loc !== undefined;
      if (ok && loc && blobType(loc.typeFlags) === BlobType.Patch) {
        const deps = await this.repo.blobDependencies(id);
        const root = deps[deps.length - 1];
        const rootLoc = this.repo.blobLocation(root);
        ok = rootLoc !== undefined && blobType(rootLoc.typeFlags) !== BlobType.Patch;
      }
      this.known.set(key, ok);
    }
    return ok;
  }
}

async function lostInRestorePoint(repo: Repository, rp: StoredRestorePoint, available: BlobAvailability): Promise<LostDisk[]> {
  const out: LostDisk[] = [];
  for (const disk of rp.disks) {
    const lost: LostDisk = { name: disk.name, size: disk.size, lostBytes: 0, lostChunks: 0, lostRegionMaps: 0 };
    for (const [r, mapId] of disk.regions.entries()) {
      if (!mapId) continue;
      const id = Buffer.from(mapId, 'hex');
      const entries = (await available.has(id)) ? decodeRegionMap(await repo.readBlobPlaintext(id), disk.regionSize) : undefined;
      if (!entries) {
        lost.lostRegionMaps++;
        lost.lostBytes += Math.min(disk.regionSize, disk.size - r * disk.regionSize);
        continue;
      }
      for (const e of entries) {
        if (await available.has(e.id)) continue;
        lost.lostChunks++;
        lost.lostBytes += e.length;
      }
    }
    if (lost.lostBytes > 0) out.push(lost);
  }
  return out;
}
