import * as path from 'node:path';
import { Command } from 'commander';
import { backupGuest, imageBackupRequest } from '../../backup/guestBackup';
import { withPool, withRepository, RepoOptions, warnDamagedIndex } from '../session';
import { ProgressLine } from '../progress';
import { formatBytes, formatDuration } from '../format';

interface BackupOptions {
  guest: string;
  config?: string;
  tag: string[];
  json?: boolean;
}

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description('back up the disk images of one guest as a new restore point')
    .argument('<image...>', 'raw image files or block devices of the guest')
    .requiredOption('--guest <name>', 'guest name')
    .option('--config <file>', 'hypervisor config of the guest to keep with the restore point')
    .option('--tag <tag>', 'tag the restore point (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--json', 'print the result as JSON')
    .action(async (images: string[], opts: BackupOptions, cmd: Command) => {
      // Bad input fails here, before the repository is touched.
      const request = imageBackupRequest(opts.guest, images.map((i) => path.resolve(i)), opts.config, opts.tag);
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'shared', 'backup', async (repo) => {
        await repo.loadIndex(warnDamagedIndex);
        const resumed = await repo.indexOrphanPacks(true);
        if (resumed.indexed > 0 && !opts.json) console.error(`resuming: indexed ${resumed.indexed} pack(s) left by an interrupted backup`);
        const progress = new ProgressLine(`backup ${opts.guest}`, opts.json);
        const result = await withPool(repo, (pool) =>
          backupGuest(repo, pool, request, (p) => progress.update(p.doneBytes, p.totalBytes, `new ${formatBytes(p.newBytes)}`)),
        );
        progress.done();
        const rp = result.restorePoint;
        if (opts.json) {
          console.log(JSON.stringify({
            id: result.id,
            guest: rp.guest,
            time: rp.time,
            disks: rp.disks.map((d) => ({ name: d.name, size: d.size, dataBytes: d.dataBytes })),
            ...rp.stats,
            resumedPacks: resumed.indexed,
            peakRssBytes: process.resourceUsage().maxRSS * 1024,
          }));
        } else {
          // stdout carries only the id, so scripts can say ID=$(ferry backup ...); the summary goes to stderr.
          console.log(result.id);
          console.error(
            `restore point ${result.id.slice(0, 8)}: ${rp.guest}, ${rp.disks.length} disk(s), ${formatBytes(rp.stats.logicalBytes)} logical, ` +
              `${formatBytes(rp.stats.readBytes)} read, ${formatBytes(rp.stats.newBytes)} newly stored, ${formatDuration(rp.stats.durationMs)}, peak memory ${formatBytes(process.resourceUsage().maxRSS * 1024)}`,
          );
        }
      });
    });
}
