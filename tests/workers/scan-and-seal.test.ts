// For a region without a previous map (a full backup), a worker seals the new
// chunks from the bytes it scans instead of reading them again: the chunks and
// fingerprint are those of a plain scan, exactly the chunks the main thread
// calls fresh come back sealed, each image byte is read once, and a failure
// on the main thread's side stops the worker with that failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { parseChunkerSpec } from '../../src/dedupe/chunkerParams';
import { BlobDecoder } from '../../src/crypto/blobCodec';
import { ChunkHasher } from '../../src/crypto/chunkId';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { FreshChunkDesk } from '../../src/workers/freshChunkChannel';
import { SealedBlobs } from '../../src/workers/tasks';
import { useScratch } from '../support/scratch';
import { REGION, writeRegion } from '../support/regionImage';

const MiB = 1024 * 1024;
const dir = useScratch('scan-and-seal').dir;
let repo: Repository;
let pool: PipelinePool;

beforeAll(async () => {
  repo = await Repository.init(new LocalBackend(path.join(dir, 'repo')), Buffer.from('pw'), {
    chunker: parseChunkerSpec('fastcdc:256K'), packSize: 4 * MiB, compressionLevel: 3, kdf: { opslimit: 1, memlimit: 8192 * 1024 }, secretKind: 'passphrase',
  });
  pool = new PipelinePool(repo.keys, repo.settings, 2);
});

afterAll(async () => {
  await pool.close();
});

/** Bytes this process (and its worker threads) got from read system calls so far. */
function bytesRead(): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
}

/** A desk that calls every third chunk known, keeps what is handed over, and fails where told. */
function recordingDesk(failAtClaim = Infinity) {
  const claimed: string[] = [];
  const stored: { id: Buffer; typeFlags: number; rawLength: number; sealed: Buffer }[] = [];
  let claims = 0;
  let seen = 0;
  const desk: FreshChunkDesk = {
    claim: (ids, lengths) => {
      const fresh = new Uint8Array(lengths.length);
      for (let i = 0; i < lengths.length; i++, seen++) {
        if (seen % 3 === 0) continue;
        fresh[i] = 1;
        claimed.push(Buffer.from(ids.subarray(32 * i, 32 * i + 32)).toString('hex'));
      }
      return fresh;
    },
    roomForMore: async () => {
      if (++claims >= failAtClaim) throw new Error('pack write failed: no space left on device');
    },
    store: (ids: Uint8Array, blobs: SealedBlobs) => {
      for (let i = 0; i < blobs.typeFlags.length; i++) {
        stored.push({
          id: Buffer.from(ids.subarray(32 * i, 32 * i + 32)),
          typeFlags: blobs.typeFlags[i],
          rawLength: blobs.rawLengths[i],
          sealed: Buffer.from(blobs.data.subarray(blobs.starts[i], blobs.starts[i + 1])),
        });
      }
    },
    spareOutput: () => undefined,
  };
  return { desk, claimed, stored };
}

describe('scanning a region and sealing its new chunks as it goes', () => {
  it('cuts what a plain scan cuts, seals exactly the fresh chunks from the bytes it read, and reads each byte once', async () => {
    expect(pool.sealsWhileScanning).toBe(true);
    const file = path.join(dir, 'region.img');
    const dataExtents = writeRegion(file, 7);
    const allocated = dataExtents.reduce((n, e) => n + e.end - e.start, 0);
    const task = { path: file, regionStart: 0, regionLength: REGION, dataExtents };
    const plain = await pool.scanRegion(task);

    const { desk, claimed, stored } = recordingDesk();
    const before = bytesRead();
    const scan = await pool.scanAndSealRegion(task, desk);
    const read = bytesRead() - before;

    expect(scan.offsets).toEqual(plain.offsets);
    expect(scan.lengths).toEqual(plain.lengths);
    expect(Buffer.from(scan.ids).equals(Buffer.from(plain.ids))).toBe(true);
    expect(Buffer.from(scan.fingerprint!).equals(Buffer.from(plain.fingerprint!))).toBe(true);
    expect(scan.offsets.length).toBeGreaterThan(50);
    // Exactly the fresh chunks, in the order they were cut, each opening to bytes with its id.
    expect(stored.map((b) => b.id.toString('hex'))).toEqual(claimed);
    const decoder = new BlobDecoder(repo.keys.dataKeys);
    const hasher = new ChunkHasher(repo.keys.idKey);
    for (const b of stored) {
      const opened = decoder.decode(b.typeFlags, b.id, b.sealed, b.rawLength);
      expect(opened && hasher.hash(opened).equals(b.id)).toBe(true);
    }
    // One read of the allocated bytes (widened to 4 KiB blocks), not a second one for the fresh chunks.
    expect(read).toBeGreaterThanOrEqual(allocated);
    expect(read).toBeLessThan(allocated * 1.1);
  });

  it('stops with the main thread\'s failure (a pack that did not write), and the worker takes the next task', async () => {
    const file = path.join(dir, 'failing.img');
    const dataExtents = writeRegion(file, 8);
    const task = { path: file, regionStart: 0, regionLength: REGION, dataExtents };
    const { desk } = recordingDesk(2);
    await expect(pool.scanAndSealRegion(task, desk)).rejects.toThrow(/no space left on device/);
    const again = recordingDesk();
    const scan = await pool.scanAndSealRegion(task, again.desk);
    expect(again.stored.length).toBe(again.claimed.length);
    expect(scan.offsets.length).toBeGreaterThan(50);
  });
});
