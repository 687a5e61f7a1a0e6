import { Command } from 'commander';
import { lockOptions, withRepository, RepoOptions } from '../session';
import { listLocks, lockAdvice, removeLocks, repositoryScope } from '../../repo/lock';
import { Repository } from '../../repo/repository';
import { SeenRestorePoints } from '../../repo/seenRestorePoints';
import { CorruptionError } from '../../errors';
import { seenRestorePoints, warnRecordProblems } from '../restorePointRecord';

export function registerMaintenance(program: Command): void {
  program
    .command('forget <id...>')
    .description('remove restore points (their data stays until a prune)')
    .option('--dry-run', 'only say what would be removed')
    .action(async (refs: string[], opts: { dryRun?: boolean }, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      await withRepository(ropts, 'exclusive', 'forget', async (repo) => {
        const seen = seenRestorePoints(repo, ropts);
        // Resolve every id first: an ambiguous one stops the command before anything is removed. An id
        // that names nothing is skipped with a line, so re-running a forget that was interrupted finishes it.
        const names: string[] = [];
        for await (const info of repo.backend.list('restorepoints')) names.push(info.name);
        const ids: string[] = [];
        for (const ref of refs) {
          if (ref !== 'latest' && !names.some((n) => n.startsWith(ref))) {
            forgetGone(repo, seen, ref, Boolean(opts.dryRun));
            continue;
          }
          ids.push(ref === 'latest' ? (await repo.findRestorePoint('latest')).id : await repo.restorePointName(ref));
        }
        for (const id of ids) await forgetOne(repo, seen, id, Boolean(opts.dryRun));
        warnRecordProblems(seen);
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

/** An id the repository no longer has: forgetting it acknowledges the loss if this host still expects it, else it is skipped. */
function forgetGone(repo: Repository, seen: SeenRestorePoints, ref: string, dryRun: boolean): void {
  const expected = ref.length >= 4 ? seen.vanished([]).filter((p) => p.id.startsWith(ref)) : [];
  if (expected.length !== 1) {
    console.error(`skipped ${ref}: no such restore point (already removed?)`);
    return;
  }
  if (!dryRun) seen.forgot([expected[0].id]);
  console.log(`restore point ${expected[0].id.slice(0, 8)} (${expected[0].guest}, ${expected[0].time}) was already gone from ${repo.location}; this host ${dryRun ? 'would no longer expect' : 'no longer expects'} it`);
}

async function forgetOne(repo: Repository, seen: SeenRestorePoints, id: string, dryRun: boolean): Promise<void> {
  const would = dryRun ? 'would remove' : 'removed';
  // Off this host's record first: a `list` running meanwhile must not take the removal for a loss.
  const describe = await repo.loadRestorePointByName(id).then(
    (rp) => `(${rp.guest}, ${rp.time})`,
    (err: unknown) => {
      // A damaged point cannot be read, so it is removed by its file name.
      if (err instanceof CorruptionError) return '(damaged: it could not be read)';
      throw err;
    },
  );
  if (!dryRun) {
    seen.forgot([id]);
    await repo.removeRestorePoint(id);
  }
  console.log(`${would} restore point ${id.slice(0, 8)} ${describe}`);
}
