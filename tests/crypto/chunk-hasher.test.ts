// ChunkHasher keeps one keyed BLAKE3 hasher and resets it per chunk: the ids
// are a fresh keyed hasher's, and no native hasher per chunk is left for the
// garbage collector (each held ~2.5 KiB that V8 does not count, so they piled
// up: 253 MiB of RSS per 100,000 chunks in check --read-data).
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { ChunkHasher } from '../../src/crypto/chunkId';
import { REPO_ROOT } from '../support/ferry';

describe('ChunkHasher', () => {
  it('gives each chunk the id a fresh keyed hasher gives (nothing carries over between chunks)', () => {
    const key = randomBytes(32);
    const hasher = new ChunkHasher(key);
    for (const size of [0, 1, 4096, 70_000, 1024 * 1024]) {
      const chunk = randomBytes(size);
      expect(hasher.hash(chunk).equals(Blake3Hasher.newKeyed(key).update(chunk).digestBuffer())).toBe(true);
    }
  });

  it('hashes 100,000 chunks with RSS growing by less than 64 MiB (a native hasher per chunk: ~250 MiB)', () => {
    // A fresh process running the built module, so the figure is its own.
    const script = `
      const { ChunkHasher } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist/crypto/chunkId.js'))});
      const hasher = new ChunkHasher(Buffer.alloc(32, 7));
      const chunk = Buffer.alloc(4096, 1);
      const before = process.memoryUsage().rss;
      for (let i = 0; i < 100000; i++) hasher.hash(chunk);
      process.stdout.write(String(process.memoryUsage().rss - before));`;
    const grownBytes = Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }));
    expect(grownBytes / (1024 * 1024)).toBeLessThan(64);
  });
});
