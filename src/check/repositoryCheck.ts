// `ferry check`: is every object readable and consistent, and (with readData)
// does every stored byte decrypt and hash to its id? Reports each damaged
// object and which restore points it breaks, instead of stopping at the first.
import { Repository } from '../repo/repository';
import { PackEntry } from '../repo/packFormat';
import { decodeRegionMap } from '../repo/regionMap';
import { BlobType, blobType } from '../crypto/blobCodec';
import { CorruptionError } from '../errors';
import { PipelinePool } from '../workers/pipelinePool';
import { oneTaskPerWorker } from '../workers/memoryBudget';
import type { SealedBlobRange } from '../workers/tasks';
import { forEachLimit } from '../concurrency/forEachLimit';
import { NotFoundError } from '../storage/backend';
import { ReadDataSubset, packInSubset } from './readDataSubset';
import { packPieces } from './packPieces';
import { ContentNameHasher } from '../crypto/chunkId';

export interface Damage {
  /** Storage object, as CorruptionError.object names it: `data/<pack id>`, `index/<name>`, `snapshots/<id>`, or `index`. */
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
  /** Of those, packs that restore points need: an index file is missing (their blobs are checked from their own headers). */
  packsMissingFromIndex: number;
  /** Packs whose every byte was read (all with read-data, the subset's with readDataSubset, none otherwise). */
  packsRead: number;
}

/** What the phases find: each damaged object, and the packs and blobs (by hex id) that restore cannot use. */
interface Findings {
  damage: Damage[];
  damagedPacks: Set<number>;
  damagedBlobs: Set<string>;
}

/**
 * How deep `check` looks: the structure (indexes against pack headers), or also every blob's bytes (`--read-data`),
 * or those of a subset of the packs (`--read-data-subset`; the others get the structure check).
 */
export type CheckDepth = 'structure' | 'read-data' | { readDataSubset: ReadDataSubset };

export async function checkRepository(repo: Repository, pool: PipelinePool, depth: CheckDepth, onProgress?: (done: number, total: number) => void): Promise<CheckReport> {
  const readData = depth === 'read-data';
  const readsPack = (packId: string) => readData || (typeof depth === 'object' && packInSubset(packId, depth.readDataSubset));
  const found: Findings = { damage: [], damagedPacks: new Set<number>(), damagedBlobs: new Set<string>() };
  const { stored, unindexedBefore, orphanIds, orphanNumbers } = await loadIndex(repo, found.damage);
  const { blobsVerified, patches, packsRead } = await checkPacks(repo, pool, readsPack, stored, found, onProgress);
  const unindexedPatchDamage = await checkPatches(repo, pool, patches, found, orphanNumbers);
  const { affected, restorePoints, neededOrphans } = await findAffectedRestorePoints(repo, found, orphanNumbers);
  // A page patch in a pack no index names whose base is gone is a killed prune's leftover (FORMAT.md, rule 8),
  // which the next prune deletes: damage only where a restore point needs it.
  if (affected.length > 0) found.damage.push(...unindexedPatchDamage);
  if (neededOrphans.size > 0) {
    // Restore finds these packs from their headers, so no restore point is lost; but the repository is not as written.
    found.damage.push({
      object: 'index',
      problem:
        `the index is missing for ${neededOrphans.size} pack(s) that restore points need (an index file was lost); ` +
        `their blobs were ${readData ? 'verified from the packs themselves' : 'found in the packs\' own headers'}; 'ferry repair' (or the next backup) rebuilds the index`,
    });
  }
  return {
    packs: repo.packIds.length,
    blobsVerified,
    restorePoints,
    damage: dedupeDamage(found.damage),
    affected,
    unindexedPacks: unindexedBefore ?? orphanIds.length,
    packsMissingFromIndex: neededOrphans.size,
    packsRead,
  };
}

