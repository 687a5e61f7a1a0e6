// Worker-thread side of the backup and restore pipelines. Each worker holds its
// own zstd contexts, scratch buffers for compressing and opening blobs, and one
// read window (WorkerSetup.windowBytes, a few MiB, not a whole region), reused
// across tasks: a fresh Buffer per chunk would cut read throughput by ~4x, and
// fresh pages cost page faults and memory.
import * as fs from 'node:fs';
import { workerData, move, transferableSymbol, valueSymbol } from 'piscina';
import { Chunker } from '../dedupe/chunker';
import { gearTable } from '../dedupe/gearTable';
import { MIN_ZERO_RUN, ZeroRunScanner, nonZeroSpans } from '../dedupe/zeroRuns';
import { RegionFingerprinter } from '../dedupe/regionFingerprint';
import { Span, clipSpans, complementSpans } from '../dedupe/spans';
import { ChunkHasher } from '../crypto/chunkId';
import { DIRECT_ALIGN, ImageReader } from '../dedupe/imageReader';
import { ImageReadAhead } from '../dedupe/imageReadAhead';
import { pageAlignedBuffer, readFully } from '../host/directIo';
import { ChunkRun, ImageWriter } from './imageWriter';
import { FreshChunkClient, FreshChunkReply } from './freshChunkChannel';
import { BlobDecoder, BlobEncoder, BlobType, blobType } from '../crypto/blobCodec';
import { differingPages, touchedPages, worthPatching } from '../dedupe/pagePatch';
import { applyPatch, decodePatchHeader, encodePatch, patchBytesAtMost } from '../repo/pagePatchFormat';
import {
  PackChunksTask, PatchBases, PreviousChunks, ScanAndSealResult, ScanAndSealTask, ScanRegionResult, ScanRegionTask, SealChangedTask, SealedBlobs, WorkerSetup, WriteBlobsResult, WriteBlobsTask,
  WritePatchedTask, SealedBlobRange, SealedChain, VerifyPatchedTask,
} from './tasks';
import { WorkerSetupSlot } from './workerSetupSlot';

/**
 * What a direct read of a chunk takes beyond its length: its place in the
 * buffer's aligned block (ImageReader.baseFor) and its ends widened to
 * DIRECT_ALIGN, with the room ImageReader.view wants after it.
 */
const DIRECT_SLACK = 4 * DIRECT_ALIGN;

/** What a worker keeps across tasks: codecs and its buffers, made from the pool's setup. */
export interface WorkerState {
  setup: WorkerSetup;
  hasher: ChunkHasher;
  chunker: Chunker;
  encoder: BlobEncoder;
  decoder: BlobDecoder;
  /** The read window: scans go through it, and packChunks reads one chunk at a time into it. */
  window: Buffer;
  /** Where a scan reads ahead of its window (WorkerSetup.readAhead), as large as the window. */
  staging?: Buffer;
  /** Where a scan keeps fresh chunks until their page-patch bases come, half the window (made when first needed). */
  aside?: Buffer;
}

export function workerState(setup: WorkerSetup): WorkerState {
  const maxBytes = Math.max(setup.chunker.maxSize, setup.chunker.avgSize);
  // The read window is the chunker's own buffer: scans cut it where it lies (no copy into WebAssembly memory).
  const chunker = new Chunker(setup.chunker, gearTable(Buffer.from(setup.gearKey)), { bufferBytes: Math.max(setup.windowBytes, 2 * maxBytes) + DIRECT_SLACK });
  return {
    setup,
    hasher: new ChunkHasher(Buffer.from(setup.idKey)),
    chunker,
    encoder: new BlobEncoder(Buffer.from(setup.dataKey), setup.compressionLevel),
    decoder: new BlobDecoder(setup.dataKeys.map((k) => Buffer.from(k))),
    window: chunker.buffer,
    staging: setup.readAhead ? pageAlignedBuffer(chunker.buffer.length) : undefined,
  };
}

/** What a pool gives its worker threads: where their setup is posted, maybe after they start (workerSetupSlot.ts). */
export interface PoolWorkerData {
  setupSlot: SharedArrayBuffer;
}

