// Worker-thread side of the backup and restore pipelines. Each worker holds its
// own zstd contexts, scratch buffers for compressing and opening blobs, and one
// read window (WorkerSetup.windowBytes, a few MiB, not a whole region), reused
// across tasks: a fresh Buffer per chunk would cut read throughput by ~4x, and
// fresh pages cost page faults and memory.
import * as fs from 'node:fs';
import { workerData, move, transferableSymbol, valueSymbol } from 'piscina';
import { Chunker } from '../dedupe/chunker';
import { gearTable } from '../dedupe/gearTable';
import { nonZeroSpans, nonZeroSpansOf } from '../dedupe/zeroRuns';
import { RegionFingerprinter } from '../dedupe/regionFingerprint';
import { Span, clipSpans, complementSpans } from '../dedupe/spans';
import { ChunkHasher } from '../crypto/chunkId';
import { BlobDecoder, BlobEncoder, BlobType, blobType } from '../crypto/blobCodec';
import { differingPages, touchedPages, worthPatching } from '../dedupe/pagePatch';
import { applyPatch, decodePatchHeader, encodePatch, patchBytesAtMost } from '../repo/pagePatchFormat';
import {
  PackChunksTask, ScanRegionResult, ScanRegionTask, SealChangedTask, SealedBlobs, WorkerSetup, WriteBlobsResult, WriteBlobsTask,
  WritePatchedTask, DataRange, SealedChain, VerifyPatchedTask,
} from './tasks';

/** What a worker keeps across tasks: codecs and its buffers, made from the pool's setup. */
export interface WorkerState {
  setup: WorkerSetup;
  hasher: ChunkHasher;
  chunker: Chunker;
  encoder: BlobEncoder;
  decoder: BlobDecoder;
  /** The read window: scans go through it, and packChunks reads one chunk at a time into it. */
  window: Buffer;
}

export function workerState(setup: WorkerSetup): WorkerState {
  const maxBytes = Math.max(setup.chunker.maxSize, setup.chunker.avgSize);
  // The read window is the chunker's own buffer: scans cut it where it lies (no copy into WebAssembly memory).
  const chunker = new Chunker(setup.chunker, gearTable(Buffer.from(setup.gearKey)), { bufferBytes: Math.max(setup.windowBytes, 2 * maxBytes) });
  return {
    setup,
    hasher: new ChunkHasher(Buffer.from(setup.idKey)),
    chunker,
    encoder: new BlobEncoder(Buffer.from(setup.dataKey), setup.compressionLevel),
    decoder: new BlobDecoder(setup.dataKeys.map((k) => Buffer.from(k))),
    window: chunker.buffer,
  };
}

/** This thread's state: a worker's from its workerData; on the main thread, the in-process pool's, set per call. */
let state: WorkerState = workerData ? workerState(workerData as WorkerSetup) : (undefined as unknown as WorkerState);

function readFully(fd: number, buf: Buffer, at: number, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, at + done, length - done, position + done);
    if (n === 0) throw new Error(`unexpected end of image at byte ${position + done}`);
    done += n;
  }
}

/**
 * A region's bytes as a scan sees them (its data extents read from the image,
 * zeros in its holes), held a window at a time.
 */
class RegionWindow {
  private from = 0;
  private to = 0;
  /** While set, every read goes into the region's fingerprint too. */
  fingerprinter?: RegionFingerprinter;

  constructor(
    private readonly fd: number,
    private readonly task: ScanRegionTask,
  ) {}

  /** Region bytes [start, end), read into the window unless it holds them; end - start ≤ the window's size. */
  view(start: number, end: number): Buffer {
    if (start < this.from || end > this.to) this.fill(start, Math.min(this.task.regionLength, start + state.window.length));
    return state.window.subarray(start - this.from, end - this.from);
  }

  private fill(from: number, to: number): void {
    const extents = clipSpans(this.task.dataExtents, from, to);
    for (const h of complementSpans(extents, to - from)) state.window.fill(0, h.start, h.end);
    for (const e of extents) readFully(this.fd, state.window, e.start, e.end - e.start, this.task.regionStart + from + e.start);
    this.fingerprinter?.feed(from, to, state.window);
    this.from = from;
    this.to = to;
  }
}

