// `ferry export-tar`: one restore point as a standard tar that GNU tar reads,
// for someone who does not run ferry. Streamed: disks go out chunk by chunk in
// disk order, zeros for gaps, each chunk authenticated and its keyed id
// checked before a byte of it is written; memory stays bounded by a few read
// ranges, and nothing is written to disk on the way.
//
// Sparse: tar-stream cannot write GNU sparse entries, so disks are plain
// entries and their zero runs travel as zeros (they compress to nothing with
// `| zstd`); `tar --sparse -x`-style holes are left to the extractor
// (`cp --sparse=always`, `fallocate -d`).
import { createHash, Hash } from 'node:crypto';
import { once } from 'node:events';
import * as tar from 'tar-stream';
import { Repository } from '../repo/repository';
import { DiskRecord, StoredRestorePoint } from '../repo/restorePoint';
import { decodeRegionMap } from '../repo/regionMap';
import { BlobLocation } from '../repo/chunkIndex';
import { ChunkHasher } from '../crypto/chunkId';
import { BlobType, blobType } from '../crypto/blobCodec';
import { CorruptionError, StorageError } from '../errors';
import { EXPORT_FORMAT, EXPORT_VERSION, ExportManifest, MANIFEST_NAME, SUMS_NAME, sumsFile } from './manifest';

/** A tar entry being written (tar-stream's Sink, a streamx Writable). */
type EntrySink = ReturnType<tar.Pack['entry']>;

const MiB = 1024 * 1024;
const ZEROS = Buffer.alloc(MiB);
/** Read ranges in flight ahead of the one being written (each at most MAX_RANGE). */
const LOOKAHEAD = 6;
const MAX_RANGE = 8 * MiB;

export interface ExportProgress {
  doneBytes: number;
  totalBytes: number;
}

type Piece =
  | { kind: 'zeros'; length: number }
  | { kind: 'chunks'; packId: string; start: number; end: number; blobs: { id: Buffer; loc: BlobLocation; length: number }[] };

/** File names in the tar: the restore point's own names, made unique and safe. */
function tarNames(rp: StoredRestorePoint): { config?: string; disks: string[] } {
  const used = new Set<string>([MANIFEST_NAME, SUMS_NAME]);
  const pick = (wanted: string, fallback: string): string => {
    let base = wanted.replace(/[/\\\x00-\x1f]/g, '_');
    if (base === '' || base === '.' || base === '..') base = fallback;
    let name = base;
    for (let n = 1; used.has(name); n++) name = `${fallback}-${n}-${base}`;
    used.add(name);
    return name;
  };
  const config = rp.config ? pick(rp.config.fileName, 'config') : undefined;
  return { config, disks: rp.disks.map((d, i) => pick(d.name, `disk${i}`)) };
}

/** The disk as a sequence of zero runs and read ranges, in disk order; region maps are read as needed. */
async function* diskPieces(repo: Repository, disk: DiskRecord): AsyncGenerator<Piece> {
  for (let r = 0; r < disk.regions.length; r++) {
    const regionStart = r * disk.regionSize;
    const regionLength = Math.min(disk.regionSize, disk.size - regionStart);
    const mapId = disk.regions[r];
    if (!mapId) {
      yield { kind: 'zeros', length: regionLength };
      continue;
    }
    const entries = decodeRegionMap(await repo.readBlobPlaintext(Buffer.from(mapId, 'hex')), disk.regionSize);
    if (!entries) {
      throw new CorruptionError(`${repo.location}: region map of ${disk.name} at disk offset ${regionStart} is malformed; run 'ferry check'`, repo.blobObject(Buffer.from(mapId, 'hex')));
    }
    let pos = 0;
    let open: Extract<Piece, { kind: 'chunks' }> | undefined;
    for (const e of entries) {
      const loc = repo.blobLocation(e.id);
      if (!loc) {
        throw new CorruptionError(
          `${repo.location}: chunk ${e.id.toString('hex').slice(0, 16)} of ${disk.name} (disk offset ${regionStart + e.offset}) is in no index; run 'ferry check'`,
          'index',
        );
      }
      const packId = repo.packIds[loc.pack];
      const end = loc.offset + loc.storedLength;
      // Chunks written one after another sit one after another in a pack: one request for the run.
      const extends_ = open && e.offset === pos && open.packId === packId && loc.offset === open.end && end - open.start <= MAX_RANGE;
      if (!extends_) {
        if (open) yield open;
        open = undefined;
        if (e.offset > pos) yield { kind: 'zeros', length: e.offset - pos };
        open = { kind: 'chunks', packId, start: loc.offset, end, blobs: [] };
      }
      open!.end = end;
      open!.blobs.push({ id: e.id, loc, length: e.length });
      pos = e.offset + e.length;
    }
    if (open) yield open;
    if (regionLength > pos) yield { kind: 'zeros', length: regionLength - pos };
  }
}

