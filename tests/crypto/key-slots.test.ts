// Key slots are plaintext files anyone who can write keys/ can edit: absurd
// Argon2id parameters in one must neither hang nor crash ferry. Such a slot is
// skipped with a one-line warning; if no usable slot opens, the usual
// wrong-passphrase error. And a new slot weaker than the default is made, with
// a warning on stderr.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_KDF, KDF_BOUNDS, kdfProblem } from '../../src/crypto/keySlot';
import { describeResult, EXIT, expectCleanFailure, expectSuccess, FAST_KDF, ferry, TestRepo, useScratch } from '../support';

const scratch = useScratch('key-slots');

/** A key slot file as `ferry key add` writes it, but with these Argon2id parameters (it wraps nothing real). */
function plantSlot(repo: TestRepo, id: string, kdf: { memlimit: number; opslimit: number }): void {
  const slot = {
    version: 1,
    kdf: 'argon2id13',
    ...kdf,
    salt: randomBytes(16).toString('base64'),
    kind: 'passphrase',
    created: new Date().toISOString(),
    wrapped: randomBytes(72).toString('base64'),
  };
  fs.writeFileSync(path.join(repo.path, 'keys', id), JSON.stringify(slot, null, 1));
}

const ABSURD = [
  { id: 'a0a0a0a0a0a0a0a0', kdf: { memlimit: 2 ** 42, opslimit: 3 } },
  { id: 'b0b0b0b0b0b0b0b0', kdf: { memlimit: 64 * 1024 * 1024, opslimit: 4e9 } },
];

/** stderr split into non-empty lines. */
function lines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '');
}

describe('key slots with absurd KDF parameters', () => {
  it('are skipped with one warning line each; the genuine slot still opens', async () => {
    const repo = await TestRepo.init(scratch, 'planted');
    for (const s of ABSURD) plantSlot(repo, s.id, s.kdf);
    // A hang shows as SIGKILL here (and the Argon2id run would take days), not as a slow pass.
    const r = await repo.run(['list', '--json'], { timeoutMs: 120_000 });
    expectSuccess(r, 'list');
    for (const line of lines(r.stderr)) expect(line).toMatch(/^ferry: warning: key slot keys\/[ab]0[ab0]{14} skipped: Argon2id (memory|passes) \d+/);
  });

  it('with a wrong passphrase: every absurd slot skipped and named, then the usual wrong-passphrase error (exit 4)', async () => {
    const repo = await TestRepo.init(scratch, 'wrong');
    for (const s of ABSURD) plantSlot(repo, s.id, s.kdf);
    const r = await repo.run(['list'], { env: { FERRY_PASSWORD_FILE: undefined, FERRY_PASSWORD: 'not it' }, timeoutMs: 120_000 });
    expect(r.signal, describeResult(r)).toBeNull();
    expect(r.code, describeResult(r)).toBe(EXIT.wrongPassword);
    const all = lines(r.stderr);
    expect(all, describeResult(r)).toHaveLength(3);
    expect(all.filter((l) => l.includes('warning')).sort()).toEqual([
      expect.stringMatching(/^ferry: warning: key slot keys\/a0a0a0a0a0a0a0a0 skipped: Argon2id memory 4398046511104 bytes is outside 8192 bytes to 4 GiB; remove it with 'ferry key remove a0a0a0a0a0a0a0a0'/),
      expect.stringMatching(/^ferry: warning: key slot keys\/b0b0b0b0b0b0b0b0 skipped: Argon2id passes 4000000000 is outside 1 to 16/),
    ]);
    expect(all.find((l) => !l.includes('warning'))).toMatch(/^ferry: .*wrong passphrase or key file \(tried 1 key slot, skipped 2 with unusable KDF parameters\)/);
  });

  it('when no slot is usable: the wrong-passphrase error, exit 4, without running Argon2id', async () => {
    const repo = await TestRepo.init(scratch, 'only-absurd');
    const keysDir = path.join(repo.path, 'keys');
    for (const f of fs.readdirSync(keysDir)) fs.rmSync(path.join(keysDir, f));
    for (const s of ABSURD) plantSlot(repo, s.id, s.kdf);
    const r = await repo.run(['list'], { timeoutMs: 120_000 });
    expect(r.signal, describeResult(r)).toBeNull();
    expect(r.code, describeResult(r)).toBe(EXIT.wrongPassword);
    expect(lines(r.stderr).pop()).toMatch(/tried 0 key slots, skipped 2 with unusable KDF parameters/);
  });

  it('kdfProblem bounds memory to 8 KiB…4 GiB and passes to 1…16; the default is inside', () => {
    expect(kdfProblem(DEFAULT_KDF)).toBeUndefined();
    expect(kdfProblem({ memlimit: KDF_BOUNDS.maxMemlimit, opslimit: KDF_BOUNDS.maxOpslimit })).toBeUndefined();
    expect(kdfProblem({ memlimit: KDF_BOUNDS.maxMemlimit + 1, opslimit: 3 })).toMatch(/memory/);
    expect(kdfProblem({ memlimit: 1024, opslimit: 3 })).toMatch(/memory/);
    expect(kdfProblem({ memlimit: 2 ** 42, opslimit: 3 })).toMatch(/memory/);
    expect(kdfProblem({ memlimit: DEFAULT_KDF.memlimit, opslimit: 0 })).toMatch(/passes/);
    expect(kdfProblem({ memlimit: DEFAULT_KDF.memlimit, opslimit: 4e9 })).toMatch(/passes/);
    expect(kdfProblem({ memlimit: DEFAULT_KDF.memlimit, opslimit: 2.5 })).toMatch(/passes/);
  });
});

