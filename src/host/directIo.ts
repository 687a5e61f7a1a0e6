// What reads and writes past the page cache (O_DIRECT) need: file offsets
// and lengths in whole blocks, and memory at an address the device can take.
// JavaScript cannot see an address, so the first offset of a buffer that a
// direct read accepts is found by trying (a read of a block that holds data),
// once per ArrayBuffer and device. Backups read images so
// (dedupe/imageReader.ts), restores write them so (workers/imageWriter.ts):
// docs/ARCHITECTURE.md, "Past the page cache".
import * as fs from 'node:fs';

/** File offsets and lengths of direct I/O are multiples of this: every common logical block size divides it. */
export const DIRECT_ALIGN = 4096;

/** Memory offsets tried, in steps of this, for a buffer's first aligned byte. */
const PROBE_STEP = 16;

/** Per ArrayBuffer and device: the offset into the ArrayBuffer the kernel takes for direct I/O, or null when none did. */
const alignedOffsets = new WeakMap<ArrayBufferLike, Map<number, number | null>>();

/** Memory a WebAssembly.Memory holds starts on a page boundary (its pages are 64 KiB). */
const WASM_PAGE = 65536;

/** ArrayBuffers known to start on a page boundary: their page-aligned offset is the one tried first. */
const startOnPage = new WeakSet<ArrayBufferLike>();

/**
 * WebAssembly memory of at least `bytes` (a fixed size: growing would detach
 * its buffer), known to start on a page: direct I/O into it uses page-aligned
 * addresses. The kernel takes any address aligned to the device's DMA
 * alignment (512 bytes on virtio disks), and the first such offset found by
 * trying need not be on a page; on the EPYC VM a direct write from memory
 * 512-aligned but not page-aligned took 15-20× as long (900 MiB in 1 MiB
 * writes: 10.2-13.7 s, page-aligned 0.5-0.7 s). Pages never touched cost no memory.
 */
export function pageAlignedMemory(bytes: number): WebAssembly.Memory {
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  startOnPage.add(memory.buffer);
  return memory;
}

/** `bytes` zeroed bytes starting on a page boundary, for direct I/O (pageAlignedMemory). */
export function pageAlignedBuffer(bytes: number): Buffer {
  return Buffer.from(pageAlignedMemory(bytes).buffer, 0, bytes);
}

/** FERRY_DIRECT_IO=off reads and writes through the page cache, to measure against (read at each open: workers and the main thread alike). */
export function directIoOff(): boolean {
  return process.env.FERRY_DIRECT_IO === 'off';
}

/** A second descriptor of `path` with O_DIRECT, or undefined where the file system refuses it (ramfs, some FUSE and network file systems). */
export function openDirect(path: string, flags: number): number | undefined {
  if (directIoOff()) return undefined;
  try {
    return fs.openSync(path, flags | fs.constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

/**
 * The offset into `buf` of its first byte that direct I/O on `directFd`
 * (device `device`) takes as an address, below DIRECT_ALIGN; null when no
 * offset works. Every later such byte is a multiple of DIRECT_ALIGN further.
 * Finding it the first time reads the block at `probeAt` into the first 8 KiB
 * of `buf`: that block must hold data (a direct read of a hole is no test of
 * the address: the file system fills the memory without the device).
 */
export function directMemoryPad(directFd: number, device: number, buf: Buffer, probeAt: number): number | null {
  let byDevice = alignedOffsets.get(buf.buffer);
  if (!byDevice) alignedOffsets.set(buf.buffer, (byDevice = new Map()));
  let absolute = byDevice.get(device);
  if (absolute === undefined) {
    absolute = null;
    const position = probeAt - (probeAt % DIRECT_ALIGN);
    for (const k of probeOffsets(buf)) {
      try {
        fs.readSync(directFd, buf, k, DIRECT_ALIGN, position);
        absolute = buf.byteOffset + k;
        break;
      } catch {
        // EINVAL: this address is not aligned enough; try the next.
      }
    }
    byDevice.set(device, absolute);
  }
  if (absolute === null) return null;
  return (((absolute - buf.byteOffset) % DIRECT_ALIGN) + DIRECT_ALIGN) % DIRECT_ALIGN;
}

/**
 * Offsets into `buf` to try, each with room for a block after it. Memory known
 * to start on a page: its page-aligned offset first. Then (or if that is
 * refused) the offsets an allocator's alignment allows, PROBE_STEP apart: the
 * first the kernel takes may not be on a page.
 */
function* probeOffsets(buf: Buffer): Generator<number> {
  if (startOnPage.has(buf.buffer)) {
    const onPage = (DIRECT_ALIGN - (buf.byteOffset % DIRECT_ALIGN)) % DIRECT_ALIGN;
    if (onPage + DIRECT_ALIGN <= buf.length) yield onPage;
  }
  for (let k = (PROBE_STEP - (buf.byteOffset % PROBE_STEP)) % PROBE_STEP; k < DIRECT_ALIGN && k + DIRECT_ALIGN <= buf.length; k += PROBE_STEP) yield k;
}

/** Whether an offset for `buf` on `device` is known (found or ruled out) already. */
export function directMemoryPadKnown(device: number, buf: Buffer): boolean {
  return alignedOffsets.get(buf.buffer)?.has(device) === true;
}

/** Forget what was found for `buf` on `device` (a direct operation was refused after all): the next use finds it again. */
export function forgetDirectMemoryPad(device: number, buf: Buffer): void {
  alignedOffsets.get(buf.buffer)?.delete(device);
}

/**
 * An image opened twice: buffered, and with O_DIRECT where the file system
 * allows it (until a direct operation is refused). What ImageReader and
 * ImageWriter share.
 */
export class DirectFile {
  protected constructor(
    protected readonly fd: number,
    protected direct: number | undefined,
    protected readonly device: number,
  ) {}

  /** Opens `path` with `flags` (buffered) and again with O_DIRECT. */
  protected static descriptors(path: string, flags: 'r' | 'r+'): [number, number | undefined, number] {
    const fd = fs.openSync(path, flags);
    return [fd, openDirect(path, flags === 'r' ? fs.constants.O_RDONLY : fs.constants.O_RDWR), fs.fstatSync(fd).dev];
  }

  /** I/O goes past the page cache (O_DIRECT), as far as known so far. */
  get bypassesPageCache(): boolean {
    return this.direct !== undefined;
  }

  close(): void {
    fs.closeSync(this.fd);
    this.closeDirect();
  }

  /** `buf`'s aligned offset (directMemoryPad); null, and no more direct I/O for this file, when there is none. */
  protected padFor(buf: Buffer, probeAt: number): number | null {
    if (this.direct === undefined) return null;
    const pad = directMemoryPad(this.direct, this.device, buf, probeAt);
    if (pad === null) this.closeDirect();
    return pad;
  }

  /** A direct operation was refused after all: `buf`'s offset is found again next time, and this file goes through the page cache. */
  protected refused(buf: Buffer): void {
    forgetDirectMemoryPad(this.device, buf);
    this.closeDirect();
  }

  private closeDirect(): void {
    if (this.direct !== undefined) fs.closeSync(this.direct);
    this.direct = undefined;
  }
}

/** Bytes [position, position + length) of `fd` into buf at `at`, through short reads; an early end of the file is an error. */
export function readFully(fd: number, buf: Uint8Array, at: number, length: number, position: number): void {
  for (let done = 0; done < length; ) {
    const n = fs.readSync(fd, buf, at + done, length - done, position + done);
    if (n === 0) throw new Error(`unexpected end of image at byte ${position + done}`);
    done += n;
  }
}
