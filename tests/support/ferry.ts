// Running the real CLI (bin/ferry, built from dist/ by npm test's pretest)
// as a child process, and a repository fixture around it.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { runDir, type Scratch } from './scratch';
import { CommandResult, mustRun, runCommand } from './system';

export const REPO_ROOT = path.resolve(__dirname, '../..');
export const FERRY_BIN = path.join(REPO_ROOT, 'bin/ferry');

/** Exit codes the CLI promises (src/errors.ts). */
export const EXIT = {
  usage: 2,
  notARepository: 3,
  wrongPassword: 4,
  locked: 5,
  corrupt: 6,
  badInput: 7,
  storage: 8,
  damageFound: 10,
  someGuestsFailed: 11,
  doesNotFit: 12,
} as const;

/** Small Argon2id cost so each command opens the repository in milliseconds. */
export const FAST_KDF = ['--kdf-memory', '8M', '--kdf-ops', '1'];

function assertBuilt(): void {
  if (!fs.existsSync(FERRY_BIN)) {
    throw new Error(`${FERRY_BIN} does not exist: build first (npm run build; npm test does it in pretest)`);
  }
}

let ownDirs: { state: string; run: string } | undefined;

/**
 * This test file's own FERRY_STATE_DIR and FERRY_RUN_DIR, inside the run
 * directory. Test files run two at a time: a shared state directory would
 * let one file's site restore find another's journal, and a shared run
 * directory would let one file's `backup --all` hold another's lock. (Each
 * test file imports this module afresh, so these are made once per file.)
 */
function ownDirsOfThisFile(): { state: string; run: string } {
  ownDirs ??= (() => {
    const dir = fs.mkdtempSync(path.join(runDir(), 'ferry-dirs-'));
    const dirs = { state: path.join(dir, 'state'), run: path.join(dir, 'run') };
    fs.mkdirSync(dirs.run);
    return dirs;
  })();
  return ownDirs;
}

/** FERRY_STATE_DIR of every ferry this test file runs (site restore journals live under it). */
export function ferryStateDir(): string {
  return ownDirsOfThisFile().state;
}

/**
 * The environment ferry runs in: ours minus any FERRY_* setting, plus `extra`.
 * This host's record of restore points (FERRY_STATE_DIR) and the host-wide
 * `backup --all` lock (FERRY_RUN_DIR) go to this file's own directories in
 * the run directory, never to the home directory or /run of whoever runs the tests.
 */
export function ferryEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('FERRY_')) env[k] = v;
  }
  env.FERRY_STATE_DIR = ownDirsOfThisFile().state;
  env.FERRY_RUN_DIR = ownDirsOfThisFile().run;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface FerryOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  /** Kill ferry (SIGKILL) after this long; a hang then shows as signal SIGKILL. */
  timeoutMs?: number;
  cwd?: string;
}

/** Run `ferry ARGS...` to completion. */
export function ferry(args: string[], opts: FerryOptions = {}): Promise<CommandResult> {
  assertBuilt();
  return runCommand(process.execPath, [FERRY_BIN, ...args], {
    env: ferryEnv(opts.env),
    input: opts.input,
    timeoutMs: opts.timeoutMs ?? 240_000,
    cwd: opts.cwd,
  });
}

export interface RunningFerry {
  child: ChildProcess;
  done: Promise<CommandResult>;
}

/** Start `ferry ARGS...` without waiting, e.g. to kill or stop it mid-run. */
export function spawnFerry(args: string[], opts: FerryOptions = {}): RunningFerry {
  assertBuilt();
  const child = spawn(process.execPath, [FERRY_BIN, ...args], {
    env: ferryEnv(opts.env),
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const done = new Promise<CommandResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
  });
  return { child, done };
}

/** Describe a result for assertion messages. */
export function describeResult(r: CommandResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}

/** Assert success; returns stdout. */
export function expectSuccess(r: CommandResult, what = 'ferry'): string {
  expect(r.code, `${what} should succeed; got ${describeResult(r)}`).toBe(0);
  return r.stdout;
}

/**
 * Assert the CLI's error contract: non-zero exit (a given code, if named) and
 * exactly one non-empty line on stderr, starting `ferry: `. Returns that line.
 */
