// Torn writes and interrupted commands: a pack cut short, an index file lost,
// a command killed half-way. Whatever happened, the next backup must produce a
// restore point that restores, `ferry repair` must say exactly what is lost,
// and re-running the interrupted command must finish it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  ferry,
  expectCleanFailure,
  expectSuccess,
  listFiles,
  parseJson,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { sealObject } from '../../src/crypto/objectCodec';
import { decodeIndexFile } from '../../src/repo/indexFile';
import { preferIntactCopies } from '../../src/repo/packHealth';

const scratch = useScratch('torn-writes');
const MiB = 1024 * 1024;

interface Backed {
  repo: TestRepo;
  image: string;
  id: string;
  sha256: string;
  /** Repository files (relative) that the backup added. */
  added: string[];
}

/** A repository with one 16 MiB guest backed up into it, made once: each test damages its own copy. */
let original: Backed;

beforeAll(async () => {
  const repo = await TestRepo.init(scratch, 'original');
  const image = path.join(scratch.mkdir('original-image'), 'web.img');
  writeRandomishImage(image, 16 * MiB, 901, { holes: 0, text: 0 });
  const before = new Set(listFiles(repo.path));
  const { id } = await repo.backup('web', [image]);
  const added = listFiles(repo.path).filter((f) => !before.has(f) && !f.startsWith('locks/'));
  original = { repo, image, id, sha256: await sha256File(image), added };
});

/**
 * A copy of the original repository and of its image, for one test (cp -a: an `init` and a backup
 * per test were half this file's time). The image keeps its name, web.img, so that a backup of
 * it finds the copied restore point as its previous one, as after a real night.
 */
async function repoWithBackup(name: string): Promise<Backed> {
  const repo = await original.repo.copyTo(scratch.path(name));
  const image = path.join(scratch.mkdir(`${name}-image`), path.basename(original.image));
  fs.copyFileSync(original.image, image);
  return { ...original, repo, image };
}

/** The largest pack a backup added. */
function newestPack(b: Backed): string {
  const packs = b.added.filter((f) => f.startsWith('data/'));
  expect(packs.length).toBeGreaterThan(0);
  return packs.sort((x, y) => fs.statSync(path.join(b.repo.path, y)).size - fs.statSync(path.join(b.repo.path, x)).size)[0];
}

function truncateToHalf(repo: TestRepo, file: string): void {
  const p = path.join(repo.path, file);
  fs.truncateSync(p, Math.floor(fs.statSync(p).size / 2));
}

async function expectRestoresBitExact(repo: TestRepo, id: string, image: string, sha256: string): Promise<void> {
  const out = scratch.path(`restore-${id.slice(0, 8)}-${Math.random().toString(16).slice(2, 8)}`);
  expectSuccess(await repo.run(['restore', id, '--to', out]), `restore of ${id}`);
  expect(await sha256File(path.join(out, path.basename(image))), `restore of ${id} must be bit-exact`).toBe(sha256);
}

