// What restoring one disk takes: every chunk, where it lives (pack, offset)
// and every place it goes in the target, grouped by pack and sorted by offset
// so each pack is read front to back in few large ranges.
import { Repository } from '../repo/repository';
import { DiskRecord } from '../repo/restorePoint';
import { decodeRegionMap } from '../repo/regionMap';
import { BlobLocation } from '../repo/chunkIndex';
import { CorruptionError } from '../errors';
import { Span } from '../dedupe/spans';
import { forEachLimit } from '../concurrency/forEachLimit';

export interface PlannedBlob {
  id: Buffer;
  loc: BlobLocation;
  targets: number[];
}

export interface PackReadPlan {
  packId: string;
  /** Sorted by offset in the pack. */
  blobs: PlannedBlob[];
}

/** The plan for regions [fromRegion, toRegion) of a disk: restores are planned in batches to bound memory. */
export interface RestorePlan {
  disk: DiskRecord;
  /** Byte range of the disk this plan covers. */
  start: number;
  end: number;
  packs: PackReadPlan[];
  /** Byte ranges that hold data, ascending; the rest of [start, end) is zeros. */
  dataSpans: Span[];
  dataBytes: number;
}

export async function restorePlan(repo: Repository, disk: DiskRecord, fromRegion = 0, toRegion = disk.regions.length): Promise<RestorePlan> {
  const maps: { regionStart: number; mapId: string; bytes: Buffer }[] = [];
  const wanted = disk.regions.slice(fromRegion, toRegion).map((id, i) => [fromRegion + i, id] as const);
  await forEachLimit(wanted, 8, async ([r, mapId]) => {
    if (mapId) maps.push({ regionStart: r * disk.regionSize, mapId, bytes: await repo.readBlobPlaintext(Buffer.from(mapId, 'hex')) });
  });
  maps.sort((a, b) => a.regionStart - b.regionStart);
  const byId = new Map<string, PlannedBlob>();
  const dataSpans: Span[] = [];
  let dataBytes = 0;
  for (const { regionStart, mapId, bytes } of maps) {
    const entries = decodeRegionMap(bytes, disk.regionSize);
    if (!entries) throw new CorruptionError(`${repo.location}: region map at disk offset ${regionStart} of ${disk.name} is malformed; run 'ferry check'`, repo.blobObject(Buffer.from(mapId, 'hex')));
    for (const e of entries) {
      const key = e.id.toString('hex');
      let planned = byId.get(key);
      if (!planned) {
        const loc = repo.blobLocation(e.id);
        if (!loc) {
          throw new CorruptionError(
            `${repo.location}: chunk ${key.slice(0, 16)} of ${disk.name} (disk offset ${regionStart + e.offset}) is in no index; run 'ferry check'`,
            'index',
          );
        }
        planned = { id: e.id, loc, targets: [] };
        byId.set(key, planned);
      }
      const start = regionStart + e.offset;
      planned.targets.push(start);
      dataBytes += e.length;
      const last = dataSpans[dataSpans.length - 1];
      if (last && last.end === start) last.end = start + e.length;
      else dataSpans.push({ start, end: start + e.length });
    }
  }
  const byPack = new Map<number, PlannedBlob[]>();
  for (const b of byId.values()) {
    const list = byPack.get(b.loc.pack);
    if (list) list.push(b);
    else byPack.set(b.loc.pack, [b]);
  }
  const packs = [...byPack.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([pack, blobs]) => ({ packId: repo.packIds[pack], blobs: blobs.sort((x, y) => x.loc.offset - y.loc.offset) }));
  const start = fromRegion * disk.regionSize;
  return { disk, start, end: Math.min(disk.size, toRegion * disk.regionSize), packs, dataSpans, dataBytes };
}

/** Group a pack's blobs into read ranges: neighbours closer than `maxGap`, at most `maxRange` bytes. */
export function readRanges(blobs: PlannedBlob[], maxGap = 256 * 1024, maxRange = 16 * 1024 * 1024): { start: number; end: number; blobs: PlannedBlob[] }[] {
  const ranges: { start: number; end: number; blobs: PlannedBlob[] }[] = [];
  for (const b of blobs) {
    const start = b.loc.offset;
    const end = start + b.loc.storedLength;
    const last = ranges[ranges.length - 1];
    if (last && start - last.end <= maxGap && end - last.start <= maxRange) {
      last.end = Math.max(last.end, end);
      last.blobs.push(b);
    } else {
      ranges.push({ start, end, blobs: [b] });
    }
  }
  return ranges;
}