export function scanRegion(task: ScanRegionTask): ScanRegionResult {
  const fd = fs.openSync(task.path, 'r');
  const offsets: number[] = [];
  const lengths: number[] = [];
  const ids: Buffer[] = [];
  let fingerprint: Buffer | undefined;
  let sameAsPrevious = false;
  let nonZeroBytes = 0;
  try {
    const bytes = new RegionWindow(fd, task);
    // Pass 1 finds the zero runs and takes the fingerprint, pass 2 cuts and hashes the spans between them, each through the window.
    bytes.fingerprinter = new RegionFingerprinter(Buffer.from(state.setup.fingerprintKey), task.regionLength, task.dataExtents);
    const spans = nonZeroSpansOf((start, end) => bytes.view(start, end), task.regionLength, complementSpans(task.dataExtents, task.regionLength));
    fingerprint = bytes.fingerprinter.digest();
    bytes.fingerprinter = undefined;
    nonZeroBytes = spans.reduce((n, s) => n + s.end - s.start, 0);
    // The same bytes as when the previous map was made: that map is this region's map.
    sameAsPrevious = fingerprint !== undefined && task.previousFingerprint !== undefined && fingerprint.equals(task.previousFingerprint);
    for (const span of sameAsPrevious ? [] : spans) {
      for (let at = span.start; at < span.end; ) {
        const decided = bytes.view(at, Math.min(span.end, at + state.chunker.maxBytes));
        const len = state.chunker.nextLength(decided, 0, decided.length, task.regionStart + at);
        offsets.push(at);
        lengths.push(len);
        ids.push(state.hasher.hash(decided.subarray(0, len)));
        at += len;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  const readBytes = task.dataExtents.reduce((n, e) => n + e.end - e.start, 0);
  return { offsets, lengths, ids: Buffer.concat(ids), readBytes, fingerprint, sameAsPrevious, nonZeroBytes };
}

/** An old chunk a new chunk may be stored against (new byte i is old byte shift + i), and the new chunk's pages that differ from it. */
interface PatchBase {
  id: Uint8Array;
  depth: number;
  pages: number[] | undefined;
  shift: number;
}

/** Accumulates sealed blobs into one owned buffer that is transferred, not copied, back. */
class SealedCollector {
  private total = 0;
  /**
   * Sealed blobs are written straight into one buffer sized for the worst case
   * (every blob stored raw): no per-blob copies to gather. Its unused tail is
   * never touched, so it costs address space, not memory.
   */
  private readonly data: Uint8Array;
  readonly meta: Omit<SealedBlobs, 'data'> = { typeFlags: [], rawLengths: [], starts: [] };

  constructor(plainBytes: number, maxBlobs: number, recycled?: Uint8Array) {
    const need = plainBytes + maxBlobs * BLOB_SLACK;
    this.data = recycled && recycled.buffer.byteLength >= need
      ? new Uint8Array(recycled.buffer)
      : new Uint8Array(new ArrayBuffer(need <= state.setup.sealOutputBytes ? state.setup.sealOutputBytes : need));
  }

  /** Seal a chunk, as a page patch against `base` when few pages changed. */
  add(id: Buffer, plain: Buffer, base?: PatchBase): void {
    const out = this.data.subarray(this.total);
    const blob = base && worthPatching(base.pages, plain.length, base.depth)
      ? state.encoder.encodeInto(BlobType.Patch, id, encodePatch(base.id, base.depth, plain, base.pages, base.shift, patchEncodeScratch(plain.length)), out)
      : state.encoder.encodeInto(BlobType.Data, id, plain, out);
    this.meta.starts.push(this.total);
    this.meta.typeFlags.push(blob.typeFlags);
    this.meta.rawLengths.push(blob.rawLength);
    this.total += blob.length;
  }

  /** `alsoBack`: a buffer the task brought that goes back with the result (moved, not copied) for the caller to fill again. */
  result<T extends object>(extra: T, alsoBack?: Uint8Array): unknown {
    this.meta.starts.push(this.total);
    const data = this.data;
    const back = alsoBack && alsoBack.buffer !== data.buffer && alsoBack.byteOffset === 0 && alsoBack.byteLength === alsoBack.buffer.byteLength ? alsoBack : undefined;
    const value = { ...extra, ...this.meta, data, ...(back ? { returnedBases: back } : {}) };
    return move({ [transferableSymbol]: back ? [data.buffer, back.buffer] : [data.buffer], [valueSymbol]: value } as unknown as ArrayBuffer);
  }
}

/** Room per blob beyond its plaintext: seal overhead plus a page patch's header and page list. */
const BLOB_SLACK = 256;

export function packChunks(task: PackChunksTask): unknown {
  const fd = fs.openSync(task.path, 'r');
  const sealed = new SealedCollector(task.lengths.reduce((n, l) => n + l, 0), task.lengths.length, task.recycled);
  let builtBase = -1;
  let built: Buffer | undefined;
  try {
    for (let i = 0; i < task.offsets.length; i++) {
      const len = task.lengths[i];
      readFully(fd, state.window, 0, len, task.regionStart + task.offsets[i]);
      const plain = state.window.subarray(0, len);
      const id = Buffer.from(task.ids.subarray(i * 32, i * 32 + 32));
      // The bytes were hashed moments ago; if they differ now the image is being written to.
      if (!state.hasher.hash(plain).equals(id)) {
        throw new Error(
          `${task.path} changed while it was being read (at byte ${task.regionStart + task.offsets[i]}); back up a snapshot or a paused guest`,
        );
      }
      const b = task.bases?.of[i] ?? -1;
      const bases = task.bases;
      let base: Buffer | undefined;
      if (bases && b >= 0) {
        // New chunks that share a base follow each other: it is rebuilt once for them.
        if (b !== builtBase) {
          built = rebuildChain(Buffer.from(bases.data.buffer, bases.data.byteOffset, bases.data.byteLength), bases.chains[b], bases.ids.subarray(b * 32, b * 32 + 32), windowTailScratches());
          builtBase = b;
        }
        if (!built) return sealed.result({ damagedBase: b }, bases.data);
        base = built;
      }
      sealed.add(id, plain, base && bases
        ? { id: bases.ids.subarray(b * 32, b * 32 + 32), depth: bases.chains[b].patches.length, pages: differingPages(base, plain, bases.shifts[i]), shift: bases.shifts[i] }
        : undefined);
    }
  } finally {
    fs.closeSync(fd);
  }
  // The bases' buffer goes back too: a fresh one per task would pile up in this isolate until its next full GC.
  return sealed.result({}, task.bases?.data);
}

export function sealChanged(task: SealChangedTask): unknown {
  const window = state.window;
  const total = task.spans.reduce((n, s) => n + s.end - s.start, 0);
  // The batch's bytes go into the window's first half; copies of its old chunks rebuilt from the
  // repository, the page-patch bases, into the second. Read from a whole-disk snapshot, they are the batch's own bytes.
  const needed = task.oldsInSnapshot ? total : 2 * total;
  if (needed > window.length) throw new RangeError(`sealChanged: a batch of ${total} bytes needs ${needed} bytes of the ${window.length}-byte window`);
  // The spans lie one after another in the window: region offset `pos` of span k is window byte inWindow(k, pos).
  const spanAt: number[] = [];
  task.spans.reduce((at, s) => (spanAt.push(at), at + s.end - s.start), 0);
  const spanOf = (pos: number) => {
    let k = 0;
    while (task.spans[k].end <= pos) k++;
    return k;
  };
  const inWindow = (pos: number) => {
    const k = spanOf(pos);
    return spanAt[k] + pos - task.spans[k].start;
  };
  // Chunks: at most one per 4 KiB block plus a few per span and old chunk.
  const sealed = new SealedCollector(total, Math.ceil(total / 4096) + 2 * (task.spans.length + task.olds.length) + 16, task.recycled);
  if (task.oldsInSnapshot) return sealChangedInSnapshot(task, task.oldsInSnapshot, sealed, inWindow, total);
  window.fill(0, 0, total);
  const oldChunks = window.subarray(total);
  const olds: OldChunk[] = [];
  let at = 0;
  for (let i = 0; i < task.olds.length; i++) {
    const o = task.olds[i];
    const bases = task.bases!;
    const id = bases.ids.subarray(i * 32, i * 32 + 32);
    const length = o.end - o.start;
    // Rebuilt in place: the chain's last level lands in `data`, the level before in the chunk's own place in the batch.
    const data = oldChunks.subarray(at, at + length);
    const place = window.subarray(inWindow(o.start), inWindow(o.start) + length);
    const depth = bases.chains[i].patches.length;
    const built = rebuildChain(Buffer.from(bases.data.buffer, bases.data.byteOffset, bases.data.byteLength), bases.chains[i], id, depth % 2 === 1 ? [data, place] : [place, data]);
    if (!built || built.length !== length) return sealed.result({ offsets: [], lengths: [], ids: new Uint8Array(0), readBytes: 0, damagedBase: i }, bases.data);
    if (built.buffer !== data.buffer || built.byteOffset !== data.byteOffset) built.copy(data);
    data.copy(place);
    olds.push({ ...o, data, id, depth });
    at += length;
  }
  let readBytes = 0;
  const fd = fs.openSync(task.path, 'r');
  try {
    for (const p of task.filePieces) {
      readFully(fd, window, inWindow(p.start), p.end - p.start, task.regionStart + p.start);
      readBytes += p.end - p.start;
    }
  } finally {
    fs.closeSync(fd);
  }
  const pagesAgainst = (o: OldChunk, pos: number, plain: Buffer) => differingPages(o.data!, plain, pos - o.start);
  return sealChangedSpans(task, olds, sealed, inWindow, pagesAgainst, readBytes);
}

/** An old chunk a change touched: its place in the region, id and patch depth, and its bytes when they were rebuilt from the repository. */
type OldChunk = Span & { id: Uint8Array; depth: number; data?: Buffer };

/**
 * sealChanged over a snapshot of the whole disk: the batch's spans, old chunks
 * and all, are read from it (no repository reads), and a new chunk's pages
 * that differ from its old chunk are the ones a change touched.
 */
function sealChangedInSnapshot(task: SealChangedTask, given: { ids: Uint8Array; depths: number[] }, sealed: SealedCollector, inWindow: (pos: number) => number, total: number): unknown {
  const fd = fs.openSync(task.path, 'r');
  try {
    for (const s of task.spans) readFully(fd, state.window, inWindow(s.start), s.end - s.start, task.regionStart + s.start);
  } finally {
    fs.closeSync(fd);
  }
  const olds: OldChunk[] = task.olds.map((o, i) => ({ ...o, id: given.ids.subarray(i * 32, i * 32 + 32), depth: given.depths[i] }));
  const pagesAgainst = (o: OldChunk, pos: number, plain: Buffer) => touchedPages(task.filePieces, pos, plain.length, o.end);
  return sealChangedSpans(task, olds, sealed, inWindow, pagesAgainst, total);
}

/** The rest of sealChanged, once the batch's bytes are in the window: cut, hash and seal them, patched against the old chunks. */
function sealChangedSpans(
  task: SealChangedTask,
  olds: OldChunk[],
  sealed: SealedCollector,
  inWindow: (pos: number) => number,
  pagesAgainst: (o: OldChunk, pos: number, plain: Buffer) => number[] | undefined,
  readBytes: number,
): unknown {
  const window = state.window;
  const offsets: number[] = [];
  const lengths: number[] = [];
  const ids: Buffer[] = [];
  let covering = 0; // olds are ascending: the one that may cover the next chunk's first byte
  const seal = (pos: number, length: number) => {
    const plain = window.subarray(inWindow(pos), inWindow(pos) + length);
    const id = state.hasher.hash(plain);
    offsets.push(pos);
    lengths.push(length);
    ids.push(id);
    while (covering < olds.length && olds[covering].end <= pos) covering++;
    const o = olds[covering];
    sealed.add(id, plain, o && o.start <= pos ? { id: o.id, depth: o.depth, pages: pagesAgainst(o, pos, plain), shift: pos - o.start } : undefined);
  };
  // Non-zero stretches of [start, end) (inside one span), as a scan finds them.
  const nonZero = (start: number, end: number) =>
    nonZeroSpans(window.subarray(inWindow(start), inWindow(start) + end - start), end - start, []).map((s) => ({ start: start + s.start, end: start + s.end }));
  const cut = (start: number, end: number) => {
    for (const s of nonZero(start, end)) {
      let pos = s.start;
      for (const len of state.chunker.cut(window, inWindow(s.start), inWindow(s.start) + s.end - s.start, task.regionStart + s.start)) {
        seal(pos, len);
        pos += len;
      }
    }
  };
  const changedIn = (o: Span) => clipSpans(task.filePieces, o.start, o.end).reduce((n, p) => n + p.end - p.start, 0);
  for (const span of task.spans) {
    // Old chunks mostly unchanged keep their extents, so their pages line up with the old ones (small patches);
    // everything between them is cut by content, as new data.
    let fresh = span.start;
    for (const o of olds) {
      if (o.start < span.start || o.end > span.end || 2 * changedIn(o) >= o.end - o.start) continue;
      if (fresh < o.start) cut(fresh, o.start);
      for (const s of nonZero(o.start, o.end)) seal(s.start, s.end - s.start);
      fresh = o.end;
    }
    if (fresh < span.end) cut(fresh, span.end);
  }
  return sealed.result({ offsets, lengths, ids: Buffer.concat(ids), readBytes }, task.bases?.data);
}

export function writeBlobs(task: WriteBlobsTask): unknown {
  const result: WriteBlobsResult = { bad: [], writtenBytes: 0 };
  const fd = task.targetPath ? fs.openSync(task.targetPath, 'r+') : undefined;
  try {
    const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
    task.blobs.forEach((b, i) => {
      const plain = state.decoder.decodeScratch(b.typeFlags, b.id, data.subarray(b.at, b.at + b.storedLength), b.rawLength);
      // A page patch authenticates here; only the main thread, which can fetch its base, can check its id.
      // Its base goes back with the result: check rebuilds only the newest patch of each chain.
      if (plain && blobType(b.typeFlags) === BlobType.Patch && b.targets.length === 0) {
        const header = decodePatchHeader(plain);
        if (header) (result.patchBases ??= []).push([i, header.baseId.toString('hex')]);
        return;
      }
      if (!plain || blobType(b.typeFlags) === BlobType.Patch || !state.hasher.hash(plain).equals(b.id)) {
        result.bad.push(i);
        return;
      }
      if (fd === undefined || result.writeError) return;
      for (const target of b.targets) {
        try {
          let done = 0;
          while (done < plain.length) done += fs.writeSync(fd, plain, done, plain.length - done, target + done);
          result.writtenBytes += plain.length;
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          result.writeError = { code: e.code, message: e.message };
          return;
        }
      }
    });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  // The buffer goes back (a move, not a copy) for the caller's next read: no fresh read buffer per task.
  const returned: WriteBlobsResult = { ...result, returned: task.data };
  return move({ [transferableSymbol]: [task.data.buffer], [valueSymbol]: returned } as unknown as ArrayBuffer);
}

/** `result` with the task's buffer moved back for the caller's next batch, when the task had the whole buffer. */
function withBufferBack(result: WriteBlobsResult, data: Uint8Array): unknown {
  if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) return result;
  const returned: WriteBlobsResult = { ...result, returned: data };
  return move({ [transferableSymbol]: [data.buffer], [valueSymbol]: returned } as unknown as ArrayBuffer);
}

/** Rebuild page-patched chunks (decrypt and decompress the root, lay the patches over it), check and write them. */
export function writePatched(task: WritePatchedTask): unknown {
  const result: WriteBlobsResult = { bad: [], writtenBytes: 0 };
  const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
  const fd = fs.openSync(task.targetPath, 'r+');
  try {
    task.chunks.forEach((c, i) => {
      const chunk = rebuildChain(data, c, c.id);
      if (!chunk) {
        result.bad.push(i);
        return;
      }
      if (result.writeError) return;
      try {
        for (const t of c.targets) {
          for (let done = 0; done < chunk.length; ) done += fs.writeSync(fd, chunk, done, chunk.length - done, t + done);
          result.writtenBytes += chunk.length;
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        result.writeError = { code: e.code, message: e.message };
      }
    });
  } finally {
    fs.closeSync(fd);
  }
  return withBufferBack(result, task.data);
}

/** check --read-data: the chains that do not rebuild, level by level (rebuildCheckingEveryLevel). */
export function verifyPatched(task: VerifyPatchedTask): unknown {
  const result: WriteBlobsResult = { bad: [], writtenBytes: 0 };
  const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
  task.chunks.forEach((c, i) => {
    if (!rebuildCheckingEveryLevel(data, c, c.id)) result.bad.push(i);
  });
  return withBufferBack(result, task.data);
}

/**
 * A chunk as stored (root sealed, patches opened) rebuilt and checked against
 * `id`, or undefined when it does not rebuild. The result lies in a scratch
 * buffer, valid until the next call: nothing fresh per chunk.
 */
function rebuildChain(data: Buffer, chain: SealedChain, id: Uint8Array, scratches?: [Buffer, Buffer | undefined]): Buffer | undefined {
  const root = chain.root;
  // With two scratches the root can go into the second: patch k is laid into scratch k % 2 from the other.
  let chunk = state.decoder.decodeScratch(root.typeFlags, root.id, data.subarray(root.at, root.at + root.length), root.rawLength, scratches?.[1]);
  // Each patch is laid from one scratch buffer into the other.
  chain.patches.forEach((p, k) => {
    const length = patchedLength(data, p);
    const scratch = scratches?.[k % 2];
    const into = scratch && scratch.length >= length ? scratch : patchScratch(k % 2, length);
    chunk = chunk && applyPatch(chunk, data.subarray(p.at, p.at + p.length), into);
  });
  return chunk && state.hasher.hash(chunk).equals(id) ? chunk : undefined;
}

/**
 * As rebuildChain, with the root and every chunk a patch makes checked against its id (the next patch's
 * base id, or `id` at the top): check reports a chain that rebuilds only by chance as damaged, as
 * Repository.readBlobPlaintext does.
 */
function rebuildCheckingEveryLevel(data: Buffer, chain: SealedChain, id: Uint8Array): Buffer | undefined {
  const root = chain.root;
  let chunk = state.decoder.decodeScratch(root.typeFlags, root.id, data.subarray(root.at, root.at + root.length), root.rawLength);
  if (!chunk || !state.hasher.hash(chunk).equals(root.id)) return undefined;
  for (let k = 0; k < chain.patches.length; k++) {
    const p = chain.patches[k];
    const next = chain.patches[k + 1];
    const levelId = next ? decodePatchHeader(data.subarray(next.at, next.at + next.length))?.baseId : id;
    chunk = applyPatch(chunk, data.subarray(p.at, p.at + p.length), patchScratch(k % 2, patchedLength(data, p)));
    if (!chunk || !levelId || !state.hasher.hash(chunk).equals(levelId)) return undefined;
  }
  return chunk;
}

const patchScratches: Buffer[] = [Buffer.alloc(0), Buffer.alloc(0)];

/**
 * packChunks reads each new chunk into the start of the read window, which is
 * at least twice the largest chunk (three times at the default budget): the
 * rest of it holds the bases being rebuilt, instead of two more buffers per worker
 * (one more at the smallest budgets).
 */
function windowTailScratches(): [Buffer, Buffer | undefined] {
  const chunkBytes = state.chunker.maxBytes;
  // At the smallest budgets the window is twice the largest chunk: its tail is the first scratch (a chain one patch deep needs no other).
  const second = state.window.length >= 3 * chunkBytes ? state.window.subarray(2 * chunkBytes, 3 * chunkBytes) : undefined;
  return [state.window.subarray(chunkBytes, 2 * chunkBytes), second];
}

let patchEncoded = Buffer.alloc(0);

/** The buffer a backup's page patches are encoded into before sealing (one per worker, grown to the largest chunk's worst case). */
function patchEncodeScratch(chunkLength: number): Buffer {
  const need = patchBytesAtMost(chunkLength);
  if (patchEncoded.length < need) patchEncoded = Buffer.allocUnsafe(Math.max(need, patchBytesAtMost(state.chunker.maxBytes)));
  return patchEncoded;
}

/** One of the two buffers patches are laid into, at least `length` bytes. */
function patchScratch(which: number, length: number): Buffer {
  if (patchScratches[which].length < length) patchScratches[which] = Buffer.allocUnsafe(length);
  return patchScratches[which];
}

/** The length of the chunk a patch makes (0 when its header is unreadable: applyPatch then refuses it). */
function patchedLength(data: Buffer, p: DataRange): number {
  return decodePatchHeader(data.subarray(p.at, p.at + p.length))?.length ?? 0;
}

/** The pool's task names and what runs them. */
const TASKS = { scanRegion, packChunks, sealChanged, writeBlobs, writePatched, verifyPatched };
export type TaskName = keyof typeof TASKS;

/**
 * Run a task on this thread with `on`'s state (the in-process pool at the
 * smallest memory budget: no worker isolate). Moved results are unwrapped.
 */
export function runInProcess(on: WorkerState, name: TaskName, task: unknown): unknown {
  state = on;
  const out = (TASKS[name] as (t: unknown) => unknown)(task);
  return out !== null && typeof out === 'object' && valueSymbol in out ? (out as Record<symbol, unknown>)[valueSymbol] : out;
}
