// Property-based fuzzing of the command line: random commands, options and
// hostile values, run through the real entry point (dist/cli/main.js, the
// code bin/ferry runs) in this process. Whatever the arguments, ferry exits 0
// or with a FerryError's code; no argument reaches "internal error" (70).
//
// The vocabulary keeps the runs safe and quick: every path lies in the
// scratch directory (the working directory is moved there), no hypervisor is
// asked (`backup --all`, --libvirt, --xen and --qmp-socket are left out: they
// would touch guests running on this machine), no S3 location is valid (no
// network), and `demo` is left out (a full demonstration run).
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, TestRepo, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('fuzz-cli');
const { main } = createRequire(path.join(REPO_ROOT, 'package.json'))('./dist/cli/main.js') as typeof import('../../src/cli/main');

let repo: TestRepo;
let pointId = '';
const savedCwd = process.cwd();
const savedEnv = { ...process.env };

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  writeRandomishImage(scratch.path('img.raw'), 1024 * 1024, 3);
  pointId = (await repo.backup('alpha', [scratch.path('img.raw')])).id;
  fs.writeFileSync(scratch.path('empty.password'), '');
  fs.writeFileSync(scratch.path('not-a-tar'), 'hello\n');
  fs.mkdirSync(scratch.path('a-dir'), { recursive: true });
  for (const k of Object.keys(process.env)) if (k.startsWith('FERRY_')) delete process.env[k];
  process.env.FERRY_PASSWORD_FILE = repo.passwordFile;
  process.env.XDG_CACHE_HOME = scratch.path('cache');
  process.env.FERRY_WORK_DIR = scratch.path('work');
  process.chdir(scratch.dir);
});

afterAll(() => {
  process.chdir(savedCwd);
  process.env = savedEnv;
});

/** Run main(argv) with stdout and stderr captured; returns the exit code and what went to stderr. */
async function runInProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  const out = process.stdout.write;
  const err = process.stderr.write;
  const log = console.log;
  const error = console.error;
  let stderr = '';
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  }) as typeof process.stderr.write;
  console.log = () => undefined;
  console.error = (...a: unknown[]) => {
    stderr += `${a.join(' ')}\n`;
  };
  try {
    const code = await main(['node', 'ferry', ...args]);
    return { code, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    console.log = log;
    console.error = error;
  }
}

// Values an option or argument may get: valid ones, and the odd ones users type.
const hostile = [
  '', ' ', '-', '--', '0', '-1', '1.5', '1e309', 'NaN', '99999999999999999999', '10M', '8K', '1G', 'abc', '[web', '[z-a]', '*', '\u0000', 'a\nb',
  '\u{1F600}', 'x/../y', 'latest', 'fastcdc:256K', 'fixed:0', 'fastcdc:', 'fixed:4M', 'sftp://h/x', 'file:///x', 's3://', 's3://a', 's3:http://h:99999/b', 's3:',
];
const paths = ['repo', 'no-such-dir/x', 'a-dir', 'img.raw', 'not-a-tar', 'empty.password', 'out', 'out/sub', 'new-file', '/dev/null'];
// Random strings stay relative and inside the scratch directory: `restore --to / --force` must never be generated.
const randomText = fc.string({ maxLength: 8 }).map((t) => (t.startsWith('/') || t.includes('..') ? `fuzz-${t.replace(/[/.]/g, '_')}` : t));
const value = fc.oneof(fc.constantFrom(...hostile), fc.constantFrom(...paths), randomText);

// A bandwidth cap is obeyed: 1 B/s would make a run take days. Caps get malformed values or generous ones.
const RATE_VALUES = ['', ' ', '0', '-1', '1e309', 'NaN', 'abc', '5X', '10MB/s/s', '1G', '2G/s', '4096M'];
function valueFor(option: string): fc.Arbitrary<string> {
  return option === '--limit-upload' || option === '--limit-download' ? fc.constantFrom(...RATE_VALUES) : value;
}

