// A restore is durable only once its bytes are on the device (atomicFile.ts
// fsyncs before the rename). Left to the kernel, writeback of a freshly
// restored image mostly starts at that fsync (dirty pages stay far below the
// background threshold of a host with a lot of memory), so the device sits
// idle while the workers decrypt and then the CPUs sit idle while the device
// writes. Asking for writeback of what has been written so far, every
// EVERY_BYTES, in the background, lets the two overlap; the final fsync then
// waits only for the tail.
import * as fs from 'node:fs';
import { StorageError, describeSystemError } from '../errors';

/** Written bytes between background flushes: large enough that the flushes cost few syscalls, small enough to overlap. */
export const EARLY_WRITEBACK_EVERY = 128 * 1024 * 1024;

export class EarlyWriteback {
  private flushedAt = 0;
  /** Background flushes started (the test reads it). */
  flushes = 0;
  private inFlight: Promise<void> | undefined;
  private failure: unknown;

  private constructor(
    private readonly path: string,
    private readonly fd: number,
    private readonly everyBytes: number,
  ) {}

  static open(path: string, everyBytes = EARLY_WRITEBACK_EVERY): EarlyWriteback {
    return new EarlyWriteback(path, fs.openSync(path, 'r+'), everyBytes);
  }

  /** A background flush is running. */
  get flushing(): boolean {
    return this.inFlight !== undefined;
  }

  /** `total` bytes have been written so far: start a background flush if enough are new and none runs. */
  written(total: number): void {
    if (this.inFlight || this.failure || total - this.flushedAt < this.everyBytes) return;
    this.flushedAt = total;
    this.flushes++;
    this.inFlight = new Promise<void>((resolve) => {
      fs.fdatasync(this.fd, (err) => {
        // The final fsync would meet the same device error: keep it for close() to report.
        if (err) this.failure = err;
        this.inFlight = undefined;
        resolve();
      });
    });
  }

  /** Wait for a flush in flight and close; a flush that failed is reported here. */
  async close(): Promise<void> {
    await this.abandon();
    if (this.failure) throw new StorageError(`writing ${this.path}: ${describeSystemError(this.failure)}`, { cause: this.failure });
  }

  /** Close after the restore failed anyway: its own error is the one to report. */
  async abandon(): Promise<void> {
    await this.inFlight;
    fs.closeSync(this.fd);
  }
}
