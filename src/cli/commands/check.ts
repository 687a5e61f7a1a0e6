import { Command } from 'commander';
import { withPool, startWorkersEarly, withRepository, RepoOptions } from '../session';
import { CheckDepth, checkRepository } from '../../check/repositoryCheck';
import { DamageFoundError, UsageError } from '../../errors';
import { ReadDataCursor, badSubsetSpec, parseSubsetSpec, subsetForRun } from '../../check/readDataSubset';
import { stateDir } from '../restorePointRecord';
import { type ProgressFlags, ProgressLine, noProgress, progressOutput } from '../progress';
import { formatBytes } from '../format';
import { LEFTOVER_AGE_MS, countTemporaryFiles } from '../../storage/leftovers';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check the repository structure; --read-data also decrypts and verifies every byte')
    .option('--read-data', 'read, decrypt and verify every blob')
    .option(
      '--read-data-subset <subset>',
      'read only some packs: P% rotates (pack bucket = first 32 bits of its id mod ceil(100/P); each run reads the bucket after the last run\'s, ' +
        'kept per repository in the state directory under check-cursor/, so every pack is read within ceil(100/P) runs); n/t reads bucket n of t',
    )
    .option('--json', 'print JSON')
    .action(async (opts: { readData?: boolean; readDataSubset?: string; json?: boolean }, cmd: Command) => {
      const global = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      if (opts.readData && opts.readDataSubset !== undefined) throw new UsageError('check: give --read-data or --read-data-subset, not both');
      const spec = opts.readDataSubset === undefined ? undefined : parseSubsetSpec(opts.readDataSubset);
      if (opts.readDataSubset !== undefined && !spec) throw badSubsetSpec('--read-data-subset', opts.readDataSubset);
      // No local cache: check judges the repository, not what this host kept of it.
      await withRepository({ ...global, cache: false }, 'shared', 'check', async (repo) => {
        startWorkersEarly();
        const cursor = ReadDataCursor.at(stateDir(global), repo.repositoryId);
        const subset = spec ? subsetForRun(spec, cursor) : undefined;
        const depth: CheckDepth = subset ? { readDataSubset: subset } : opts.readData ? 'read-data' : 'structure';
        // Only reading data has bytes to count.
        const progress = new ProgressLine('check --read-data', depth === 'structure' ? noProgress() : progressOutput({ ...global, json: opts.json }));
        const report = await progress.around(
          () => withPool(repo, (pool) => checkRepository(repo, pool, depth, (d, t) => progress.update(d, t))),
          // Damage fails the command: its error line stays the one line (no 'done' line before it under cron).
          (r) => (r.damage.length > 0 ? 'failed' : 'done'),
        );
        // Only a finished check moves the rotation on: an interrupted one reads the same bucket again.
        const cursorWarning = subset && spec?.kind === 'rotating' ? cursor.advance(subset) : undefined;
        if (cursorWarning) console.error(`ferry: warning: ${cursorWarning}`);
        // Not damage: files of writes that were interrupted (or are in progress), reported so they do not stay unseen.
        const leftovers = await countTemporaryFiles(repo.backend);
        if (opts.json) {
          console.log(JSON.stringify({ ...report, leftovers, ...(subset ? { readDataSubset: { bucket: subset.bucket + 1, of: subset.of } } : {}) }));
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
            `checked ${report.packs} packs, ${report.restorePoints} restore points${opts.readData || subset ? `, ${report.blobsVerified} blobs verified` : ''}` +
              `${subset ? `, read ${report.packsRead} pack(s) of subset ${subset.bucket + 1}/${subset.of}` : ''}` +
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
