// The pool of pipeline workers (piscina), one per core by default, as many as
// the memory budget allows (memoryBudget.ts); the engines size their batches
// and reads in flight by `sizing`.
import * as os from 'node:os';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Piscina } from 'piscina';
import { compiledScript } from '../host/compiledScript';
import { RepositoryKeys } from '../crypto/keys';
import { RepositorySettings } from '../repo/configFile';
import {
  PackChunksTask, ScanAndSealResult, ScanAndSealTask, ScanRegionResult, ScanRegionTask, SealChangedResult, SealChangedTask, WorkerSetup, WriteBlobsResult, WriteBlobsTask,
  WritePatchedTask, PackedChunks, VerifyPatchedTask,
} from './tasks';
import { PipelineSizing, pipelineSizing } from './memoryBudget';
import { FreshChunkDesk, serveFreshChunks } from './freshChunkChannel';
import { PoolWorkerData, TaskName, WorkerState, runInProcess, workerState } from './pipelineWorker';
import { WorkerSetupSlot } from './workerSetupSlot';

/** Room in a sealed-output buffer beyond its batch's plaintext: seal overhead and patch headers of its blobs. */
const SEAL_OUTPUT_SLACK = 256 * 1024;

/** In main-thread placement, a full garbage collection after tasks have handled about this much (4 tasks of 2 MiB). */
const BYTES_PER_COLLECTION = 8 * 1024 * 1024;

/** V8's gc(), made callable without --expose-gc on the command line (the flag is set at run time). */
function explicitGarbageCollector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** The young generation of each worker isolate (V8 semi-spaces), in MiB. */
const YOUNG_GENERATION_MIB = 6;

export class PipelinePool {
  private readonly pool?: Piscina;
  private collectGarbage: (() => void) | undefined;
  private tasksSinceCollection = 0;
  /**
   * Restore's read buffers (readRangeBytes each), back from the workers, for the next reads: kept here
   * so that the disks and guests one process restores share them (a fresh set per disk piled up
   * as garbage until V8's next full collection: 161-175 MiB restoring 4 guests in one process).
   */
  readonly spareReadBuffers: Uint8Array[] = [];
  /** With placement 'main-thread': the tasks' state, on this thread. */
  private readonly inProcess?: WorkerState;
  /** In-process tasks run one after the other, as on one worker. */
  private inProcessQueue: Promise<unknown> = Promise.resolve();
  readonly threads: number;
  readonly sizing: PipelineSizing;
  /** The pool runs on the threads PipelinePool.startEarly started. */
  readonly startedEarly: boolean;

  /**
   * Workers get only what sealing and opening blobs needs: the keys and the chunker/region/compression settings.
   * `threads`: asked for (default one per core); `budgetBytes`: the memory budget, which may allow fewer.
   */
  constructor(keys: RepositoryKeys, settings: RepositorySettings, threads?: number, budgetBytes?: number) {
    this.sizing = pipelineSizing({ budgetBytes, cores: os.availableParallelism(), threads });
    const { threads: count } = this.sizing;
    this.threads = count;
    const setup: WorkerSetup = {
      idKey: keys.idKey,
      dataKey: keys.dataKey,
      dataKeys: [...keys.dataKeys],
      gearKey: keys.gearKey,
      fingerprintKey: keys.fingerprintKey,
      chunker: settings.chunker,
      regionSize: settings.regionSize,
      compressionLevel: settings.compressionLevel,
      windowBytes: this.sizing.windowBytes,
      sealOutputBytes: this.sizing.sealBatchBytes + SEAL_OUTPUT_SLACK,
      // On the main thread a scan's reads would wait for its own event loop: nothing to overlap.
      readAhead: this.sizing.placement === 'worker-threads',
    };
    const started = takeEarlyWorkers(this.sizing.placement === 'worker-threads' ? count : 0);
    this.startedEarly = started !== undefined;
    if (this.sizing.placement === 'main-thread') {
      this.inProcess = workerState(setup);
      this.collectGarbage = explicitGarbageCollector();
      return;
    }
    const workers = started ?? startWorkers(count);
    try {
      workers.slot.post(setup);
    } catch (err) {
      workers.pool.destroy().catch(() => undefined); // threads that never ran a task; the error says why
      throw err;
    }
    this.pool = workers.pool;
  }

  /**
   * Start the worker threads of the next pool now, before it has the keys: they load their
   * modules (~0.15-0.3 s each) while the main thread loads the index and lists restore points,
   * and the pool made next takes them. Sized as that pool will be (same threads and budget);
   * if it is not, it starts its own and these are let go.
   */
  static startEarly(threads?: number, budgetBytes?: number): void {
    const { placement, threads: count } = pipelineSizing({ budgetBytes, cores: os.availableParallelism(), threads });
    if (placement === 'main-thread') return;
    early = takeEarlyWorkers(count) ?? startWorkers(count);
  }

  scanRegion(task: ScanRegionTask): Promise<ScanRegionResult> {
    return this.run('scanRegion', task) as Promise<ScanRegionResult>;
  }

  /**
   * Tasks run on worker threads, so a scan can wait for the main thread's answers
   * (scanAndSealRegion); on the main thread itself it could not.
   */
  get sealsWhileScanning(): boolean {
    return this.pool !== undefined;
  }