describe('a backup after a pack was torn', () => {
  it('does not reuse the lost blobs: it stores them again, says so, and its restore point restores bit-exact', async () => {
    const b = await repoWithBackup('torn-pack-backup');
    truncateToHalf(b.repo, newestPack(b));

    const r = await b.repo.run(['backup', '--guest', 'web', b.image, '--json']);
    const summary = parseJson<{ id: string; newBytes: number }>(r);
    expect(r.stderr).toMatch(/warning: 1 pack\(s\) damaged or missing \(1 short\); \d+ blob\(s\) they held will be stored again by this backup; run 'ferry repair'/);
    expect(summary.newBytes, 'the lost data is stored again').toBeGreaterThan(4 * MiB);
    await expectRestoresBitExact(b.repo, summary.id, b.image, b.sha256);

    // The next backup finds the stored-again copies: nothing lost, nothing new.
    const again = await b.repo.backup('web', [b.image]);
    expect(again.newBytes).toBeLessThan(MiB);
    await expectRestoresBitExact(b.repo, again.id, b.image, b.sha256);
  });

  it('readers take the stored-again copy whichever order the index files load in', async () => {
    const b = await repoWithBackup('torn-pack-order');
    const pack = newestPack(b);
    truncateToHalf(b.repo, pack);
    parseJson(await b.repo.run(['backup', '--guest', 'web', b.image, '--json']));

    const secret = fs.readFileSync(b.repo.passwordFile, 'utf8').replace(/\n$/, '');
    const repo = await Repository.open(new LocalBackend(b.repo.path), Buffer.from(secret));
    await repo.loadIndex();
    // The worst order: the index file naming the torn pack loaded last, so its locations won.
    const tornId = path.basename(pack);
    for (const name of repo.indexFiles) {
      const packs = decodeIndexFile(repo.keys.dataKey, fs.readFileSync(path.join(b.repo.path, 'index', name)))!;
      for (const p of packs) if (p.packId === tornId) repo.addPackEntries(p.packId, p.entries);
    }
    const tornNumber = repo.packNumber(tornId);
    const inTorn = () => {
      let n = 0;
      repo.forEachBlob((_id, loc) => (n += loc.pack === tornNumber ? 1 : 0));
      return n;
    };
    expect(inTorn()).toBeGreaterThan(0);
    await preferIntactCopies(repo);
    expect(inTorn(), 'every blob stored again is read from its new, intact pack').toBe(0);
  });

  it('stores again the blobs of a pack that is missing altogether', async () => {
    const b = await repoWithBackup('missing-pack-backup');
    fs.rmSync(path.join(b.repo.path, newestPack(b)));
    const r = await b.repo.run(['backup', '--guest', 'web', b.image, '--json']);
    const summary = parseJson<{ id: string; newBytes: number }>(r);
    expect(r.stderr).toContain('1 pack(s) damaged or missing (1 missing)');
    await expectRestoresBitExact(b.repo, summary.id, b.image, b.sha256);
  });
});

