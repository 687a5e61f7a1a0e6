// The next part of a region read while a worker cuts, hashes and seals the
// part it holds. A worker's reads past the page cache block it: on the bench
// machine they were a fifth of a full backup's worker time (docs/ARCHITECTURE.md,
// "Benchmark"). This reads the bytes the scan's window will want next into a
// buffer of its own, on Node's thread pool, with a descriptor of its own (so
// nothing the window's synchronous reads do to theirs can touch a read in
// flight). Holes are zeros and data extents are read widened to whole blocks,
// as ImageReader.readExtent does, so the bytes are the ones it would give.
// Anything refused or short makes `take` give nothing: the window then reads
// those bytes itself, as before.
import * as fs from 'node:fs';
import { DIRECT_ALIGN, directMemoryPad, forgetDirectMemoryPad, openDirect } from '../host/directIo';
import { Span, clipSpans, complementSpans } from './spans';

export class ImageReadAhead {
  private readonly fd: number | undefined;
  private readonly device: number = -1;
  private pad: number | null = null;
  /** Region bytes [start, end) are being read, region byte `start` landing at `at` in the buffer. */
  private start = -1;
  private end = -1;
  private at = 0;
  private pending: Promise<boolean> | undefined;

  /**
   * `dataAt`: an image byte in a data extent (where the buffer's aligned
   * offset is found, ImageReader.open); `extents`: the region's data extents.
   */
  constructor(
    path: string,
    dataAt: number,
    private readonly regionStart: number,
    private readonly regionLength: number,
    private readonly extents: Span[],
    private readonly buffer: Buffer,
  ) {
    this.fd = openDirect(path, fs.constants.O_RDONLY);
    if (this.fd === undefined) return;
    this.device = fs.fstatSync(this.fd).dev;
    this.pad = directMemoryPad(this.fd, this.device, buffer, dataAt);
  }

  /** Start reading up to `length` region bytes from `start` on, as many as the buffer holds (none without direct reads). */
  begin(start: number, length: number): void {
    if (this.pad === null || this.pending || start >= this.regionLength) return;
    const at = this.pad + ((this.regionStart + start) % DIRECT_ALIGN);
    // Room for the widened end of the last read (a block past the last byte).
    const end = Math.min(this.regionLength, start + length, start + this.buffer.length - at - DIRECT_ALIGN);
    if (end <= start) return;
    this.start = start;
    this.end = end;
    this.at = at;
    const extents = clipSpans(this.extents, start, end);
    for (const h of complementSpans(extents, end - start)) this.buffer.fill(0, at + h.start, at + h.end);
    this.pending = Promise.all(extents.map((e) => this.readWidened(at + e.start, e.end - e.start, this.regionStart + start + e.start))).then(
      (done) => done.every(Boolean),
      () => {
        // Refused after all (the buffer's offset was found on a hole): found again by the next scan, none ahead in this one.
        forgetDirectMemoryPad(this.device, this.buffer);
        this.pad = null;
        return false;
      },
    );
  }

  /**
   * Region bytes from `start` on, up to `end`, into `into` at `intoAt`, from
   * a read begun at `start`: how far they go (`start` when no such read, or
   * it failed). Always waits for a read under way.
   */
  async take(start: number, end: number, into: Buffer, intoAt: number): Promise<number> {
    if (!this.pending) return start;
    const ok = await this.pending;
    this.pending = undefined;
    if (!ok || this.start !== start) return start;
    const upTo = Math.min(end, this.end);
    this.buffer.copy(into, intoAt, this.at, this.at + upTo - start);
    return upTo;
  }

  /** Wait for a read under way and close the descriptor. */
  async close(): Promise<void> {
    await this.pending;
    this.pending = undefined;
    if (this.fd !== undefined) fs.closeSync(this.fd);
  }

  /** Image bytes [position, position + length) at `at` (aligned as position is), widened to whole blocks; false if refused or short. */
  private async readWidened(at: number, length: number, position: number): Promise<boolean> {
    const lead = position % DIRECT_ALIGN;
    const from = at - lead;
    const want = Math.ceil((lead + length) / DIRECT_ALIGN) * DIRECT_ALIGN;
    if (from + want > this.buffer.length) return false;
    let done = 0;
    while (done < lead + length) {
      const n = await readAt(this.fd!, this.buffer, from + done, want - done, position - lead + done);
      done += n;
      // A short read ends at the end of the file, which need not be aligned.
      if (n === 0 || n % DIRECT_ALIGN !== 0) break;
    }
    return done >= lead + length;
  }
}

function readAt(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}
