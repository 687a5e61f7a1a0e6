// `ferry check`: is every object readable and consistent, and (with readData)
// does every stored byte decrypt and hash to its id? Reports each damaged
// object and which restore points it breaks, instead of stopping at the first.
import { Repository } from '../repo/repository';
import { PackEntry, decodePackHeader } from '../repo/packFormat';
import { decodeRegionMap } from '../repo/regionMap';
import { contentName } from '../crypto/chunkId';
import { BlobType, blobType } from '../crypto/blobCodec';
import { CorruptionError } from '../errors';
import { PipelinePool } from '../workers/pipelinePool';
import { NotFoundError } from '../storage/backend';

export interface Damage {
  /** Storage object, e.g. `data/ab/ab12…` or `index/…`. */
  object: string;
  problem: string;
}

export interface CheckReport {
  packs: number;
  blobsVerified: number;
  restorePoints: number;
  damage: Damage[];
  /** Restore points that cannot be restored bit-exact. */
  affected: { id: string; guest: string; time: string }[];
  /** Packs not named by any index (left by an interrupted backup; reused by the next one). */
  unindexedPacks: number;
}

export async function checkRepository(repo: Repository, pool: PipelinePool, readData: boolean, onProgress?: (done: number, total: number) => void): Promise<CheckReport> {
  const damage: Damage[] = [];
  const damagedPacks = new Set<number>();
  const damagedBlobs = new Set<string>();
  await repo.loadIndex((name) => damage.push({ object: `index/${name}`, problem: 'index file fails authentication or is malformed' }));

  const stored = new Map<string, number>();
  for await (const p of repo.backend.list('data')) stored.set(p.name, p.size);

  const byPack: PackEntry[][] = repo.packIds.map(() => []);
  repo.index.forEach((id, loc) => {
    byPack[loc.pack]?.push({ id, typeFlags: loc.typeFlags, offset: loc.offset, storedLength: loc.storedLength, rawLength: loc.rawLength });
  });

  let blobsVerified = 0;
  const patches: { id: Buffer; object: string }[] = [];
  const totalBytes = [...stored.values()].reduce((a, b) => a + b, 0);
  let doneBytes = 0;
  for (let n = 0; n < repo.packIds.length; n++) {
    const packId = repo.packIds[n];
    const object = `data/${packId.slice(0, 2)}/${packId}`;
    const size = stored.get(packId);
    const fail = (problem: string) => {
      damage.push({ object, problem });
      damagedPacks.add(n);
    };
    if (size === undefined) {
      fail('pack is missing (named by an index)');
      continue;
    }
    let header: PackEntry[] | undefined;
    let content: Buffer | undefined;
    if (readData) {
      content = await repo.backend.read('data', packId);
      if (contentName(content) !== packId) damage.push({ object, problem: 'pack content does not match its name (bytes changed or truncated)' });
      header = content.length >= 4 ? decodePackHeader(repo.keys.dataKeys, content.length, content) : undefined;
    } else {
      header = await repo.readPackHeader(packId, size).catch(() => undefined);
    }
    if (!header) {
      fail(`pack header unreadable (truncated or damaged; ${size} bytes on storage)`);
      continue;
    }
    const inHeader = new Map(header.map((e) => [e.id.toString('hex'), e]));
    for (const e of byPack[n]) {
      const h = inHeader.get(e.id.toString('hex'));
      if (!h || h.offset !== e.offset || h.storedLength !== e.storedLength) {
        damage.push({ object, problem: `blob ${e.id.toString('hex').slice(0, 16)} in the index is not where the pack header says` });
        damagedBlobs.add(e.id.toString('hex'));
      }
    }
    if (content) {
      const data = new Uint8Array(new ArrayBuffer(content.length));
      data.set(content);
      const result = await pool.writeBlobs({
        data,
        blobs: header.map((e) => ({ at: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags, id: e.id, targets: [] })),
      });
      blobsVerified += header.length - result.bad.length;
      for (const e of header) if (blobType(e.typeFlags) === BlobType.Patch) patches.push({ id: e.id, object });
      for (const i of result.bad) {
        const e = header[i];
        damage.push({ object, problem: `blob ${e.id.toString('hex').slice(0, 16)} at offset ${e.offset} fails authentication or its id` });
        damagedBlobs.add(e.id.toString('hex'));
      }
      doneBytes += size;
      onProgress?.(doneBytes, totalBytes);
    }
  }
  // Page patches authenticate in the pack pass; that they rebuild their chunk needs the base chain.
  for (const p of patches) {
    const hex = p.id.toString('hex');
    if (damagedBlobs.has(hex)) continue;
    try {
      await repo.readBlob(p.id);
    } catch (err) {
      if (!(err instanceof CorruptionError || err instanceof NotFoundError)) throw err;
      damage.push({ object: p.object, problem: `page patch ${hex.slice(0, 16)} does not rebuild its chunk (its base is damaged or missing)` });
      damagedBlobs.add(hex);
    }
  }
  const unindexedPacks = [...stored.keys()].filter((p) => !repo.hasPack(p)).length;

  const affected: CheckReport['affected'] = [];
  const rps = await repo.listRestorePoints((name) => damage.push({ object: `snapshots/${name}`, problem: 'restore point fails authentication' }));
  for (const rp of rps) {
    let broken = false;
    for (const disk of rp.disks) {
      for (const mapId of disk.regions) {
        if (!mapId) continue;
        const id = Buffer.from(mapId, 'hex');
        const loc = repo.blobLocation(id);
        if (!loc || damagedPacks.has(loc.pack) || damagedBlobs.has(mapId)) {
          if (!loc) damage.push({ object: 'index', problem: `region map ${mapId.slice(0, 16)} of restore point ${rp.id.slice(0, 8)} is in no index` });
          broken = true;
          continue;
        }
        let entries;
        try {
          entries = decodeRegionMap(await repo.readBlob(id), disk.regionSize);
        } catch (err) {
          if (!(err instanceof CorruptionError || err instanceof NotFoundError)) throw err;
          damage.push({ object: `data/${repo.packIds[loc.pack]}`, problem: `region map ${mapId.slice(0, 16)} unreadable: ${(err as Error).message}` });
          broken = true;
          continue;
        }
        if (!entries) {
          damage.push({ object: `data/${repo.packIds[loc.pack]}`, problem: `region map ${mapId.slice(0, 16)} is malformed` });
          broken = true;
          continue;
        }
        for (const e of entries) {
          const hex = e.id.toString('hex');
          const cloc = repo.blobLocation(e.id);
          if (!cloc) {
            damage.push({ object: 'index', problem: `chunk ${hex.slice(0, 16)} of restore point ${rp.id.slice(0, 8)} is in no index` });
            broken = true;
          } else if (damagedPacks.has(cloc.pack) || damagedBlobs.has(hex)) {
            broken = true;
          }
        }
      }
    }
    if (broken) affected.push({ id: rp.id, guest: rp.guest, time: rp.time });
  }
  return { packs: repo.packIds.length, blobsVerified, restorePoints: rps.length, damage: dedupeDamage(damage), affected, unindexedPacks };
}

function dedupeDamage(list: Damage[]): Damage[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const key = `${d.object}\0${d.problem}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