export function expectCleanFailure(r: CommandResult, opts: { code?: number; message?: RegExp } = {}): string {
  const ctx = describeResult(r);
  expect(r.signal, `ferry should exit by itself, not by a signal; ${ctx}`).toBeNull();
  expect(r.code, `ferry should fail; ${ctx}`).not.toBe(0);
  if (opts.code !== undefined) expect(r.code, `exit code; ${ctx}`).toBe(opts.code);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, `stderr should be exactly one line; ${ctx}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^ferry: \S/);
  if (opts.message) expect(lines[0]).toMatch(opts.message);
  return lines[0];
}

/** Parse stdout as JSON, with the whole result in the message when it is not. */
export function parseJson<T = any>(r: CommandResult): T {
  expectSuccess(r);
  try {
    return JSON.parse(r.stdout) as T;
  } catch (e) {
    throw new Error(`stdout is not JSON (${(e as Error).message}); ${describeResult(r)}`);
  }
}

export interface BackupSummary {
  id: string;
  guest: string;
  disks: Array<{ name: string; size: number; newBytes: number; [k: string]: unknown }>;
  newBytes: number;
  logicalBytes: number;
  [k: string]: unknown;
}

export interface RestorePointInfo {
  id: string;
  guest: string;
  time: string;
  disks: unknown[] | number;
  logicalBytes: number;
  newBytes: number;
  tags: string[];
  [k: string]: unknown;
}

/** How many leading words name the subcommand (`key add` vs `backup`). */
function commandWords(args: string[]): number {
  return args[0] === 'key' ? 2 : 1;
}

/** A repository made by `ferry init` with a passphrase file, and commands run against it. */
export class TestRepo {
  constructor(
    readonly path: string,
    readonly passwordFile: string,
  ) {}

  /**
   * `ferry init` a new repository at `dir` (must not exist yet). `chunker` (e.g. `fixed:256K`): chunk boundaries that
   * do not hang on the repository's random keys, for tests that count chunks (fastcdc cuts where its keyed gear table says).
   */
  static async init(scratch: Scratch, name: string, opts: { dir?: string; password?: string; chunker?: string } = {}): Promise<TestRepo> {
    const dir = opts.dir ?? scratch.path(name);
    const passwordFile = scratch.path(`${name}.password`);
    fs.writeFileSync(passwordFile, `${opts.password ?? `correct horse ${name}`}\n`, { mode: 0o600 });
    const repo = new TestRepo(dir, passwordFile);
    const chunker = opts.chunker ? ['--chunker', opts.chunker] : [];
    expectSuccess(await ferry(['init', '--repo', dir, '--password-file', passwordFile, ...FAST_KDF, ...chunker]), 'ferry init');
    return repo;
  }

  /** The same repository opened with a different passphrase file (e.g. a copy). */
  at(dir: string): TestRepo {
    return new TestRepo(dir, this.passwordFile);
  }

  /** argv for `ferry CMD --repo R REST...`. */
  argv(args: string[]): string[] {
    const n = commandWords(args);
    return [...args.slice(0, n), '--repo', this.path, ...args.slice(n)];
  }

  /** Run a command against this repository, passphrase from FERRY_PASSWORD_FILE. */
  run(args: string[], opts: FerryOptions = {}): Promise<CommandResult> {
    return ferry(this.argv(args), { ...opts, env: { FERRY_PASSWORD_FILE: this.passwordFile, ...opts.env } });
  }

  spawn(args: string[], opts: FerryOptions = {}): RunningFerry {
    return spawnFerry(this.argv(args), { ...opts, env: { FERRY_PASSWORD_FILE: this.passwordFile, ...opts.env } });
  }

  /** `ferry backup --json`; asserts success and returns the summary. */
  async backup(guest: string, images: string[], extra: string[] = []): Promise<BackupSummary> {
    const r = await this.run(['backup', '--guest', guest, ...extra, ...images, '--json']);
    const summary = parseJson<BackupSummary>(r);
    expect(typeof summary.id, `backup --json must report an id; ${describeResult(r)}`).toBe('string');
    return summary;
  }

  async list(extra: string[] = []): Promise<RestorePointInfo[]> {
    return parseJson<RestorePointInfo[]>(await this.run(['list', '--json', ...extra]));
  }

  /** `ferry check [--read-data]`; returns the result without asserting. */
  check(readData = true): Promise<CommandResult> {
    return this.run(['check', ...(readData ? ['--read-data'] : [])]);
  }

  async expectCheckPasses(readData = true): Promise<void> {
    expectSuccess(await this.check(readData), `ferry check${readData ? ' --read-data' : ''}`);
  }

  /** Copy the whole repository directory (to damage the copy). */
  async copyTo(dir: string): Promise<TestRepo> {
    await mustRun('cp', ['-a', this.path, dir]);
    return this.at(dir);
  }
}
