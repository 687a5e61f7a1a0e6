// The pool of pipeline workers (piscina), one per core by default.
import * as os from 'node:os';
import { Piscina } from 'piscina';
import { compiledScript } from '../host/compiledScript';
import { RepositoryKeys } from '../crypto/keys';
import { RepositorySettings } from '../repo/configFile';
import {
  PackChunksTask, ScanRegionResult, ScanRegionTask, SealSpansResult, SealSpansTask, SealedBlobs, WorkerSetup, WriteBlobsResult, WriteBlobsTask,
  WritePatchedTask,
} from './tasks';

export class PipelinePool {
  private readonly pool: Piscina;
  readonly threads: number;

  /** Workers get only what sealing and opening blobs needs: the keys and the chunker/region/compression settings. */
  constructor(keys: RepositoryKeys, settings: RepositorySettings, threads = os.availableParallelism()) {
    this.threads = threads;
    const setup: WorkerSetup = {
      idKey: keys.idKey,
      dataKey: keys.dataKey,
      dataKeys: [...keys.dataKeys],
      gearKey: keys.gearKey,
      chunker: settings.chunker,
      regionSize: settings.regionSize,
      compressionLevel: settings.compressionLevel,
    };
    this.pool = new Piscina({
      filename: compiledScript('workers/pipelineWorker'),
      workerData: setup,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
    });
  }

  scanRegion(task: ScanRegionTask): Promise<ScanRegionResult> {
    return this.pool.run(task, { name: 'scanRegion' }) as Promise<ScanRegionResult>;
  }

  /** `task.bases.data` is transferred to the worker. */
  packChunks(task: PackChunksTask): Promise<SealedBlobs> {
    const transfer = task.bases ? [task.bases.data.buffer as ArrayBuffer] : undefined;
    return this.pool.run(task, { name: 'packChunks', transferList: transfer }) as Promise<SealedBlobs>;
  }

  /** `task.oldData` is transferred to the worker. */
  sealSpans(task: SealSpansTask): Promise<SealSpansResult> {
    const transfer = task.oldData ? [task.oldData.buffer as ArrayBuffer] : undefined;
    return this.pool.run(task, { name: 'sealSpans', transferList: transfer }) as Promise<SealSpansResult>;
  }

  /** `task.data` is transferred to the worker and unusable here afterwards. */
  writeBlobs(task: WriteBlobsTask): Promise<WriteBlobsResult> {
    const transfer = task.data.byteOffset === 0 && task.data.byteLength === task.data.buffer.byteLength ? [task.data.buffer as ArrayBuffer] : undefined;
    return this.pool.run(task, { name: 'writeBlobs', transferList: transfer }) as Promise<WriteBlobsResult>;
  }

  writePatched(task: WritePatchedTask): Promise<WriteBlobsResult> {
    return this.pool.run(task, { name: 'writePatched' }) as Promise<WriteBlobsResult>;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