/**
 * Phase 1: load the index files (reporting damaged ones) and index the packs
 * no index names from their own headers, as restore reads them.
 */
async function loadIndex(repo: Repository, damage: Damage[]) {
  await repo.loadIndex((name) => damage.push({ object: `index/${name}`, problem: 'index file fails authentication or is malformed' }));
  // The packs a damaged index file named are read from their own headers, as
  // restore does: the restore points they serve are not affected by the loss.
  const stored = await repo.listPacks();
  const unindexedBefore = damage.length > 0 ? [...stored.keys()].filter((p) => !repo.hasPack(p)).length : undefined;
  if (damage.length > 0) await repo.indexOrphanPacks({ keep: 'memory-only', packs: stored });

  // Packs no index names are checked like the others, from their own headers (as restore reads them);
  // whether restore points need them (a lost index) or not (an interrupted backup) is known below.
  const orphanIds = [...stored.keys()].filter((p) => !repo.hasPack(p));
  const orphans = await repo.indexOrphanPacks({ keep: 'memory-only', packs: stored });
  for (const packId of orphans.unreadable) {
    damage.push({ object: `data/${packId}`, problem: 'pack named by no index, and its header is unreadable (truncated or damaged)' });
  }
  const orphanNumbers = new Set(orphanIds.filter((p) => repo.hasPack(p)).map((p) => repo.packNumber(p)));
  return { stored, unindexedBefore, orphanIds, orphanNumbers };
}

/** A page patch that authenticated in the pack pass, with its base's id (hex) when its header reads. */
type PatchToCheck = { id: Buffer; object: string; base?: string };

/**
 * Phase 2: every pack against the index (and, with readData, every blob's bytes).
 * A few packs are in flight at once (oneTaskPerWorker: with readData, one per
 * worker, each being read or verified); what each finds is recorded in pack order.
 */
async function checkPacks(
  repo: Repository,
  pool: PipelinePool,
  readsPack: (packId: string) => boolean,
  stored: Map<string, number>,
  found: Findings,
  onProgress?: (done: number, total: number) => void,
): Promise<{ blobsVerified: number; patches: PatchToCheck[]; packsRead: number }> {
  const byPack: PackEntry[][] = repo.packIds.map(() => []);
  repo.forEachBlob((id, loc) => {
    byPack[loc.pack]?.push({ id, typeFlags: loc.typeFlags, offset: loc.offset, storedLength: loc.storedLength, rawLength: loc.rawLength });
  });

  let blobsVerified = 0;
  let packsRead = 0;
  const patches: PatchToCheck[] = [];
  const totalBytes = repo.packIds.reduce((sum, p) => sum + (readsPack(p) ? stored.get(p) ?? 0 : 0), 0);
  let doneBytes = 0;
  const readBuffers: Uint8Array[] = [];
  const record = (n: number, recordFindings: RecordFindings) => {
    blobsVerified += recordFindings();
    const size = stored.get(repo.packIds[n]);
    if (readsPack(repo.packIds[n]) && size !== undefined) {
      packsRead++;
      doneBytes += size;
      onProgress?.(doneBytes, totalBytes);
    }
  };
  const limit = oneTaskPerWorker(pool.sizing);
  const inFlight: { n: number; examined: Promise<RecordFindings> }[] = [];
  for (let n = 0; n < repo.packIds.length; n++) {
    if (inFlight.length >= limit) {
      const oldest = inFlight.shift()!;
      record(oldest.n, await oldest.examined);
    }
    const examined = examinePack(repo, pool, readsPack(repo.packIds[n]), stored, found, n, byPack[n], patches, readBuffers);
    // Awaited in order below; until then a failure must not count as unhandled.
    examined.catch(() => undefined);
    inFlight.push({ n, examined });
  }
  for (const { n, examined } of inFlight) record(n, await examined);
  return { blobsVerified, patches, packsRead };
}

