import { Command } from 'commander';
import { loadIndexForReading, withPool, withRepository, RepoOptions } from '../session';
import { RESTORE_TARGET, restoreDiskTo, restoreToDirectory, RestoredFile } from '../../restore/guestRestore';
import { withFlagNames } from '../flagNames';
import { type ProgressFlags, ProgressLine, progressOutput } from '../progress';
import { formatBytes } from '../format';
import { UsageError } from '../../errors';
import { TemporaryFile } from '../../storage/leftovers';
import { reviewListing, seenRestorePoints } from '../restorePointRecord';

/** The flags that feed restoreToDirectory / restoreDiskTo, for their errors. */
const RESTORE_FLAGS = { [RESTORE_TARGET]: '--to', 'disk number': '--disk', force: '--force' };

interface RestoreOptions {
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
    .option('--disk <n>', 'restore only disk N (from 0) onto --to')
    .option('--force', 'overwrite existing files or a block device')
    .option('--no-sparse', 'write zeros to the zero regions of a block device too')
    .option('--mode <octal>', 'permission bits of the restored files (default 0600: they hold guest data)')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: RestoreOptions, cmd: Command) => {
      const mode = opts.mode === undefined ? undefined : parseFileMode(opts.mode);
      const ropts = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      await withRepository(ropts, 'shared', 'restore', async (repo) => {
        await loadIndexForReading(repo);
        // `latest` is only as true as the listing: say when points this host saw are gone.
        // A damaged point is not warned about here: findRestorePoint names it in its error, or knows it is not the newest.
        const listing = ref === 'latest' ? await repo.listAllRestorePoints() : undefined;
        const seen = listing ? reviewListing(repo, ropts, listing, { warnDamaged: false }) : seenRestorePoints(repo, ropts);
        const rp = await repo.findRestorePoint(ref, opts.guest, { about: (id) => seen.about(id), listing });
        const progress = new ProgressLine(`restore ${rp.guest}`, progressOutput({ ...ropts, json: opts.json }));
        const onProgress = (p: { writtenBytes: number; totalBytes: number }) => progress.update(p.writtenBytes, p.totalBytes);
        const onLeftover = (f: TemporaryFile) => progress.log(`removed ${f.path} (${formatBytes(f.size)}), left by an interrupted restore`);
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
        for (const f of files) {
          console.log(f.alreadyRestored
            ? `kept ${f.path} (${formatBytes(f.size)}): already restored, verified against the restore point`
            : `restored ${f.path} (${formatBytes(f.size)}, ${formatBytes(f.writtenBytes)} written)`);
        }
      });
    });
}
