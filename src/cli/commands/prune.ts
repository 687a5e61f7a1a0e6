// `ferry prune`: free what no restore point needs (src/prune/, rules in docs/FORMAT.md).
import { Command } from 'commander';
import { withRepository, RepoOptions } from '../session';
import { formatBytes } from '../format';
import { UsageError } from '../../errors';
import { pruneRepository } from '../../prune/pruneRun';

interface PruneCommandOptions {
  dryRun?: boolean;
  repackBelow: string;
  json?: boolean;
}

export function registerPrune(program: Command): void {
  program
    .command('prune')
    .description(
      'delete data no restore point needs, repack packs that are mostly garbage and merge the index files, under the exclusive lock ' +
        '(rules: docs/FORMAT.md, "Garbage collection rules"; patch chains are not rewritten; objects under S3 Object Lock are reported and left for a later run: give --object-lock-days on such a bucket)',
    )
    .option('--dry-run', 'only say what would be freed; write and delete nothing')
    .option('--repack-below <fraction>', 'repack packs whose live share is below this (0 to 1)', '0.5')
    .option('--json', 'print the report as JSON')
    .action(async (opts: PruneCommandOptions, cmd: Command) => {
      const repackBelow = Number(opts.repackBelow);
      if (!(repackBelow >= 0 && repackBelow <= 1)) {
        throw new UsageError(`--repack-below: '${opts.repackBelow}' must be a fraction from 0 to 1, e.g. 0.5`);
      }
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'exclusive', 'prune', async (repo, lock) => {
        const r = await pruneRepository(repo, { repackBelow, mode: opts.dryRun ? 'dry-run' : 'prune', confirmLock: () => lock!.verify() });
        for (const id of r.unreadablePacks) {
          process.stderr.write(`ferry: warning: pack ${id} is in no index and its header cannot be read; prune left it alone ('ferry repair' salvages it)\n`);
        }
        if (r.missingDeadBases > 0) {
          process.stderr.write(`ferry: warning: ${r.missingDeadBases} page patch base(s) were already missing, named only by patches no restore point needs; 'ferry check' reports them\n`);
        }
        if (opts.json) {
          console.log(JSON.stringify(r));
          return;
        }
        const line = (label: string, text: string) => console.log(`${`${label}:`.padEnd(21)}${text}`);
        line('restore points kept', `${r.restorePointsKept} (${r.liveBlobs} live blobs)`);
        line(r.dryRun ? 'would free' : 'freed', `${r.blobsFreed} blobs, ${formatBytes(r.bytesFreed)} (packs ${formatBytes(r.packBytesBefore)} → ${formatBytes(r.packBytesAfter)})`);
        line('packs', `${r.packsDeleted} ${r.dryRun ? 'to delete' : 'deleted'} (${r.packsRepacked} of them repacked), ${r.packsWritten} ${r.dryRun ? 'to write' : 'written'}; ${r.packsBefore} → ${r.packsAfter}`);
        line('index files', `${r.indexFilesBefore} → ${r.indexFilesAfter}`);
        const left = r.lockedPacks.length + r.packsHeldByLockedIndex.length + r.lockedIndexFiles.length;
        if (left > 0) {
          line('left for later', `${r.lockedPacks.length} pack(s) and ${r.lockedIndexFiles.length} index file(s) under S3 Object Lock, ${r.packsHeldByLockedIndex.length} pack(s) a locked index file names; a prune after their retention deletes them`);
        }
        line('time', `${(r.durationMs / 1000).toFixed(1)} s${r.dryRun ? ' (dry run: nothing written or deleted)' : ''}`);
      });
    });
}
