// `ferry export-tar` hands a guest to someone who does not run ferry: a plain
// tar that /bin/tar extracts and `sha256sum -c SHA256SUMS` verifies, holding
// the config and raw disk images. `ferry import-tar` takes such a tar back into
// a repository as a restore point that restores bit-exact; a damaged tar is
// refused without leaving anything behind.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  FERRY_BIN,
  ferryEnv,
  flipByte,
  mustRun,
  parseJson,
  runCommand,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const MiB = 1024 * 1024;
const scratch = useScratch('tar-export');

let repo: TestRepo;
let pointId: string;
const disks: { file: string; sha256: string; size: number }[] = [];
let configFile: string;
let tarFile: string;

/** `ferry ARGS > out` through a shell, so stdout is a real file descriptor carrying binary. */
function ferryToFile(r: TestRepo, args: string[], out: string) {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return runCommand('sh', ['-c', `${q(process.execPath)} ${q(FERRY_BIN)} ${r.argv(args).map(q).join(' ')} > ${q(out)}`], {
    env: ferryEnv({ FERRY_PASSWORD_FILE: r.passwordFile }),
  });
}

function ferryFromFile(r: TestRepo, args: string[], input: string) {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return runCommand('sh', ['-c', `${q(process.execPath)} ${q(FERRY_BIN)} ${r.argv(args).map(q).join(' ')} < ${q(input)}`], {
    env: ferryEnv({ FERRY_PASSWORD_FILE: r.passwordFile }),
  });
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  // A disk that does not end on a region or chunk boundary, and one mostly hole.
  const sizes = [37 * MiB + 12345, 96 * MiB];
  for (const [i, size] of sizes.entries()) {
    const file = scratch.path(`mail-disk${i}.img`);
    writeRandomishImage(file, size, 300 + i, { holes: i === 1 ? 0.85 : 0.2 });
    disks.push({ file, sha256: await sha256File(file), size });
  }
  configFile = scratch.path('mail.cfg');
  fs.writeFileSync(configFile, "name = 'mail'\nmemory = 2048\n");
  const summary = await repo.backup('mail', disks.map((d) => d.file), ['--config', configFile, '--tag', 'weekly']);
  pointId = summary.id;
  tarFile = scratch.path('mail.tar');
});