const setupSlot = workerData ? new WorkerSetupSlot((workerData as PoolWorkerData).setupSlot) : undefined;

/** This thread's state: a worker's, made on its first task; on the main thread, the in-process pool's, set per call. */
let state: WorkerState = undefined as unknown as WorkerState;

/** A worker thread's first task makes its state from the setup its pool posted before sending the task. */
function ready(): void {
  if (setupSlot && state === undefined) state = workerState(setupSlot.take());
}

/**
 * A region's bytes as a scan sees them (its data extents read from the image,
 * zeros in its holes), held a window at a time. The window holds region byte
 * `from` at `base` (ImageReader.baseFor: where a direct read can put it).
 */
class RegionWindow {
  private from = 0;
  /** The window holds region bytes [from, to). */
  to = 0;
  private base = 0;
  /** Every byte read goes into the region's fingerprint too, in order. */
  readonly fingerprinter: RegionFingerprinter;

  constructor(
    private readonly image: ImageReader,
    private readonly task: ScanRegionTask,
    private readonly beforeSlide?: () => void,
    /** Reads the bytes the next move wants while the window's are cut (worker threads only). */
    private readonly ahead?: ImageReadAhead,
    /** The most a move keeps of the window (the cutter's lag): what a read ahead leaves out. */
    private readonly maxKept = 0,
  ) {
    this.fingerprinter = new RegionFingerprinter(Buffer.from(state.setup.fingerprintKey), task.regionLength, task.dataExtents);
  }

  /** Region bytes [start, end), read into the window from `start` on unless it holds them; end - start ≤ the window's size less 2 × DIRECT_ALIGN. */
  view(start: number, end: number): Buffer {
    if (start < this.from || end > this.to) this.slide(start);
    return this.held(start, end);
  }

  /** Region bytes [start, end), which the window holds. */
  held(start: number, end: number): Buffer {
    if (start < this.from || end > this.to) throw new RangeError(`RegionWindow: bytes [${start}, ${end}) are not in the window [${this.from}, ${this.to})`);
    return state.window.subarray(this.base + start - this.from, this.base + end - this.from);
  }

  /**
   * Move the window on to start at `keepFrom`: the bytes it holds from there
   * are moved, not read again, and the rest of the window is read.
   */
  slide(keepFrom: number): void {
    const move = this.keep(keepFrom);
    this.read(move, move.kept);
  }

  /**
   * slide, taking what the read ahead holds of the bytes to read, then reading ahead from the window's
   * new end as many bytes as the next move reads at least, when it keeps at most `maxKept` (more would be
   * read twice: a read ahead is taken from its start or not at all).
   */
  async slideAhead(keepFrom: number): Promise<void> {
    const move = this.keep(keepFrom);
    const taken = this.ahead ? await this.ahead.take(move.kept, move.to, state.window, move.base + move.kept - keepFrom) : move.kept;
    this.read(move, taken);
    this.ahead?.begin(this.to, state.window.length - 3 * DIRECT_ALIGN - this.maxKept);
  }

  /** The window's new place for `keepFrom`, with the bytes it holds from there moved to their new place. */
  private keep(keepFrom: number): { keepFrom: number; base: number; to: number; kept: number } {
    // The bytes about to go may be wanted once more (scanAndSealRegion seals the new chunks among them).
    this.beforeSlide?.();
    const window = state.window;
    const base = this.image.baseFor(window, this.task.regionStart + keepFrom);
    const to = Math.min(this.task.regionLength, keepFrom + window.length - base - DIRECT_ALIGN);
    const kept = keepFrom >= this.from && keepFrom < this.to ? this.to : keepFrom;
    if (kept > keepFrom) window.copyWithin(base, this.base + keepFrom - this.from, this.base + kept - this.from);
    return { keepFrom, base, to, kept };
  }