describe('ferry repair', () => {
  it('rebuilds a lost index file from the pack headers; check is clean after', async () => {
    const b = await repoWithBackup('repair-lost-index');
    for (const f of b.added.filter((x) => x.startsWith('index/'))) fs.rmSync(path.join(b.repo.path, f));

    const r = await b.repo.run(['repair']);
    expectSuccess(r, 'repair');
    expect(r.stdout).toMatch(/0 damaged pack\(s\) removed; 0 blob\(s\) salvaged, 0 lost; 0 index file\(s\) replaced, [1-9]\d* pack\(s\) indexed again/);
    const check = await b.repo.check(true);
    expectSuccess(check, 'check after repair');
    expect(check.stdout).not.toContain('unindexed');
    await expectRestoresBitExact(b.repo, b.id, b.image, b.sha256);
  });

  it('replaces a damaged index file', async () => {
    const b = await repoWithBackup('repair-damaged-index');
    const index = b.added.find((x) => x.startsWith('index/'))!;
    fs.writeFileSync(path.join(b.repo.path, index), Buffer.from('torn'));
    const r = await b.repo.run(['repair']);
    expectSuccess(r, 'repair');
    expect(r.stdout).toContain(`damaged: ${index}: fails authentication or is malformed`);
    expect(r.stdout).toContain('1 index file(s) replaced');
    expect(fs.existsSync(path.join(b.repo.path, index))).toBe(false);
    expectSuccess(await b.repo.check(true), 'check after repair');
  });

  it('leaves alone, and names, a pack with an unreadable header that no index names (its blobs cannot be told apart)', async () => {
    const b = await repoWithBackup('repair-unknown-pack');
    const name = 'f0'.repeat(32);
    const garbage = path.join(b.repo.path, 'data', 'f0', name);
    fs.mkdirSync(path.dirname(garbage), { recursive: true });
    fs.writeFileSync(garbage, Buffer.alloc(5000, 1));
    const r = await b.repo.run(['repair']);
    expectSuccess(r, 'repair');
    expect(r.stdout).toContain(`damaged: data/f0/${name}: header unreadable and no index names it, so where its blobs lie is unknown; left in place`);
    expect(fs.existsSync(garbage)).toBe(true);
  });

  it('--dry-run reports and changes nothing', async () => {
    const b = await repoWithBackup('repair-dry-run');
    truncateToHalf(b.repo, newestPack(b));
    const before = listFiles(b.repo.path).map((f) => `${f}:${fs.statSync(path.join(b.repo.path, f)).size}`);
    const r = await b.repo.run(['repair', '--dry-run']);
    expect(r.code, r.stderr).toBe(EXIT.damageFound);
    expect(r.stdout).toContain('(dry run: nothing changed)');
    expect(r.stdout).toContain(`lost: restore point ${b.id.slice(0, 8)}`);
    expect(listFiles(b.repo.path).filter((f) => !f.startsWith('locks/')).map((f) => `${f}:${fs.statSync(path.join(b.repo.path, f)).size}`)).toEqual(before);
  });

  it('after a pack was truncated: names the restore points and disks that lost data and how much; the next backup stores it again and both points restore bit-exact', async () => {
    const b = await repoWithBackup('repair-torn-pack');
    const other = scratch.path('repair-torn-pack-db.img');
    writeRandomishImage(other, 8 * MiB, 915, { holes: 0, text: 0 });
    const otherPoint = await b.repo.backup('db', [other]);
    const pack = newestPack(b);
    truncateToHalf(b.repo, pack);

    const r = await b.repo.run(['repair']);
    // Data is lost until the guest is backed up again: exit 10 and one line that says what to do.
    expectCleanFailure(r, { code: EXIT.damageFound, message: new RegExp(`1 restore point\\(s\\) name data that is lost \\(${b.id.slice(0, 8)}\\).*back up the affected guests again`) });
    expect(r.stdout).toMatch(new RegExp(`damaged: ${pack}: header unreadable \\(\\d+ bytes on storage; the index needs at least \\d+ for its blobs\\); [1-9]\\d* blob\\(s\\) salvaged, [1-9]\\d* lost`));
    const lostLine = r.stdout.split('\n').find((l) => l.startsWith('lost: '));
    expect(lostLine).toMatch(new RegExp(`^lost: restore point ${b.id.slice(0, 8)} \\(web, .*\\), disk web.img: [\\d.]+ MiB of 16\\.0 MiB \\([1-9]\\d* chunk\\(s\\)`));
    expect(r.stdout, 'the other guest lost nothing').not.toContain(otherPoint.id.slice(0, 8));
    expect(fs.existsSync(path.join(b.repo.path, pack)), 'the damaged pack is removed').toBe(false);

    // Repair is idempotent: nothing more to do, the same loss reported.
    const again = await b.repo.run(['repair', '--json']);
    expect(again.code).toBe(EXIT.damageFound);
    const report = JSON.parse(again.stdout) as { damagedPacks: unknown[]; affected: { id: string }[] };
    expect(report.damagedPacks).toEqual([]);
    expect(report.affected.map((a) => a.id)).toEqual([b.id]);

    const next = await b.repo.backup('web', [b.image]);
    expect(next.newBytes, 'the lost data is stored again').toBeGreaterThan(4 * MiB);
    await expectRestoresBitExact(b.repo, next.id, b.image, b.sha256);
    await expectRestoresBitExact(b.repo, b.id, b.image, b.sha256);
    expectSuccess(await b.repo.run(['repair']), 'repair once the data is stored again');
    await b.repo.expectCheckPasses(true);
  });
});

