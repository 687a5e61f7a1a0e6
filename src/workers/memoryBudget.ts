// How much memory the data path may use, and the sizes that follow from it:
// worker count, each worker's read window, how much sealed data one task
// returns, how large and how many pack reads are in flight. Measured on a
// 2-core Debian 12 VM with Node 20 (docs/ARCHITECTURE.md, "Memory"): the
// process without workers peaks near 60 MiB, each worker isolate adds ~14 MiB
// before its buffers. Nothing here scales with the image or repository size
// except the in-memory index, which the budget does not cover.

const MiB = 1024 * 1024;

/** Peak RSS the data path aims to stay under by default (a Xen Dom0 has 1-4 GiB for everything). */
export const DEFAULT_MEMORY_BUDGET = 160 * MiB;
/** The smallest budget that is honoured: one worker with the smallest buffers. */
export const MIN_MEMORY_BUDGET = 96 * MiB;

/**
 * The process without workers or data buffers, measured: Node 20 with ferry's
 * modules (`ferry list`: ~65 MiB, 40 of them node's own text), the main
 * isolate's heap during a backup and what malloc keeps.
 */
const PROCESS_BYTES = 80 * MiB;
/** A worker isolate with its modules and codec contexts, before its buffers. */
const WORKER_BYTES = 16 * MiB;
/** The repository's own pack size (16 MiB by default) is written as is from this budget up. */
const FULL_PACKS_FROM = 160 * MiB;

export interface PipelineSizing {
  /** Worker threads (with 'main-thread': tasks one at a time, as if one worker). */
  threads: number;
  /**
   * Where tasks run: worker threads, or, when the budget cannot hold a worker
   * isolate (~16 MiB) beside the smallest buffers, the main thread itself.
   */
  placement: 'worker-threads' | 'main-thread';
  /** Each worker's read window: what it holds of a region at once (at least twice the largest chunk). */
  windowBytes: number;
  /** Plaintext bytes a worker compresses and seals per task: its sealed output is held until packed. */
  sealBatchBytes: number;
  /** The largest pack range one restore task reads. */
  readRangeBytes: number;
  /** Pack reads in flight (restore), each up to readRangeBytes. */
  readsInFlight: number;
  /**
   * Packs are cut at this size, or the repository's pack size if smaller
   * (the writer holds one pack): packs are "about packSize", any size reads.
   */
  packBytes: number;
}

export interface SizingRequest {
  /** Peak RSS to stay under; default DEFAULT_MEMORY_BUDGET. */
  budgetBytes?: number;
  /** Cores to use at most (one worker each). */
  cores: number;
  /** Worker threads asked for explicitly (FERRY_THREADS); still capped by the budget. */
  threads?: number;
}

/**
 * Sizes for a budget: as many workers as cores while each gets buffers of at
 * least 2 MiB (up to 4 MiB), then fewer workers, down to one worker with
 * 2 MiB buffers, then no worker isolate (tasks on the main thread) at
 * MIN_MEMORY_BUDGET; packs are cut at 8 MiB below 160 MiB, at 4 MiB below 128 MiB,
 * at 2 MiB (and seal batches halved) with tasks on the main thread.
 */
export function pipelineSizing(req: SizingRequest): PipelineSizing {
  const budget = Math.max(MIN_MEMORY_BUDGET, req.budgetBytes ?? DEFAULT_MEMORY_BUDGET);
  // Below 128 MiB the 4 MiB saved by smaller packs is what keeps the peak under the budget (CI saw 97.9 MiB at 96M with 8 MiB packs).
  const packBytes = budget >= FULL_PACKS_FROM ? 1024 * MiB : budget >= 128 * MiB ? 8 * MiB : 4 * MiB;
  const spare = budget - PROCESS_BYTES - Math.min(packBytes, 18 * MiB);
  // Per worker and buffer size B: the isolate, its read window (B) and what a scan reads ahead
  // of it (B), the sealed output of its batch and half a spare one (1.5 B: one more region
  // than workers is in flight; the further spares BackupBuffers.outputsKept holds for the
  // sealed backlog are the pages the backlog held anyway, measured no higher) and on a
  // nightly run the fresh chunks it keeps aside till their page-patch bases come (B / 2),
  // or on restore two pack reads (2 B), and what malloc keeps of them (B).
  const perWorker = (buffer: number) => WORKER_BYTES + 5 * buffer;
  let threads = Math.max(1, req.threads ?? req.cores);
  while (threads > 1 && threads * perWorker(2 * MiB) > spare) threads--;
  const buffer = clamp(floorMiB((spare / threads - WORKER_BYTES) / 5), 2 * MiB, 4 * MiB);
  // One worker with its smallest buffers does not fit: run the tasks on the main thread.
  const placement = spare < perWorker(2 * MiB) ? 'main-thread' : 'worker-threads';
  // There, a nightly backup's page-patch bases (a carrier and the rebuilt chunks) come on top:
  // half-size seal batches and 2 MiB packs keep it under ~100 MiB at --memory 96M (102 before).
  const smallest = placement === 'main-thread';
  return {
    threads,
    placement,
    windowBytes: buffer,
    sealBatchBytes: smallest ? buffer / 2 : buffer,
    readRangeBytes: buffer,
    readsInFlight: 2 * threads,
    packBytes: smallest ? Math.min(packBytes, 2 * MiB) : packBytes,
  };
}

/**
 * Whole objects a sync copies at once (each a pack, 16 MiB by default, read
 * and then written): 4 as before from 256 MiB, fewer below.
 */
export function syncCopiesInFlight(budgetBytes?: number): number {
  const budget = Math.max(MIN_MEMORY_BUDGET, budgetBytes ?? DEFAULT_MEMORY_BUDGET);
  return budget >= 256 * MiB ? 4 : budget >= 128 * MiB ? 2 : 1;
}

/**
 * Tasks to keep under way so that every worker has one: one per worker, one
 * when tasks run on the main thread. `check --read-data` keeps this many packs
 * and this many groups of patch chains in flight (one more pack, so a read is
 * always under way, peaked 164 MiB at the default budget; one per worker,
 * 142-145 MiB).
 */
export function oneTaskPerWorker(sizing: PipelineSizing): number {
  return sizing.placement === 'main-thread' ? 1 : sizing.threads;
}

function floorMiB(n: number): number {
  return Math.floor(n / MiB) * MiB;
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
