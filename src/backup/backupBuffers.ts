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
  /** Sealed-output buffers whose blobs are packed, for the next batches to seal into. */
  readonly spareOutputs: Uint8Array[] = [];
  /** Buffers page-patch bases travelled in, back from the workers, to carry the next ones. */
  readonly spareBases: Uint8Array[] = [];
  /** Output of workers that seal as they scan, waiting for the pack writer. */
  readonly sealedBacklog: SealedBacklog;

  private constructor(
    /** At most this many spares of each kind are kept: one per region in flight. */
    readonly regionsInFlight: number,
    threads: number,
    sealBatchBytes: number,
  ) {
    this.regionSlots = new TaskSlots(regionsInFlight);
    this.patchSlots = new TaskSlots(threads);
    this.sealedBacklog = new SealedBacklog(threads * SEALED_BACKLOG_BATCHES_PER_WORKER * sealBatchBytes);
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

  /** Keep a buffer back from a task for the next one (up to one per region in flight). */
  keep(list: Uint8Array[], buffer: Uint8Array | undefined): void {
    if (buffer && list.length < this.regionsInFlight) list.push(buffer);
  }
}

const sets = new WeakMap<PipelinePool, BackupBuffers>();
