import * as os from 'node:os';
import { Command } from 'commander';
import { repeatable } from '../options';
import { lockOptions, memoryBudgetBytes, openBackendAt, RepoOptions, s3Concurrency, whileLocked } from '../session';
import { syncCopiesInFlight } from '../../workers/memoryBudget';
import { obtainPassword, passwordGiven } from '../password';
import { type ProgressFlags, ProgressLine, progressOutput } from '../progress';
import { formatBytes, formatDuration } from '../format';
import { syncRepositories, SyncSummary } from '../../sync/repositorySync';
import { UsageError } from '../../errors';
import { FencedBackend } from '../../storage/fenced';
import { Repository } from '../../repo/repository';
import type { RepositoryLock } from '../../repo/lock';
import { acquireLockWaiting } from '../../repo/lockWait';
import { lockWaitFromOptions } from '../lockWaitOption';
import { checkSameIdentity } from '../../sync/copyTarget';
import { LEFTOVER_AGE_MS, removeTemporaryLeftovers } from '../../storage/leftovers';
import { localFreeBytes } from '../../sync/freeSpace';

interface SyncCliOptions {
  guest: string[];
  latest?: string;
  verify?: boolean;
  json?: boolean;
  mirror?: boolean;
  allowEmpty?: boolean;
}