/** Write to a tar entry, waiting when the tar stream is full (bounded memory). */
async function put(sink: EntrySink, data: Buffer, hash: Hash): Promise<void> {
  hash.update(data);
  if (!sink.write(data)) await once(sink as unknown as NodeJS.EventEmitter, 'drain');
}

async function endEntry(sink: EntrySink, finished: Promise<void>): Promise<void> {
  (sink as unknown as { end(): void }).end();
  await finished;
}

function openEntry(pack: tar.Pack, name: string, size: number, mtime: Date): { sink: EntrySink; finished: Promise<void> } {
  let sink!: EntrySink;
  const finished = new Promise<void>((resolve, reject) => {
    sink = pack.entry({ name, size, mode: 0o644, mtime, type: 'file' }, (err) => (err ? reject(err) : resolve()));
  });
  // Marked handled here; awaited in endEntry, where a failure surfaces.
  finished.catch(() => undefined);
  return { sink, finished };
}

/**
 * Stream `rp` as a tar into `out`. Resolves with the manifest once the last
 * byte is handed to `out`.
 */
export async function exportTar(
  repo: Repository,
  rp: StoredRestorePoint,
  out: NodeJS.WritableStream,
  onProgress?: (p: ExportProgress) => void,
): Promise<ExportManifest> {
  const names = tarNames(rp);
  const mtime = new Date(rp.time);
  const progress: ExportProgress = { doneBytes: 0, totalBytes: rp.disks.reduce((n, d) => n + d.size, 0) };
  const { pack, drained } = tarInto(out);

  const manifest: ExportManifest = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    guest: rp.guest,
    time: rp.time,
    hostname: rp.hostname,
    tags: rp.tags,
    restorePoint: rp.id,
    exported: new Date().toISOString(),
    disks: [],
  };

  try {
    if (rp.config && names.config) manifest.config = await writeConfigEntry(pack, rp.config.content, names.config, mtime);
    const disks = new DiskWriter(repo, pack, mtime, progress, onProgress);
    for (const [i, disk] of rp.disks.entries()) manifest.disks.push(await disks.write(rp, disk, names.disks[i]));
    const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    pack.entry({ name: MANIFEST_NAME, mode: 0o644, mtime }, manifestBytes);
    const manifestSum = createHash('sha256').update(manifestBytes).digest('hex');
    pack.entry({ name: SUMS_NAME, mode: 0o644, mtime }, Buffer.from(sumsFile(manifest, manifestSum)));
    pack.finalize();
    await drained;
    return manifest;
  } catch (err) {
    pack.destroy();
    throw err;
  }
}

/** A tar stream piped into `out` with back-pressure; `drained` settles when the tar's last byte is handed over (or it fails). */
function tarInto(out: NodeJS.WritableStream): { pack: tar.Pack; drained: Promise<void> } {
  const pack = tar.pack();
  const drained = new Promise<void>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => {
      if (!out.write(chunk as Buffer)) {
        pack.pause();
        out.once('drain', () => pack.resume());
      }
    });
    pack.on('end', () => resolve());
    pack.on('error', reject);
    out.on('error', (err: Error) => reject(new StorageError(`writing the tar: ${err.message}`, { cause: err })));
  });
  drained.catch(() => undefined);
  return { pack, drained };
}

