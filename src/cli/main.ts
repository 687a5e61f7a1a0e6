// The `ferry` command line. Every failure ends here as one line on stderr and
// an exit code from the error's class (see src/errors.ts).
import * as v8 from 'node:v8';
import { Command, CommanderError } from 'commander';
import { EXIT_CODES, FerryError } from '../errors';
import { disableSeekAddon } from '../dedupe/imageSource';
import { pinMallocMmapThreshold } from '../host/mallocThreshold';
import { favourSmallHeaps } from './v8Memory';
import { useMemoryOption } from './session';
import { checkProgressFlags } from './progress';

/**
 * The program with every command, or (given the command line `argv`) with
 * only the command it runs: each command's module is loaded only if it is
 * registered, which saves ~0.1 s of module loading per run (about a quarter
 * of a short command's time). Help, a mistyped command or none get them all.
 */
export function buildProgram(argv?: readonly string[]): Command {
  const program = new Command('ferry')
    .description('encrypted, deduplicating backup and restore of virtual machine disk images')
    .version(require('../../package.json').version as string)
    .option('-r, --repo <location>', 'repository: a directory, or s3:https://host/bucket/prefix (env FERRY_REPO)')
    .option('--password-file <file>', 'read the passphrase from this file (env FERRY_PASSWORD_FILE, FERRY_PASSWORD)')
    .option('--limit-upload <rate>', 'cap upload bandwidth to the repository, bytes/s with K, M, G (e.g. 10M)')
    .option('--limit-download <rate>', 'cap download bandwidth from the repository, bytes/s with K, M, G')
    .option('--s3-concurrency <n>', 'S3 transfers in flight (default 8)')
    .option('--no-cache', 'S3: do not keep index files and restore points in ~/.cache/ferry')
    .option('--state-dir <dir>', "this host's record of the restore points it has seen, to notice any that vanish (env FERRY_STATE_DIR; default ~/.local/state/ferry)")
    .option('--object-lock-days <n>', 'S3 (init, backup, sync): write objects with Object Lock retention of N days')
    .option('--object-lock-mode <mode>', 'with --object-lock-days: COMPLIANCE (default; nobody can shorten or lift it) or GOVERNANCE (users allowed to bypass it can)')
    .option('--insecure-http', 'allow s3:http:// to another host (unencrypted, unauthenticated transport); loopback is always allowed')
    .option('--wait-lock <duration>', 'wait up to this long (e.g. 60s, 10m) for a conflicting repository lock to go, instead of failing at once (exit 5)')
    .option('--memory <size>', 'peak memory of backup, restore, check and sync, at least 96M (default 160M; ferry.conf memory_limit): fewer workers, smaller buffers')
    // Progress (src/cli/progress.ts): redrawn rows on a terminal, timestamped lines otherwise.
    .option('--no-progress', 'show no progress (backup, restore, check --read-data, sync, site restore)')
    .option('--progress-interval <duration>', 'without a terminal (cron): at most one progress line per this long, e.g. 30s, 5m (default 60s)')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of commandsFor(argv && commandNameIn(program, argv))) register(program);
  for (const cmd of program.commands) cmd.exitOverride();
  program.hook('preAction', (_program, action) => useMemoryOption(action.optsWithGlobals()));
  program.hook('preAction', (_program, action) => checkProgressFlags(action.optsWithGlobals()));
  return program;
}

type Register = (program: Command) => void;