export function registerSync(program: Command): void {
  program
    .command('sync <source> <target>')
    .description('copy to TARGET (made with init --from SOURCE) the objects of SOURCE it lacks, byte for byte: packs, then indexes, then restore points')
    .option('--guest <name>', 'only restore points of this guest (repeatable; needs the passphrase)', repeatable, [] as string[])
    .option('--latest <n>', 'only the newest N restore points of each guest (needs the passphrase)')
    .option('--verify', 'read every copied object back from TARGET and check it against its name')
    .option('--json', 'print the summary as JSON')
    .option('--mirror', "also remove from TARGET the restore points SOURCE no longer has, then prune TARGET (needs the passphrase; takes TARGET's exclusive lock)")
    .option('--allow-empty', 'with --mirror: mirror a SOURCE that lists no restore point (empties TARGET); without it such a sync stops before changing anything')
    .action(async (sourceLocation: string, targetLocation: string, opts: SyncCliOptions, cmd: Command) => {
      const global = cmd.optsWithGlobals() as RepoOptions;
      let latest: number | undefined;
      if (opts.latest !== undefined) {
        latest = Number(opts.latest);
        if (!Number.isInteger(latest) || latest < 1) throw new UsageError(`--latest ${opts.latest}: give a whole number of restore points, at least 1`);
      }
      const selective = opts.guest.length > 0 || latest !== undefined;
      if (opts.allowEmpty && !opts.mirror) throw new UsageError('--allow-empty: only means something with --mirror (a plain sync never removes anything)');
      if (opts.mirror && selective) throw new UsageError('--mirror: copies and mirrors every restore point; it cannot be combined with --guest or --latest');
      const wait = lockWaitFromOptions(global); // a bad --wait-lock is refused before anything is touched
      // A full sync copies sealed objects by name and needs no key; a selection must read region maps.
      // With the passphrase, locks are sealed as everywhere else; without it they are plaintext (lock.ts).
      const secret = selective || opts.mirror || passwordGiven(global) ? await obtainPassword(global) : undefined;
      const concurrency = global.s3Concurrency === undefined ? syncCopiesInFlight(memoryBudgetBytes()) : s3Concurrency(global);
      // Object Lock is for what this run writes (the target); the target's cache would
      // only answer --verify's read-backs from local disk, so it is not used.
      // Fenced: losing either lock stops the copy at its next storage access.
      const source = new FencedBackend(openBackendAt(sourceLocation, { ...global, objectLockDays: undefined, objectLockMode: undefined }));
      let target: FencedBackend | undefined;
      const locks: RepositoryLock[] = [];
      try {
        target = new FencedBackend(openBackendAt(targetLocation, { ...global, cache: false, rememberRetention: global.cache !== false }));
        const fenced = target;
        // Its clear message first: no lock goes into a location that is not a copy of SOURCE.
        await checkSameIdentity(source, fenced);
        const leftovers = await removeTemporaryLeftovers(fenced);
        if (leftovers.files > 0 && !opts.json) {
          console.error(`${fenced.location}: removed ${leftovers.files} leftover temporary file(s) (${formatBytes(leftovers.bytes)}) of interrupted writes, not modified for ${LEFTOVER_AGE_MS / 60000} minutes`);
        }
        const lock = lockOptions((err) => {
          source.fence(err);
          fenced.fence(err);
        });
        // Shared at both ends: sync only adds objects, like a backup; forget, key remove and
        // prune (exclusive) must wait on either end, and two syncs or a backup may run alongside.
        // --mirror removes and prunes at the target: exclusive there, as forget and prune are.
        if (secret) {
          locks.push(await acquireLockWaiting(await Repository.open(source, secret), 'shared', 'sync (source)', lock, wait));
          locks.push(await acquireLockWaiting(await Repository.open(fenced, secret), opts.mirror ? 'exclusive' : 'shared', opts.mirror ? 'sync --mirror (target)' : 'sync (target)', lock, wait));
        } else {
          // No key, so plaintext locks that cannot tell a backup's lock from a forget's. At the
          // target, where an unseen forget or prune would delete what is copied, any live lock
          // it cannot read stops it; at the source the worst is a failed read, so it goes on.
          locks.push(await acquireLockWaiting({ backend: source, location: source.location }, 'shared', 'sync (source)', lock, wait));
          locks.push(await acquireLockWaiting({ backend: fenced, location: fenced.location }, 'shared', 'sync (target)', { ...lock, unreadableConflicts: true }, wait));
        }
        const targetLock = locks[1];
        const progress = new ProgressLine('sync', progressOutput({ ...(global as ProgressFlags), json: opts.json }));
        const summary = await progress.around(() => whileLocked(locks, () =>
          syncRepositories(source, fenced, {
            concurrency,
            verify: Boolean(opts.verify),
            secret,
            selection: selective && secret ? { secret, guests: opts.guest, latest } : undefined,
            mirror:
              opts.mirror && secret
                ? { secret, emptySource: opts.allowEmpty ? 'allow' : 'refuse', repackBelow: 0.5, confirmLock: () => targetLock.verify() }
                : undefined,
            // A local target (a USB drive) says before copying when the missing objects do not fit.
            targetFreeBytes: targetLocation.startsWith('s3:') ? undefined : () => localFreeBytes(targetLocation),
            record: { host: os.hostname() },
            onProgress: (p) => progress.update(p.doneBytes, p.totalBytes, [`${p.doneObjects}/${p.totalObjects} objects`]),
          }),
        ));
        if (opts.json) console.log(JSON.stringify(summary));
        else console.log(describeSummary(summary));
      } finally {
        try {
          for (const lock of locks) await lock.release();
        } finally {
          await source.close();
          await target?.close();
        }
      }
    });
}

function describeSummary(s: SyncSummary): string {
  const t = s.byType;
  return (
    `synced ${s.restorePoints} restore point(s) from ${s.source} to ${s.target}: ` +
    `copied ${s.copied.objects} object(s), ${formatBytes(s.copied.bytes)} (${t.data.copied} packs, ${t.index.copied} index files, ${t.restorepoints.copied} restore points, ${t.keys.copied} key slots); ` +
    `skipped ${s.skipped.objects} already there (${formatBytes(s.skipped.bytes)})` +
    `${s.verified ? `; verified ${s.verified}` : ''}` +
    `${s.removedKeySlots.length ? `; removed ${s.removedKeySlots.length} key slot(s) the source no longer has (${s.removedKeySlots.join(', ')})` : ''}` +
    `${s.mirror ? `; mirror: removed ${s.mirror.removedRestorePoints.length} restore point(s) the source no longer has, pruned ${s.mirror.prune.blobsFreed} blobs, ${formatBytes(s.mirror.prune.bytesFreed)} (${s.mirror.prune.packsDeleted} packs deleted, ${s.mirror.prune.packsWritten} written)` : ''}` +
    `; ${formatDuration(s.durationMs)}, ${formatBytes(s.bytesPerSec)}/s`
  );
}