  /**
   * Scan a region and seal, as it goes, the chunks `desk` says are fresh (as page patches
   * against the bases it gives): every one of them has gone to `desk.store` when this resolves.
   */
  async scanAndSealRegion(task: ScanRegionTask, desk: FreshChunkDesk): Promise<ScanAndSealResult> {
    if (!this.pool) throw new Error('scanAndSealRegion needs worker threads (see sealsWhileScanning)');
    const served = serveFreshChunks(desk);
    const full: ScanAndSealTask = { ...task, channel: served.end, basesFollow: desk.bases !== undefined };
    const transferList = [served.end.port as unknown as ArrayBuffer];
    let succeeded = false;
    try {
      const result = (await this.pool.run(full, { name: 'scanAndSealRegion', transferList })) as ScanAndSealResult;
      succeeded = true;
      return result;
    } finally {
      await served.finish(succeeded);
    }
  }

  /** `task.bases.data` and `task.recycled` are transferred to the worker. */
  packChunks(task: PackChunksTask): Promise<PackedChunks> {
    const transfer = basesAndRecycled(task);
    return this.run('packChunks', task, transfer) as Promise<PackedChunks>;
  }

  /** `task.bases.data` and `task.recycled` are transferred to the worker (and come back with the result). */
  sealChanged(task: SealChangedTask): Promise<SealChangedResult> {
    const transfer = basesAndRecycled(task);
    return this.run('sealChanged', task, transfer) as Promise<SealChangedResult>;
  }

  /** `task.data` is transferred to the worker and unusable here afterwards. */
  writeBlobs(task: WriteBlobsTask): Promise<WriteBlobsResult> {
    const transfer = wholeBuffer(task.data);
    return this.run('writeBlobs', task, transfer) as Promise<WriteBlobsResult>;
  }

  writePatched(task: WritePatchedTask): Promise<WriteBlobsResult> {
    const transfer = wholeBuffer(task.data);
    return this.run('writePatched', task, transfer) as Promise<WriteBlobsResult>;
  }

  /** `task.data` is transferred to the worker and back (the result's `returned`). */
  verifyPatched(task: VerifyPatchedTask): Promise<WriteBlobsResult> {
    const transfer = wholeBuffer(task.data);
    return this.run('verifyPatched', task, transfer) as Promise<WriteBlobsResult>;
  }

  private run(name: TaskName, task: object, transferList?: ArrayBuffer[]): Promise<unknown> {
    if (this.pool) return this.pool.run(task, { name, transferList });
    const state = this.inProcess!;
    const result = this.inProcessQueue.then(() => {
      // V8 collects dead Buffers only after up to 64 MiB of external memory has grown: at the
      // smallest budgets that alone passes the budget (CI saw 97.9 MiB at --memory 96M), so the
      // main thread collects every few tasks (~2 MiB each) itself.
      if (++this.tasksSinceCollection >= Math.max(1, Math.round(BYTES_PER_COLLECTION / this.sizing.sealBatchBytes))) {
        this.tasksSinceCollection = 0;
        this.collectGarbage?.();
      }
      return runInProcess(state, name, task);
    });
    this.inProcessQueue = result.catch(() => undefined);
    return result;
  }

  /**
   * A full collection on this thread, between two large jobs (the guests one process restores): the
   * buffers and plans the last one dropped are freed before the next allocates its own.
   */
  collectBetweenJobs(): void {
    this.collectGarbage ??= explicitGarbageCollector();
    this.collectGarbage();
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}

/** Worker threads and the slot their setup will be posted in. */
interface StartedWorkers {
  pool: Piscina;
  slot: WorkerSetupSlot;
  threads: number;
}

/** Workers started by PipelinePool.startEarly, not yet taken by a pool. */
let early: StartedWorkers | undefined;

function startWorkers(threads: number): StartedWorkers {
  const slot = new WorkerSetupSlot();
  const workerData: PoolWorkerData = { setupSlot: slot.shared };
  const pool = new Piscina({
    filename: compiledScript('workers/pipelineWorker'),
    // Every task names its handler. Piscina preloads the module's handler called `name`
    // ('default' if not given) and, when require() finds none, loads the module a second time
    // through import(): ~0.05 s of CPU per worker, per command. An existing export avoids that.
    name: 'writeBlobs' satisfies TaskName,
    workerData,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
    // Piscina's default has an idle worker wait for its next task in Atomics.wait, so its event
    // loop never turns between tasks, and what a task leaves for the loop to release (the closed
    // ends of transferred ports, native finalizers) piles up: ~3 KiB per task, without bound.
    // A backup of a 512 GiB sparse disk (16384 regions, a task each) peaked at 194-199 MiB, and
    // 136-149 MiB with messages instead; the same walls on dense images (docs/ARCHITECTURE.md, "Memory").
    atomics: 'disabled',
    // A worker's JavaScript allocates little (offsets, ids): a small young generation saves
    // ~5 MiB per worker over V8's default (16 MiB semi-spaces) at no measurable CPU cost.
    resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MIB },
  });
  return { pool, slot, threads };
}

/** The early workers if they are `threads` many (0: none wanted); others are let go. */
function takeEarlyWorkers(threads: number): StartedWorkers | undefined {
  const taken = early;
  early = undefined;
  if (taken && taken.threads === threads) return taken;
  taken?.pool.destroy().catch(() => undefined); // idle threads that never ran a task: nothing to report
  return undefined;
}

/** The transfer list of a sealing task: its bases' buffer and its recycled output buffer, those it has. */
function basesAndRecycled(task: { bases?: { data: Uint8Array }; recycled?: Uint8Array }): ArrayBuffer[] {
  return [task.bases?.data.buffer, task.recycled?.buffer].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
}

/** The transfer list for a task's `data`: its buffer when the view is all of it (a view of a larger buffer is copied). */
function wholeBuffer(data: Uint8Array): ArrayBuffer[] | undefined {
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? [data.buffer as ArrayBuffer] : undefined;
}
