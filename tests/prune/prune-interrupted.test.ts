// The state a prune killed after writing its new packs leaves (FORMAT.md,
// garbage-collection rule 8): new packs holding copies of indexed blobs, named
// by no index file yet. That is a valid repository: check passes, restore
// reads the copies the index names, and the next prune removes the extra copies.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PackWriter } from '../../src/repo/packWriter';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { TestRepo, expectSuccess, listFiles, parseJson, sha256File, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('prune-interrupted');

describe('a prune killed after writing its new packs', () => {
  it('leaves a repository that checks clean, restores, and is tidied by the next prune', async () => {
    const repo = await TestRepo.init(scratch, 'repo');
    const image = scratch.path('g.img');
    writeRandomishImage(image, 4 * 1024 * 1024, 71, { holes: 0, text: 0.5 });
    const { id } = await repo.backup('g', [image]);
    const [original] = listFiles(path.join(repo.path, 'data')).map((f) => path.basename(f));

    // What prune's first step writes: every blob's sealed bytes copied unchanged into a new pack, no index file.
    const library = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, '')));
    await library.loadIndex();
    const packBytes = await library.backend.read('data', original);
    const entries = (await library.readPackHeader(original, packBytes.length))!;
    const writer = new PackWriter(library, 8, 'by-caller');
    for (const e of entries) await writer.add({ id: e.id, typeFlags: e.typeFlags, rawLength: e.rawLength, sealed: packBytes.subarray(e.offset, e.offset + e.storedLength) });
    await writer.finish();
    await library.backend.close();
    expect(writer.writtenPacks).toHaveLength(1);
    expect(listFiles(path.join(repo.path, 'index'))).toHaveLength(1); // 'by-caller': the writer wrote no index file

    await repo.expectCheckPasses(true);
    const out = scratch.path('restored');
    expectSuccess(await repo.run(['restore', id, '--to', out]));
    expect(await sha256File(path.join(out, 'g.img'))).toBe(await sha256File(image));

    const report = parseJson<{ packsDeleted: number }>(await repo.run(['prune', '--json']));
    expect(report.packsDeleted).toBe(1);
    expect(listFiles(path.join(repo.path, 'data'))).toHaveLength(1);
    await repo.expectCheckPasses(true);
  });
});
