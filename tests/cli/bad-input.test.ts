// Bad input gets one clear line on stderr, a meaningful non-zero exit code,
// and nothing half-written: the repository stays valid and unchanged.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  attachLoop,
  EXIT,
  expectCleanFailure,
  expectSuccess,
  ferry,
  listFiles,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';

const scratch = useScratch('bad-input');
const MiB = 1024 * 1024;

let repo: TestRepo;
let alpha: { image: string; id: string; sha256: string };

/** Every file of the repository with its hash: to prove a failed command wrote nothing. */
async function repoState(dir: string): Promise<string[]> {
  const files = listFiles(dir).filter((f) => !f.startsWith('locks/'));
  return Promise.all(files.map(async (f) => `${f} ${await sha256File(path.join(dir, f))}`));
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  const image = scratch.path('alpha.img');
  writeRandomishImage(image, 16 * MiB, 1);
  const summary = await repo.backup('alpha', [image]);
  alpha = { image, id: summary.id, sha256: await sha256File(image) };
});

describe('opening a repository', () => {
  it('refuses a wrong passphrase and changes nothing', async () => {
    const before = await repoState(repo.path);
    const wrongFile = scratch.path('wrong.password');
    fs.writeFileSync(wrongFile, 'not the passphrase\n');
    for (const env of [{ FERRY_PASSWORD_FILE: wrongFile }, { FERRY_PASSWORD_FILE: undefined, FERRY_PASSWORD: 'nope' }]) {
      const r = await repo.run(['list'], { env });
      expectCleanFailure(r, { code: EXIT.wrongPassword, message: /pass(word|phrase)|key/i });
    }
    const backup = await repo.run(['backup', '--guest', 'alpha', alpha.image], { env: { FERRY_PASSWORD_FILE: wrongFile } });
    expectCleanFailure(backup, { code: EXIT.wrongPassword });
    expect(await repoState(repo.path)).toEqual(before);
  });

  it('refuses a passphrase file that does not exist, naming it', async () => {
    const missing = scratch.path('no-such.password');
    const r = await ferry(['list', '--repo', repo.path, '--password-file', missing]);
    expectCleanFailure(r, { message: /no-such\.password/ });
  });

  it('refuses a path that is not a repository, naming it, and creates nothing there', async () => {
    const empty = scratch.mkdir('empty-dir');
    const unrelated = scratch.mkdir('unrelated-dir');
    fs.writeFileSync(path.join(unrelated, 'config'), 'just some file called config\n');
    fs.mkdirSync(path.join(unrelated, 'data'));
    const missing = scratch.path('no-such-repo');
    for (const dir of [empty, unrelated, missing]) {
      const r = await ferry(['list', '--repo', dir], { env: { FERRY_PASSWORD: 'x' } });
      const line = expectCleanFailure(r, { code: EXIT.notARepository });
      expect(line).toContain(dir);
    }
    const backup = await ferry(['backup', '--repo', empty, '--guest', 'alpha', alpha.image], { env: { FERRY_PASSWORD: 'x' } });
    expectCleanFailure(backup, { code: EXIT.notARepository });
    expect(fs.readdirSync(empty)).toEqual([]);
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('refuses a repository whose config magic is damaged, without touching it', async () => {
    const copy = await repo.copyTo(scratch.path('bad-magic'));
    const config = path.join(copy.path, 'config');
    const bytes = fs.readFileSync(config);
    bytes[0] ^= 0xff;
    bytes[1] ^= 0xff;
    fs.writeFileSync(config, bytes);
    const r = await copy.run(['list']);
    expectCleanFailure(r, { message: /config|repositor|format|version/i });
    expect(r.code === EXIT.notARepository || r.code === EXIT.corrupt, `exit ${r.code}`).toBe(true);
    expect(fs.readFileSync(config)).toEqual(bytes);
  });

  it('refuses a repository of an unknown (newer) format version, without touching it', async () => {
    const copy = await repo.copyTo(scratch.path('future-version'));
    const config = path.join(copy.path, 'config');
    const bytes = fs.readFileSync(config);
    // docs/FORMAT.md, "config": 8-byte magic "FERRYREP", then the format version as u16 little-endian.
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('FERRYREP');
    bytes.writeUInt16LE(999, 8);
    fs.writeFileSync(config, bytes);
    const r = await copy.run(['list']);
    expectCleanFailure(r, { code: EXIT.notARepository, message: /version/i });
    expect(fs.readFileSync(config)).toEqual(bytes);
  });

  it('reads the repository from FERRY_REPO when --repo is absent', async () => {
    const r = await ferry(['list', '--json'], { env: { FERRY_REPO: repo.path, FERRY_PASSWORD_FILE: repo.passwordFile } });
    const ids = JSON.parse(expectSuccess(r)).map((p: { id: string }) => p.id);
    expect(ids).toEqual([alpha.id]);
  });
});

describe('backup of an image path that cannot be read', () => {
  const cases: Array<[string, () => string]> = [
    ['a directory', () => scratch.mkdir('a-directory')],
    ['a path under a directory that does not exist', () => scratch.path('no-such-dir', 'disk.img')],
    [
      'a FIFO',
      () => {
        const p = scratch.path('a-fifo');
        if (!fs.existsSync(p)) execFileSync('mkfifo', [p]);
        return p;
      },
    ],
    [
      'a dangling symlink',
      () => {
        const p = scratch.path('dangling.img');
        if (!fs.existsSync(p)) fs.symlinkSync(scratch.path('vanished.img'), p);
        return p;
      },
    ],
  ];

  for (const [what, makePath] of cases) {
    it(`fails on ${what}, naming it, and records no restore point`, async () => {
      const bad = makePath();
      const before = await repoState(repo.path);
      // A FIFO with no writer blocks a naive open() forever: the timeout turns a hang into a failure.
      const r = await repo.run(['backup', '--guest', 'alpha', bad], { timeoutMs: 60_000 });
      const line = expectCleanFailure(r, { code: EXIT.badInput });
      expect(line).toContain(path.basename(bad));
      expect((await repo.list()).map((p) => p.id)).toEqual([alpha.id]);
      expect(await repoState(repo.path)).toEqual(before);
    });
  }

  it('fails as a whole when one of several images is bad', async () => {
    const r = await repo.run(['backup', '--guest', 'alpha', alpha.image, scratch.path('missing-second-disk.img')]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /missing-second-disk\.img/ });
    expect((await repo.list()).map((p) => p.id)).toEqual([alpha.id]);
    await repo.expectCheckPasses(false);
  });
});

describe('restore onto a target that is in the way', () => {
  it('will not overwrite an existing file without --force, and will with it', async () => {
    const dir = scratch.mkdir('occupied');
    const target = path.join(dir, 'alpha.img');
    fs.writeFileSync(target, 'precious data that is not a disk image\n');
    const r = await repo.run(['restore', alpha.id, '--to', dir]);
    expectCleanFailure(r, { message: /alpha\.img|exist|force/i });
    expect(fs.readFileSync(target, 'utf8')).toBe('precious data that is not a disk image\n');

    expectSuccess(await repo.run(['restore', alpha.id, '--to', dir, '--force']));
    expect(await sha256File(target)).toBe(alpha.sha256);
  });

  it('will not overwrite an existing file given to --disk without --force', async () => {
    const target = scratch.path('disk0-target.img');
    fs.writeFileSync(target, 'keep me\n');
    const r = await repo.run(['restore', alpha.id, '--disk', '0', '--to', target]);
    // The library names the restore target and its force option; the CLI words them with its flags.
    expectCleanFailure(r, { code: EXIT.badInput, message: /^ferry: --to \S*disk0-target\.img: already exists; add --force to overwrite it$/ });
    expect(fs.readFileSync(target, 'utf8')).toBe('keep me\n');
  });

  it('refuses a block device smaller than the disk, before writing to it', async () => {
    const backing = scratch.path('small-device.img');
    fs.writeFileSync(backing, Buffer.alloc(4 * MiB, 0xab));
    const device = await attachLoop(scratch, backing);
    const r = await repo.run(['restore', alpha.id, '--disk', '0', '--to', device, '--force']);
    expectCleanFailure(r, { message: /small|size|bytes|MiB|space/i });
    expect(fs.readFileSync(backing).equals(Buffer.alloc(4 * MiB, 0xab)), 'device content must be untouched').toBe(true);
  });

  it('refuses a disk number the restore point does not have', async () => {
    const r = await repo.run(['restore', alpha.id, '--disk', '3', '--to', scratch.path('disk3.img')]);
    expectCleanFailure(r, { message: /disk/i });
    expect(fs.existsSync(scratch.path('disk3.img'))).toBe(false);
  });

  it('refuses an unknown restore point id', async () => {
    const r = await repo.run(['restore', 'ffffffffffff', '--to', scratch.mkdir('unknown-id')]);
    expectCleanFailure(r, { message: /ffffffffffff/ });
  });
});

describe('two destructive commands at once', () => {
  it('a forget while a backup holds the repository fails with a lock error', async () => {
    const big = scratch.path('big.img');
    writeRandomishImage(big, 256 * MiB, 5, { holes: 0, text: 0 });
    // Temp files (`NAME.tmp-RANDOM`, renamed when complete) are locks still being written.
    const locks = () => listFiles(path.join(repo.path, 'locks')).filter((f) => !/(^|\/)\.|\.tmp/.test(f));
    const running = repo.spawn(['backup', '--guest', 'big', big]);
    let exited = false;
    running.done.then(() => (exited = true));
    try {
      // Freeze the backup as soon as its lock exists, so it holds the lock for as long as the test needs.
      const deadline = Date.now() + 60_000;
      while (locks().length === 0 && !exited && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2));
      }
      expect(exited, 'the backup finished before its lock file appeared in locks/').toBe(false);
      expect(locks().length, 'a running backup must hold a lock in locks/').toBeGreaterThan(0);
      process.kill(running.child.pid!, 'SIGSTOP');

      const r = await repo.run(['forget', alpha.id]);
      expectCleanFailure(r, { code: EXIT.locked, message: /lock/i });
    } finally {
      if (!exited) {
        running.child.kill('SIGKILL');
        running.child.kill('SIGCONT');
      }
      await running.done;
    }
    expect((await repo.list()).map((p) => p.id)).toEqual([alpha.id]);

    // The killed backup's lock is stale (this host, its pid is gone): the next
    // destructive command removes it by itself, so a crashed nightly run never blocks the next one.
    expect(locks().length, 'the killed backup left its lock behind').toBeGreaterThan(0);
    expectSuccess(await repo.run(['forget', alpha.id, '--dry-run']));
    expect(locks()).toEqual([]);
    expectSuccess(await repo.run(['unlock']));
    expect((await repo.list()).map((p) => p.id)).toEqual([alpha.id]);
    await repo.expectCheckPasses(true);
  });
});