/** Records one pack's findings (called in pack order, so the report's order does not depend on timing); returns the blobs verified. */
type RecordFindings = () => number;

/**
 * One pack: present, its header, the index's entries against it; with readData, its content
 * (read a piece at a time into buffers from `readBuffers`, which go to a worker and back there).
 */
async function examinePack(
  repo: Repository,
  pool: PipelinePool,
  readData: boolean,
  stored: Map<string, number>,
  found: Findings,
  n: number,
  indexed: PackEntry[],
  patches: PatchToCheck[],
  readBuffers: Uint8Array[],
): Promise<RecordFindings> {
  const { damage, damagedPacks, damagedBlobs } = found;
  const packId = repo.packIds[n];
  const object = `data/${packId.slice(0, 2)}/${packId}`;
  const size = stored.get(packId);
  if (size === undefined) {
    return () => {
      damage.push({ object, problem: 'pack is missing (named by an index)' });
      damagedPacks.add(n);
      return 0;
    };
  }
  const header = await repo.readPackHeader(packId, size).catch(() => undefined);
  // What to verify: the index's entries for this pack and, when readable, the header's (a copy the index does not use is still reported).
  const toVerify = new Map<string, PackEntry>();
  for (const e of [...indexed, ...(header ?? [])]) toVerify.set(`${e.id.toString('hex')}@${e.offset}`, e);
  const fits = [...toVerify.values()].filter((e) => e.offset + e.storedLength <= size);
  const verified = readData ? await verifyInPieces(repo, pool, packId, size, fits, readBuffers) : undefined;

  return () => {
    const actual = verified?.contentName;
    const wrongPack = actual !== undefined && actual !== packId && stored.has(actual);
    if (actual !== undefined && actual !== packId) {
      damage.push({
        object,
        problem: wrongPack
          ? `wrong pack: the file holds pack ${actual.slice(0, 16)}'s content, not its own (packs renamed or swapped)`
          : 'pack content does not match its name (bytes changed or truncated)',
      });
    }
    if (!header) damage.push({ object, problem: `pack header unreadable (truncated or damaged; ${size} bytes on storage); its blobs are checked where the index places them` });
    // A blob is damaged only where restore would read it: at the place the index gives (this pack, that offset).
    const indexedHere = (e: PackEntry) => {
      const loc = repo.blobLocation(e.id);
      return loc !== undefined && loc.pack === n && loc.offset === e.offset;
    };
    const blobDamaged = (e: PackEntry, problem: string) => {
      damage.push({ object, problem: `blob ${e.id.toString('hex').slice(0, 16)} ${problem}` });
      if (indexedHere(e)) damagedBlobs.add(e.id.toString('hex'));
    };
    // (A wrong pack's header is another pack's: comparing it says nothing more; its blobs fail below.)
    if (header && !wrongPack) {
      const inHeader = new Map(header.map((e) => [e.id.toString('hex'), e]));
      const misplaced = indexed.filter((e) => {
        const h = inHeader.get(e.id.toString('hex'));
        return !h || h.offset !== e.offset || h.storedLength !== e.storedLength;
      });
      if (misplaced.length > 0 && misplaced.length === indexed.length && !readData) {
        damage.push({ object, problem: `wrong pack: its header lists none of the ${indexed.length} blobs the index places in it (the file holds another pack's content)` });
      }
      for (const e of misplaced) blobDamaged(e, 'in the index is not where the pack header says');
    }
    for (const e of toVerify.values()) if (e.offset + e.storedLength > size) blobDamaged(e, `at offset ${e.offset} lies past the end of the pack (${size} bytes)`);
    if (!verified) return 0;
    const { bad, patchBases } = verified;
    fits.forEach((e, i) => {
      if (bad.has(i)) blobDamaged(e, `at offset ${e.offset} fails authentication or its id`);
      else if (blobType(e.typeFlags) === BlobType.Patch && indexedHere(e)) patches.push({ id: e.id, object, base: patchBases.get(i) });
    });
    return fits.length - bad.size;
  };
}

