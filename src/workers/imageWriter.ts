// Writes restored chunks into a target image past the page cache where the
// kernel allows it (O_DIRECT), while the worker goes on decompressing.
// Through the page cache every restored byte is copied into freshly
// allocated cache pages and written back at the final fsync; on the bench VM
// `dd` of a guest's 890 MB plus `sync` took 2.8-3.6 s buffered (1.5-1.9 s of
// system time) and 1.1-1.2 s direct (0.25 s).
//
// Chunks start and end anywhere, direct writes need whole blocks at
// addresses the device takes (host/directIo.ts). So chunks that follow each
// other on the disk are laid one after another in a staging buffer (a
// `ChunkRun`), decompressed straight into a place whose aligned blocks match
// the disk's; the run's aligned interior is written direct, in the
// background (a write waits for the device, and ext4 holds the inode lock for
// a write that allocates blocks), and its two partial blocks at the ends
// through the page cache, where they meet the neighbouring runs' ends
// (written by any worker, in any order: the kernel keeps the two paths
// coherent, and no direct write touches a block a buffered one does). The
// final fsync makes both durable. Where O_DIRECT is refused, or a direct
// write is, everything goes through the page cache.
import * as fs from 'node:fs';
import { DIRECT_ALIGN, DirectFile, directMemoryPadKnown } from '../host/directIo';

/** Runs with less than this of aligned interior are written through the page cache whole: not worth a device round trip. */
const MIN_DIRECT_BYTES = 64 * 1024;

export class ImageWriter extends DirectFile {
  static open(path: string): ImageWriter {
    // Read-write: finding a buffer's aligned offset reads back a block written (directIo.ts).
    return new ImageWriter(...DirectFile.descriptors(path, 'r+'));
  }

  /**
   * Where in `staging` to put bytes bound for image byte `position` so that
   * their aligned blocks can be written direct: the offset, below 2 ×
   * DIRECT_ALIGN; 0 without direct writes or before the buffer's aligned
   * offset is known (see `write`).
   */
  offsetFor(staging: Buffer, position: number): number {
    if (this.direct === undefined || !directMemoryPadKnown(this.device, staging)) return 0;
    const pad = this.padFor(staging, 0);
    return pad === null ? 0 : pad + (position % DIRECT_ALIGN);
  }

  /** `bytes` at image byte `position`, all through the page cache (bytes placed anywhere). */
  writeBuffered(bytes: Buffer, position: number): void {
    for (let done = 0; done < bytes.length; ) done += fs.writeSync(this.fd, bytes, done, bytes.length - done, position + done);
  }

  /**
   * `bytes` at image byte `position`, as `offsetFor` placed them in `staging`
   * (which `bytes` is a view of): the ends through the page cache, the
   * aligned interior direct, all in the background; resolved when written. The first run
   * of a buffer goes through the page cache whole, and one of its blocks is
   * then read back direct to find the buffer's aligned offset (a block that
   * holds data: reading a hole tests no address); `staging` may be
   * overwritten by then.
   */
  async write(staging: Buffer, bytes: Buffer, position: number): Promise<void> {
    const end = position + bytes.length;
    const from = Math.ceil(position / DIRECT_ALIGN) * DIRECT_ALIGN;
    const to = end - (end % DIRECT_ALIGN);
    if (this.direct !== undefined && !directMemoryPadKnown(this.device, staging)) {
      this.writeBuffered(bytes, position);
      if (to - from >= DIRECT_ALIGN) this.padFor(staging, from);
      return;
    }
    const pad = this.direct === undefined || to - from < MIN_DIRECT_BYTES ? null : this.padFor(staging, from);
    const interiorAt = bytes.byteOffset - staging.byteOffset + (from - position);
    // The interior's first byte must lie a multiple of DIRECT_ALIGN past the staging buffer's aligned offset.
    if (pad === null || bytes.buffer !== staging.buffer || (interiorAt - pad) % DIRECT_ALIGN !== 0) {
      this.writeBuffered(bytes, position);
      return;
    }
    // The ends in the background too: a buffered write waits for the inode lock that a direct write holds.
    await Promise.all([
      this.writeBufferedInBackground(bytes.subarray(0, from - position), position),
      this.writeBufferedInBackground(bytes.subarray(to - position), to),
      this.writeDirect(staging, bytes.subarray(from - position, to - position), from),
    ]);
  }

  private async writeBufferedInBackground(bytes: Buffer, position: number): Promise<void> {
    for (let done = 0; done < bytes.length; ) done += await writeInBackground(this.fd, bytes.subarray(done), position + done);
  }

  /** What the kernel refuses as such (EINVAL: nothing written) goes through the page cache; other errors are the write's. */
  private async writeDirect(staging: Buffer, bytes: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const direct = this.direct;
      if (direct === undefined) break;
      try {
        const n = await writeInBackground(direct, bytes.subarray(done), position + done);
        done += n;
        // A short direct write (a full device, an odd file system): the rest goes through the page cache.
        if (n === 0 || n % DIRECT_ALIGN !== 0) break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        // Refused after all (the offset found was wrong): found again by the next writer, buffered writes for this one.
        this.refused(staging);
      }
    }
    if (done < bytes.length) this.writeBuffered(bytes.subarray(done), position + done);
  }
}

/** One pwrite of `bytes` at `position` on the libuv thread pool: the bytes it wrote. */
function writeInBackground(fd: number, bytes: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, bytes, 0, bytes.length, position, (err, written) => (err ? reject(err) : resolve(written))));
}

/**
 * Chunks bound for consecutive image bytes, laid one after another in a
 * staging buffer and written with one write: a direct write's cost is mostly
 * its latency (dd to this VM's disk: 256 KiB writes took 1.64 s for 890 MB,
 * 1 MiB writes 0.70 s), and restored chunks mostly follow each other.
 */
export class ChunkRun {
  /** Image byte where the run starts, its offset in staging, and the bytes laid so far. */
  private start = 0;
  private at = 0;
  private length = 0;

  constructor(
    private readonly writer: ImageWriter,
    readonly staging: Buffer,
  ) {}

  get empty(): boolean {
    return this.length === 0;
  }

  /** Where `length` bytes bound for image byte `position` go after the run, if they continue it and fit. */
  next(position: number, length: number): Buffer | undefined {
    const end = this.at + this.length;
    if (this.length === 0 || position !== this.start + this.length || end + length + DIRECT_ALIGN > this.staging.length) return undefined;
    return this.staging.subarray(end, end + length);
  }

  /** Start the run (empty) at image byte `position`: where its first `length` bytes go, undefined if they do not fit. */
  begin(position: number, length: number): Buffer | undefined {
    this.at = this.writer.offsetFor(this.staging, position);
    this.start = position;
    this.length = 0;
    return this.at + length + DIRECT_ALIGN <= this.staging.length ? this.staging.subarray(this.at, this.at + length) : undefined;
  }

  /** The `length` bytes placed last join the run. */
  add(length: number): void {
    this.length += length;
  }

  /** Write the run and empty it; resolves when its direct part is written. The bytes written. */
  async flush(): Promise<number> {
    const length = this.length;
    this.length = 0;
    if (length > 0) await this.writer.write(this.staging, this.staging.subarray(this.at, this.at + length), this.start);
    return length;
  }
}
