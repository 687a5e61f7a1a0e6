import { Command } from 'commander';
import { withRepository, RepoOptions } from '../session';
import { repairRepository, RepairReport } from '../../repair/repairRepository';
import { DamageFoundError } from '../../errors';
import { formatBytes } from '../format';

export function registerRepair(program: Command): void {
  program
    .command('repair')
    .description('rebuild the index from pack headers, drop what damaged packs held (the next backup stores it again), and name what is lost')
    .option('--dry-run', 'only say what would be done')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { dryRun?: boolean; json?: boolean }, cmd: Command) => {
      await withRepository(cmd.optsWithGlobals() as RepoOptions, 'exclusive', 'repair', async (repo) => {
        const report = await repairRepository(repo, Boolean(opts.dryRun), (line) => {
          if (!opts.json) console.error(line);
        });
        if (opts.json) console.log(JSON.stringify(report));
        else for (const line of describeRepair(report)) console.log(line);
        if (report.affected.length > 0 || report.damagedRestorePoints.length > 0) {
          throw new DamageFoundError(
            `${repo.location}: ${report.affected.length} restore point(s) name data that is lost (${report.affected.map((a) => a.id.slice(0, 8)).join(', ') || 'none'})` +
              `${report.damagedRestorePoints.length ? `, ${report.damagedRestorePoints.length} restore point file(s) are damaged` : ''}; ` +
              `back up the affected guests again: what they still hold is stored again and those restore points become whole`,
          );
        }
      });
    });
}

export function describeRepair(r: RepairReport): string[] {
  const would = (done: string, planned: string) => (r.dryRun ? planned : done);
  const lines: string[] = [];
  for (const name of r.damagedIndexFiles) lines.push(`damaged: index/${name}: fails authentication or is malformed`);
  for (const d of r.damagedPacks) {
    lines.push(`damaged: data/${d.packId.slice(0, 2)}/${d.packId}: ${d.problem}; ${d.salvagedBlobs} blob(s) salvaged, ${d.lostBlobs} lost`);
  }
  for (const p of r.unknownPacks) {
    lines.push(
      `damaged: data/${p.slice(0, 2)}/${p}: header unreadable and no index names it, so where its blobs lie is unknown; left in place ` +
        `(if a copy of the repository has an index naming it, copy that index file here and run 'ferry repair' again; otherwise delete it)`,
    );
  }
  for (const a of r.affected) {
    for (const d of a.disks) {
      lines.push(
        `lost: restore point ${a.id.slice(0, 8)} (${a.guest}, ${a.time}), disk ${d.name}: ${formatBytes(d.lostBytes)} of ${formatBytes(d.size)} ` +
          `(${d.lostChunks} chunk(s)${d.lostRegionMaps ? `, ${d.lostRegionMaps} whole region(s)` : ''})`,
      );
    }
  }
  for (const name of r.damagedRestorePoints) lines.push(`damaged: snapshots/${name}: restore point unreadable`);
  lines.push(
    `${r.packsRead} pack header(s) read; ${r.damagedPacks.length} damaged pack(s) ${would('removed', 'would be removed')}; ` +
      `${r.salvagedBlobs} blob(s) ${would('salvaged', 'would be salvaged')}, ${r.lostBlobs} lost; ` +
      `${r.indexFilesReplaced.length} index file(s) ${would('replaced', 'would be replaced')}, ${r.packsReindexed} pack(s) ${would('indexed again', 'would be indexed again')}` +
      `${r.dryRun ? ' (dry run: nothing changed)' : ''}`,
  );
  return lines;
}
