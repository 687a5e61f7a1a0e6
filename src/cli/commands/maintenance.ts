import { Command } from 'commander';
import { lockOptions, withRepository, RepoOptions } from '../session';
import { listLocks, lockAdvice, removeLocks, repositoryScope } from '../../repo/lock';

export function registerMaintenance(program: Command): void {
  program
    .command('forget <id...>')
    .description('remove restore points (their data stays until a prune)')
    .option('--dry-run', 'only say what would be removed')
    .action(async (refs: string[], opts: { dryRun?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'exclusive', 'forget', async (repo) => {
        // Resolve every id first: a bad one stops the command before anything is removed. An id that
        // names nothing is skipped with a line, so re-running a forget that was interrupted finishes it.
        const names: string[] = [];
        for await (const info of repo.backend.list('snapshots')) names.push(info.name);
        const points = [];
        for (const ref of refs) {
          if (ref !== 'latest' && !names.some((n) => n.startsWith(ref))) {
            console.error(`skipped ${ref}: no such restore point (already removed?)`);
            continue;
          }
          points.push(await repo.findRestorePoint(ref));
        }
        for (const rp of points) {
          if (!opts.dryRun) await repo.removeRestorePoint(rp.id);
          console.log(`${opts.dryRun ? 'would remove' : 'removed'} restore point ${rp.id.slice(0, 8)} (${rp.guest}, ${rp.time})`);
        }
      });
    });

  program
    .command('unlock')
    .description('remove stale locks (of processes that are gone), or all with --all')
    .option('--all', 'remove every lock, even of running processes')
    .action(async (opts: { all?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'none', 'unlock', async (repo) => {
        console.log(`removed ${await removeLocks(repo, Boolean(opts.all), lockOptions())} lock(s)`);
        // Say what stays, so 'removed 0 lock(s)' is not mistaken for an unlocked repository.
        for (const l of await listLocks(repositoryScope(repo))) {
          if (l.info) console.log(`kept the lock of '${l.info.command}', pid ${l.info.pid} on ${l.info.host || l.info.hostId} since ${l.info.time}: ${lockAdvice(l.info)}`);
        }
      });
    });
}
