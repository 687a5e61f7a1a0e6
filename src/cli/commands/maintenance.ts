import { Command } from 'commander';
import { withRepository, RepoOptions } from '../session';
import { removeLocks } from '../../repo/lock';
import { Repository } from '../../repo/repository';
import { SeenRestorePoints } from '../../repo/seenRestorePoints';
import { CorruptionError, UsageError } from '../../errors';
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
        for (const ref of refs) await forgetOne(repo, seen, ref, Boolean(opts.dryRun));
        warnRecordProblems(seen);
      });
    });

  program
    .command('unlock')
    .description('remove stale locks (of processes that are gone), or all with --all')
    .option('--all', 'remove every lock, even of running processes')
    .action(async (opts: { all?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'none', 'unlock', async (repo) => {
        console.log(`removed ${await removeLocks(repo, Boolean(opts.all))} lock(s)`);
      });
    });
}

async function forgetOne(repo: Repository, seen: SeenRestorePoints, ref: string, dryRun: boolean): Promise<void> {
  const would = dryRun ? 'would remove' : 'removed';
  let id: string;
  try {
    id = await repo.restorePointName(ref);
  } catch (err) {
    // Gone from the repository, but this host still expects it: forgetting it acknowledges the loss.
    const expected = err instanceof UsageError && ref.length >= 4 ? seen.vanished([]).filter((p) => p.id.startsWith(ref)) : [];
    if (expected.length !== 1) throw err;
    if (!dryRun) seen.forgot([expected[0].id]);
    console.log(`restore point ${expected[0].id.slice(0, 8)} (${expected[0].guest}, ${expected[0].time}) was already gone from ${repo.location}; this host ${dryRun ? 'would no longer expect' : 'no longer expects'} it`);
    return;
  }
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