/** The guest's config as a tar entry; its manifest record. */
async function writeConfigEntry(pack: tar.Pack, contentBase64: string, name: string, mtime: Date): Promise<NonNullable<ExportManifest['config']>> {
  const content = Buffer.from(contentBase64, 'base64');
  const hash = createHash('sha256');
  const { sink, finished } = openEntry(pack, name, content.length, mtime);
  await put(sink, content, hash);
  await endEntry(sink, finished);
  return { file: name, size: content.length, sha256: hash.digest('hex') };
}

/** Writes disks as raw tar entries: chunks read ahead (LOOKAHEAD ranges), each checked against its id. */
class DiskWriter {
  private readonly hasher: ChunkHasher;

  constructor(
    private readonly repo: Repository,
    private readonly pack: tar.Pack,
    private readonly mtime: Date,
    private readonly progress: ExportProgress,
    private readonly onProgress?: (p: ExportProgress) => void,
  ) {
    this.hasher = new ChunkHasher(repo.keys.idKey);
  }

  /** One disk as the tar entry `name`; its manifest record. */
  async write(rp: StoredRestorePoint, disk: DiskRecord, name: string): Promise<ExportManifest['disks'][number]> {
    const { repo, progress } = this;
    const hash = createHash('sha256');
    const { sink, finished } = openEntry(this.pack, name, disk.size, this.mtime);
    let written = 0;
    const emit = async (data: Buffer): Promise<void> => {
      await put(sink, data, hash);
      written += data.length;
      progress.doneBytes += data.length;
      this.onProgress?.(progress);
    };
    const queue: Promise<Buffer[] | number>[] = [];
    const writeNext = async (): Promise<void> => {
      const ready = await queue.shift()!;
      if (typeof ready === 'number') {
        for (let left = ready; left > 0; left -= ZEROS.length) await emit(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
      } else {
        for (const b of ready) await emit(b);
      }
    };
    for await (const piece of diskPieces(repo, disk)) {
      const p = this.fetch(piece);
      p.catch(() => undefined); // handled when its turn comes in writeNext
      queue.push(p);
      if (queue.length > LOOKAHEAD) await writeNext();
    }
    while (queue.length > 0) await writeNext();
    if (written !== disk.size) {
      throw new CorruptionError(`${repo.location}: restore point ${rp.id.slice(0, 8)} disk ${disk.name}: maps cover ${written} of ${disk.size} bytes`, `snapshots/${rp.id}`);
    }
    await endEntry(sink, finished);
    return { file: name, name: disk.name, size: disk.size, dataBytes: disk.dataBytes, sourcePath: disk.sourcePath, sha256: hash.digest('hex') };
  }

  /** A piece's bytes: a zero run's length, or its chunks read in one request, decoded and checked. */
  private async fetch(piece: Piece): Promise<Buffer[] | number> {
    const { repo, hasher } = this;
    if (piece.kind === 'zeros') return piece.length;
    const sealed = await repo.backend.readRange('data', piece.packId, piece.start, piece.end - piece.start);
    return Promise.all(piece.blobs.map(async (b) => {
      // A page patch is rebuilt from its base chain (and checked against its id) by the repository.
      const plain = blobType(b.loc.typeFlags) === BlobType.Patch
        ? await repo.readBlobPlaintext(b.id)
        : repo.unsealBlob(b.loc, b.id, sealed.subarray(b.loc.offset - piece.start, b.loc.offset - piece.start + b.loc.storedLength));
      if (plain.length !== b.length || !hasher.hash(plain).equals(b.id)) {
        throw new CorruptionError(
          `${repo.objectPath('data', piece.packId)}: chunk ${b.id.toString('hex').slice(0, 16)} does not match its id (damaged); run 'ferry check --read-data'`,
          `data/${piece.packId}`,
        );
      }
      return plain;
    }));
  }
}
