// Memory for direct I/O (src/host/directIo.ts): the kernel takes any address
// aligned to the device's DMA alignment (512 bytes on these virtio disks),
// but a direct write from memory that is not page-aligned took 15-20× as
// long on the EPYC VM. Memory known to start on a page is used page-aligned.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIRECT_ALIGN, directMemoryPad, openDirect, pageAlignedBuffer } from '../../src/host/directIo';
import { Chunker } from '../../src/dedupe/chunker';
import { gearTable } from '../../src/dedupe/gearTable';
import { useScratch } from '../support';

const scratch = useScratch('direct-io');
let file: string;
let direct: number;
let device: number;

beforeAll(() => {
  file = scratch.path('blocks.img');
  fs.writeFileSync(file, Buffer.alloc(4 * DIRECT_ALIGN, 7));
  const fd = openDirect(file, fs.constants.O_RDONLY);
  if (fd === undefined) throw new Error(`the scratch directory's file system refuses O_DIRECT (${file}): run the tests on ext4, xfs or btrfs`);
  direct = fd;
  device = fs.fstatSync(fd).dev;
});

afterAll(() => {
  if (direct !== undefined) fs.closeSync(direct);
});

describe('memory for direct I/O', () => {
  it('a page-aligned buffer is used from its first byte, and a view of it from its first byte on a page', () => {
    const whole = pageAlignedBuffer(8 * DIRECT_ALIGN);
    expect(directMemoryPad(direct, device, whole, 0)).toBe(0);
    // A view 512 bytes in: 512-aligned addresses are taken too, but the one chosen is on the next page.
    const fresh = pageAlignedBuffer(8 * DIRECT_ALIGN);
    const view = fresh.subarray(512);
    expect(directMemoryPad(direct, device, view, 0)).toBe(DIRECT_ALIGN - 512);
    expect(fs.readSync(direct, view, DIRECT_ALIGN - 512, DIRECT_ALIGN, DIRECT_ALIGN)).toBe(DIRECT_ALIGN);
    expect(view[DIRECT_ALIGN - 512]).toBe(7);
  });

  it('the pipeline workers read window (the chunker’s buffer) starts on a page, for content-defined and fixed chunks', () => {
    const gear = gearTable(Buffer.alloc(32, 1));
    for (const params of [
      { kind: 'fastcdc', minSize: 64 * 1024, avgSize: 256 * 1024, maxSize: 1024 * 1024 },
      { kind: 'fixed', minSize: 256 * 1024, avgSize: 256 * 1024, maxSize: 256 * 1024 },
    ] as const) {
      const window = new Chunker(params, gear, { bufferBytes: 3 * 1024 * 1024 }).buffer;
      expect(directMemoryPad(direct, device, window.subarray(512), 0), params.kind).toBe(DIRECT_ALIGN - 512);
    }
  });
});
