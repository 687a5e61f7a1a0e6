// `ferry prune`: free what no restore point needs (src/prune/, rules in docs/FORMAT.md).
// `forget --prune` uses the same options and report.
import { parseByteSize } from '../../units/byteSize';
import { Command } from 'commander';
import { withRepository, RepoOptions } from '../session';
import { formatBytes } from '../format';
import { UsageError } from '../../errors';
import { pruneRepository, type PruneOptions, type PruneReport } from '../../prune/pruneRun';
import type { RepositoryLock } from '../../repo/lock';
import type { Repository } from '../../repo/repository';

/** The options prune and `forget --prune` share, as commander gives them. */
export interface PruneFlags {
  repackBelow?: string;
  maxRepack?: string;
}

interface PruneCommandOptions extends PruneFlags {
  dryRun?: boolean;
  json?: boolean;
}

/** Adds prune's settings to `command`: `prune` itself, or `forget`, where they apply with --prune. */
export function addPruneFlags(command: Command, who: 'prune' | 'forget --prune'): Command {
  const only = who === 'prune' ? '' : 'with --prune: ';
  return command
    .option('--repack-below <fraction>', `${only}repack packs whose live share is below this (0 to 1; default 0.5)`)
    .option('--max-repack <size>', `${only}rewrite at most this many bytes of packs in this run (e.g. 500M, 2G), lowest live share first; a later prune does the rest`);
}

/** `500M`, `2G`, `1.5T`, `4096` → bytes, or a usage error naming the flag. */
function parseSize(text: string, flag: string): number {
  const bytes = parseByteSize(text);
  if (bytes === undefined) throw new UsageError(`${flag}: '${text}' is not a size; use bytes with K, M, G or T, e.g. 2G`);
  return bytes;
}

/** The prune settings the flags ask for (bad values are usage errors). */
export function pruneSettings(flags: PruneFlags): PruneSettings {
  const text = flags.repackBelow ?? '0.5';
  const repackBelow = Number(text);
  if (!(repackBelow >= 0 && repackBelow <= 1)) {
    throw new UsageError(`--repack-below: '${text}' must be a fraction from 0 to 1, e.g. 0.5`);
  }
  return { repackBelow, maxRepackBytes: flags.maxRepack === undefined ? undefined : parseSize(flags.maxRepack, '--max-repack') };
}

export type PruneSettings = Pick<PruneOptions, 'repackBelow' | 'maxRepackBytes'>;

/** Prune under `lock` (held exclusive by the caller), with prune's warnings on stderr. */
export async function runPrune(
  repo: Repository,
  lock: RepositoryLock | undefined,
  settings: PruneSettings,
  extra: Pick<PruneOptions, 'mode' | 'forgotten'>,
): Promise<PruneReport> {
  const r = await pruneRepository(repo, { ...settings, ...extra, confirmLock: () => lock!.verify() });
  for (const id of r.unreadablePacks) {
    process.stderr.write(`ferry: warning: pack ${id} is in no index and its header cannot be read; prune left it alone ('ferry repair' salvages it)\n`);
  }
  if (r.missingDeadBases > 0) {
    process.stderr.write(`ferry: warning: ${r.missingDeadBases} page patch base(s) were already missing, named only by patches no restore point needs; 'ferry check' reports them\n`);
  }
  return r;
}

/** The human report of a prune, a few aligned lines. */
export function describePrune(r: PruneReport): string[] {
  const line = (label: string, text: string) => `${`${label}:`.padEnd(21)}${text}`;
  return [
    line('restore points kept', `${r.restorePointsKept} (${r.liveBlobs} live blobs)`),
    line(r.dryRun ? 'would free' : 'freed', `${r.blobsFreed} blobs, ${formatBytes(r.bytesFreed)} (packs ${formatBytes(r.packBytesBefore)} → ${formatBytes(r.packBytesAfter)})`),
    line('packs', `${r.packsDeleted} ${r.dryRun ? 'to delete' : 'deleted'} (${r.packsRepacked} of them repacked), ${r.packsWritten} ${r.dryRun ? 'to write' : 'written'}; ${r.packsBefore} → ${r.packsAfter}`),
    ...(r.packsRepackDeferred > 0
      ? [line('left for later', `${r.packsRepackDeferred} pack(s), ${formatBytes(r.bytesRepackDeferred)}, over --max-repack (${formatBytes(r.bytesRepacked)} repacked${r.dryRun ? ' in this run' : ''}): the next prune repacks them`)]
      : []),
    ...(r.lockedPacks.length + r.packsHeldByLockedIndex.length + r.lockedIndexFiles.length > 0
      ? [line('left for later', `${r.lockedPacks.length} pack(s) and ${r.lockedIndexFiles.length} index file(s) under S3 Object Lock, ${r.packsHeldByLockedIndex.length} pack(s) a locked index file names; a prune after their retention deletes them`)]
      : []),
    ...(r.chainsRewritten > 0
      ? [line('patch chains', `${r.chainsRewritten} ${r.dryRun ? 'to rewrite' : 'rewritten'} as whole chunks: ${formatBytes(r.chainBytesFreed)} of patches and bases ${r.dryRun ? 'to free' : 'freed'}, ${formatBytes(r.chainBytesWritten)} ${r.dryRun ? 'to write' : 'written'}`)]
      : []),
    line('index files', `${r.indexFilesBefore} → ${r.indexFilesAfter}`),
    line('time', `${(r.durationMs / 1000).toFixed(1)} s${r.dryRun ? ' (dry run: nothing written or deleted)' : ''}`),
  ];
}

export function registerPrune(program: Command): void {
  const command = program
    .command('prune')
    .description(
      'delete data no restore point needs, repack packs that are mostly garbage and merge the index files, under the exclusive lock ' +
        '(rules: docs/FORMAT.md, "Garbage collection rules"; a page patch whose bases nothing else needs is stored whole when that frees more than it stores; objects under S3 Object Lock are reported and left for a later run: give --object-lock-days on such a bucket)',
    )
    .option('--dry-run', 'only say what would be freed; write and delete nothing');
  addPruneFlags(command, 'prune')
    .option('--json', 'print the report as JSON')
    .action(async (opts: PruneCommandOptions, cmd: Command) => {
      const settings = pruneSettings(opts);
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'exclusive', 'prune', async (repo, lock) => {
        const r = await runPrune(repo, lock, settings, { mode: opts.dryRun ? 'dry-run' : 'prune' });
        if (opts.json) console.log(JSON.stringify(r));
        else for (const l of describePrune(r)) console.log(l);
      });
    });
}
