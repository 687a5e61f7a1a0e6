// The everyday commands through the real CLI: key slots, backups with
// several disks, a guest config and tags, listing, restore, forget, stats.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  attachLoop,
  EXIT,
  expectCleanFailure,
  expectSuccess,
  FAST_KDF,
  ferry,
  listFiles,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('cli');
const MiB = 1024 * 1024;

let repo: TestRepo;
const disks: Array<{ image: string; sha256: string }> = [];
let guestConfig: string;

/** Hashes of everything but key slots and locks: key changes must not rewrite these. */
async function dataState(dir: string): Promise<string[]> {
  const files = listFiles(dir).filter((f) => !f.startsWith('keys/') && !f.startsWith('locks/'));
  return Promise.all(files.map(async (f) => `${f} ${await sha256File(path.join(dir, f))}`));
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  for (const [i, size] of [12 * MiB, 6 * MiB].entries()) {
    const image = scratch.path(`web-disk${i}.img`);
    writeRandomishImage(image, size, 50 + i);
    disks.push({ image, sha256: await sha256File(image) });
  }
  guestConfig = scratch.path('web.cfg');
  fs.writeFileSync(guestConfig, "name = 'web'\nmemory = 1024\ndisk = ['phy:/dev/vg0/web-disk0,xvda,w', 'phy:/dev/vg0/web-disk1,xvdb,w']\n");
});

describe('init', () => {
  it('refuses to initialise over an existing repository', async () => {
    const before = await dataState(repo.path);
    const r = await ferry(['init', '--repo', repo.path, '--password-file', repo.passwordFile, ...FAST_KDF]);
    expectCleanFailure(r, { message: /exist|already/i });
    expect(await dataState(repo.path)).toEqual(before);
  });

  it('takes the passphrase from FERRY_PASSWORD', async () => {
    const dir = scratch.path('env-repo');
    expectSuccess(await ferry(['init', '--repo', dir, ...FAST_KDF], { env: { FERRY_PASSWORD: 'from the environment' } }));
    expectSuccess(await ferry(['list', '--repo', dir], { env: { FERRY_PASSWORD: 'from the environment' } }));
    // Other directories of the layout may appear with the first backup.
    for (const part of ['config', 'keys']) {
      expect(fs.existsSync(path.join(dir, part)), `repository has ${part}`).toBe(true);
    }
  });
});

describe('backup, list, show, restore', () => {
  // Its own repository, holding the one backup every test here reads.
  let repo: TestRepo;
  let backupStdout: string;
  let pointId: string;

  beforeAll(async () => {
    repo = await TestRepo.init(scratch, 'backup-repo');
    const r = await repo.run(['backup', '--guest', 'web', '--config', guestConfig, '--tag', 'nightly', '--tag', 'before-upgrade', ...disks.map((d) => d.image)]);
    backupStdout = expectSuccess(r);
    pointId = (await repo.list())[0].id;
  });

  it('backs up a guest with two disks, a config and tags, printing the new id', () => {
    // Only the id, so that scripts can say ID=$(ferry backup ...).
    expect(backupStdout.trim()).toBe(pointId);
  });

  it('lists it with time, disks, sizes and tags', async () => {
    const [point, ...rest] = await repo.list();
    expect(rest).toEqual([]);
    expect(point.id).toBe(pointId);
    expect(point.guest).toBe('web');
    // A count or the list of disks.
    expect(Array.isArray(point.disks) ? point.disks.length : point.disks).toBe(2);
    expect(point.logicalBytes).toBe(18 * MiB);
    expect(point.newBytes).toBeGreaterThan(0);
    expect(new Set(point.tags)).toEqual(new Set(['nightly', 'before-upgrade']));
    expect(Math.abs(Date.parse(point.time) - Date.now())).toBeLessThan(10 * 60_000);
  });

  it('filters the list by guest', async () => {
    expect(await repo.list(['--guest', 'no-such-guest'])).toEqual([]);
    expect((await repo.list(['--guest', 'web'])).map((p) => p.id)).toEqual([pointId]);
  });

  it('shows one restore point as JSON', async () => {
    const shown = parseJson(await repo.run(['show', pointId, '--json']));
    expect(shown.id).toBe(pointId);
    expect(shown.guest).toBe('web');
    expect(JSON.stringify(shown)).toContain('web-disk1.img');
  });

  it('restores every disk and the guest config into a directory', async () => {
    const out = scratch.mkdir('restore-all');
    expectSuccess(await repo.run(['restore', pointId, '--to', out]));
    for (const d of disks) expect(await sha256File(path.join(out, path.basename(d.image)))).toBe(d.sha256);
    expect(fs.readFileSync(path.join(out, 'web.cfg'), 'utf8')).toBe(fs.readFileSync(guestConfig, 'utf8'));
  });

  it('restores one disk by number to a file', async () => {
    const target = scratch.path('only-disk1.img');
    expectSuccess(await repo.run(['restore', pointId, '--disk', '1', '--to', target]));
    expect(await sha256File(target)).toBe(disks[1].sha256);
  });

  // A reused device (an old LV, a recycled disk) holds stale bytes where the
  // image has holes and zero runs. --no-sparse writes those zeros; without it,
  // zero regions get no writes at all (the contract: a fresh thin LV
  // is zero already, and writing zeros would allocate all of it).
  it('restores a disk bit-exact onto a block device that holds old data with --no-sparse', async () => {
    const backing = scratch.path('used-device-nosparse.img');
    fs.writeFileSync(backing, Buffer.alloc(12 * MiB, 0xab));
    const device = await attachLoop(scratch, backing);
    expectSuccess(await repo.run(['restore', pointId, '--disk', '0', '--to', device, '--force', '--no-sparse']));
    expect(await sha256File(device), 'device content after restore (stale bytes left in zero regions?)').toBe(disks[0].sha256);
  });

  it('without --no-sparse writes only the data regions of a block device', async () => {
    const backing = scratch.path('used-device-sparse.img');
    fs.writeFileSync(backing, Buffer.alloc(12 * MiB, 0xab));
    const device = await attachLoop(scratch, backing);
    expectSuccess(await repo.run(['restore', pointId, '--disk', '0', '--to', device, '--force']));
    const restored = fs.readFileSync(device);
    const source = fs.readFileSync(disks[0].image);
    let staleBytes = 0;
    let otherDifferences = 0;
    for (let i = 0; i < source.length; i++) {
      if (restored[i] === source[i]) continue;
      // Every difference is an untouched zero region still holding the device's old bytes.
      if (source[i] === 0 && restored[i] === 0xab) staleBytes++;
      else otherDifferences++;
    }
    expect(otherDifferences, 'bytes that differ other than untouched zero regions').toBe(0);
    expect(staleBytes).toBeGreaterThan(0);
  });

  it('reports repository statistics as JSON', async () => {
    const stats = parseJson(await repo.run(['stats', '--json']));
    expect(typeof stats).toBe('object');
    expect(JSON.stringify(stats)).toMatch(/\d/);
  });
});