describe('export-tar', () => {
  it('streams a tar to stdout: config, disks, then the manifest and SHA256SUMS', async () => {
    const r = await ferryToFile(repo, ['export-tar', 'latest', '--guest', 'mail'], tarFile);
    expect(r.code, r.stderr).toBe(0);
    const names = (await mustRun('tar', ['-tf', tarFile])).trim().split('\n');
    expect(names).toEqual(['mail.cfg', 'mail-disk0.img', 'mail-disk1.img', 'ferry-export.json', 'SHA256SUMS']);
  });

  it('extracts with /bin/tar into files that sha256sum -c accepts and that equal the original disks', async () => {
    const dir = scratch.mkdir('extracted');
    await mustRun('tar', ['-xf', tarFile, '-C', dir]);
    const check = await mustRun('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir });
    expect(check).toMatch(/mail-disk0\.img: OK/);
    expect(check).toMatch(/mail-disk1\.img: OK/);
    expect(check).toMatch(/mail\.cfg: OK/);
    for (const [i, d] of disks.entries()) {
      expect(fs.statSync(`${dir}/mail-disk${i}.img`).size).toBe(d.size);
      expect(await sha256File(`${dir}/mail-disk${i}.img`)).toBe(d.sha256);
    }
    expect(fs.readFileSync(`${dir}/mail.cfg`)).toEqual(fs.readFileSync(configFile));
    const manifest = JSON.parse(fs.readFileSync(`${dir}/ferry-export.json`, 'utf8'));
    expect(manifest).toMatchObject({
      format: 'ferry-export',
      version: 1,
      guest: 'mail',
      restorePoint: pointId,
      tags: ['weekly'],
      config: { file: 'mail.cfg' },
    });
    expect(manifest.disks.map((d: { sha256: string; size: number }) => [d.sha256, d.size])).toEqual(disks.map((d) => [d.sha256, d.size]));
  });

  it('writes the same tar to --output, and refuses to overwrite it without --force', async () => {
    const out = scratch.path('mail-output.tar');
    expectSuccess(await repo.run(['export-tar', pointId.slice(0, 8), '--output', out]));
    // Byte for byte the same except the manifest's export time: compare what tar extracts.
    const dir = scratch.mkdir('extracted-output');
    await mustRun('tar', ['-xf', out, '-C', dir]);
    await mustRun('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir });
    const again = await repo.run(['export-tar', pointId.slice(0, 8), '--output', out]);
    expectCleanFailure(again, { code: EXIT.badInput, message: /already exists/ });
  });

  it('refuses an unknown restore point with a clear error and writes nothing', async () => {
    const out = scratch.path('nothing.tar');
    const r = await repo.run(['export-tar', 'ffffffff', '--output', out]);
    expectCleanFailure(r, { code: EXIT.usage, message: /ffffffff.*not found/ });
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('import-tar', () => {
  it('reads the tar from stdin into another repository; the restore point restores bit-exact', async () => {
    const other = await TestRepo.init(scratch, 'other');
    const r = await ferryFromFile(other, ['import-tar', '--json'], tarFile);
    const imported = parseJson<{ id: string; guest: string; tags: string[]; time: string }>(r);
    expect(imported.guest).toBe('mail');
    expect(imported.tags).toEqual(expect.arrayContaining(['weekly', 'imported']));
    const [listed] = await other.list();
    expect(listed.id).toBe(imported.id);
    const out = scratch.path('imported-restore');
    expectSuccess(await other.run(['restore', imported.id, '--to', out]));
    for (const [i, d] of disks.entries()) expect(await sha256File(`${out}/mail-disk${i}.img`)).toBe(d.sha256);
    expect(fs.readFileSync(`${out}/mail.cfg`)).toEqual(fs.readFileSync(configFile));
    // Restored sparse: the mostly-hole disk takes far less space than its size.
    expect(fs.statSync(`${out}/mail-disk1.img`).blocks * 512).toBeLessThan(disks[1].size / 2);
    await other.expectCheckPasses(true);
  });

  it('imports into the same repository under another guest name, storing almost nothing new', async () => {
    const r = await repo.run(['import-tar', tarFile, '--guest', 'mail-copy', '--json']);
    const imported = parseJson<{ id: string; guest: string; newBytes: number }>(r);
    expect(imported.guest).toBe('mail-copy');
    // Every chunk is already there; only region maps may be new.
    expect(imported.newBytes).toBeLessThan(64 * 1024);
  });

  it('refuses a damaged tar, naming the file, and adds nothing to the repository', async () => {
    const damaged = scratch.path('damaged.tar');
    fs.copyFileSync(tarFile, damaged);
    // Inside mail-disk0.img's data (after the config's header and body).
    flipByte(damaged, 512 * 3 + 2 * MiB + 17);
    const fresh = await TestRepo.init(scratch, 'fresh');
    const r = await ferryFromFile(fresh, ['import-tar'], damaged);
    expectCleanFailure(r, { code: EXIT.badInput, message: /mail-disk0\.img does not match/ });
    expect(await fresh.list()).toEqual([]);
    expect(fs.readdirSync(fresh.path).includes('data') ? fs.readdirSync(`${fresh.path}/data`) : []).toEqual([]);
  });

  it('refuses a tar that is not a ferry export', async () => {
    const plain = scratch.path('plain.tar');
    await mustRun('tar', ['-cf', plain, '-C', scratch.dir, 'mail.cfg']);
    const r = await ferryFromFile(repo, ['import-tar'], plain);
    expectCleanFailure(r, { code: EXIT.badInput, message: /no ferry-export\.json/ });
  });
});
