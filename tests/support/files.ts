// File contents: hashes, sparseness, and deterministic test data.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { SeededRandom } from '../../src/demo/seededRandom';

export { SeededRandom };

const MiB = 1024 * 1024;

/** sha256 (hex) of a file or block device. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Bytes the file system has allocated to a file (holes do not count). */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** `length` incompressible bytes, the same for the same (seed, stream). AES-CTR runs at GB/s. */
export function pseudoRandomBytes(seed: number, stream: number, length: number): Buffer {
  const key = createHash('sha256').update(`ferry-test-${seed}`).digest();
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(stream >>> 0, 0);
  iv.writeUInt32BE(Math.floor(stream / 2 ** 32), 4);
  return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(length));
}

/** Compressible, text-like bytes (log lines) that differ per block. */
function textBlock(seed: number, block: number, length: number): Buffer {
  const rng = new SeededRandom(seed * 7919 + block);
  const words = ['disk', 'write', 'sector', 'guest', 'backup', 'kernel', 'eth0', 'link', 'up', 'ok', 'error', 'retry'];
  let s = '';
  while (s.length < length) {
    s += `${block}.${rng.int(1e6)} host${rng.int(64)}: ${words[rng.int(words.length)]} ${words[rng.int(words.length)]} ${rng.int(65536)}\n`;
  }
  return Buffer.from(s.slice(0, length), 'latin1');
}

export interface RandomishImageOptions {
  /** Fraction of 1 MiB blocks left as holes. */
  holes?: number;
  /** Fraction of 1 MiB blocks holding compressible text. */
  text?: number;
}

/**
 * Write a sparse "disk image" of `sizeBytes` made of 1 MiB blocks: holes,
 * compressible text and incompressible random data, chosen by `seed`.
 */
export function writeRandomishImage(file: string, sizeBytes: number, seed: number, opts: RandomishImageOptions = {}): void {
  const holes = opts.holes ?? 0.2;
  const text = opts.text ?? 0.2;
  const rng = new SeededRandom(seed);
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, sizeBytes);
    for (let off = 0, block = 0; off < sizeBytes; off += MiB, block++) {
      const len = Math.min(MiB, sizeBytes - off);
      const r = rng.next();
      if (r < holes) continue;
      const data = r < holes + text ? textBlock(seed, block, len) : pseudoRandomBytes(seed, block, len);
      fs.writeSync(fd, data, 0, len, off);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrite the 4 KiB page at `offset` of an existing file with seeded random bytes (the same for the same offset and seed). */
export function overwritePage(file: string, offset: number, seed: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, pseudoRandomBytes(seed, offset, 4096), 0, 4096, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrite `count` random 4 KiB pages of an existing file in place; returns their offsets. */
export function overwriteRandomPages(file: string, count: number, seed: number, pageSize = 4096): number[] {
  const size = fs.statSync(file).size;
  const pages = Math.floor(size / pageSize);
  const rng = new SeededRandom(seed);
  const offsets: number[] = [];
  const fd = fs.openSync(file, 'r+');
  try {
    for (let i = 0; i < count; i++) {
      const off = rng.int(pages) * pageSize;
      fs.writeSync(fd, pseudoRandomBytes(seed + 1, i, pageSize), 0, pageSize, off);
      offsets.push(off);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return offsets;
}

/** Invert one byte of a file in place (simulates bit rot / tampering). */
export function flipByte(file: string, offset: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    if (fs.readSync(fd, b, 0, 1, offset) !== 1) throw new Error(`flipByte: ${file} has no byte at ${offset}`);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, offset);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** All regular files under `dir`, as paths relative to it, sorted. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(rel ? `${dir}/${rel}` : dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else out.push(r);
    }
  };
  walk('');
  return out.sort();
}

/**
 * A sparse image of `sizeBytes` with randomish data pieces (10% holes, 40% text)
 * of `pieceBytes` at `pieceAt`, piece i from seed `firstSeed + i`: a large
 * disk with little data, for tests of what does not grow with the image.
 */
export function writeSparseImageWithPieces(file: string, sizeBytes: number, pieceAt: number[], pieceBytes: number, firstSeed: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeBytes);
  const fd = fs.openSync(file, 'r+');
  try {
    pieceAt.forEach((at, i) => {
      const piece = `${file}.piece-${i}`;
      writeRandomishImage(piece, pieceBytes, firstSeed + i, { holes: 0.1, text: 0.4 });
      fs.writeSync(fd, fs.readFileSync(piece), 0, pieceBytes, at);
      fs.rmSync(piece);
    });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A thin-provisioned disk: `regions` regions of `regionBytes`, all holes but
 * 4 KiB of distinct random bytes at the start of each (one region map and
 * one chunk per region, whatever the disk's size).
 */
export function writeThinImage(file: string, regions: number, regionBytes: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, regions * regionBytes);
  const fd = fs.openSync(file, 'r+');
  try {
    for (let r = 0; r < regions; r++) fs.writeSync(fd, randomBytes(4096), 0, 4096, r * regionBytes);
  } finally {
    fs.closeSync(fd);
  }
}
