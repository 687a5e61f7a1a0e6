// The work directory holds plaintext copies of guest disks: it is this user's
// alone, and one that someone else prepared is refused with one clear line.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors';
import { preparePrivateWorkDirectory } from '../../src/snapshot/workDirectory';
import { useScratch } from '../support/scratch';
import { ferry, FAST_KDF, expectSuccess } from '../support/ferry';

const scratch = useScratch('work-directory');
const NOBODY = 65534;
const mode = (p: string) => fs.lstatSync(p).mode & 0o777;

describe('preparePrivateWorkDirectory', () => {
  it('creates a missing directory 0700, whatever the umask', () => {
    const dir = scratch.path('fresh', 'work');
    const old = process.umask(0);
    try {
      preparePrivateWorkDirectory(dir);
    } finally {
      process.umask(old);
    }
    expect(mode(dir)).toBe(0o700);
  });

  it('closes a directory of this user that is open to others', () => {
    const dir = scratch.mkdir('open');
    fs.chmodSync(dir, 0o777);
    preparePrivateWorkDirectory(dir);
    expect(mode(dir)).toBe(0o700);
  });

  it('refuses a directory another user created first, and leaves it as it was', () => {
    const dir = scratch.mkdir('planted');
    fs.chmodSync(dir, 0o777);
    fs.chownSync(dir, NOBODY, NOBODY);
    expect(() => preparePrivateWorkDirectory(dir)).toThrow(InputError);
    expect(() => preparePrivateWorkDirectory(dir)).toThrow(new RegExp(`^work directory ${dir}: belongs to uid ${NOBODY}, not to this user`));
    expect(mode(dir)).toBe(0o777);
  });

  it('refuses a symbolic link, even to a private directory of this user', () => {
    const real = scratch.mkdir('real');
    fs.chmodSync(real, 0o700);
    const link = scratch.path('link');
    fs.symlinkSync(real, link);
    expect(() => preparePrivateWorkDirectory(link)).toThrow(/is a symbolic link: .* must be a real directory/);
  });

  it('refuses a file', () => {
    const file = scratch.path('a-file');
    fs.writeFileSync(file, '');
    expect(() => preparePrivateWorkDirectory(file)).toThrow(new RegExp(`^work directory ${file}: (cannot create it|is not a directory)`));
  });
});

describe('ferry backup --all with a work directory of another user', () => {
  it('exits 7 with one line before touching any guest', async () => {
    const repo = scratch.path('repo');
    const env = { FERRY_PASSWORD: 'work-dir-test' };
    expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
    const image = scratch.path('web01.img');
    fs.writeFileSync(image, Buffer.alloc(1024 * 1024, 1));
    const conf = scratch.path('ferry.conf');
    fs.writeFileSync(conf, `[[static.guest]]\nname = "web01"\ndisks = [${JSON.stringify(image)}]\n`);
    const work = scratch.mkdir('others-work');
    fs.chownSync(work, NOBODY, NOBODY);
    const r = await ferry(['backup', '--all', '--repo', repo, '--config', conf, '--work-dir', work], { env });
    expect(r.code).toBe(7);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^ferry: --work-dir \S*others-work: belongs to uid 65534, .* or choose another work directory$/m);
    expect(fs.readdirSync(work)).toEqual([]);
  });
});
