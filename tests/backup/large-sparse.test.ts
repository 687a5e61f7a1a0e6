// A 1 TiB image needs neither 1 TiB of RAM nor of temporary space: holes are
// never read, memory stays bounded, and the restore is as sparse as the source.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocatedBytes, pseudoRandomBytes, useScratch } from '../support';
import { ferry, expectSuccess, FAST_KDF } from '../support/ferry';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;
const scratch = useScratch('large-sparse');
const env = { FERRY_PASSWORD: 'large' };

describe('a 1 TiB sparse image', () => {
  it('backs up reading only its data, in bounded memory, and restores sparse and bit-exact', async () => {
    const image = scratch.path('huge.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, TiB);
    const fd = fs.openSync(image, 'r+');
    // 48 MiB of data spread from the first to the last region.
    for (let i = 0; i < 6; i++) fs.writeSync(fd, pseudoRandomBytes(9, i, 8 * MiB), 0, 8 * MiB, Math.floor((TiB - 8 * MiB) * (i / 5)));
    fs.closeSync(fd);

    const repo = scratch.path('repo');
    expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
    const backup = JSON.parse(expectSuccess(await ferry(['backup', '--repo', repo, '--guest', 'huge', image, '--json'], { env, timeoutMs: 600_000 }))) as {
      id: string; logicalBytes: number; readBytes: number; peakRssBytes: number;
    };
    expect(backup.logicalBytes).toBe(TiB);
    // Extents are whole file-system blocks around the (unaligned) writes.
    expect(backup.readBytes).toBeGreaterThanOrEqual(48 * MiB);
    expect(backup.readBytes).toBeLessThan(48 * MiB + 64 * 1024);
    expect(backup.peakRssBytes).toBeLessThan(1024 * MiB);

    const out = scratch.mkdir('out');
    expectSuccess(await ferry(['restore', '--repo', repo, backup.id, '--to', out], { env, timeoutMs: 600_000 }));
    const restored = path.join(out, 'huge.img');
    expect(fs.statSync(restored).size).toBe(TiB);
    expect(allocatedBytes(restored)).toBeLessThan(64 * MiB);
    // Reading 1 TiB of holes back to hash it would take minutes: compare the data extents and a hole.
    const a = fs.openSync(image, 'r');
    const b = fs.openSync(restored, 'r');
    const bufA = Buffer.alloc(8 * MiB);
    const bufB = Buffer.alloc(8 * MiB);
    for (let i = 0; i < 6; i++) {
      const at = Math.floor((TiB - 8 * MiB) * (i / 5));
      fs.readSync(a, bufA, 0, bufA.length, at);
      fs.readSync(b, bufB, 0, bufB.length, at);
      expect(bufB.equals(bufA)).toBe(true);
    }
    fs.readSync(b, bufB, 0, bufB.length, TiB / 2 + 123 * MiB);
    expect(bufB.equals(Buffer.alloc(bufB.length))).toBe(true);
    fs.closeSync(a);
    fs.closeSync(b);
  });
});
