import { Command } from 'commander';
import { openBackendAt, RepoOptions, s3Concurrency } from '../session';
import { obtainPassword } from '../password';
import { ProgressLine } from '../progress';
import { formatBytes, formatDuration } from '../format';
import { syncRepositories, SyncSummary } from '../../sync/repositorySync';
import { UsageError } from '../../errors';
import { Backend } from '../../storage/backend';

interface SyncCliOptions {
  guest: string[];
  latest?: string;
  verify?: boolean;
  json?: boolean;
}

export function registerSync(program: Command): void {
  program
    .command('sync <source> <target>')
    .description('copy to TARGET (made with init --from SOURCE) the objects of SOURCE it lacks, byte for byte: packs, then indexes, then restore points')
    .option('--guest <name>', 'only restore points of this guest (repeatable; needs the passphrase)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--latest <n>', 'only the newest N restore points of each guest (needs the passphrase)')
    .option('--verify', 'read every copied object back from TARGET and check it against its name')
    .option('--json', 'print the summary as JSON')
    .action(async (sourceLocation: string, targetLocation: string, opts: SyncCliOptions, cmd: Command) => {
      const global = cmd.optsWithGlobals() as RepoOptions;
      let latest: number | undefined;
      if (opts.latest !== undefined) {
        latest = Number(opts.latest);
        if (!Number.isInteger(latest) || latest < 1) throw new UsageError(`--latest ${opts.latest}: give a whole number of restore points, at least 1`);
      }
      const selective = opts.guest.length > 0 || latest !== undefined;
      // A full sync copies sealed objects by name and needs no key; a selection must read region maps.
      const secret = selective ? await obtainPassword(global) : undefined;
      const concurrency = global.s3Concurrency === undefined ? 4 : s3Concurrency(global);
      // Object Lock is for what this run writes (the target); the target's cache would
      // only answer --verify's read-backs from local disk, so it is not used.
      const source: Backend = openBackendAt(sourceLocation, { ...global, objectLockDays: undefined });
      let target: Backend | undefined;
      try {
        target = openBackendAt(targetLocation, { ...global, cache: false });
        const progress = new ProgressLine('sync', opts.json);
        const summary = await syncRepositories(source, target, {
          concurrency,
          verify: Boolean(opts.verify),
          selection: secret ? { secret, guests: opts.guest, latest } : undefined,
          onProgress: (p) => progress.update(p.doneBytes, p.totalBytes, `${p.doneObjects}/${p.totalObjects} objects`),
        });
        progress.done();
        if (opts.json) console.log(JSON.stringify(summary));
        else console.log(describeSummary(summary));
      } finally {
        await source.close();
        await target?.close();
      }
    });
}

function describeSummary(s: SyncSummary): string {
  const t = s.byType;
  return (
    `synced ${s.restorePoints} restore point(s) from ${s.source} to ${s.target}: ` +
    `copied ${s.copied.objects} object(s), ${formatBytes(s.copied.bytes)} (${t.data.copied} packs, ${t.index.copied} index files, ${t.snapshots.copied} restore points, ${t.keys.copied} key slots); ` +
    `skipped ${s.skipped.objects} already there (${formatBytes(s.skipped.bytes)})` +
    `${s.verified ? `; verified ${s.verified}` : ''}` +
    `${s.removedKeySlots.length ? `; removed ${s.removedKeySlots.length} key slot(s) the source no longer has (${s.removedKeySlots.join(', ')})` : ''}` +
    `; ${formatDuration(s.durationMs)}, ${formatBytes(s.bytesPerSec)}/s`
  );
}