  /** Read region bytes [from, move.to) into the window (the ones before are there), and make it hold [move.keepFrom, move.to). */
  private read(move: { keepFrom: number; base: number; to: number }, from: number): void {
    const { keepFrom, base, to } = move;
    const window = state.window;
    const extents = clipSpans(this.task.dataExtents, from, to);
    for (const h of complementSpans(extents, to - from)) window.fill(0, base + from - keepFrom + h.start, base + from - keepFrom + h.end);
    for (const e of extents) this.image.readExtent(window, base + from - keepFrom + e.start, e.end - e.start, this.task.regionStart + from + e.start);
    this.fingerprinter.feed(keepFrom, to, window.subarray(base));
    this.from = keepFrom;
    this.to = to;
    this.base = base;
  }
}

/**
 * One pass over a region: zero runs are found ahead (ZeroRunScanner) and
 * chunks cut and hashed behind, as soon as the bytes that decide a chunk's
 * end are known to be in its span (its largest size plus a zero run past its
 * start), so each byte is read once. The same spans and chunks as finding
 * every zero run first (tests/workers/scan-window.test.ts).
 */
export function scanRegion(task: ScanRegionTask): Promise<ScanRegionResult> {
  ready();
  return scanChunks(task);
}

/**
 * scanRegion that also seals the chunks the repository lacks, from the bytes
 * it scanned: before the window moves on, it asks the main thread which of the
 * chunks cut in it are fresh (freshChunkChannel.ts) and hands them over
 * sealed, as page patches where the answer brings a base (a region that had a
 * map before). Each new byte is read once, not again by a packChunks task.
 */
export async function scanAndSealRegion(task: ScanAndSealTask): Promise<ScanAndSealResult> {
  ready();
  const client = new FreshChunkClient(task.channel);
  const aside = task.basesFollow ? new FreshChunksAside() : undefined;
  const known = task.previousChunks && indexedIds(task.previousChunks);
  let result: ScanRegionResult;
  try {
    result = await scanChunks(task, (handedOver, bytes) => {
      // On a nightly run most chunks are the previous map's: only the others are the main thread's to decide.
      const cut = known ? unknownChunks(handedOver, known) : handedOver;
      const n = cut.lengths.length;
      if (n === 0) return;
      const reply = client.claim(Buffer.concat(cut.ids), cut.offsets, cut.lengths);
      const fresh = reply.fresh!;
      if (aside) {
        // The last claim's fresh chunks, with the bases this answer brings; this claim's wait for the next.
        aside.sealWith(reply, client);
        for (let i = 0; i < n; i++) if (fresh[i]) aside.add(cut.ids[i], bytes.held(cut.offsets[i], cut.offsets[i] + cut.lengths[i]));
        return;
      }
      const chunks: FreshChunk[] = [];
      for (let i = 0; i < n; i++) if (fresh[i]) chunks.push({ id: cut.ids[i], plain: bytes.held(cut.offsets[i], cut.offsets[i] + cut.lengths[i]) });
      sealFresh(chunks, reply, client);
    }, aside?.capacity);
    if (aside?.holdsAny) aside.sealWith(client.owed(), client);
  } catch (e) {
    if (!(e instanceof DamagedBase)) throw e;
    client.done();
    return { offsets: [], lengths: [], ids: new Uint8Array(0), readBytes: 0, sameAsPrevious: false, nonZeroBytes: 0, damagedBase: e.id };
  }
  client.done();
  return result;
}

interface FreshChunk {
  id: Buffer;
  plain: Buffer;
}

/** The ids of the previous map's chunks the repository holds, as a set of their binary strings. */
function indexedIds(previous: PreviousChunks): Set<string> {
  const set = new Set<string>();
  const ids = Buffer.from(previous.ids.buffer, previous.ids.byteOffset, previous.ids.byteLength);
  previous.indexed.forEach((held, i) => held && set.add(ids.toString('latin1', 32 * i, 32 * i + 32)));
  return set;
}

/**
 * The length and id of the chunk a scan cuts at region offset `at` from `decided` (its bytes up to
 * its largest size or its span's end), without running the gear loop over it when the previous map
 * has a chunk there with the same bytes: on a nightly run, most of a disk. Otherwise as cut.
 */
