// Reads of a disk image for a backup, past the page cache where the kernel
// allows it (O_DIRECT). A backup reads each byte once or twice and never
// again: through the page cache every read is a copy out of freshly
// allocated cache pages (on the bench VM 15-27 % of a full backup's CPU), it
// evicts what the host's guests need (a Dom0 has 1-4 GiB), and a cold read
// took twice as long as a direct one (docs/ARCHITECTURE.md, "Past the page cache").
//
// Direct reads need the file offset, the length and the memory address
// aligned (host/directIo.ts). Offsets and lengths are widened to DIRECT_ALIGN
// (bytes outside an extent read as the file's zeros or its other data, the
// same bytes a buffered read gives). Where O_DIRECT is refused
// (ramfs, some FUSE and network file systems) or a direct read fails, the reader
// falls back to buffered reads: the bytes are the same either way.
import * as fs from 'node:fs';
import { DIRECT_ALIGN, DirectFile, readFully } from '../host/directIo';

export { DIRECT_ALIGN };

export class ImageReader extends DirectFile {
  private constructor(fd: number, direct: number | undefined, device: number, private readonly dataAt: number) {
    super(fd, direct, device);
  }

  /**
   * `dataAt`: a byte of the image that holds data (in a data extent), where
   * the first direct read finds the buffer's aligned offset (host/directIo.ts).
   */
  static open(path: string, dataAt: number): ImageReader {
    return new ImageReader(...DirectFile.descriptors(path, 'r'), dataAt);
  }
  /**
   * Where image byte `position` lands when a region is read into `buf` from
   * there on (`readExtent`): past the buffer's aligned start, at the same
   * offset from an aligned boundary as the byte is in the file. 0 without
   * direct reads. Leave `DIRECT_ALIGN` bytes free after the last byte wanted.
   */
  baseFor(buf: Buffer, position: number): number {
    const pad = this.padFor(buf, this.dataAt);
    return pad === null ? 0 : pad + (position % DIRECT_ALIGN);
  }

  /**
   * Image bytes [position, position + length) into `buf` at `at`, where `at`
   * lies as `baseFor` placed a byte at or before `position` (so the memory
   * and the file are aligned alike). A direct read widens the range to
   * aligned ends: the bytes around it are overwritten with the file's own.
   */
  readExtent(buf: Buffer, at: number, length: number, position: number): void {
    const pad = this.padFor(buf, this.dataAt);
    if (pad !== null) {
      const lead = position % DIRECT_ALIGN;
      const from = at - lead;
      if (from >= pad && (from - pad) % DIRECT_ALIGN === 0 && this.readDirect(buf, from, lead + length, position - lead)) return;
    }
    readFully(this.fd, buf, at, length, position);
  }

  /** Image bytes [position, position + length) somewhere in `buf` (which has room for them plus 2 × DIRECT_ALIGN): their view. */
  view(buf: Buffer, position: number, length: number): Buffer {
    const at = this.baseFor(buf, position);
    if (at + length + DIRECT_ALIGN <= buf.length) {
      this.readExtent(buf, at, length, position);
      return buf.subarray(at, at + length);
    }
    readFully(this.fd, buf, 0, length, position);
    return buf.subarray(0, length);
  }

  /** `need` bytes from aligned `position` into buf at `at` (aligned); false if the kernel refused (then nothing is promised about buf). */
  private readDirect(buf: Buffer, at: number, need: number, position: number): boolean {
    const want = Math.ceil(need / DIRECT_ALIGN) * DIRECT_ALIGN;
    if (at + want > buf.length) return false;
    let done = 0;
    try {
      while (done < need) {
        const n = fs.readSync(this.direct!, buf, at + done, want - done, position + done);
        done += n;
        // A short read ends at the end of the file, which need not be aligned.
        if (n === 0 || n % DIRECT_ALIGN !== 0) break;
      }
    } catch {
      // Refused after all (the offset found was wrong): found again by the next reader, buffered reads for this one.
      this.refused(buf);
      return false;
    }
    if (done < need) throw new Error(`unexpected end of image at byte ${position + done}`);
    return true;
  }
}
