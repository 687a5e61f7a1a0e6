import { Command } from 'commander';
import { withPool, withRepository, RepoOptions, warnDamagedIndex } from '../session';
import { restoreDiskTo, restoreToDirectory, RestoredFile } from '../../restore/guestRestore';
import { ProgressLine } from '../progress';
import { formatBytes } from '../format';
import { UsageError } from '../../errors';

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
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'shared', 'restore', async (repo) => {
        await repo.loadIndex(warnDamagedIndex);
        // Packs a damaged index no longer names are found again from their own headers (in memory only).
        await repo.indexOrphanPacks(false);
        const rp = await repo.findRestorePoint(ref, opts.guest);
        const progress = new ProgressLine(`restore ${rp.guest}`, opts.json);
        const onProgress = (p: { writtenBytes: number; totalBytes: number }) => progress.update(p.writtenBytes, p.totalBytes);
        const files: RestoredFile[] = await withPool(repo, async (pool) => {
          if (opts.disk !== undefined) {
            const n = Number(opts.disk);
            if (!Number.isInteger(n) || n < 0) throw new UsageError(`--disk ${opts.disk}: give a disk number from 0`);
            return [await restoreDiskTo(repo, pool, rp, n, opts.to, { force: Boolean(opts.force), noSparse: !opts.sparse, onProgress, mode })];
          }
          return restoreToDirectory(repo, pool, rp, opts.to, Boolean(opts.force), onProgress, mode);
        });
        progress.done();
        if (opts.json) {
          console.log(JSON.stringify({ id: rp.id, guest: rp.guest, files }));
          return;
        }
        for (const f of files) console.log(`restored ${f.path} (${formatBytes(f.size)}, ${formatBytes(f.writtenBytes)} written)`);
      });
    });
}