function cutChunk(decided: Buffer, at: number, absoluteStart: number, previous?: { byOffset: Map<number, number>; chunks: PreviousChunks }): { len: number; id: Buffer } {
  const p = previous?.byOffset.get(at);
  let hashed: { len: number; id: Buffer } | undefined;
  if (previous && p !== undefined) {
    const len = previous.chunks.lengths[p];
    if (state.chunker.cutsAgainAt(decided, 0, decided.length, absoluteStart, len)) {
      hashed = { len, id: state.hasher.hash(decided.subarray(0, len)) };
      if (hashed.id.equals(previous.chunks.ids.subarray(32 * p, 32 * p + 32))) return hashed;
    }
  }
  const len = state.chunker.nextLength(decided, 0, decided.length, absoluteStart);
  // Bytes changed inside a chunk that still ends where it did: its id is hashed already.
  if (hashed && hashed.len === len) return hashed;
  return { len, id: state.hasher.hash(decided.subarray(0, len)) };
}

/** The chunks of `cut` whose ids `known` lacks. */
function unknownChunks(cut: CutChunks, known: Set<string>): CutChunks {
  const out: CutChunks = { offsets: [], lengths: [], ids: [] };
  cut.ids.forEach((id, i) => {
    if (known.has(id.toString('latin1'))) return;
    out.offsets.push(cut.offsets[i]);
    out.lengths.push(cut.lengths[i]);
    out.ids.push(id);
  });
  return out;
}

/** Seal fresh chunks into the answer's recycled buffer, against its bases (chunk j's is `bases.of[j]`), and hand them over. */
function sealFresh(chunks: FreshChunk[], reply: FreshChunkReply, client: FreshChunkClient): void {
  if (chunks.length === 0) return;
  const sealed = new SealedCollector(chunks.reduce((n, c) => n + c.plain.length, 0), chunks.length, reply.recycled);
  // Rebuilt into the worker's patch scratches (the window holds the scan), the root too.
  const bases = reply.bases ? new BaseChunks(reply.bases, [patchScratch(0, state.chunker.maxBytes), patchScratch(1, state.chunker.maxBytes)]) : undefined;
  const ids = Buffer.allocUnsafe(32 * chunks.length);
  chunks.forEach((c, j) => {
    c.id.copy(ids, 32 * j);
    sealed.add(c.id, c.plain, bases?.baseFor(j, c.plain));
  });
  client.sealed(ids, sealed.blobs(), reply.bases?.data);
}

/**
 * A claim's fresh chunks, copied out of the window while their bases are read
 * (freshChunkChannel.ts), into a buffer the worker keeps: half the window
 * (the scan claims that often), at least the largest chunk.
 */
class FreshChunksAside {
  private chunks: FreshChunk[] = [];
  private used = 0;
  readonly capacity = Math.max(Math.floor(state.window.length / 2), state.chunker.maxBytes);

  get holdsAny(): boolean {
    return this.chunks.length > 0;
  }

  add(id: Buffer, plain: Buffer): void {
    if (!state.aside || state.aside.length < this.capacity) state.aside = Buffer.allocUnsafeSlow(this.capacity);
    if (this.used + plain.length > this.capacity) throw new RangeError(`FreshChunksAside: ${this.used + plain.length} bytes do not fit in ${this.capacity}`);
    const into = state.aside.subarray(this.used, this.used + plain.length);
    plain.copy(into);
    this.used += plain.length;
    this.chunks.push({ id, plain: into });
  }

  /** Seal the chunks held with the answer that brings their bases, and hold none. */
  sealWith(reply: FreshChunkReply, client: FreshChunkClient): void {
    const chunks = this.chunks;
    this.chunks = [];
    this.used = 0;
    sealFresh(chunks, reply, client);
  }
}

/** Chunks cut since the last hand-over: offsets (in the region), lengths and ids. */
interface CutChunks {
  offsets: number[];
  lengths: number[];
  ids: Buffer[];
}

/**
 * The scan of scanRegion. With `handOver`, the chunks cut while the window
 * held them are passed on before it moves (and once at the end), with the
 * window to read their bytes from.
 */
