// The pack writer sends a pack to storage as it fills (a piece at a time), not
// from one pack-sized buffer: a pack is still one complete, content-named
// object whose header names every blob at its offset, and a writer that fails
// or is abandoned leaves nothing half-written behind.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { Backend, ObjectStream, ObjectType } from '../../src/storage/backend';
import { Repository } from '../../src/repo/repository';
import { PackWriter } from '../../src/repo/packWriter';
import { contentName } from '../../src/crypto/chunkId';
import { StorageError } from '../../src/errors';
import { TestRepo, useScratch } from '../support';

const scratch = useScratch('pack-writer');
const MiB = 1024 * 1024;
const PASSWORD = 'pack writer';

/** Blobs of these sizes: small ones copied into a piece, large ones (over 1 MiB) appended as they are. */
function blobs(sizes: number[]): { id: Buffer; typeFlags: number; rawLength: number; sealed: Buffer }[] {
  return sizes.map((n) => ({ id: randomBytes(32), typeFlags: 0, rawLength: n, sealed: randomBytes(n) }));
}

async function openRepo(name: string, wrap?: (b: LocalBackend) => Backend): Promise<{ repo: Repository; dir: string }> {
  const test = await TestRepo.init(scratch, name, { password: PASSWORD });
  const local = new LocalBackend(test.path);
  const repo = await Repository.open(wrap ? wrap(local) : local, Buffer.from(PASSWORD));
  await repo.loadIndex();
  return { repo, dir: test.path };
}

function dataFiles(dir: string): string[] {
  return fs.readdirSync(path.join(dir, 'data'), { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => d.name).sort();
}

describe('PackWriter', () => {
  it('writes packs named by the hash of their bytes, each blob where its header says, cut at the target size', async () => {
    const { repo, dir } = await openRepo('packs');
    const writer = new PackWriter(repo, 8, 'by-caller', 4 * MiB);
    const all = blobs([100, 300_000, 1_500_000, 7, 2 * MiB + 5, 64 * 1024, 900_000, 1_100_000, 3, 700_000]);
    for (const b of all) await writer.add(b);
    await writer.finish();
    expect(writer.packsWritten).toBeGreaterThan(1);
    const names = dataFiles(dir);
    expect(names.sort()).toEqual(writer.writtenPacks.map((p) => p.packId).sort());
    let found = 0;
    for (const { packId, entries } of writer.writtenPacks) {
      const bytes = fs.readFileSync(path.join(dir, 'data', packId.slice(0, 2), packId));
      expect(contentName(bytes)).toBe(packId);
      expect(await repo.readPackHeader(packId, bytes.length)).toEqual(entries);
      for (const e of entries) {
        const blob = all.find((b) => b.id.equals(e.id))!;
        expect(bytes.subarray(e.offset, e.offset + e.storedLength).equals(blob.sealed)).toBe(true);
        found++;
      }
    }
    expect(found).toBe(all.length);
    expect(writer.newBytes).toBe(names.reduce((n, name) => n + fs.statSync(path.join(dir, 'data', name.slice(0, 2), name)).size, 0));
  });

  it('abandoned mid-pack: the packs it committed stay, the open one leaves no file, and a later add is refused', async () => {
    const { repo, dir } = await openRepo('abandon');
    const writer = new PackWriter(repo, 8, 'by-caller', 2 * MiB);
    for (const b of blobs([1_500_000, 900_000, 500_000])) await writer.add(b); // the first pack is committed at 2.4 MB
    expect(writer.packsWritten).toBe(1);
    const local = new LocalBackend(dir);
    expect((await local.temporaryFiles()).length).toBe(1); // the second pack, being written
    await writer.abandon();
    expect(await local.temporaryFiles()).toEqual([]);
    expect(dataFiles(dir)).toEqual([writer.writtenPacks[0].packId]);
    await expect(writer.add(blobs([10])[0])).rejects.toThrow(/after the writer was abandoned/);
  });

  it('a piece that fails to reach storage fails the add, and nothing of that pack is left', async () => {
    let appends = 0;
    const failing = (inner: LocalBackend): Backend =>
      Object.assign(Object.create(inner) as LocalBackend, {
        openStream: async (type: ObjectType): Promise<ObjectStream> => {
          const stream = await inner.openStream(type);
          return {
            append: async (bytes: Uint8Array) => {
              if (++appends === 3) throw new StorageError('writing a pack: no space left on device (ENOSPC)');
              return stream.append(bytes);
            },
            commit: (name: string) => stream.commit(name),
            abort: () => stream.abort(),
          };
        },
      });
    const { repo, dir } = await openRepo('failing', failing);
    const writer = new PackWriter(repo, 8, 'by-caller', 16 * MiB);
    await expect((async () => {
      for (const b of blobs([1_200_000, 1_200_000, 1_200_000, 1_200_000])) await writer.add(b);
    })()).rejects.toThrow(/ENOSPC/);
    await writer.abandon();
    expect(await new LocalBackend(dir).temporaryFiles()).toEqual([]);
    expect(dataFiles(dir)).toEqual([]);
  });
});
