// Worker threads started before their pool has the keys (PipelinePool.startEarly):
// the pool posts its setup through shared memory (workerSetupSlot.ts) before its
// first task, so a pool on early threads cuts and ids exactly as one that started
// its own; early threads of another count are let go and the pool starts its own.
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { WorkerSetupSlot } from '../../src/workers/workerSetupSlot';
import type { ScanRegionResult, WorkerSetup } from '../../src/workers/tasks';
import { useScratch } from '../support/scratch';
import { REGION, writeRegion } from '../support/regionImage';

const dir = useScratch('early-workers').dir;
let repo: Repository;
let task: { path: string; regionStart: number; regionLength: number; dataExtents: { start: number; end: number }[] };

beforeAll(async () => {
  repo = await Repository.init(new LocalBackend(path.join(dir, 'repo')), Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:256K'), packSize: 4 * 1024 * 1024, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
  const file = path.join(dir, 'region.img');
  task = { path: file, regionStart: 0, regionLength: REGION, dataExtents: writeRegion(file, 11) };
});

async function scanWith(pool: PipelinePool): Promise<ScanRegionResult> {
  try {
    return await pool.scanRegion(task);
  } finally {
    await pool.close();
  }
}

function setup(): WorkerSetup {
  const k = repo.keys;
  return {
    idKey: k.idKey, dataKey: k.dataKey, dataKeys: [...k.dataKeys], gearKey: k.gearKey, fingerprintKey: k.fingerprintKey,
    chunker: repo.settings.chunker, regionSize: repo.settings.regionSize, compressionLevel: 3, windowBytes: 4 << 20, sealOutputBytes: 2 << 20, readAhead: true,
  };
}

describe('a worker setup posted through shared memory', () => {
  it('cannot be taken before it is posted, nor posted twice, and reads back as posted', () => {
    const slot = new WorkerSetupSlot();
    expect(() => slot.take()).toThrow(/before its pool posted the setup/);
    slot.post(setup());
    expect(() => slot.post(setup())).toThrow(/posted twice/);
    const taken = new WorkerSetupSlot(slot.shared).take();
    expect(Buffer.from(taken.idKey).equals(Buffer.from(repo.keys.idKey))).toBe(true);
    expect(taken.dataKeys.map((key) => Buffer.from(key).toString('hex'))).toEqual(repo.keys.dataKeys.map((key) => Buffer.from(key).toString('hex')));
    expect(taken.chunker).toEqual(repo.settings.chunker);
  });
});

describe('worker threads started early', () => {
  it('a pool of their count runs on them, and scans as a pool that started its own threads', async () => {
    const own = new PipelinePool(repo.keys, repo.settings, 2);
    expect(own.startedEarly).toBe(false);
    const expected = await scanWith(own);
    PipelinePool.startEarly(2);
    const early = new PipelinePool(repo.keys, repo.settings, 2);
    expect(early.startedEarly).toBe(true);
    const scan = await scanWith(early);
    expect(scan.offsets.length).toBeGreaterThan(50);
    expect(scan.offsets).toEqual(expected.offsets);
    expect(Buffer.from(scan.ids).equals(Buffer.from(expected.ids))).toBe(true);
    expect(Buffer.from(scan.fingerprint!).equals(Buffer.from(expected.fingerprint!))).toBe(true);
  });

  it('a pool of another count lets them go and starts its own', async () => {
    PipelinePool.startEarly(1);
    const pool = new PipelinePool(repo.keys, repo.settings, 2);
    expect(pool.startedEarly).toBe(false);
    expect(pool.threads).toBe(2);
    expect((await scanWith(pool)).offsets.length).toBeGreaterThan(50);
  });
});
