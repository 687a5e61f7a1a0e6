// A worker scans a region through a read window of a few MiB, not a whole
// region buffer: the chunks, their ids and the zero runs left out must be
// exactly those of cutting the whole region at once (same region maps, same
// dedupe), whatever falls on a window boundary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { Chunker } from '../../src/dedupe/chunker';
import { gearTable } from '../../src/dedupe/gearTable';
import { nonZeroSpans } from '../../src/dedupe/zeroRuns';
import { Span, complementSpans } from '../../src/dedupe/spans';
import { ChunkHasher } from '../../src/crypto/chunkId';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { useScratch } from '../support/scratch';
import { SeededRandom } from '../support/files';

const MiB = 1024 * 1024;
const REGION = 32 * MiB;
const dir = useScratch('scan-window').dir;
const pools: PipelinePool[] = [];

/** A region of data with holes (not read) and zero runs of every length around 64 KiB and window boundaries. */
function writeRegion(file: string, seed: number): Span[] {
  const rng = new SeededRandom(seed);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, REGION);
  const fd = fs.openSync(file, 'r+');
  const extents: Span[] = [];
  let at = 0;
  while (at < REGION) {
    const len = Math.min(REGION - at, (1 + rng.int(3 * 1024)) * 1024);
    if (rng.int(4) > 0) {
      const data = rng.fill(Buffer.alloc(len));
      // Zero runs just under, at and over 64 KiB, 4 KiB-aligned or not.
      const zeroAt = rng.int(len);
      data.fill(0, zeroAt, Math.min(len, zeroAt + [60 * 1024, 64 * 1024, 70 * 1024, 300 * 1024][rng.int(4)] + rng.int(2) * 100));
      fs.writeSync(fd, data, 0, len, at);
      const s = Math.floor(at / 4096) * 4096;
      const e = Math.min(REGION, Math.ceil((at + len) / 4096) * 4096);
      const last = extents[extents.length - 1];
      if (last && last.end >= s) last.end = e;
      else extents.push({ start: s, end: e });
    }
    at += len;
  }
  fs.closeSync(fd);
  return extents;
}

let repo: Repository;

beforeAll(async () => {
  repo = await Repository.init(new LocalBackend(path.join(dir, 'repo')), Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:256K'), packSize: 4 * MiB, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

describe('scanning a region through a read window', () => {
  it('cuts, hashes and skips zero runs exactly as over the whole region, with 2 MiB and 3 MiB windows', async () => {
    const chunker = new Chunker(repo.settings.chunker, gearTable(repo.keys.gearKey));
    const hasher = new ChunkHasher(repo.keys.idKey);
    for (const [budget, window] of [[96 * MiB, 2 * MiB], [160 * MiB, 3 * MiB]]) {
      const pool = new PipelinePool(repo.keys, repo.settings, 2, budget);
      pools.push(pool);
      expect(pool.sizing.windowBytes).toBe(window);
      for (const seed of [1, 2, 3]) {
        const file = path.join(dir, `region-${seed}.img`);
        const dataExtents = writeRegion(file, seed);
        // The reference: the whole region in memory, as before.
        const whole = Buffer.alloc(REGION);
        const fd = fs.openSync(file, 'r');
        fs.readSync(fd, whole, 0, REGION, 0);
        fs.closeSync(fd);
        const offsets: number[] = [];
        const lengths: number[] = [];
        const ids: Buffer[] = [];
        for (const span of nonZeroSpans(whole, REGION, complementSpans(dataExtents, REGION))) {
          let at = span.start;
          for (const len of chunker.cut(whole, span.start, span.end, span.start)) {
            offsets.push(at);
            lengths.push(len);
            ids.push(hasher.hash(whole.subarray(at, at + len)));
            at += len;
          }
        }
        const scan = await pool.scanRegion({ path: file, regionStart: 0, regionLength: REGION, dataExtents });
        expect(scan.offsets, `seed ${seed}, window ${window}`).toEqual(offsets);
        expect(scan.lengths).toEqual(lengths);
        expect(Buffer.from(scan.ids).equals(Buffer.concat(ids))).toBe(true);
        expect(offsets.length).toBeGreaterThan(50);
      }
    }
  });
});
