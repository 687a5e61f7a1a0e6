import * as path from 'node:path';
import { Command } from 'commander';
import { loadIndexForReading, withPool, startWorkersEarly, withRepository, RepoOptions } from '../session';
import { RESTORE_TARGET, restoreDiskTo, restoreToDirectory, RestoredFile } from '../../restore/guestRestore';
import { withFlagNames } from '../flagNames';
import { type ProgressFlags, ProgressLine, progressOutput } from '../progress';
import { formatBytes } from '../format';
import { FerryError, FleetFailedError, InputError, UsageError } from '../../errors';
import { Repository } from '../../repo/repository';
import { PipelinePool } from '../../workers/pipelinePool';
import { TemporaryFile } from '../../storage/leftovers';
import { reviewListing, seenRestorePoints } from '../restorePointRecord';

/** The flags that feed restoreToDirectory / restoreDiskTo, for their errors. */
const RESTORE_FLAGS = { [RESTORE_TARGET]: '--to', 'disk number': '--disk', force: '--force' };

interface RestoreOptions {
  all?: boolean;
  guest?: string;
  to: string;
  disk?: string;
  force?: boolean;
  sparse: boolean;
  json?: boolean;
  mode?: string;
}

/** `--mode 0640` / `640` → permission bits; no setuid/setgid/sticky bits on a restored disk. */
export function parseFileMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) {
    throw new UsageError(`--mode ${text}: give octal permission bits such as 0600 or 0640`);
  }
  return parseInt(text, 8);
}

export function registerRestore(program: Command): void {
  program
    .command('restore <id>')
    .description("write a restore point's disks (and config) into a directory, or one disk onto a device")
    .requiredOption('--to <path>', 'directory (all disks) or, with --disk, a block device or file')
    .option('--guest <name>', 'with latest: the latest restore point of this guest')
    .option('--all', "with latest: every guest's latest restore point, each into DIR/GUEST/ (one process: one key derivation, one index)")
    .option('--disk <n>', 'restore only disk N (from 0) onto --to')
    .option('--force', 'overwrite existing files or a block device')
    .option('--no-sparse', 'write zeros to the zero regions of a block device too')
    .option('--mode <octal>', 'permission bits of the restored files (default 0600: they hold guest data)')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: RestoreOptions, cmd: Command) => {
      const mode = opts.mode === undefined ? undefined : parseFileMode(opts.mode);
      const ropts = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      if (opts.all) checkAllOptions(ref, opts);
      await withRepository(ropts, 'shared', 'restore', async (repo) => {
        startWorkersEarly();
        await loadIndexForReading(repo);
        if (opts.all) return restoreEveryGuest(repo, ropts, opts, mode);
        // `latest` is only as true as the listing: say when points this host saw are gone.
        // A damaged point is not warned about here: findRestorePoint names it in its error, or knows it is not the newest.
        const listing = ref === 'latest' ? await repo.listAllRestorePoints() : undefined;
        const seen = listing ? reviewListing(repo, ropts, listing, { warnDamaged: false }) : seenRestorePoints(repo, ropts);
        const rp = await repo.findRestorePoint(ref, opts.guest, { about: (id) => seen.about(id), listing });
        const { progress, onProgress, onLeftover } = restoreProgress(rp.guest, ropts, opts.json);
        const files: RestoredFile[] = await progress.around(() => withPool(repo, (pool) => withFlagNames(RESTORE_FLAGS, async () => {
          if (opts.disk !== undefined) {
            const n = Number(opts.disk);
            if (!Number.isInteger(n) || n < 0) throw new UsageError(`--disk ${opts.disk}: give a disk number from 0`);
            return [await restoreDiskTo(repo, pool, rp, n, opts.to, { force: Boolean(opts.force), noSparse: !opts.sparse, onProgress, onLeftover, mode })];
          }
          return restoreToDirectory(repo, pool, rp, opts.to, { force: Boolean(opts.force), onProgress, onLeftover, mode });
        })));
        // Which point, and how old, on every restore: older data must never pass for the newest.
        // (After the work, so that a failed restore still ends in one error line.)
        process.stderr.write(`ferry: restored restore point ${rp.id} of guest '${rp.guest}', taken ${rp.time} on ${rp.hostname}\n`);
        if (opts.json) {
          console.log(JSON.stringify({ id: rp.id, guest: rp.guest, time: rp.time, files }));
          return;
        }
        for (const f of files) console.log(describeRestored(f));
      });
    });
}

