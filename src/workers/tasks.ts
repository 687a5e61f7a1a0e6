// Messages between the main thread and the pipeline workers. Plain data only:
// they cross a structured-clone boundary.
import { Span } from '../dedupe/spans';
import { ChunkerParams } from '../repo/format';
import type { FreshChunkEnd } from './freshChunkChannel';

export interface WorkerSetup {
  idKey: Uint8Array;
  dataKey: Uint8Array;
  /** Every data key, newest first: what a blob may be sealed with (key rotation). */
  dataKeys: Uint8Array[];
  gearKey: Uint8Array;
  /** Keys region fingerprints (dedupe/regionFingerprint.ts). */
  fingerprintKey: Uint8Array;
  chunker: ChunkerParams;
  regionSize: number;
  compressionLevel: number;
  /** Size of each worker's read window (at least twice the largest chunk): what a worker holds of a region at once. */
  windowBytes: number;
  /** Size of a fresh sealed-output buffer when a task's worst case fits in it (so it can be recycled for the next task). */
  sealOutputBytes: number;
  /** Scans read the next window's bytes while they cut the current one's, into a second buffer as large (worker threads). */
  readAhead: boolean;
}

/** Read one region of an image, find its non-zero spans, cut and hash chunks. */
export interface ScanRegionTask {
  path: string;
  regionStart: number;
  regionLength: number;
  /** Allocated ranges within the region, relative to regionStart. */
  dataExtents: Span[];
  /**
   * The fingerprint stored with this region's map in the previous restore
   * point: if the region's fingerprint is the same, the scan returns no
   * chunks and the caller reuses that map.
   */
  previousFingerprint?: Uint8Array;
  /** The region's previous map, whose chunks let a scan skip cutting what did not change. */
  previousChunks?: PreviousChunks;
}

/**
 * A region's previous map: chunk i at offsets[i], lengths[i] long, id ids[32i, 32i + 32). A chunk
 * cut at the same offset with the same id is not cut again byte by byte (Chunker.cutsAgainAt).
 * indexed[i] = 1: the repository holds chunk i, so a scan that seals as it goes does not ask the
 * main thread whether it is fresh (a hand-over of only such chunks asks nothing).
 */
export interface PreviousChunks {
  offsets: number[];
  lengths: number[];
  ids: Uint8Array;
  indexed: Uint8Array;
}

/**
 * scanRegion that seals the chunks the main thread says are fresh, as it goes,
 * as page patches against the bases that come with its answers (freshChunkChannel.ts).
 */
export interface ScanAndSealTask extends ScanRegionTask {
  channel: FreshChunkEnd;
  /** The answers bring page-patch bases, a claim's with the next answer: keep its fresh chunks aside till then. */
  basesFollow: boolean;
}

/** What scanAndSealRegion gives back: scanRegion's result, unless a base did not rebuild. */
export interface ScanAndSealResult extends ScanRegionResult {
  /** The id of a page-patch base that does not rebuild to it (damaged): the scan stopped there. */
  damagedBase?: Uint8Array;
}

export interface ScanRegionResult {
  /** Chunk offsets (relative to the region) and lengths, in order. */
  offsets: number[];
  lengths: number[];
  /** 32 bytes per chunk. */
  ids: Uint8Array;
  readBytes: number;
  /** The region's fingerprint (dedupe/regionFingerprint.ts), if every data byte went into it. */
  fingerprint?: Uint8Array;
  /** The fingerprint equals the task's previousFingerprint: no chunks were cut, reuse the previous map. */
  sameAsPrevious: boolean;
  /** Bytes outside the zero runs: what the region's map covers. */
  nonZeroBytes: number;
}

/**
 * Re-read chunks the repository lacks, check they still hash the same, compress
 * and seal them; where `bases` offers the chunk that stood at the same place
 * before, store only the changed pages (a page patch) when that is smaller.
 */
export interface PackChunksTask {
  path: string;
  regionStart: number;
  offsets: number[];
  lengths: number[];
  ids: Uint8Array;
  bases?: PatchBases;
  /**
   * A buffer from an earlier task to seal into, if large enough: transferred
   * to the worker and back as the result's `data`, so steady-state backups
   * allocate no fresh output buffers (fresh pages cost faults and memory).
   */
  recycled?: Uint8Array;
}

/**
 * Chunks as stored, for a worker to rebuild and check (as a restore does):
 * each one's root chunk sealed and its patches opened, all in `data`.
 */
export interface StoredChains {
  /** 32 bytes per chunk. */
  ids: Uint8Array;
  /** Chunk j; its patch depth (0: a whole chunk) is its number of patches. */
  chains: SealedChain[];
  data: Uint8Array;
}

/** Earlier chunks that new chunks may be stored as page patches against. */
export interface PatchBases extends StoredChains {
  /** For chunk i of the task: the index of its base, or -1. */
  of: number[];
  /** For chunk i: new byte k corresponds to base byte shifts[i] + k. */
  shifts: number[];
}