/**
 * Every byte of a pack, a piece at a time (packPieces.ts): each piece is hashed here into the
 * pack's name as it arrives and goes to a worker (without a copy) to verify its blobs, while
 * the next piece is read. Returns the indexes into `blobs` that fail, the pack's content name, and
 * each page patch's base id (hex) by its index into `blobs`.
 */
async function verifyInPieces(
  repo: Repository,
  pool: PipelinePool,
  packId: string,
  size: number,
  blobs: readonly PackEntry[],
  readBuffers: Uint8Array[],
): Promise<{ bad: Set<number>; contentName: string; patchBases: Map<number, string> }> {
  const pieceBytes = pool.sizing.readRangeBytes;
  const name = new ContentNameHasher();
  const bad = new Set<number>();
  const patchBases = new Map<number, string>();
  let verifying: Promise<void> = Promise.resolve();
  for (const piece of packPieces(size, blobs, pieceBytes)) {
    const length = piece.end - piece.start;
    const spare = readBuffers.findIndex((b) => b.length >= length);
    const into = spare >= 0 ? readBuffers.splice(spare, 1)[0] : new Uint8Array(Math.max(length, pieceBytes));
    const bytes = await repo.backend.readRange('data', packId, piece.start, length, into);
    name.update(bytes);
    if (piece.blobs.length === 0) {
      readBuffers.push(into); // a header, a gap: hashed only
      continue;
    }
    await verifying;
    const data = bytes.buffer === into.buffer ? into : Uint8Array.from(bytes);
    verifying = pool
      .writeBlobs({
        data,
        blobs: piece.blobs.map((i) => {
          const e = blobs[i];
          return { at: e.offset - piece.start, storedLength: e.storedLength, rawLength: e.rawLength, typeFlags: e.typeFlags, id: e.id, targets: [] };
        }),
      })
      .then((result) => {
        if (result.returned) readBuffers.push(result.returned);
        for (const j of result.bad) bad.add(piece.blobs[j]);
        for (const [j, base] of result.patchBases ?? []) patchBases.set(piece.blobs[j], base);
      });
    // Awaited before the next piece or below; until then a failure must not count as unhandled.
    verifying.catch(() => undefined);
  }
  await verifying;
  return { bad, contentName: name.digest(), patchBases };
}

/**
 * Phase 3: page patches authenticate in the pack pass; that they rebuild their chunk needs the base chain.
 * The pack pass read every patch's base id, so this thread knows each chain without opening anything: it
 * reads the chains' blobs as stored (neighbours in a pack in one read) and the workers open them, lay the
 * patches over the root and check every level's id, a batch of chains per task. A chain checked so
 * checks every older patch in it too, so only the newest patch of each chain (one no other patch names
 * as its base) is rebuilt: a chunk patched on three nights costs one rebuild of three levels, not three
 * rebuilds of six.
 * A patch no chain rebuilt (its own failed, or could not be fetched) is judged again here by reading the
 * chunk (readBlobPlaintext), so the findings and their order are what reading each patch in turn finds.
 * Returns the damage of patches in packs no index names (`orphanNumbers`), kept apart until phase 4.
 */
async function checkPatches(repo: Repository, pool: PipelinePool, patches: PatchToCheck[], { damage, damagedBlobs }: Findings, orphanNumbers: Set<number>): Promise<Damage[]> {
  const toCheck = patches.filter((p) => !damagedBlobs.has(p.id.toString('hex')));
  const baseOf = new Map<string, string>();
  for (const p of toCheck) if (p.base) baseOf.set(p.id.toString('hex'), p.base);
  const bases = new Set(baseOf.values());
  const newest = toCheck.filter((p) => !bases.has(p.id.toString('hex')));
  const rebuilt = await rebuildInWorkers(repo, pool, newest, baseOf);
  const unindexed: Damage[] = [];
  for (const p of toCheck) {
    const hex = p.id.toString('hex');
    if (rebuilt.has(hex)) continue;
    try {
      await repo.readBlobPlaintext(p.id);
    } catch (err) {
      if (!isDamage(err)) throw err;
      const loc = repo.blobLocation(p.id);
      const found = { object: p.object, problem: `page patch ${hex.slice(0, 16)} does not rebuild its chunk (its base is damaged or missing)` };
      (loc && orphanNumbers.has(loc.pack) ? unindexed : damage).push(found);
      damagedBlobs.add(hex);
    }
  }
  return unindexed;
}

