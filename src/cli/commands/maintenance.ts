import { Command } from 'commander';
import { lockOptions, withRepository, RepoOptions } from '../session';
import { listLocks, lockAdvice, removeLocks, repositoryScope } from '../../repo/lock';

export function registerMaintenance(program: Command): void {
  program
    .command('unlock')
    .description('remove stale locks (of processes that are gone), or all with --all')
    .option('--all', 'remove every lock, even of running processes')
    .action(async (opts: { all?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'none', 'unlock', async (repo) => {
        console.log(`removed ${await removeLocks(repo, opts.all ? 'all' : 'stale', lockOptions())} lock(s)`);
        // Say what stays, so 'removed 0 lock(s)' is not mistaken for an unlocked repository.
        for (const l of await listLocks(repositoryScope(repo))) {
          if (l.info) console.log(`kept the lock of '${l.info.command}', pid ${l.info.pid} on ${l.info.host || l.info.hostId} since ${l.info.time}: ${lockAdvice(l.info)}`);
        }
      });
    });
}