const GLOBAL = ['--repo', '--password-file', '--limit-upload', '--limit-download', '--s3-concurrency', '--no-cache', '--object-lock-days', '--object-lock-mode', '--wait-lock'];
/** Each command with its positional arguments (choices split by |; 'POINT' is a real restore point id) and its own options. */
const COMMANDS: { words: string[]; positional: string[]; options: string[] }[] = [
  { words: ['init'], positional: [], options: ['--chunker', '--pack-size', '--compression', '--kdf-memory', '--kdf-ops', '--from'] },
  { words: ['list'], positional: [], options: ['--guest', '--json'] },
  { words: ['show'], positional: ['POINT|latest'], options: ['--guest', '--json'] },
  { words: ['restore'], positional: ['POINT|latest'], options: ['--to', '--to', '--guest', '--disk', '--force', '--no-sparse', '--json'] },
  { words: ['check'], positional: [], options: ['--read-data', '--json'] },
  { words: ['stats'], positional: [], options: ['--json'] },
  { words: ['forget'], positional: ['POINT|latest'], options: ['--dry-run', '--dry-run'] },
  { words: ['unlock'], positional: [], options: [] },
  { words: ['key', 'add'], positional: [], options: ['--new-password-file', '--generate-key-file', '--kdf-memory', '--kdf-ops'] },
  { words: ['key', 'list'], positional: [], options: ['--json'] },
  { words: ['key', 'remove'], positional: ['0|abc'], options: [] },
  { words: ['backup'], positional: ['img.raw', 'img.raw|a-dir|/dev/null'], options: ['--guest', '--guest', '--config', '--tag', '--json'] },
  { words: ['sync'], positional: ['repo', 'out'], options: ['--guest', '--latest', '--verify', '--json'] },
  { words: ['export-tar'], positional: ['POINT|latest'], options: ['--guest', '-o', '--force'] },
  { words: ['import-tar'], positional: ['not-a-tar'], options: ['--guest', '--tag', '--tmp-dir', '--json'] },
];
const STRAY = ['--unknown-option', '-x', 'nonsense', '--help'];

const argvArb = fc
  .constantFrom(...COMMANDS)
  .chain((cmd) =>
    fc.tuple(
      fc.constant(cmd),
      // Positional arguments: the expected ones, sometimes replaced by a hostile value.
      fc.tuple(...(cmd.positional.length > 0 ? cmd.positional : ['']).map((p) => fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...p.split('|')) }, { weight: 1, arbitrary: value }))),
      fc.array(
        fc.oneof(
          { weight: 8, arbitrary: fc.constantFrom(...cmd.options, ...GLOBAL).chain((o) => valueFor(o).map((v) => [o, v])) },
          { weight: 3, arbitrary: fc.constantFrom(...cmd.options, '--no-cache').map((o) => [o]) },
          { weight: 1, arbitrary: fc.constantFrom(...STRAY).map((o) => [o]) },
        ),
        { maxLength: 5 },
      ),
      fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    ),
  )
  .map(([cmd, positional, options, withRepo]) => {
    const pos = cmd.positional.length > 0 ? positional.map((a) => (a === 'POINT' ? pointId : a)) : [];
    const args = [...cmd.words, ...pos, ...options.flat()];
    // Mostly against the real repository: that is where the deeper code runs.
    if (withRepo) args.push('--repo', repo.path);
    // Keep the run finite and quiet: a tar goes to a file, and import-tar reads one (stdin would wait forever).
    if (cmd.words[0] === 'export-tar' && !args.includes('-o')) args.push('-o', 'out.tar', '--force');
    if (cmd.words[0] === 'import-tar' && (pos[0] === '' || pos[0].startsWith('-'))) args.splice(1, 1, 'not-a-tar');
    return args;
  });

describe('the command line', () => {
  it('exits 0 or with a typed error code for any arguments; never internal error (exit 70)', async () => {
    await fc.assert(
      fc.asyncProperty(argvArb, async (args) => {
        const r = await runInProcess(args);
        expect(r.stderr, JSON.stringify(args)).not.toMatch(/internal error/);
        expect(r.code, `${JSON.stringify(args)}: ${r.stderr}`).not.toBe(70);
      }),
      // A run that does not finish is reported as a counterexample, not as the whole file timing out.
      { numRuns: 300, timeout: 60_000 },
    );
  });
});