async function scanChunks(
  task: ScanRegionTask,
  handOver?: (cut: CutChunks, bytes: RegionWindow) => void,
  /** Hand over before the chunks not yet handed over would pass this many bytes. */
  handOverBytes = Infinity,
): Promise<ScanRegionResult> {
  const dataAt = task.regionStart + (task.dataExtents[0]?.start ?? 0);
  const image = ImageReader.open(task.path, dataAt);
  const ahead = state.staging && task.dataExtents.length > 0
    ? new ImageReadAhead(task.path, dataAt, task.regionStart, task.regionLength, task.dataExtents, state.staging)
    : undefined;
  const offsets: number[] = [];
  const lengths: number[] = [];
  const ids: Buffer[] = [];
  let handedOver = 0;
  let notHandedOver = 0;
  let bytes!: RegionWindow;
  const handOverCut = handOver && (() => {
    if (handedOver === offsets.length) return;
    handOver({ offsets: offsets.slice(handedOver), lengths: lengths.slice(handedOver), ids: ids.slice(handedOver) }, bytes);
    handedOver = offsets.length;
    notHandedOver = 0;
  });
  let fingerprint: Buffer | undefined;
  let spans: Span[];
  const previous = task.previousChunks && { byOffset: new Map(task.previousChunks.offsets.map((o, i) => [o, i])), chunks: task.previousChunks };
  try {
    const maxBytes = state.chunker.maxBytes;
    bytes = new RegionWindow(image, task, handOverCut, ahead, maxBytes + MIN_ZERO_RUN);
    const scanner = new ZeroRunScanner(task.regionLength, complementSpans(task.dataExtents, task.regionLength));
    let at = 0; // where the next chunk starts, or where the cutter waits
    let k = 0; // the first known span not cut to its end
    /** The span the next chunk is in: its start, and its end if known. */
    const nextSpan = (): { start: number; end?: number } | undefined => {
      while (k < scanner.spans.length && scanner.spans[k].end <= at) k++;
      return k < scanner.spans.length ? scanner.spans[k] : scanner.openSpan;
    };
    const cut = (): void => {
      for (let span = nextSpan(); span; span = nextSpan()) {
        if (at < span.start) at = span.start;
        let limit: number;
        if (span.end !== undefined) {
          if (at >= span.end) return;
          limit = Math.min(span.end, at + maxBytes);
        } else if (scanner.scanned >= at + maxBytes + MIN_ZERO_RUN) {
          // No zero run can end the span before at + maxBytes any more: the chunk's bytes are decided.
          limit = at + maxBytes;
        } else {
          return;
        }
        const decided = bytes.view(at, limit);
        const { len, id } = cutChunk(decided, at, task.regionStart + at, previous);
        if (notHandedOver + len > handOverBytes) handOverCut?.();
        notHandedOver += len;
        offsets.push(at);
        lengths.push(len);
        ids.push(id);
        at += len;
      }
    };
    const blocks = (start: number, end: number) => bytes.view(start, end);
    for (;;) {
      scanner.advance(bytes.to, blocks);
      cut();
      if (scanner.done) break;
      // Keep what the cutter still needs; the scanner goes on from the window's end.
      const span = nextSpan();
      const pending = span && (span.end === undefined || Math.max(at, span.start) < span.end) ? Math.max(at, span.start) : Infinity;
      const before = bytes.to;
      await bytes.slideAhead(Math.min(scanner.scanned, pending));
      // The cutter lags the scanner by at most a chunk and a zero run, far less than the window.
      if (bytes.to <= before && scanner.scanned < before) throw new Error(`scanRegion: the read window (${state.window.length} bytes) cannot move on at byte ${before} of the region`);
    }
    handOverCut?.();
    spans = scanner.spans;
    fingerprint = bytes.fingerprinter.digest();
  } finally {
    await ahead?.close();
    image.close();
  }
  const nonZeroBytes = spans.reduce((n, s) => n + s.end - s.start, 0);
  // The same bytes as when the previous map was made: that map is this region's map.
  const sameAsPrevious = fingerprint !== undefined && task.previousFingerprint !== undefined && fingerprint.equals(task.previousFingerprint);
  const readBytes = task.dataExtents.reduce((n, e) => n + e.end - e.start, 0);
  if (sameAsPrevious) return { offsets: [], lengths: [], ids: new Uint8Array(0), readBytes, fingerprint, sameAsPrevious, nonZeroBytes };
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

  /** The sealed blobs as a message part (its buffer to be transferred). */
  blobs(): SealedBlobs {
    this.meta.starts.push(this.total);
    return { ...this.meta, data: this.data };
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
  ready();
  const image = ImageReader.open(task.path, task.regionStart + (task.offsets[0] ?? 0));
  const sealed = new SealedCollector(task.lengths.reduce((n, l) => n + l, 0), task.lengths.length, task.recycled);
  const bases = task.bases ? new BaseChunks(task.bases, windowTailScratches()) : undefined;
  // Chunks that follow each other in the image are read together (one read per window, not per chunk:
  // a direct read's cost is mostly its latency); with bases, the window's tail is theirs.
  const area = task.bases ? windowHead() : state.window;
  let run: Buffer = Buffer.alloc(0);
  let runStart = 0;
  try {
    for (let i = 0; i < task.offsets.length; i++) {
      const len = task.lengths[i];
      const offset = task.offsets[i];
      if (offset < runStart || offset + len > runStart + run.length) {
        let end = offset + len;
        for (let j = i + 1; j < task.offsets.length && task.offsets[j] === end && task.offsets[j] + task.lengths[j] - offset + 2 * DIRECT_SLACK <= area.length; j++) end += task.lengths[j];
        run = image.view(area, task.regionStart + offset, end - offset);
        runStart = offset;
      }
      const plain = run.subarray(offset - runStart, offset - runStart + len);
      const id = Buffer.from(task.ids.subarray(i * 32, i * 32 + 32));
      // The bytes were hashed moments ago; if they differ now the image is being written to.
      if (!state.hasher.hash(plain).equals(id)) {
        throw new Error(
          `${task.path} changed while it was being read (at byte ${task.regionStart + task.offsets[i]}); back up a snapshot or a paused guest`,
        );
      }
      sealed.add(id, plain, bases?.baseFor(i, plain));
    }
  } catch (e) {
    if (!(e instanceof DamagedBase)) throw e;
    return sealed.result({ damagedBase: e.index }, task.bases!.data);
  } finally {
    image.close();
  }
  // The bases' buffer goes back too: a fresh one per task would pile up in this isolate until its next full GC.
  return sealed.result({}, task.bases?.data);
}

/** A page-patch base that does not rebuild to its id: base `index` of the task, id `id`. */
class DamagedBase extends Error {
  constructor(readonly index: number, readonly id: Uint8Array) {
    super(`page-patch base ${index} does not rebuild`);
  }
}

/**
 * The bases new chunks are stored against (PatchBases), each rebuilt once:
 * new chunks that share a base follow each other.
 */
class BaseChunks {
  private builtIndex = -1;
  private built: Buffer | undefined;

  /** `scratches`: where chains are rebuilt. */
  constructor(private readonly bases: PatchBases, private readonly scratches: [Buffer, Buffer | undefined]) {}

  /** New chunk i's base and its pages that differ from `plain`, if it has one; throws DamagedBase if that does not rebuild. */
  baseFor(i: number, plain: Buffer): PatchBase | undefined {
    const { bases } = this;
    const b = bases.of[i] ?? -1;
    if (b < 0) return undefined;
    const id = bases.ids.subarray(b * 32, b * 32 + 32);
    if (b !== this.builtIndex) {
      this.built = rebuildChain(Buffer.from(bases.data.buffer, bases.data.byteOffset, bases.data.byteLength), bases.chains[b], id, this.scratches);
      this.builtIndex = b;
    }
    if (!this.built) throw new DamagedBase(b, id);
    return { id, depth: bases.chains[b].patches.length, pages: differingPages(this.built, plain, bases.shifts[i]), shift: bases.shifts[i] };
  }
}

export function sealChanged(task: SealChangedTask): unknown {
  ready();
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

export async function writeBlobs(task: WriteBlobsTask): Promise<unknown> {
  ready();
  const result: WriteBlobsResult = { bad: [], writtenBytes: 0 };
  const failed = (err: unknown) => {
    const e = err as NodeJS.ErrnoException;
    result.writeError ??= { code: e.code, message: e.message };
  };
  const writer = task.targetPath ? ImageWriter.open(task.targetPath) : undefined;
  // Chunks that follow each other on the disk are decompressed one after another into half of the
  // window and written together (imageWriter.ts), while the next ones go into the other half.
  const half = Math.floor(state.window.length / 2);
  const runs = writer ? [new ChunkRun(writer, state.window.subarray(0, half)), new ChunkRun(writer, state.window.subarray(half))] : [];
  const writing: (Promise<void> | undefined)[] = [undefined, undefined];
  let k = 0;
  const written = async (j: number) => {
    await writing[j];
    writing[j] = undefined;
  };
  const writeRun = () => {
    writing[k] = runs[k].flush().then((n) => void (result.writtenBytes += n), failed);
  };
  try {
    const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
    for (let i = 0; i < task.blobs.length; i++) {
      const b = task.blobs[i];
      let into: Buffer | undefined;
      if (writer && !result.writeError && b.targets.length > 0) {
        into = runs[k].next(b.targets[0], b.rawLength);
        if (!into) {
          if (!runs[k].empty) {
            writeRun();
            k = 1 - k;
          }
          await written(k);
          into = runs[k].begin(b.targets[0], b.rawLength);
        }
      }
      let plain = state.decoder.decodeScratch(b.typeFlags, b.id, data.subarray(b.at, b.at + b.storedLength), b.rawLength, into);
      // A page patch authenticates here; only the main thread, which can fetch its base, can check its id.
      // Its base goes back with the result: check rebuilds only the newest patch of each chain.
      if (plain && blobType(b.typeFlags) === BlobType.Patch && b.targets.length === 0) {
        const header = decodePatchHeader(plain);
        if (header) (result.patchBases ??= []).push([i, header.baseId.toString('hex')]);
        continue;
      }
      if (!plain || blobType(b.typeFlags) === BlobType.Patch || !state.hasher.hash(plain).equals(b.id)) {
        result.bad.push(i);
        continue;
      }
      if (!writer || result.writeError) continue;
      let targets = b.targets;
      if (into && into.length === plain.length) {
        // A chunk stored uncompressed was opened in the decoder's own buffer: moved to its place in the run.
        if (plain.buffer !== into.buffer) plain = into.subarray(0, plain.copy(into));
        runs[k].add(plain.length);
        targets = targets.slice(1);
      }
      try {
        for (const target of targets) {
          writer.writeBuffered(plain, target);
          result.writtenBytes += plain.length;
        }
      } catch (err) {
        failed(err);
      }
    }
    if (writer && !result.writeError) writeRun();
  } finally {
    await written(0);
    await written(1);
    writer?.close();
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
  ready();
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
  ready();
  const result: WriteBlobsResult = { bad: [], writtenBytes: 0 };
  const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
  task.chunks.forEach((c, i) => {
    const patches = openPatches(data, c.patches);
    if (!patches || !rebuildCheckingEveryLevel(data, c.root, patches, c.id)) result.bad.push(i);
  });
  return withBufferBack(result, task.data);
}

let openedPatches = Buffer.alloc(0);

/**
 * A chain's patches opened, oldest first, each copied out of the decoder's buffers (the root is opened
 * there next) into one buffer this worker keeps; undefined when one does not open or is not a patch.
 */
function openPatches(data: Buffer, patches: readonly SealedBlobRange[]): Buffer[] | undefined {
  const need = patches.reduce((n, p) => n + p.rawLength, 0);
  if (openedPatches.length < need) openedPatches = Buffer.allocUnsafe(Math.max(need, 2 * openedPatches.length));
  const opened: Buffer[] = [];
  let at = 0;
  for (const p of patches) {
    const plain = blobType(p.typeFlags) === BlobType.Patch ? state.decoder.decodeScratch(p.typeFlags, p.id, data.subarray(p.at, p.at + p.length), p.rawLength) : undefined;
    if (!plain) return undefined;
    opened.push(openedPatches.subarray(at, at + plain.copy(openedPatches, at)));
    at += plain.length;
  }
  return opened;
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
    const length = patchedLength(data.subarray(p.at, p.at + p.length));
    const scratch = scratches?.[k % 2];
    const into = scratch && scratch.length >= length ? scratch : patchScratch(k % 2, length);
    chunk = chunk && applyPatch(chunk, data.subarray(p.at, p.at + p.length), into);
  });
  return chunk && state.hasher.hash(chunk).equals(id) ? chunk : undefined;
}

/**
 * The root (sealed in `data`) with its opened patches laid on, the root and every chunk a patch makes
 * checked against its id (the next patch's base id, or `id` at the top): check reports a chain that
 * rebuilds only by chance as damaged, as Repository.readBlobPlaintext does.
 */
function rebuildCheckingEveryLevel(data: Buffer, root: SealedBlobRange, patches: readonly Buffer[], id: Uint8Array): Buffer | undefined {
  let chunk = state.decoder.decodeScratch(root.typeFlags, root.id, data.subarray(root.at, root.at + root.length), root.rawLength);
  if (!chunk || !state.hasher.hash(chunk).equals(root.id)) return undefined;
  for (let k = 0; k < patches.length; k++) {
    const next = patches[k + 1];
    const levelId = next ? decodePatchHeader(next)?.baseId : id;
    chunk = applyPatch(chunk, patches[k], patchScratch(k % 2, patchedLength(patches[k])));
    if (!chunk || !levelId || !state.hasher.hash(chunk).equals(levelId)) return undefined;
  }
  return chunk;
}

const patchScratches: Buffer[] = [Buffer.alloc(0), Buffer.alloc(0)];

/**
 * packChunks reads each new chunk into the start of the read window (windowHead), which is
 * at least twice the largest chunk (three times at the default budget): the
 * rest of it holds the bases being rebuilt, instead of two more buffers per worker
 * (one more at the smallest budgets).
 */
function windowTailScratches(): [Buffer, Buffer | undefined] {
  const chunkBytes = state.chunker.maxBytes;
  const head = chunkBytes + DIRECT_SLACK;
  // At the smallest budgets the window is twice the largest chunk: its tail is the first scratch (a chain one patch deep needs no other).
  const second = state.window.length >= head + 2 * chunkBytes ? state.window.subarray(head + chunkBytes, head + 2 * chunkBytes) : undefined;
  return [state.window.subarray(head, head + chunkBytes), second];
}

/** Where packChunks reads a chunk: the window's head, the largest chunk and what a direct read widens it by. */
function windowHead(): Buffer {
  return state.window.subarray(0, state.chunker.maxBytes + DIRECT_SLACK);
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

/** The length of the chunk an opened patch makes (0 when its header is unreadable: applyPatch then refuses it). */
function patchedLength(patch: Buffer): number {
  return decodePatchHeader(patch)?.length ?? 0;
}

/** The pool's task names and what runs them. */
const TASKS = { scanRegion, scanAndSealRegion, packChunks, sealChanged, writeBlobs, writePatched, verifyPatched };
export type TaskName = keyof typeof TASKS;

/**
 * Run a task on this thread with `on`'s state (the in-process pool at the
 * smallest memory budget: no worker isolate). Moved results are unwrapped.
 */
export function runInProcess(on: WorkerState, name: TaskName, task: unknown): unknown {
  state = on;
  const out = (TASKS[name] as (t: unknown) => unknown)(task);
  const unwrap = (o: unknown) => (o !== null && typeof o === 'object' && valueSymbol in o ? (o as Record<symbol, unknown>)[valueSymbol] : o);
  // An async task (writeBlobs): the pool's queue waits for it before the next task changes `state`.
  return out instanceof Promise ? out.then(unwrap) : unwrap(out);
}
