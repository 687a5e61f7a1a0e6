// Names and times that come from outside cannot steer ferry: a disk name in a
// tar manifest or in a restore point (restore points come from other hosts,
// tars from strangers) never makes `restore --to DIR` write outside DIR, and
// a manifest time far in the future does not make an import `latest`.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tar from 'tar-stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  listFiles,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('hostile-names');
const MiB = 1024 * 1024;

let repo: TestRepo;

/** Every file of the repository with its hash: to prove a refused command wrote nothing. */
async function repoState(dir: string): Promise<string[]> {
  const files = listFiles(dir).filter((f) => !f.startsWith('locks/'));
  return Promise.all(files.map(async (f) => `${f} ${await sha256File(path.join(dir, f))}`));
}

/** A tar shaped like `ferry export-tar` output, with the manifest saying what the test wants. */
async function craftTar(file: string, manifest: { diskName: string; time: string }): Promise<void> {
  const disk = Buffer.alloc(1 * MiB, 7);
  const sha256 = createHash('sha256').update(disk).digest('hex');
  const json = Buffer.from(JSON.stringify({
    format: 'ferry-export',
    version: 1,
    guest: 'crafted',
    time: manifest.time,
    hostname: 'elsewhere',
    tags: [],
    restorePoint: '0'.repeat(64),
    exported: new Date().toISOString(),
    disks: [{ file: 'disk0.img', name: manifest.diskName, size: disk.length, dataBytes: disk.length, sourcePath: '/dev/vg0/crafted', sha256 }],
  }));
  const pack = tar.pack();
  const parts: Buffer[] = [];
  pack.on('data', (b: unknown) => parts.push(b as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  pack.entry({ name: 'disk0.img' }, disk);
  pack.entry({ name: 'ferry-export.json' }, json);
  pack.finalize();
  await ended;
  fs.writeFileSync(file, Buffer.concat(parts));
}

/** The test repository opened in-process, as another host's ferry would. */
function openThroughLibrary(): Promise<Repository> {
  return Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, '')));
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
});

describe('import-tar', () => {
  it('imports a crafted tar with a plain disk name and a present time (the crafting is sound)', async () => {
    const file = scratch.path('plain.tar');
    await craftTar(file, { diskName: 'crafted-disk0.img', time: new Date(Date.now() - 60_000).toISOString() });
    const other = await TestRepo.init(scratch, 'plain-target');
    expectSuccess(await other.run(['import-tar', file, '--json']));
    const points = await other.list();
    expect(points.map((p) => p.guest)).toEqual(['crafted']);
  });

  it.each([
    ['../escaped-disk.img', /escaped-disk\.img.*not a plain file name/],
    ['..', /not a plain file name/],
    ['.', /not a plain file name/],
    ['', /not a plain file name.*empty/],
    ['sub/disk.img', /not a plain file name.*\//],
    ['disk\u0000.img', /not a plain file name.*control character/],
    ['disk\n.img', /not a plain file name.*control character/],
    ['disk\u001b[2J.img', /not a plain file name.*control character/],
  ])('refuses a manifest naming a disk %j, exit 7, and writes nothing', async (diskName, message) => {
    const file = scratch.path('hostile.tar');
    await craftTar(file, { diskName, time: new Date(Date.now() - 60_000).toISOString() });
    const before = await repoState(repo.path);
    const r = await repo.run(['import-tar', file]);
    expectCleanFailure(r, { code: EXIT.badInput, message });
    expect(await repoState(repo.path)).toEqual(before);
    expect(fs.existsSync(path.join(scratch.dir, 'escaped-disk.img'))).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(repo.path), 'escaped-disk.img'))).toBe(false);
  });

  it('refuses a manifest time in the future (2099) so the import cannot become latest', async () => {
    const file = scratch.path('future.tar');
    await craftTar(file, { diskName: 'crafted-disk0.img', time: '2099-01-01T00:00:00.000Z' });
    const before = await repoState(repo.path);
    const r = await repo.run(['import-tar', file]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /2099.*future/ });
    expect(await repoState(repo.path)).toEqual(before);
  });

  it('refuses a manifest time that is not a time', async () => {
    const file = scratch.path('no-time.tar');
    await craftTar(file, { diskName: 'crafted-disk0.img', time: 'zzzz' });
    const r = await repo.run(['import-tar', file]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /"zzzz" is not an ISO 8601 time/ });
  });

  it('takes a manifest time a few minutes ahead (clock skew between hosts)', async () => {
    const file = scratch.path('skewed.tar');
    await craftTar(file, { diskName: 'crafted-disk0.img', time: new Date(Date.now() + 5 * 60_000).toISOString() });
    const other = await TestRepo.init(scratch, 'skew-target');
    expectSuccess(await other.run(['import-tar', file]));
  });
});

describe('restore', () => {
  it('refuses a restore point whose disk name climbs out of --to, writing nothing outside DIR', async () => {
    const image = scratch.path('alpha.img');
    writeRandomishImage(image, 4 * MiB, 9);
    const summary = await repo.backup('alpha', [image]);
    // A restore point another host (or someone holding the key) wrote: saved through the library, not the CLI.
    const library = await openThroughLibrary();
    const genuine = await library.loadRestorePointByName(summary.id);
    const { id: _id, ...point } = genuine;
    const hostileId = await library.saveRestorePoint({ ...point, disks: [{ ...point.disks[0], name: '../escaped-disk.img' }] });
    await library.backend.close();

    const area = scratch.mkdir('restore-area');
    const to = path.join(area, 'DIR');
    const r = await repo.run(['restore', hostileId, '--to', to]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /escaped-disk\.img.*not a plain file name/ });
    expect(fs.readdirSync(area)).toEqual([]);

    // The genuine point still restores.
    const ok = parseJson<{ files: { path: string }[] }>(await repo.run(['restore', summary.id, '--to', to, '--json']));
    expect(ok.files.map((f) => path.basename(f.path))).toEqual(['alpha.img']);
  });

  it('refuses a restore point whose config name climbs out of --to', async () => {
    const library = await openThroughLibrary();
    const listed = (await library.listRestorePoints()).find((p) => p.guest === 'alpha' && p.disks[0].name === 'alpha.img')!;
    const { id: _id, ...point } = await library.loadRestorePointByName(listed.id);
    const hostileId = await library.saveRestorePoint({ ...point, config: { fileName: '../../evil.cfg', content: Buffer.from('x').toString('base64') } });
    await library.backend.close();
    const area = scratch.mkdir('restore-area-config');
    const r = await repo.run(['restore', hostileId, '--to', path.join(area, 'DIR')]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /config name.*evil\.cfg/ });
    expect(fs.readdirSync(area)).toEqual([]);
  });
});

describe('backup', () => {
  it('refuses an image whose file name holds a control character, storing nothing', async () => {
    const image = scratch.path('evil\u001b]0;pwned\u0007.img');
    writeRandomishImage(image, 1 * MiB, 10);
    const before = await repoState(repo.path);
    const r = await repo.run(['backup', '--guest', 'evil', image]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /control character/ });
    expect(await repoState(repo.path)).toEqual(before);
  });
});