/** Chains whose ids are found at once (reads of patch bodies outside a --read-data-subset). */
const CHAINS_FETCHED_AT_ONCE = 8;

/** A patch's chain by id: the patch, its base, …, down to its root (a whole chunk). */
type IdChain = Buffer[];

/**
 * The ids (hex) of every patch in the chains of `patches` that the workers rebuilt and checked level by level.
 * `baseOf` (patch → base, hex) learns the bases read here (a chain into packs the pack pass did not read), so
 * each patch body is read once.
 */
async function rebuildInWorkers(repo: Repository, pool: PipelinePool, patches: PatchToCheck[], baseOf: Map<string, string>): Promise<Set<string>> {
  const rebuilt = new Set<string>();
  const { readRangeBytes } = pool.sizing;
  const found: (IdChain | undefined)[] = new Array(patches.length);
  await forEachLimit([...patches.keys()], CHAINS_FETCHED_AT_ONCE, async (i) => {
    found[i] = await chainOf(repo, patches[i].id, baseOf).catch(skipDamage);
  });
  const chains = found.filter((c): c is IdChain => c !== undefined);
  // In the order the newest patches lie in the packs: the levels below lie in the same order, night by
  // night, so a batch's blobs are mostly neighbours and are read in a few large reads.
  const at = (id: Buffer) => repo.blobLocation(id)!;
  chains.sort((a, b) => at(a[0]).pack - at(b[0]).pack || at(a[0]).offset - at(b[0]).offset);
  // Two half-size batches per worker: one is read while the other is rebuilt (one each of the full
  // size left the workers waiting for the reads half of the time), in the memory one each took.
  const batchBytes = readRangeBytes / 2;
  // Task buffers go to a worker and come back (a chain larger than a batch gets one of its own size, kept
  // for the next such): as many as batches in flight.
  const spareBuffers: Uint8Array[] = [];
  await forEachLimit(chainBatches(repo, chains, batchBytes), 2 * oneTaskPerWorker(pool.sizing), async (batch) => {
    const spare = spareBuffers.findIndex((b) => b.byteLength >= batch.bytes);
    const into = spare >= 0 ? spareBuffers.splice(spare, 1)[0] : new Uint8Array(Math.max(batch.bytes, batchBytes));
    const placed = await readSealedRuns(repo, batch.blobs, into).catch(skipDamage);
    // (Blobs that cannot be read: their patches are judged one by one on this thread.)
    if (!placed) return;
    // Ids as 32-byte copies: a Buffer made from hex is a view of an 8 KiB pool, all of which a task would clone.
    const stored = (id: Buffer) => ({ ...placed.get(id.toString('hex'))!, id: new Uint8Array(id) });
    const chunks = batch.chains.map((chain) => ({ id: new Uint8Array(chain[0]), root: stored(chain[chain.length - 1]), patches: chain.slice(0, -1).reverse().map(stored) }));
    const result = await pool.verifyPatched({ data: into, chunks });
    if (result.returned) spareBuffers.push(result.returned);
    const bad = new Set(result.bad);
    // Every level of a chain was checked against its id: each patch in it rebuilds.
    batch.chains.forEach((chain, k) => {
      if (!bad.has(k)) for (const id of chain.slice(0, -1)) rebuilt.add(id.toString('hex'));
    });
  });
  return rebuilt;
}

