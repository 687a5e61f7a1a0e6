// FORMAT.md: a reader must check that a blob's plaintext hashes (keyed BLAKE3)
// to its id. Authentication alone only proves that a key holder sealed it under
// that id: a buggy or hostile writer could store another region's map under a
// map's id, and restore would write the wrong data without a word.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { PackWriter } from '../../src/repo/packWriter';
import { BlobEncoder } from '../../src/crypto/blobCodec';
import { PackEntry } from '../../src/repo/packFormat';
import { EXIT, expectCleanFailure, expectSuccess, sha256File, TestRepo, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('blob-ids');
const MiB = 1024 * 1024;

let repo: TestRepo;
let id: string;
let sha256: string;

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo', { password: 'blob ids' });
  const image = scratch.path('web.img');
  // Two regions (32 MiB each): region 1's map is a valid map for region 0 too.
  writeRandomishImage(image, 33 * MiB, 7);
  id = (await repo.backup('web', [image])).id;
  sha256 = await sha256File(image);
});

describe('a blob stored under another blob\'s id (authenticates, wrong content)', () => {
  it('restore refuses it instead of writing the wrong data', async () => {
    const copy = await repo.copyTo(scratch.path('forged'));
    const r = await Repository.open(new LocalBackend(copy.path), Buffer.from('blob ids'));
    await r.loadIndex();
    const rp = await r.loadRestorePointByName(id);
    const [map0, map1] = rp.disks[0].regions.map((m) => Buffer.from(m!, 'hex'));
    const loc0 = r.blobLocation(map0)!;
    // Region 1's map, sealed (correctly) under region 0's map id, in a pack of its own.
    const forged = new BlobEncoder(r.keys.dataKey, 3).encode(loc0.typeFlags & 0x0f, map0, await r.readBlobPlaintext(map1));
    const everything = new Map<number, PackEntry[]>();
    r.forEachBlob((blobId, loc) => {
      if (blobId.equals(map0)) return;
      everything.set(loc.pack, [...(everything.get(loc.pack) ?? []), { id: Buffer.from(blobId), ...loc }]);
    });
    fs.rmSync(path.join(copy.path, 'index'), { recursive: true });
    fs.mkdirSync(path.join(copy.path, 'index'));
    // The index names the forged copy only.
    await r.writeIndexFile([...everything].map(([pack, entries]) => ({ packId: r.packIds[pack], entries })));
    const writer = new PackWriter(r);
    await writer.add({ id: map0, typeFlags: forged.typeFlags, rawLength: forged.rawLength, sealed: forged.sealed });
    await writer.finish();
    await r.backend.close();

    const out = scratch.mkdir('restore-forged');
    const line = expectCleanFailure(await copy.run(['restore', id, '--to', out]), { code: EXIT.corrupt });
    expect(line).toContain('does not hash to its id');
    expect(fs.readdirSync(out)).toEqual([]);
  });

  it('the untouched repository restores bit-exact', async () => {
    const out = scratch.mkdir('restore-ok');
    expectSuccess(await repo.run(['restore', id, '--to', out]));
    expect(await sha256File(path.join(out, 'web.img'))).toBe(sha256);
  });
});