export interface SealedBlobs {
  typeFlags: number[];
  rawLengths: number[];
  /** Sealed blob i is data[starts[i], starts[i+1]). */
  starts: number[];
  data: Uint8Array;
}

export interface PackedChunks extends SealedBlobs {
  /** A base (index into `bases.chains`) that does not rebuild its id: the task stopped there, its output is incomplete. */
  damagedBase?: number;
  /** The task's `bases.data`, moved back for the next task's bases. */
  returnedBases?: Uint8Array;
}

/** A blob inside a fetched pack range, and where its plaintext goes. */
export interface BlobToWrite {
  /** Offset in `data`. */
  at: number;
  storedLength: number;
  rawLength: number;
  typeFlags: number;
  id: Uint8Array;
  /** Byte offsets in the target to write the plaintext to; empty: verify only. */
  targets: number[];
}

export interface WriteBlobsTask {
  /** Target file or device; undefined to verify only. */
  targetPath?: string;
  data: Uint8Array;
  blobs: BlobToWrite[];
}

export interface WriteBlobsResult {
  /** Indexes into `blobs` that failed authentication or verification. */
  bad: number[];
  writtenBytes: number;
  /** A write error (e.g. ENOSPC) with its errno code. */
  writeError?: { code?: string; message: string };
  /** writeBlobs: the task's `data`, transferred back when it was transferred in, for the caller to read into again. */
  returned?: Uint8Array;
  /** writeBlobs without targets (check): each authenticated page patch's base, as [index into `blobs`, the base's id in hex]. */
  patchBases?: [number, string][];
}

/**
 * Changed-block tracking, one batch of a region (backup/changedBatches.ts):
 * lay each old chunk (`olds[i]`, rebuilt from `bases` chunk i) in its place,
 * read the changed ranges (`filePieces`) from the snapshot over them, and
 * seal every chunk of `spans`. An old chunk mostly unchanged keeps its extent
 * (a page patch on it when few pages changed); the rest is cut as a scan
 * cuts. Offsets are relative to the region.
 */
export interface SealChangedTask {
  path: string;
  regionStart: number;
  /** Ascending and disjoint; together at most the worker's read window. */
  spans: Span[];
  filePieces: Span[];
  olds: Span[];
  /** The old chunks as stored, rebuilt in the worker: when the snapshot holds only the changed ranges. */
  bases?: StoredChains;
  /**
   * Instead of `bases`, when the snapshot holds the whole disk: the old chunks'
   * ids and patch depths. Their bytes are read from the snapshot, and a page
   * patch against one holds the pages a change touched (filePieces), so the
   * old chunk itself is never read from the repository.
   */
  oldsInSnapshot?: { ids: Uint8Array; depths: number[] };
  /** As PackChunksTask's: a buffer to seal into, moved to the worker and back. */
  recycled?: Uint8Array;
}

export interface SealChangedResult extends SealedBlobs {
  offsets: number[];
  lengths: number[];
  ids: Uint8Array;
  readBytes: number;
  /** An old chunk (index into `olds`) that does not rebuild its id: the task stopped there, its output is incomplete. */
  damagedBase?: number;
  /** The task's `bases.data`, moved back for the next task's bases. */
  returnedBases?: Uint8Array;
}

/** A byte range of a task's `data`. */
export interface DataRange {
  at: number;
  length: number;
}

/** A blob as stored, in a task's buffer: where it lies and what opens it. */
export interface SealedBlobRange extends DataRange {
  typeFlags: number;
  rawLength: number;
  id: Uint8Array;
}

/** A chunk as stored: its root chunk sealed, then the patches to lay over it in order, all in a task's `data`. */
export interface SealedChain {
  root: SealedBlobRange;
  patches: DataRange[];
}

/** A page-patched chunk to rebuild and write. */
export interface PatchedChunkToWrite extends SealedChain {
  /** The rebuilt chunk's id (checked). */
  id: Uint8Array;
  targets: number[];
}

/** `data` is transferred to the worker and back (WriteBlobsResult.returned), so one buffer serves batch after batch. */
export interface WritePatchedTask {
  targetPath: string;
  data: Uint8Array;
  chunks: PatchedChunkToWrite[];
}

/**
 * check --read-data: rebuild page-patched chunks and check each level of every chain (its root, each
 * patch laid on) against its id, as reading the chunk on the main thread does; nothing is written.
 * Every blob comes as stored (the worker opens the patches too: the main thread only reads).
 * `data` is transferred to the worker and back (WriteBlobsResult.returned).
 */
export interface VerifyPatchedTask {
  data: Uint8Array;
  /** Each chain's root and patches (oldest first), and the id of the chunk its newest patch makes. */
  chunks: { root: SealedBlobRange; patches: SealedBlobRange[]; id: Uint8Array }[];
}