/**
 * The chain of patch `id` down to its root, by the bases the pack pass read (one it did not read, in a pack
 * outside a --read-data-subset, is read from the patch here); undefined when it ends at no whole chunk
 * (a base in no index, a patch that does not say its base, deeper than a patch may be).
 */
async function chainOf(repo: Repository, id: Buffer, baseOf: Map<string, string>): Promise<IdChain | undefined> {
  const chain = await repo.blobDependencies(id, async (patch) => {
    const known = baseOf.get(patch.toString('hex'));
    if (known) return Buffer.from(known, 'hex');
    // Read from the bodies down the rest of the chain: every link it learns is kept for the chains after.
    const below = await repo.blobDependencies(patch);
    for (let k = 0; k + 1 < below.length; k++) baseOf.set(below[k].toString('hex'), below[k + 1].toString('hex'));
    return below[1];
  });
  const root = repo.blobLocation(chain[chain.length - 1]);
  return chain.length > 1 && root && blobType(root.typeFlags) !== BlobType.Patch ? chain : undefined;
}

/** Chains in runs whose blobs (each once) fit a task buffer of `bytes` (a larger chain alone). */
function chainBatches(repo: Repository, chains: IdChain[], bytes: number): { chains: IdChain[]; blobs: Buffer[]; bytes: number }[] {
  const batches: { chains: IdChain[]; blobs: Buffer[]; bytes: number }[] = [];
  let current = { chains: [] as IdChain[], blobs: [] as Buffer[], bytes: 0 };
  const held = new Set<string>();
  const storedBytes = (ids: Buffer[]) => ids.reduce((n, id) => n + repo.blobLocation(id)!.storedLength, 0);
  for (const chain of chains) {
    let fresh = chain.filter((id) => !held.has(id.toString('hex')));
    if (current.chains.length > 0 && current.bytes + storedBytes(fresh) > bytes) {
      batches.push(current);
      current = { chains: [], blobs: [], bytes: 0 };
      held.clear();
      fresh = chain;
    }
    for (const id of fresh) held.add(id.toString('hex'));
    current.chains.push(chain);
    current.blobs.push(...fresh);
    current.bytes += storedBytes(fresh);
  }
  if (current.chains.length > 0) batches.push(current);
  return batches;
}

/**
 * `blobs` as stored, laid one after another from the start of `into` (at least their stored lengths
 * together), a pack's neighbours in one read; where each lies (by hex id).
 */
async function readSealedRuns(repo: Repository, blobs: Buffer[], into: Uint8Array): Promise<Map<string, Omit<SealedBlobRange, 'id'>>> {
  const located = blobs.map((id) => ({ id, loc: repo.blobLocation(id)! })).sort((a, b) => a.loc.pack - b.loc.pack || a.loc.offset - b.loc.offset);
  const placed = new Map<string, Omit<SealedBlobRange, 'id'>>();
  let at = 0;
  for (let first = 0; first < located.length; ) {
    // A run: blobs of one pack, each starting where the one before ends.
    let last = first;
    while (last + 1 < located.length && located[last + 1].loc.pack === located[first].loc.pack && located[last + 1].loc.offset === located[last].loc.offset + located[last].loc.storedLength) last++;
    const start = located[first].loc.offset;
    const length = located[last].loc.offset + located[last].loc.storedLength - start;
    const packId = repo.packIds[located[first].loc.pack];
    const view = Buffer.from(into.buffer, into.byteOffset + at, length);
    const got = await repo.backend.readRange('data', packId, start, length, view);
    if (got.length !== length) throw new CorruptionError(`${repo.location}: pack ${packId.slice(0, 16)} ends before offset ${start + length} where its index places blobs`, `data/${packId}`);
    if (got.buffer !== view.buffer || got.byteOffset !== view.byteOffset) got.copy(view);
    for (let k = first; k <= last; k++) {
      const { id, loc } = located[k];
      placed.set(id.toString('hex'), { at: at + loc.offset - start, length: loc.storedLength, typeFlags: loc.typeFlags, rawLength: loc.rawLength });
    }
    at += length;
    first = last + 1;
  }
  return placed;
}

