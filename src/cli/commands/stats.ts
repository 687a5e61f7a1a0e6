import { Command } from 'commander';
import { withRepository, RepoOptions } from '../session';
import { repositoryStats } from '../../repo/repositoryStats';
import { formatBytes } from '../format';

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('logical and stored bytes, dedupe and compression ratios')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'none', 'stats', async (repo) => {
        await repo.loadIndex();
        const s = await repositoryStats(repo);
        for (const id of s.damagedRestorePoints) {
          process.stderr.write(`ferry: note: restore point ${id} is damaged and cannot be read; it is left out of these figures ('ferry check' reports it)\n`);
        }
        if (opts.json) {
          console.log(JSON.stringify(s));
          return;
        }
        console.log(`restore points:     ${s.restorePoints} (${s.guests} guest(s))`);
        console.log(`logical bytes:      ${formatBytes(s.logicalBytes)} (${formatBytes(s.dataBytes)} non-zero data)`);
        console.log(`unique chunk bytes: ${formatBytes(s.uniqueBytes)} in ${s.chunks} chunks`);
        console.log(`stored bytes:       ${formatBytes(s.storedBytes)} in ${s.packs} packs`);
        console.log(`dedupe ratio:       ${s.dedupeRatio.toFixed(2)}x   compression ratio: ${s.compressionRatio.toFixed(2)}x`);
        console.log(`index memory:       ${formatBytes(s.indexMemoryBytes)} (${s.indexBytesPerChunk.toFixed(1)} bytes per chunk)`);
      });
    });
}