describe('key slots', () => {
  it('adds a passphrase, removes the old one, and never rewrites data', async () => {
    const repo = await TestRepo.init(scratch, 'keys-repo');
    await repo.backup('web', [disks[0].image]);
    const before = await dataState(repo.path);
    const keysBefore = parseJson<Array<{ id: string }>>(await repo.run(['key', 'list', '--json']));
    expect(keysBefore).toHaveLength(1);

    const secondFile = scratch.path('second.password');
    fs.writeFileSync(secondFile, 'a second passphrase\n');
    expectSuccess(await repo.run(['key', 'add', '--new-password-file', secondFile]));
    const second = new TestRepo(repo.path, secondFile);

    const keysAfter = parseJson<Array<{ id: string }>>(await second.run(['key', 'list', '--json']));
    expect(keysAfter).toHaveLength(2);
    const oldId = keysBefore[0].id;
    expect(keysAfter.map((k) => k.id)).toContain(oldId);
    const newId = keysAfter.map((k) => k.id).find((id) => id !== oldId)!;

    expectSuccess(await second.run(['key', 'remove', oldId]));
    expectCleanFailure(await repo.run(['list']), { code: EXIT.wrongPassword });
    expectSuccess(await second.run(['list']));

    // The last key slot would lock everyone out.
    expectCleanFailure(await second.run(['key', 'remove', newId]), { message: /last|only/i });
    expectSuccess(await second.run(['list']));

    expect(await dataState(repo.path)).toEqual(before);
  });
});

describe('forget', () => {
  it('--dry-run changes nothing; forget removes only the named restore point', async () => {
    const repo = await TestRepo.init(scratch, 'forget-repo');
    const webId = (await repo.backup('web', [disks[0].image])).id;
    const second = await repo.backup('db', [disks[1].image]);
    const before = (await repo.list()).map((p) => p.id);
    expect(new Set(before)).toEqual(new Set([webId, second.id]));

    expectSuccess(await repo.run(['forget', webId, '--dry-run']));
    expect((await repo.list()).map((p) => p.id)).toEqual(before);

    expectSuccess(await repo.run(['forget', webId]));
    expect((await repo.list()).map((p) => p.id)).toEqual([second.id]);
    expectCleanFailure(await repo.run(['restore', webId, '--to', scratch.mkdir('forgotten')]));

    const out = scratch.mkdir('restore-db');
    expectSuccess(await repo.run(['restore', second.id, '--to', out]));
    expect(await sha256File(path.join(out, path.basename(disks[1].image)))).toBe(disks[1].sha256);
    await repo.expectCheckPasses(true);
  });
});

describe('demo', () => {
  it('runs end to end without touching the current directory', async () => {
    const cwd = scratch.mkdir('demo-cwd');
    const r = await ferry(['demo'], { cwd, timeoutMs: 180_000 });
    expectSuccess(r, 'ferry demo');
    expect(r.stdout.length).toBeGreaterThan(0);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });
});
