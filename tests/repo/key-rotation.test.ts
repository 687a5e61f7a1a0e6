// `ferry key rotate`: everything written after it is sealed with a new data
// key that no earlier key slot can give; what was stored before stays
// readable (nothing is rewritten), deduplication continues, every other slot
// is removed, and sync carries the new key to copy targets.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  ferry,
  listFiles,
  overwriteRandomPages,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { openObject } from '../../src/crypto/objectCodec';
import { decodeIndexFile } from '../../src/repo/indexFile';
import { decodePackHeader } from '../../src/repo/packFormat';
import { CorruptionError } from '../../src/errors';

const MiB = 1024 * 1024;
const scratch = useScratch('key-rotation');
const secretOf = (file: string) => Buffer.from(fs.readFileSync(file, 'utf8').replace(/\n$/, ''));

let repo: TestRepo;
let copyTarget: TestRepo;
const image = scratch.path('web.img');
const colleagueFile = scratch.path('colleague.password');
let before: { id: string; sha: string };
let after: { id: string; sha: string };
let oldSlots: string[];
let objectsBefore: Set<string>;
let rotateOutput: { stdout: string; stderr: string };

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  writeRandomishImage(image, 16 * MiB, 7);
  before = { id: (await repo.backup('web', [image])).id, sha: await sha256File(image) };
  fs.writeFileSync(colleagueFile, 'a colleague\n', { mode: 0o600 });
  expectSuccess(await repo.run(['key', 'add', '--new-password-file', colleagueFile, '--kdf-memory', '8M', '--kdf-ops', '1']));
  copyTarget = repo.at(scratch.path('usb'));
  expectSuccess(await ferry(['init', '--from', repo.path, '--repo', copyTarget.path]));
  expectSuccess(await ferry(['sync', repo.path, copyTarget.path]));
  // What someone who kept an old key slot has: a copy of the repository as it was.
  await repo.copyTo(scratch.path('kept-before-rotation'));
  oldSlots = listFiles(path.join(repo.path, 'keys'));
  objectsBefore = new Set(listFiles(repo.path));

  const r = await repo.run(['key', 'rotate']);
  expectSuccess(r, 'key rotate');
  rotateOutput = r;
  overwriteRandomPages(image, 20, 8);
  const second = await repo.backup('web', [image]);
  after = { id: second.id, sha: await sha256File(image) };
  expect(second.newBytes, 'the rotation does not stop deduplication').toBeLessThan(2 * MiB);
});

describe('key rotate', () => {
  it('replaces every key slot with one new slot for the passphrase used, and says what it did and did not do', () => {
    const slots = listFiles(path.join(repo.path, 'keys'));
    expect(slots).toHaveLength(1);
    expect(oldSlots).toHaveLength(2);
    expect(oldSlots).not.toContain(slots[0]);
    expect(rotateOutput.stdout).toContain(`new key ${slots[0]}`);
    expect(rotateOutput.stderr).toMatch(/nothing is rewritten/);
    expect(rotateOutput.stderr).toMatch(/ferry key add/);
  });

  it('restore points from before and after the rotation restore bit-exact, and check --read-data passes', async () => {
    for (const p of [before, after]) {
      const out = scratch.path(`restore-${p.id.slice(0, 8)}`);
      expectSuccess(await repo.run(['restore', p.id, '--to', out]));
      expect(await sha256File(path.join(out, 'web.img'))).toBe(p.sha);
    }
    await repo.expectCheckPasses();
  });

  it('nothing written after the rotation opens with the keys an old slot gives', async () => {
    const kept = await Repository.open(new LocalBackend(scratch.path('kept-before-rotation')), secretOf(repo.passwordFile));
    const written = listFiles(repo.path).filter((f) => !objectsBefore.has(f) && /^(snapshots|index|data)\//.test(f));
    for (const kind of ['snapshots/', 'index/', 'data/']) expect(written.some((f) => f.startsWith(kind)), kind).toBe(true);
    for (const f of written) {
      const bytes = fs.readFileSync(path.join(repo.path, f));
      if (f.startsWith('snapshots/')) expect(openObject(kept.keys.dataKeys, 'restorepoint', bytes), f).toBeUndefined();
      if (f.startsWith('index/')) expect(decodeIndexFile(kept.keys.dataKeys, bytes), f).toBeUndefined();
      if (f.startsWith('data/')) expect(decodePackHeader(kept.keys.dataKeys, bytes.length, bytes), f).toBeUndefined();
    }
    // The old keys read what was there before, as promised.
    await expect(kept.loadRestorePointByName(before.id)).resolves.toMatchObject({ guest: 'web' });
    // Even with the new restore point copied next to it, the old slot cannot read it.
    const keptCopy = new LocalBackend(scratch.path('kept-before-rotation'));
    await keptCopy.write('restorepoints', after.id, fs.readFileSync(path.join(repo.path, 'snapshots', after.id)));
    await expect(kept.loadRestorePointByName(after.id)).rejects.toBeInstanceOf(CorruptionError);
  });

  it('the removed passphrases no longer open the repository; one added again opens everything', async () => {
    expectCleanFailure(await repo.run(['list'], { env: { FERRY_PASSWORD_FILE: colleagueFile } }), { code: EXIT.wrongPassword });
    expectSuccess(await repo.run(['key', 'add', '--new-password-file', colleagueFile, '--kdf-memory', '8M', '--kdf-ops', '1']));
    const out = scratch.path('restore-colleague');
    expectSuccess(await repo.run(['restore', after.id, '--to', out], { env: { FERRY_PASSWORD_FILE: colleagueFile } }));
    expect(await sha256File(path.join(out, 'web.img'))).toBe(after.sha);
  });

  it('sync gives a copy target the new key, removes the old ones there, and the copy restores both points', async () => {
    expectSuccess(await ferry(['sync', repo.path, copyTarget.path]));
    expect(listFiles(path.join(copyTarget.path, 'keys'))).toEqual(listFiles(path.join(repo.path, 'keys')));
    for (const p of [before, after]) {
      const out = scratch.path(`usb-restore-${p.id.slice(0, 8)}`);
      expectSuccess(await copyTarget.run(['restore', p.id, '--to', out]));
      expect(await sha256File(path.join(out, 'web.img'))).toBe(p.sha);
    }
  });

  it('a second rotation keeps every earlier key: all restore points still restore', async () => {
    expectSuccess(await repo.run(['key', 'rotate']));
    overwriteRandomPages(image, 5, 9);
    const third = { id: (await repo.backup('web', [image])).id, sha: await sha256File(image) };
    for (const p of [before, after, third]) {
      const out = scratch.path(`restore-2-${p.id.slice(0, 8)}`);
      expectSuccess(await repo.run(['restore', p.id, '--to', out]));
      expect(await sha256File(path.join(out, 'web.img'))).toBe(p.sha);
    }
  });
});
