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
import { complementSpans } from '../../src/dedupe/spans';
import { ChunkHasher } from '../../src/crypto/chunkId';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { useScratch } from '../support/scratch';
import { mustRun } from '../support/system';
import { RegionFingerprinter } from '../../src/dedupe/regionFingerprint';
import { REGION, writeRegion } from '../support/regionImage';

const MiB = 1024 * 1024;
const dir = useScratch('scan-window').dir;
const pools: PipelinePool[] = [];

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
  it('cuts, hashes, fingerprints and skips zero runs exactly as over the whole region, with 2 MiB and 3 MiB windows, past the page cache or through it', async () => {
    const chunker = new Chunker(repo.settings.chunker, gearTable(repo.keys.gearKey));
    const hasher = new ChunkHasher(repo.keys.idKey);
    for (const reads of ['direct', 'page cache']) {
      for (const [budget, window] of [[96 * MiB, 2 * MiB], [160 * MiB, 3 * MiB]]) {
        // Workers take the environment they are started with.
        if (reads === 'page cache') process.env.FERRY_DIRECT_IO = 'off';
        const pool = new PipelinePool(repo.keys, repo.settings, 2, budget);
        pools.push(pool);
        expect(pool.sizing.windowBytes).toBe(window);
        // Seed 4: a region at 32 MiB of its image, ending 100 bytes short of a full one (an unaligned end).
        for (const [seed, regionStart, length] of [[1, 0, REGION], [2, 0, REGION], [3, 0, REGION], [4, REGION, REGION - 100]]) {
          const file = path.join(dir, `region-${seed}.img`);
          const dataExtents = writeRegion(file, seed, regionStart, length);
          // The reference: the whole region in memory, as before.
          const whole = Buffer.alloc(length);
          const fd = fs.openSync(file, 'r');
          fs.readSync(fd, whole, 0, length, regionStart);
          fs.closeSync(fd);
          await mustRun('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
          const offsets: number[] = [];
          const lengths: number[] = [];
          const ids: Buffer[] = [];
          for (const span of nonZeroSpans(whole, length, complementSpans(dataExtents, length))) {
            let at = span.start;
            for (const len of chunker.cut(whole, span.start, span.end, regionStart + span.start)) {
              offsets.push(at);
              lengths.push(len);
              ids.push(hasher.hash(whole.subarray(at, at + len)));
              at += len;
            }
          }
          const fingerprinter = new RegionFingerprinter(repo.keys.fingerprintKey, length, dataExtents);
          fingerprinter.feed(0, length, whole);
          const scan = await pool.scanRegion({ path: file, regionStart, regionLength: length, dataExtents });
          const what = `seed ${seed}, window ${window}, ${reads}`;
          expect(scan.offsets, what).toEqual(offsets);
          expect(scan.lengths, what).toEqual(lengths);
          expect(Buffer.from(scan.ids).equals(Buffer.concat(ids)), what).toBe(true);
          expect(Buffer.from(scan.fingerprint!).equals(fingerprinter.digest()!), what).toBe(true);
          expect(offsets.length).toBeGreaterThan(50);
          // Read past the page cache, the scan leaves none of the image in it.
          const cached = Number(await mustRun('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', file]));
          if (reads === 'direct') expect(cached, what).toBe(0);
          else expect(cached, what).toBeGreaterThan(0);
        }
        delete process.env.FERRY_DIRECT_IO;
      }
    }
  });
});
