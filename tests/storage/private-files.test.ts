// Nothing ferry writes is readable by other users of the host: repository
// files (key slots first), the S3 cache and restored images are 0600, their
// folders 0700, even when ferry runs under a permissive umask (0000, as a
// careless cron or service unit may set). `restore --mode` chooses another
// mode for the restored files, exactly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CommandResult,
  EXIT,
  expectCleanFailure,
  expectSuccess,
  FAST_KDF,
  FERRY_BIN,
  ferryEnv,
  runCommand,
  useScratch,
  writeRandomishImage,
} from '../support';
import { useS3Server } from '../support/s3server';

const MiB = 1024 * 1024;
const scratch = useScratch('private-files');
const s3 = useS3Server();

const passwordFile = scratch.path('password');
fs.writeFileSync(passwordFile, 'correct horse private\n', { mode: 0o600 });
const cacheHome = scratch.path('cache-home');

/** `ferry ARGS` started by a shell that set umask 0000 first. */
function ferryUnderOpenUmask(args: string[]): Promise<CommandResult> {
  return runCommand('/bin/sh', ['-c', 'umask 0000 && exec "$0" "$@"', process.execPath, FERRY_BIN, ...args], {
    env: ferryEnv({ FERRY_PASSWORD_FILE: passwordFile, XDG_CACHE_HOME: cacheHome }),
    timeoutMs: 240_000,
  });
}

/** Every file and folder under `root` (root included) with its permission bits, as `path 0600`. */
function modesUnder(root: string): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    const st = fs.lstatSync(p);
    out.push(`${path.relative(root, p) || '.'} ${(st.mode & 0o7777).toString(8).padStart(4, '0')} ${st.isDirectory() ? 'dir' : 'file'}`);
    if (st.isDirectory()) for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
  };
  walk(root);
  return out;
}

function expectPrivate(root: string, fileMode = '0600'): void {
  const entries = modesUnder(root);
  expect(entries.length).toBeGreaterThan(1);
  const wrong = entries.filter((e) => !(e.endsWith(' 0700 dir') || e.endsWith(` ${fileMode} file`)));
  expect(wrong, `under ${root}, expected folders 0700 and files ${fileMode}`).toEqual([]);
}

describe('files are private whatever the umask', () => {
  const image = scratch.path('web.img');
  writeRandomishImage(image, 6 * MiB, 17);

  it('a local repository: config, keys/, data/, index/, snapshots/, locks/ are 0600/0700', async () => {
    const repo = scratch.path('repo');
    expectSuccess(await ferryUnderOpenUmask(['init', '--repo', repo, ...FAST_KDF]));
    expectSuccess(await ferryUnderOpenUmask(['backup', '--repo', repo, '--guest', 'web', image]));
    const names = modesUnder(repo).map((e) => e.split(' ')[0]);
    for (const folder of ['keys', 'data', 'index', 'snapshots']) expect(names).toContain(folder);
    expectPrivate(repo);
  });

  it('the S3 cache under $XDG_CACHE_HOME/ferry is 0600/0700', async () => {
    const location = await s3.server.newLocation('ferry');
    expectSuccess(await ferryUnderOpenUmask(['init', '--repo', location, ...FAST_KDF]));
    expectSuccess(await ferryUnderOpenUmask(['backup', '--repo', location, '--guest', 'web', image]));
    const cache = path.join(cacheHome, 'ferry');
    expect(modesUnder(cache).some((e) => e.includes('snapshots/'))).toBe(true);
    expectPrivate(cache);

    // A cache an earlier ferry left open (0755 folders, 0644 files) is closed at the next run, even one served from the cache.
    const [repoCache] = fs.readdirSync(cache).map((d) => path.join(cache, d));
    for (const e of modesUnder(repoCache!)) {
      const [rel, , kind] = e.split(' ');
      fs.chmodSync(path.join(repoCache!, rel!), kind === 'dir' ? 0o755 : 0o644);
    }
    expectSuccess(await ferryUnderOpenUmask(['list', '--repo', location]));
    expect((fs.statSync(repoCache!).mode & 0o777).toString(8)).toBe('700');
  });

  it('restored images and config are 0600 in a 0700 folder; --mode sets the files exactly', async () => {
    const repo = scratch.path('repo');
    const out = scratch.path('restored');
    expectSuccess(await ferryUnderOpenUmask(['restore', 'latest', '--repo', repo, '--to', out]));
    expectPrivate(out);

    const shared = scratch.path('restored-0664');
    expectSuccess(await ferryUnderOpenUmask(['restore', 'latest', '--repo', repo, '--to', shared, '--mode', '0664']));
    expect((fs.statSync(path.join(shared, 'web.img')).mode & 0o7777).toString(8)).toBe('664');

    const one = scratch.path('one-disk.img');
    expectSuccess(await ferryUnderOpenUmask(['restore', 'latest', '--repo', repo, '--disk', '0', '--to', one]));
    expect((fs.statSync(one).mode & 0o7777).toString(8)).toBe('600');
  });

  it('restore --mode refuses what is not octal permission bits', async () => {
    const r = await ferryUnderOpenUmask(['restore', 'latest', '--repo', scratch.path('repo'), '--to', scratch.path('x'), '--mode', '4755']);
    expectCleanFailure(r, { code: EXIT.usage, message: /--mode 4755: give octal permission bits/ });
    expect(fs.existsSync(scratch.path('x'))).toBe(false);
  });
});