/** What reading a damaged or missing blob throws (anything else, e.g. an I/O error, stops the check). */
function isDamage(err: unknown): boolean {
  return err instanceof CorruptionError || err instanceof NotFoundError;
}

/** Damage found while fetching for the workers: left undecided (undefined), for the main thread to judge. */
function skipDamage(err: unknown): undefined {
  if (!isDamage(err)) throw err;
  return undefined;
}

/**
 * Phase 4: which restore points the damage breaks, and which packs no index
 * names that they need (`orphanNumbers`: packs indexed from their headers).
 */
async function findAffectedRestorePoints(repo: Repository, found: Findings, orphanNumbers: Set<number>) {
  const neededOrphans = new Set<number>();
  const affected: CheckReport['affected'] = [];
  const rps = await repo.listRestorePoints((name) => found.damage.push({ object: `snapshots/${name}`, problem: 'restore point fails authentication' }));
  for (const listed of rps) {
    const rp = await repo.loadRestorePointByName(listed.id); // one point's region maps at a time
    let broken = false;
    for (const disk of rp.disks) {
      for (const mapId of disk.regions) {
        if (!mapId) continue;
        if (!(await regionRestores(repo, found, orphanNumbers, neededOrphans, rp.id, mapId, disk.regionSize))) broken = true;
      }
    }
    if (broken) affected.push({ id: rp.id, guest: rp.guest, time: rp.time });
  }
  return { affected, restorePoints: rps.length, neededOrphans };
}

/** Whether a region (its map and every chunk it lists) restores; notes the orphan packs it needs. */
async function regionRestores(
  repo: Repository,
  { damage, damagedPacks, damagedBlobs }: Findings,
  orphanNumbers: Set<number>,
  neededOrphans: Set<number>,
  rpId: string,
  mapId: string,
  regionSize: number,
): Promise<boolean> {
  const id = Buffer.from(mapId, 'hex');
  const loc = repo.blobLocation(id);
  if (loc && orphanNumbers.has(loc.pack)) neededOrphans.add(loc.pack);
  if (!loc || damagedPacks.has(loc.pack) || damagedBlobs.has(mapId)) {
    if (!loc) damage.push({ object: 'index', problem: `region map ${mapId.slice(0, 16)} of restore point ${rpId.slice(0, 8)} is in no index` });
    return false;
  }
  let entries;
  try {
    entries = decodeRegionMap(await repo.readBlobPlaintext(id), regionSize);
  } catch (err) {
    if (!(err instanceof CorruptionError || err instanceof NotFoundError)) throw err;
    damage.push({ object: `data/${repo.packIds[loc.pack]}`, problem: `region map ${mapId.slice(0, 16)} unreadable: ${(err as Error).message}` });
    return false;
  }
  if (!entries) {
    damage.push({ object: `data/${repo.packIds[loc.pack]}`, problem: `region map ${mapId.slice(0, 16)} is malformed` });
    return false;
  }
  let restores = true;
  for (const e of entries) {
    const hex = e.id.toString('hex');
    const cloc = repo.blobLocation(e.id);
    if (cloc && orphanNumbers.has(cloc.pack)) neededOrphans.add(cloc.pack);
    if (!cloc) {
      damage.push({ object: 'index', problem: `chunk ${hex.slice(0, 16)} of restore point ${rpId.slice(0, 8)} is in no index` });
      restores = false;
    } else if (damagedPacks.has(cloc.pack) || damagedBlobs.has(hex)) {
      restores = false;
    }
  }
  return restores;
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