describe('messages that are true', () => {
  it('a restore that needs a truncated pack fails as corruption (exit 6), naming the pack and its real size', async () => {
    const b = await repoWithBackup('msg-truncated-pack');
    const pack = newestPack(b);
    truncateToHalf(b.repo, pack);
    const size = fs.statSync(path.join(b.repo.path, pack)).size;
    const out = scratch.path('msg-truncated-restore');
    const line = expectCleanFailure(await b.repo.run(['restore', b.id, '--to', out]), { code: EXIT.corrupt });
    expect(line).toContain(`${pack}: object is truncated: it is ${size} bytes, but bytes `);
    expect(line).toContain("run 'ferry repair'");
    expect(line).not.toContain('file ends after');
  });

  it('a torn index file is damage, but check does not call the restore points it indexed affected: they restore bit-exact', async () => {
    const b = await repoWithBackup('msg-torn-index');
    const index = b.added.find((x) => x.startsWith('index/'))!;
    fs.truncateSync(path.join(b.repo.path, index), 100);
    const r = await b.repo.check(true);
    const line = expectCleanFailure(r, { code: EXIT.damageFound });
    expect(line).toContain('1 damaged object(s), 0 restore point(s) affected: none');
    expect(r.stdout).toContain(`damaged: ${index}`);
    expect(r.stdout).not.toContain('affected restore point');
    await expectRestoresBitExact(b.repo, b.id, b.image, b.sha256);
  });

  it("a lock of another host: the error advises 'ferry unlock --all', and 'ferry unlock' says the lock stays", async () => {
    const repo = await TestRepo.init(scratch, 'msg-foreign-lock');
    const secret = fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, '');
    const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(secret));
    const info = { host: 'other-host.example', pid: 4242, time: new Date().toISOString(), exclusive: true, command: 'forget' };
    await opened.backend.write('locks', 'ab'.repeat(16), sealObject(opened.keys.dataKey, 'lock', Buffer.from(JSON.stringify(info))));

    const line = expectCleanFailure(await repo.run(['forget', 'latest']), { code: EXIT.locked });
    expect(line).toContain("if no ferry runs on other-host.example any more, remove the lock with 'ferry unlock --all'");
    expect(line).not.toMatch(/run 'ferry unlock' if/);

    const unlock = await repo.run(['unlock']);
    expectSuccess(unlock);
    expect(unlock.stdout).toContain('removed 0 lock(s)');
    expect(unlock.stdout).toContain("kept the lock of 'forget', pid 4242 on other-host.example");
    expect(unlock.stdout).toContain("'ferry unlock --all'");
    expect((await repo.run(['unlock', '--all'])).stdout).toContain('removed 1 lock(s)');
  });
});