/** The top-level commands each command module registers, in the order `ferry --help` lists them. */
export const COMMAND_MODULES: ReadonlyArray<{ names: readonly string[]; load: () => Register }> = [
  { names: ['init'], load: () => (require('./commands/init') as typeof import('./commands/init')).registerInit },
  { names: ['key'], load: () => (require('./commands/key') as typeof import('./commands/key')).registerKey },
  { names: ['backup'], load: () => (require('./commands/backup') as typeof import('./commands/backup')).registerBackup },
  { names: ['list', 'show'], load: () => (require('./commands/list') as typeof import('./commands/list')).registerList },
  { names: ['restore'], load: () => (require('./commands/restore') as typeof import('./commands/restore')).registerRestore },
  { names: ['check'], load: () => (require('./commands/check') as typeof import('./commands/check')).registerCheck },
  { names: ['stats'], load: () => (require('./commands/stats') as typeof import('./commands/stats')).registerStats },
  { names: ['forget'], load: () => (require('./commands/forget') as typeof import('./commands/forget')).registerForget },
  { names: ['prune'], load: () => (require('./commands/prune') as typeof import('./commands/prune')).registerPrune },
  { names: ['unlock'], load: () => (require('./commands/maintenance') as typeof import('./commands/maintenance')).registerMaintenance },
  { names: ['demo'], load: () => (require('./commands/demo') as typeof import('./commands/demo')).registerDemo },
  { names: ['sync'], load: () => (require('./commands/sync') as typeof import('./commands/sync')).registerSync },
  { names: ['drives'], load: () => (require('./commands/drives') as typeof import('./commands/drives')).registerDrives },
  { names: ['export-tar', 'import-tar'], load: () => (require('./commands/tar') as typeof import('./commands/tar')).registerTar },
  { names: ['site'], load: () => (require('./commands/site') as typeof import('./commands/site')).registerSite },
  { names: ['drill'], load: () => (require('./commands/drill') as typeof import('./commands/drill')).registerDrill },
  { names: ['repair'], load: () => (require('./commands/repair') as typeof import('./commands/repair')).registerRepair },
  { names: ['schedule'], load: () => (require('./commands/schedule') as typeof import('./commands/schedule')).registerSchedule },
  { names: ['nightly'], load: () => (require('./commands/nightly') as typeof import('./commands/nightly')).registerNightly },
];

/** The registrations for `commandName`, or all of them (help, a mistyped command, no command). */
function commandsFor(commandName: string | undefined): Register[] {
  const one = COMMAND_MODULES.find((m) => commandName !== undefined && m.names.includes(commandName));
  return (one ? [one] : COMMAND_MODULES).map((m) => m.load());
}

/** The command `argv` runs: its first word that is neither one of `program`'s options nor such an option's value. */
export function commandNameIn(program: Command, argv: readonly string[]): string | undefined {
  const takesValue = new Set(program.options.filter((o) => o.required || o.optional).flatMap((o) => [o.short, o.long]).filter((f): f is string => f !== undefined));
  for (let i = 2; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') return undefined;
    if (!word.startsWith('-')) return word;
    if (takesValue.has(word)) i++;
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  // The main thread's JavaScript allocates little per byte backed up: 2 MiB semi-spaces
  // instead of V8's 16 MiB keep ~5 MiB of young generation off the peak (docs/ARCHITECTURE.md, "Memory").
  v8.setFlagsFromString('--max-semi-space-size=2');
  // Freed MiB-sized buffers go back to the system, not into malloc's fragments, and V8 favours
  // small heaps (docs/ARCHITECTURE.md, "Memory").
  // FERRY_MEMORY_TUNING=off leaves glibc's and V8's defaults, to measure against.
  const memoryTuning = process.env.FERRY_MEMORY_TUNING !== 'off';
  if (memoryTuning) {
    pinMallocMmapThreshold();
    favourSmallHeaps();
  }
  const program = buildProgram(argv);
  // What a machine without the native addon does, on demand: for tests, and a
  // way round a broken local build.
  if (process.env.FERRY_NO_SEEK_ADDON === '1') disableSeekAddon('FERRY_NO_SEEK_ADDON=1');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    return reportError(err);
  }
}

function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // Help and version are "errors" to commander; it already printed them.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
    return EXIT_CODES.usage;
  }
  if (err instanceof FerryError) {
    process.stderr.write(`ferry: ${oneLine(err.message)}\n`);
    if (process.env.FERRY_DEBUG) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`ferry: internal error: ${oneLine(e?.message ?? String(err))} (set FERRY_DEBUG=1 for details)\n`);
  if (process.env.FERRY_DEBUG) process.stderr.write(`${e?.stack}\n`);
  return EXIT_CODES.internal;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
