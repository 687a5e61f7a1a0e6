// What every disk backup on one worker pool shares: the regions in flight,
// the page-patch tasks holding buffers, and the buffers that come back from
// the workers (sealed output, base carriers) for the next tasks. Guests that
// `backup --all` backs up at once (concurrency 2 by default) take turns with
// one set sized for the pool; with a set each, two guests held twice the
// buffers and a fleet of 8 guests of 48 MiB peaked at 166 MiB, not 148.
import type { PipelinePool } from '../workers/pipelinePool';
import { TaskSlots } from './taskSlots';
import { SEALED_BACKLOG_BATCHES_PER_WORKER, SealedBacklog } from './sealedBacklog';

export class BackupBuffers {
  /** Regions being read, cut and sealed at once: one per worker plus one keeps every core busy. */
  readonly regionSlots: TaskSlots;
  /** Page-patch and changed-block tasks holding buffers: only as many as workers to run them. */
  readonly patchSlots: TaskSlots;
  /** Sealed-output buffers whose blobs are packed, for the next batches to seal into (up to outputsKept). */
  readonly spareOutputs: Uint8Array[] = [];
  /** Buffers page-patch bases travelled in, back from the workers, to carry the next ones. */
  readonly spareBases: Uint8Array[] = [];
  /** Output of workers that seal as they scan, waiting for the pack writer. */
  readonly sealedBacklog: SealedBacklog;

  /**
   * Sealed-output buffers kept: one per region in flight, and two per seal batch the sealed
   * backlog may hold (a batch of a typical disk seals to about half its buffer, so the backlog
   * holds about twice as many buffers as batches). Kept to one per region, the buffers a
   * draining backlog handed back were dropped and fresh ones made as it filled again: a
   * quarter of the batches of a dense 737 MiB full backup touched fresh pages (66 → 49
   * thousand page faults with these kept).
   */
  readonly outputsKept: number;

  private constructor(
    /** At most this many spare base carriers are kept: one per region in flight. */
    readonly regionsInFlight: number,
    threads: number,
    sealBatchBytes: number,
  ) {
    this.regionSlots = new TaskSlots(regionsInFlight);
    this.patchSlots = new TaskSlots(threads);
    this.sealedBacklog = new SealedBacklog(threads * SEALED_BACKLOG_BATCHES_PER_WORKER * sealBatchBytes);
    this.outputsKept = regionsInFlight + Math.ceil(2 * threads * SEALED_BACKLOG_BATCHES_PER_WORKER);
  }

  /** The set every disk backup on `pool` uses. */
  static of(pool: PipelinePool): BackupBuffers {
    let set = sets.get(pool);
    if (!set) {
      // Tasks on the main thread (the smallest budgets) run one at a time: a second region would only hold buffers.
      set = new BackupBuffers(pool.sizing.placement === 'main-thread' ? 1 : pool.threads + 1, pool.threads, pool.sizing.sealBatchBytes);
      sets.set(pool, set);
    }
    return set;
  }

  /** Keep a sealed-output buffer back from a task for the next one (up to outputsKept). */
  keepOutput(buffer: Uint8Array | undefined): void {
    if (buffer && this.spareOutputs.length < this.outputsKept) this.spareOutputs.push(buffer);
  }

  /** Keep a base carrier back from a task for the next one (up to one per region in flight). */
  keepBases(buffer: Uint8Array | undefined): void {
    if (buffer && this.spareBases.length < this.regionsInFlight) this.spareBases.push(buffer);
  }
}

const sets = new WeakMap<PipelinePool, BackupBuffers>();
