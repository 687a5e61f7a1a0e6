// Sealed output handed over by workers that seal as they scan
// (workers/freshChunkChannel.ts) and not yet copied into a pack. The pack
// writer stops taking blobs while it writes a full pack (16 MiB and an fsync,
// 20-70 ms on the test machines); workers go on sealing into this backlog
// meanwhile, and wait only when it passes its limit, so memory stays bounded
// when the disk falls behind.

/**
 * Sealed bytes the backlog holds before workers wait, per worker, in seal batches
 * (PipelineSizing.sealBatchBytes): 6 MiB at the default budget, where 2 workers
 * seal ~5 MB while a pack is written.
 */
export const SEALED_BACKLOG_BATCHES_PER_WORKER = 1.5;

export class SealedBacklog {
  private held = 0;
  private waiting: (() => void)[] = [];

  constructor(readonly limitBytes: number) {}

  /** Count `bytes` as held until `packed` settles. */
  hold(bytes: number, packed: Promise<unknown>): void {
    this.held += bytes;
    const release = () => {
      this.held -= bytes;
      if (this.held <= this.limitBytes) for (const wake of this.waiting.splice(0)) wake();
    };
    packed.then(release, release);
  }

  /** Resolves once the backlog is within its limit. */
  async room(): Promise<void> {
    while (this.held > this.limitBytes) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  get heldBytes(): number {
    return this.held;
  }
}