function checkAllOptions(ref: string, opts: RestoreOptions): void {
  if (ref !== 'latest') throw new UsageError(`restore ${ref} --all: --all restores each guest's latest restore point; give 'latest'`);
  if (opts.guest !== undefined || opts.disk !== undefined) throw new UsageError('restore latest --all: every guest goes into --to/GUEST/; leave out --guest and --disk');
}

/** A guest name as the directory it is restored into, or why it cannot be one (names come from other hosts and tars). */
function guestDirectoryProblem(guest: string): string | undefined {
  if (guest === '' || guest === '.' || guest === '..' || /[\x00-\x1f/\\]/.test(guest)) return 'cannot be a directory name';
  return undefined;
}

/**
 * `restore latest --all`: each guest's latest restore point into DIR/GUEST/, one guest after another in
 * this process (the key is derived and the index loaded once). A guest that fails is reported and the
 * others still restore; the command then fails naming every guest that did not restore.
 */
async function restoreEveryGuest(repo: Repository, ropts: RepoOptions & ProgressFlags, opts: RestoreOptions, mode: number | undefined): Promise<void> {
  const listing = await repo.listAllRestorePoints();
  const seen = reviewListing(repo, ropts, listing, { warnDamaged: false });
  const guests = [...new Set(listing.points.map((p) => p.guest))].sort();
  if (guests.length === 0) throw new InputError(`${repo.location}: no restore points to restore; back up first or check --repo`);
  const restored: { id: string; guest: string; time: string; files: RestoredFile[] }[] = [];
  const failed: { guest: string; error: string }[] = [];
  await withPool(repo, async (pool: PipelinePool) => {
    for (const guest of guests) {
      try {
        const problem = guestDirectoryProblem(guest);
        if (problem) throw new InputError(`guest name ${JSON.stringify(guest)} ${problem}; restore it alone with --guest and --to`);
        const rp = await repo.findRestorePoint('latest', guest, { about: (id) => seen.about(id), listing });
        const { progress, onProgress, onLeftover } = restoreProgress(guest, ropts, opts.json);
        const dir = path.join(opts.to, guest);
        const files = await progress.around(() => withFlagNames(RESTORE_FLAGS, () =>
          restoreToDirectory(repo, pool, rp, dir, { force: Boolean(opts.force), onProgress, onLeftover, mode })));
        process.stderr.write(`ferry: restored restore point ${rp.id} of guest '${rp.guest}', taken ${rp.time} on ${rp.hostname}\n`);
        restored.push({ id: rp.id, guest: rp.guest, time: rp.time, files });
        if (!opts.json) for (const f of files) console.log(describeRestored(f));
        pool.collectBetweenJobs();
      } catch (err) {
        // A bug is not a guest's failure: it stops the run.
        if (!(err instanceof FerryError)) throw err;
        failed.push({ guest, error: err.message });
        process.stderr.write(`ferry: FAILED ${guest}: ${err.message}\n`);
      }
    }
  });
  if (opts.json) console.log(JSON.stringify({ guests: restored, failed }));
  if (failed.length > 0) {
    throw new FleetFailedError(`${failed.length} of ${guests.length} guest(s) did not restore: ${failed.map((f) => `${f.guest}: ${f.error}`).join('; ')}`);
  }
}

/** One guest's progress line, and the callbacks a restore reports to it. */
function restoreProgress(guest: string, ropts: RepoOptions & ProgressFlags, json: boolean | undefined) {
  const progress = new ProgressLine(`restore ${guest}`, progressOutput({ ...ropts, json }));
  const onProgress = (p: { writtenBytes: number; totalBytes: number }) => progress.update(p.writtenBytes, p.totalBytes);
  const onLeftover = (f: TemporaryFile) => progress.log(`removed ${f.path} (${formatBytes(f.size)}), left by an interrupted restore`);
  return { progress, onProgress, onLeftover };
}

function describeRestored(f: RestoredFile): string {
  return f.alreadyRestored
    ? `kept ${f.path} (${formatBytes(f.size)}): already restored, verified against the restore point`
    : `restored ${f.path} (${formatBytes(f.size)}, ${formatBytes(f.writtenBytes)} written)`;
}
