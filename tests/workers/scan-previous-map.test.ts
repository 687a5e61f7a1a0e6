// A nightly scan is given the region's previous map: where a chunk of it
// starts at the same offset with the same bytes, the scan does not run the
// gear loop over it again (Chunker.cutsAgainAt). The chunks must be exactly
// those of a scan without the map, however the region changed, or the
// repository would store a night's unchanged data under other chunks.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { PreviousChunks, ScanRegionResult } from '../../src/workers/tasks';
import { Span } from '../../src/dedupe/spans';
import { useScratch } from '../support/scratch';
import { SeededRandom } from '../support/files';
import { REGION, writeRegion } from '../support/regionImage';

const MiB = 1024 * 1024;
const dir = useScratch('scan-previous-map').dir;
const pools: PipelinePool[] = [];

afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

function asPrevious(scan: ScanRegionResult): PreviousChunks {
  return { offsets: scan.offsets, lengths: scan.lengths, ids: scan.ids, indexed: new Uint8Array(scan.offsets.length).fill(1) };
}

/** Where `buf` has its longest run of zero bytes at least `min` long, or undefined. */
function zeroRun(buf: Buffer, min: number): { start: number; end: number } | undefined {
  let best: { start: number; end: number } | undefined;
  for (let i = 0; i < buf.length; ) {
    if (buf[i] !== 0) { i++; continue; }
    let j = i;
    while (j < buf.length && buf[j] === 0) j++;
    if (j - i >= min && (!best || j - i > best.end - best.start)) best = { start: i, end: j };
    i = j;
  }
  return best;
}

/**
 * Change the region in place, inside its data extents only: random pages, a zero run filled (the
 * chunk before it ended there and now goes on), a new zero run, a block moved by 100 bytes.
 */
function changeRegion(file: string, extents: Span[], seed: number): void {
  const rng = new SeededRandom(seed);
  const fd = fs.openSync(file, 'r+');
  const inData = (len: number): number => {
    const wide = extents.filter((e) => e.end - e.start > len + 4096);
    const e = wide[rng.int(wide.length)];
    return e.start + rng.int(e.end - e.start - len);
  };
  const e = extents.reduce((a, b) => (b.end - b.start > a.end - a.start ? b : a));
  const data = Buffer.alloc(e.end - e.start);
  fs.readSync(fd, data, 0, data.length, e.start);
  const run = zeroRun(data, 64 * 1024);
  if (!run) throw new Error('the test region has no zero run of 64 KiB in its largest extent');
  fs.writeSync(fd, rng.fill(Buffer.alloc(run.end - run.start)), 0, run.end - run.start, e.start + run.start);
  for (let i = 0; i < 6; i++) fs.writeSync(fd, rng.fill(Buffer.alloc(4096)), 0, 4096, inData(4096) & ~4095);
  fs.writeSync(fd, Buffer.alloc(70 * 1024), 0, 70 * 1024, inData(70 * 1024));
  const from = inData(MiB + 100);
  const block = Buffer.alloc(MiB);
  fs.readSync(fd, block, 0, MiB, from);
  fs.writeSync(fd, block, 0, MiB, from + 100);
  fs.closeSync(fd);
}

describe('scanning a region against its previous map', () => {
  it.each(['fastcdc:256K', 'fastcdc:1M', 'fixed:256K'])('cuts and hashes exactly as without it, however the region changed (%s)', async (spec) => {
    const repo = await Repository.init(new LocalBackend(path.join(dir, `repo-${spec.replace(':', '-')}`)), Buffer.from('pw'), {
      chunker: parseChunkerSpec(spec), packSize: 4 * MiB, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
    });
    const pool = new PipelinePool(repo.keys, repo.settings, 2);
    pools.push(pool);
    const file = path.join(dir, `region-${spec.replace(':', '-')}.img`);
    const dataExtents = writeRegion(file, 7);
    const task = { path: file, regionStart: 0, regionLength: REGION, dataExtents };
    const before = await pool.scanRegion(task);
    // Another region's map, offered for this one, changes nothing either.
    const other = path.join(dir, `other-${spec.replace(':', '-')}.img`);
    const otherScan = await pool.scanRegion({ ...task, path: other, dataExtents: writeRegion(other, 8) });
    for (const seed of [1, 2]) {
      changeRegion(file, dataExtents, seed);
      const plain = await pool.scanRegion(task);
      for (const previous of [before, otherScan]) {
        const scan = await pool.scanRegion({ ...task, previousChunks: asPrevious(previous) });
        const what = `${spec}, change ${seed}, previous map ${previous === before ? 'of this region' : 'of another'}`;
        expect(scan.offsets, what).toEqual(plain.offsets);
        expect(scan.lengths, what).toEqual(plain.lengths);
        expect(Buffer.from(scan.ids).equals(Buffer.from(plain.ids)), what).toBe(true);
      }
      // The scan had something to skip: most chunks are as before the change.
      const old = new Set(Array.from({ length: before.offsets.length }, (_, i) => `${before.offsets[i]}:${Buffer.from(before.ids.subarray(32 * i, 32 * i + 32)).toString('hex')}`));
      const kept = plain.offsets.filter((o, i) => old.has(`${o}:${Buffer.from(plain.ids.subarray(32 * i, 32 * i + 32)).toString('hex')}`)).length;
      expect(kept, spec).toBeGreaterThan(plain.offsets.length / 3);
      expect(kept, spec).toBeLessThan(plain.offsets.length);
      before.offsets = plain.offsets;
      before.lengths = plain.lengths;
      before.ids = plain.ids;
    }
  });
});
