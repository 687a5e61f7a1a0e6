import { Command } from 'commander';
import { withPool, withRepository, RepoOptions } from '../session';
import { checkRepository } from '../../check/repositoryCheck';
import { DamageFoundError } from '../../errors';
import { ProgressLine } from '../progress';
import { formatBytes } from '../format';
import { LEFTOVER_AGE_MS, countTemporaryFiles } from '../../storage/leftovers';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check the repository structure; --read-data also decrypts and verifies every byte')
    .option('--read-data', 'read, decrypt and verify every blob')
    .option('--json', 'print JSON')
    .action(async (opts: { readData?: boolean; json?: boolean }, cmd: Command) => {
      // No local cache: check judges the repository, not what this host kept of it.
      await withRepository({ ...(cmd.optsWithGlobals() as RepoOptions), cache: false }, 'shared', 'check', async (repo) => {
        const progress = new ProgressLine('check', opts.json);
        const report = await withPool(repo, (pool) => checkRepository(repo, pool, opts.readData ? 'read-data' : 'structure', (d, t) => progress.update(d, t)));
        progress.done();
        // Not damage: files of writes that were interrupted (or are in progress), reported so they do not stay unseen.
        const leftovers = await countTemporaryFiles(repo.backend);
        if (opts.json) {
          console.log(JSON.stringify({ ...report, leftovers }));
        } else {
          if (leftovers.files > 0) {
            console.log(
              `leftovers: ${leftovers.files} temporary file(s) (${formatBytes(leftovers.bytes)}) of interrupted or running writes; ` +
                `${leftovers.old} not modified for ${LEFTOVER_AGE_MS / 60000} minutes, which the next backup removes`,
            );
          }
          for (const d of report.damage) console.log(`damaged: ${d.object}: ${d.problem}`);
          for (const a of report.affected) console.log(`affected restore point: ${a.id.slice(0, 8)} ${a.guest} ${a.time}`);
          console.log(
            `checked ${report.packs} packs, ${report.restorePoints} restore points${opts.readData ? `, ${report.blobsVerified} blobs verified` : ''}` +
              `${report.unindexedPacks > report.packsMissingFromIndex ? `, ${report.unindexedPacks - report.packsMissingFromIndex} unindexed pack(s) from an interrupted backup (the next backup indexes them)` : ''}`,
          );
        }
        if (report.damage.length > 0) {
          throw new DamageFoundError(
            `${repo.location}: ${report.damage.length} damaged object(s), ${report.affected.length} restore point(s) affected: ${report.affected.map((a) => a.id.slice(0, 8)).join(', ') || 'none'}; first: ${report.damage[0].object}: ${report.damage[0].problem}`,
          );
        }
      });
    });
}