describe('making key slots', () => {
  it('init with weak parameters (as the tests use) succeeds with one warning line on stderr', async () => {
    const dir = scratch.path('weak');
    const r = await ferry(['init', '--repo', dir, ...FAST_KDF], { env: { FERRY_PASSWORD: 'weak but fine' } });
    expectSuccess(r, 'init');
    expect(lines(r.stderr)).toEqual([
      "ferry: warning: the key slot uses Argon2id 8 MiB / 1 pass, under the recommended 64 MiB / 3: a copy of keys/ is that much cheaper to brute-force",
    ]);
  });

  it('init with the default parameters prints no warning', async () => {
    const r = await ferry(['init', '--repo', scratch.path('default')], { env: { FERRY_PASSWORD: 'default kdf' } });
    expectSuccess(r, 'init');
    expect(r.stderr).toBe('');
  });

  it('key add with weak parameters succeeds with the warning', async () => {
    const repo = await TestRepo.init(scratch, 'add-weak');
    const second = scratch.path('second.password');
    fs.writeFileSync(second, 'second passphrase\n');
    const r = await repo.run(['key', 'add', '--new-password-file', second, '--kdf-memory', '32M', '--kdf-ops', '3']);
    expectSuccess(r, 'key add');
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^ferry: warning: the key slot uses Argon2id 32 MiB \/ 3 passes, under the recommended 64 MiB \/ 3/)]);
  });

  it('key add --generate-key-file into a directory that does not exist is one clear line, and adds no key', async () => {
    const repo = await TestRepo.init(scratch, 'add-keyfile-nowhere');
    const target = scratch.path('no-such-dir', 'ferry.key');
    const r = await repo.run(['key', 'add', '--generate-key-file', target]);
    expectCleanFailure(r, { code: EXIT.badInput, message: /--generate-key-file .*no-such-dir\/ferry\.key: cannot be created \(.*\); give a new path in a writable directory/ });
    expect(fs.existsSync(target)).toBe(false);
    const list = JSON.parse(expectSuccess(await repo.run(['key', 'list', '--json']), 'key list')) as unknown[];
    expect(list).toHaveLength(1);
  });

  it.each([
    [['--kdf-memory', '8192M']],
    [['--kdf-ops', '17']],
    [['--kdf-ops', '4000000000']],
  ])('init %j beyond the bounds every ferry opens is a usage error and creates nothing', async (kdf) => {
    const dir = scratch.path(`too-strong-${kdf.join('')}`);
    const r = await ferry(['init', '--repo', dir, ...kdf], { env: { FERRY_PASSWORD: 'x' } });
    expectCleanFailure(r, { code: EXIT.usage, message: /--kdf-memory must be from 8K to 4096M and --kdf-ops a whole number from 1 to 16/ });
    expect(fs.existsSync(dir)).toBe(false);
  });
});