describe('leftovers of interrupted writes', () => {
  const twoHoursAgo = () => new Date(Date.now() - 2 * 3600_000);

  function plant(file: string, bytes: number, old: boolean): string {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.alloc(bytes, 7));
    if (old) fs.utimesSync(file, twoHoursAgo(), twoHoursAgo());
    return file;
  }

  it('check reports temporary files; the next backup removes those not modified for 30 minutes (keys/ too), and keeps young ones that may be a live writer\'s', async () => {
    const b = await repoWithBackup('leftover-repo');
    const pack = newestPack(b);
    const oldPackTemp = plant(path.join(b.repo.path, `${pack}.tmp-0123456789ab`), 3000, true);
    const oldKeyTemp = plant(path.join(b.repo.path, 'keys', '0123456789abcdef.tmp-ba9876543210'), 1000, true);
    const youngTemp = plant(path.join(b.repo.path, 'index', `${'e'.repeat(64)}.tmp-00000000000a`), 500, false);

    const check = await b.repo.run(['check']);
    expectSuccess(check, 'check');
    expect(check.stdout).toContain('leftovers: 3 temporary file(s) (4.39 KiB) of interrupted or running writes; 2 not modified for 30 minutes, which the next backup removes');

    const r = await b.repo.run(['backup', '--guest', 'web', b.image]);
    expectSuccess(r, 'backup');
    expect(r.stderr).toContain('removed 2 leftover temporary file(s) (3.91 KiB) of interrupted writes, not modified for 30 minutes');
    expect(fs.existsSync(oldPackTemp)).toBe(false);
    expect(fs.existsSync(oldKeyTemp)).toBe(false);
    expect(fs.existsSync(youngTemp), 'a young temporary file may be a live writer\'s: it stays').toBe(true);
    const after = await b.repo.run(['check', '--json']);
    expect(parseJson<{ leftovers: { files: number; bytes: number; old: number } }>(after).leftovers).toEqual({ files: 1, bytes: 500, old: 0 });
  });

  it('sync removes old temporary files in its target', async () => {
    const b = await repoWithBackup('leftover-sync-src');
    const target = scratch.path('leftover-sync-dst');
    expectSuccess(await ferry(['init', '--from', b.repo.path, '--repo', target]), 'init --from');
    expectSuccess(await b.repo.run(['sync', b.repo.path, target]), 'first sync');
    const old = plant(path.join(target, 'snapshots', `${'c'.repeat(64)}.tmp-0123456789ab`), 2048, true);
    const r = await b.repo.run(['sync', b.repo.path, target]);
    expectSuccess(r, 'sync');
    expect(r.stderr).toContain(`${target}: removed 1 leftover temporary file(s) (2.00 KiB) of interrupted writes`);
    expect(fs.existsSync(old)).toBe(false);
  });

  it("a restore removes the partial files of a killed restore of the same file (dead pid on this host, or old), and keeps another host's young one", async () => {
    const b = await repoWithBackup('leftover-restore');
    const out = scratch.mkdir('leftover-restore-out');
    const name = path.basename(b.image);
    // A real killed restore: SIGKILL once its partial file is there.
    const running = b.repo.spawn(['restore', b.id, '--to', out]);
    const deadline = Date.now() + 60_000;
    while (!fs.readdirSync(out).some((f) => f.includes('.ferry-partial-')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    running.child.kill('SIGKILL');
    await running.done;
    const killed = fs.readdirSync(out).filter((f) => f.includes('.ferry-partial-'));
    expect(killed, 'the killed restore left its partial file').toHaveLength(1);
    expect(killed[0]).toMatch(new RegExp(`^\\.${name.replace(/\./g, '\\.')}\\.ferry-partial-[0-9a-f]{8}-${running.child.pid}@`));
    const oldFormat = plant(path.join(out, `.${name}.ferry-partial-0badc0de`), 4096, true);
    const otherHost = plant(path.join(out, `.${name}.ferry-partial-12345678-4242@another-host.example`), 4096, false);

    const r = await b.repo.run(['restore', b.id, '--to', out]);
    expectSuccess(r, 'restore after the killed one');
    expect(r.stderr).toContain(`removed ${path.join(out, killed[0])}`);
    expect(r.stderr).toContain(`removed ${oldFormat}`);
    expect(r.stderr).toContain('left by an interrupted restore');
    expect(fs.existsSync(otherHost), "another host's young partial file may be a live writer's").toBe(true);
    expect(fs.readdirSync(out).sort()).toEqual([path.basename(otherHost), name].sort());
    expect(await sha256File(path.join(out, name))).toBe(b.sha256);
  });
});

describe('re-running an interrupted command finishes it', () => {
  it('forget A B C where A is already gone skips A, says so, and removes B and C', async () => {
    const b = await repoWithBackup('rerun-forget');
    const ids = [b.id];
    for (const seed of [942, 943]) {
      writeRandomishImage(b.image, 16 * MiB, seed, { holes: 0, text: 0 });
      ids.push((await b.repo.backup('web', [b.image])).id);
    }
    expectSuccess(await b.repo.run(['forget', ids[0]]), 'the first, interrupted forget removed A');
    const r = await b.repo.run(['forget', ...ids]);
    expectSuccess(r, 'forget re-run');
    expect(r.stderr).toContain(`skipped ${ids[0]}: no such restore point (already removed?)`);
    expect(r.stdout).toContain(`removed restore point ${ids[1].slice(0, 8)}`);
    expect(r.stdout).toContain(`removed restore point ${ids[2].slice(0, 8)}`);
    expect(await b.repo.list()).toEqual([]);
  });

  it('forget latest removes the newest restore point', async () => {
    const b = await repoWithBackup('forget-latest');
    writeRandomishImage(b.image, 16 * MiB, 946, { holes: 0, text: 0 });
    const newest = (await b.repo.backup('web', [b.image])).id;
    const r = await b.repo.run(['forget', 'latest']);
    expectSuccess(r, 'forget latest');
    expect(r.stdout).toContain(`removed restore point ${newest.slice(0, 8)}`);
    expect((await b.repo.list()).map((p) => p.id)).toEqual([b.id]);
  });

  it('forget with an ambiguous or too short id removes nothing', async () => {
    const b = await repoWithBackup('rerun-forget-bad');
    const line = expectCleanFailure(await b.repo.run(['forget', b.id, b.id.slice(0, 2)]), { code: EXIT.usage });
    expect(line).toContain('ambiguous or too short');
    expect((await b.repo.list()).map((p) => p.id)).toEqual([b.id]);
  });

  it('restore re-run without --force keeps the disk files that verify against the restore point and writes the rest; a file that differs still needs --force', async () => {
    const repo = await TestRepo.init(scratch, 'rerun-restore');
    const disk0 = scratch.path('rerun-disk0.img');
    const disk1 = scratch.path('rerun-disk1.img');
    writeRandomishImage(disk0, 16 * MiB, 945);
    writeRandomishImage(disk1, 8 * MiB, 946);
    const config = scratch.path('rerun.cfg');
    fs.writeFileSync(config, 'name = "rerun"\n');
    const { id } = await repo.backup('rerun', [disk0, disk1], ['--config', config]);
    const out = scratch.path('rerun-out');
    expectSuccess(await repo.run(['restore', id, '--to', out]), 'first restore');

    // As if killed after the first disk: the second disk and the config were never renamed into place.
    fs.rmSync(path.join(out, 'rerun-disk1.img'));
    fs.rmSync(path.join(out, 'rerun.cfg'));
    const r = await repo.run(['restore', id, '--to', out]);
    expectSuccess(r, 'restore re-run without --force');
    expect(r.stdout).toContain(`kept ${path.join(out, 'rerun-disk0.img')} (16.0 MiB): already restored, verified against the restore point`);
    expect(r.stdout).toContain(`restored ${path.join(out, 'rerun-disk1.img')}`);
    expect(await sha256File(path.join(out, 'rerun-disk0.img'))).toBe(await sha256File(disk0));
    expect(await sha256File(path.join(out, 'rerun-disk1.img'))).toBe(await sha256File(disk1));
    expect(fs.readFileSync(path.join(out, 'rerun.cfg'), 'utf8')).toBe('name = "rerun"\n');

    // A file that does not hold the restore point's data is never overwritten without --force.
    const fd = fs.openSync(path.join(out, 'rerun-disk0.img'), 'r+');
    fs.writeSync(fd, Buffer.from([1]), 0, 1, 5 * MiB + 3);
    fs.closeSync(fd);
    const line = expectCleanFailure(await repo.run(['restore', id, '--to', out]), { code: EXIT.badInput });
    expect(line).toContain(`${path.join(out, 'rerun-disk0.img')} already exists and does not hold this restore point's data`);
    expectSuccess(await repo.run(['restore', id, '--to', out, '--force']), 'restore --force');
    expect(await sha256File(path.join(out, 'rerun-disk0.img'))).toBe(await sha256File(disk0));
  });
});
