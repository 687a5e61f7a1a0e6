import * as path from 'node:path';
import { Command } from 'commander';
import { repeatable } from '../options';
import { backupGuest, imageBackupRequest, withPreviousDisks } from '../../backup/guestBackup';
import { backupFleet, GuestOutcome } from '../../backup/fleetBackup';
import { Repository } from '../../repo/repository';
import { loadOptionalConfig, withPool, startWorkersEarly, withRepository, RepoOptions, warnDamagedIndex } from '../session';
import { withSignalCleanup } from '../signals';
import { withFlagNames } from '../flagNames';
import { ProgressBoard, type ProgressFlags, ProgressLine, type ProgressOutput, dedupeField, noProgress, progressOutput } from '../progress';
import { formatBytes, formatDuration } from '../format';
import { FleetFailedError, UsageError } from '../../errors';
import { FerryConfig } from '../../config/ferryConfig';
import { fleetGuests } from '../fleetGuests';
import { FleetProgressRow } from '../fleetProgress';
import { acquireHostRunLock } from '../../backup/hostRunLock';
import { newRunId } from '../../snapshot/provider';
import { LEFTOVER_AGE_MS, removeTemporaryLeftovers } from '../../storage/leftovers';
import { avoidDamagedPacks, damagedPacksWarning, findDamagedPacks } from '../../repo/packHealth';
import { reviewListing, warnRecordProblems } from '../restorePointRecord';
import { checkGlobs } from '../../config/glob';

interface BackupOptions {
  guest: string[];
  config?: string;
  tag: string[];
  json?: boolean;
  all?: boolean;
  qmpSocket: string[];
  libvirt?: string | boolean;
  xen?: boolean;
  exclude: string[];
  concurrency?: string;
  workDir: string;
  time?: string;
}

// A restore point dated other than now (a simulated night in bench/nights.sh,
// or disks copied earlier): ISO 8601 with date, time and a zone, so the
// moment does not depend on the host's TZ.
const ISO_MOMENT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
function parseRestorePointTime(value: string): string {
  const ms = ISO_MOMENT.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw new UsageError(`--time '${value}': not an ISO 8601 time with a zone; give e.g. 2026-01-05T01:00:00Z`);
  return new Date(ms).toISOString();
}


export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description('back up one guest\'s disk images (IMAGE...), or every guest of the hypervisors (--all)')
    .argument('[image...]', 'raw image files or block devices of the guest (without --all)')
    .option('--guest <name>', 'guest name; with --all, a glob pattern selecting guests (repeatable)', repeatable, [] as string[])
    .option('--config <file>', "the guest's hypervisor config to keep (image mode); with --all, ferry's config file (default /etc/ferry/ferry.conf)")
    .option('--tag <tag>', 'tag the restore point (repeatable)', repeatable, [] as string[])
    .option('--all', 'back up every guest the hypervisor drivers list')
    .option('--qmp-socket <path>', 'with --all: a QEMU guest\'s QMP socket (repeatable)', repeatable, [] as string[])
    .option('--libvirt [uri]', 'with --all: guests of libvirtd (default qemu:///system)')
    .option('--xen', 'with --all: guests of the Xen xl toolstack')
    .option('--exclude <pattern>', 'with --all: skip guests matching this glob (repeatable)', repeatable, [] as string[])
    .option('--concurrency <n>', 'with --all: guests backed up at once')
    .option('--work-dir <dir>', 'with --all: where hypervisor backup jobs write their point-in-time copies', process.env.FERRY_WORK_DIR ?? '/var/tmp/ferry')
    .option('--json', 'print the result as JSON')
    .option('--time <iso>', 'without --all: date the restore point at this ISO 8601 time (e.g. 2026-01-05T01:00:00Z) instead of now')
    .action(async (images: string[], opts: BackupOptions, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      if (opts.all) {
        if (opts.time !== undefined) throw new UsageError('backup --all takes no --time; it dates each guest by its own snapshot');
        if (images.length > 0) throw new UsageError('backup --all takes no image paths; the hypervisors name the disks');
        await backupAll(ropts, opts);
        return;
      }
      if (opts.guest.length !== 1) throw new UsageError('backup: give --guest NAME (once) and the guest\'s image paths, or use --all');
      // Bad input fails here, before the repository is touched.
      const time = opts.time === undefined ? undefined : parseRestorePointTime(opts.time);
      const request = await withFlagNames({ 'guest name': '--guest', 'guest config': '--config' }, () => ({
        ...imageBackupRequest(opts.guest[0], images.map((i) => path.resolve(i)), opts.config, opts.tag),
        ...(time === undefined ? {} : { time }),
      }));
      await withRepository(ropts, 'shared', 'backup', async (repo, lock) => {
        startWorkersEarly();
        const resumed = await prepareIndex(repo, opts.json);
        const listing = await repo.listAllRestorePoints();
        const seen = reviewListing(repo, ropts, listing);
        const progress = new ProgressLine(`backup ${request.guest}`, progressOutput({ ...ropts, json: opts.json }));
        // GC rule 3 (FORMAT.md): the lock is fresh right before the restore point names deduplicated blobs.
        const withBases = { ...(await withPreviousDisks(repo, request, listing.points)), confirmLock: () => lock!.verifyFresh() };
        const result = await progress.around(() => withPool(repo, (pool) =>
          backupGuest(repo, pool, withBases, (p) => progress.update(p.doneBytes, p.totalBytes, [`new ${formatBytes(p.newBytes)}`, dedupeField(p.readBytes, p.newBytes)])),
        ));
        const rp = result.restorePoint;
        seen.saw([{ id: result.id, guest: rp.guest, time: rp.time }]);
        warnRecordProblems(seen);
        const peakRssBytes = process.resourceUsage().maxRSS * 1024;
        if (opts.json) {
          console.log(JSON.stringify({
            id: result.id,
            guest: rp.guest,
            time: rp.time,
            disks: rp.disks.map((d) => ({ name: d.name, size: d.size, dataBytes: d.dataBytes })),
            ...rp.stats,
            resumedPacks: resumed,
            peakRssBytes,
            // S3 Object Lock: the objects the point needs and how many had their retention raised.
            ...(result.retention ? { objectLock: result.retention } : {}),
          }));
        } else {
          // stdout carries only the id, so scripts can say ID=$(ferry backup ...); the summary goes to stderr.
          console.log(result.id);
          console.error(
            `restore point ${result.id.slice(0, 8)}: ${rp.guest}, ${rp.disks.length} disk(s), ${formatBytes(rp.stats.logicalBytes)} logical, ` +
              `${formatBytes(rp.stats.readBytes)} read, ${formatBytes(rp.stats.newBytes)} newly stored, ${formatDuration(rp.stats.durationMs)}, peak memory ${formatBytes(peakRssBytes)}`,
          );
        }
      });
    });
}

/** Load the index; index packs an interrupted backup left (resume). Returns how many. */
export async function prepareIndex(repo: Repository, quiet?: boolean): Promise<number> {
  await repo.loadIndex(warnDamagedIndex);
  const packs = await repo.listPacks();
  const resumed = await repo.indexOrphanPacks({ keep: 'index-file', packs });
  if (resumed.indexed > 0 && !quiet) console.error(`resuming: indexed ${resumed.indexed} pack(s) left by an interrupted backup`);
  const leftovers = await removeTemporaryLeftovers(repo.backend);
  if (leftovers.files > 0 && !quiet) {
    console.error(`removed ${leftovers.files} leftover temporary file(s) (${formatBytes(leftovers.bytes)}) of interrupted writes, not modified for ${LEFTOVER_AGE_MS / 60000} minutes`);
  }
  // Never dedupe against blobs in packs that are visibly short or gone: store them again.
  const damaged = await findDamagedPacks(repo, packs);
  if (damaged.length > 0) {
    const avoided = await avoidDamagedPacks(repo, damaged, 'drop');
    process.stderr.write(`${damagedPacksWarning(damaged, avoided, 'drop')}\n`);
  }
  return resumed.indexed;
}

async function backupAll(ropts: RepoOptions & ProgressFlags, opts: BackupOptions): Promise<void> {
  checkGlobs(opts.guest, '--guest');
  checkGlobs(opts.exclude, '--exclude');
  const config = loadOptionalConfig(opts.config);
  const repoOptions: RepoOptions & ProgressFlags = {
    ...ropts,
    repo: ropts.repo ?? process.env.FERRY_REPO ?? config?.repository,
    passwordFile: ropts.passwordFile ?? config?.passwordFile,
  };
  const concurrency = opts.concurrency ? Number(opts.concurrency) : config?.concurrency ?? 2;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new UsageError(`--concurrency ${opts.concurrency}: give a whole number of at least 1`);
  const hostLock = acquireHostRunLock(process.env.FERRY_RUN_DIR ?? '/run/ferry');
  try {
    await backupAllLocked(opts, config, concurrency, repoOptions);
  } finally {
    hostLock.release();
  }
}

export interface FleetRunSettings {
  /** The lock's command name, e.g. 'backup --all'. */
  command: string;
  concurrency: number;
  tags: string[];
  /** No index-loading progress line (JSON output, or a report that comes later). */
  quietIndex: boolean;
  log: (line: string) => void;
  holdQuiesceMs?: number;
  /** One progress row for the whole fleet (absent: none). */
  progress?: ProgressOutput;
}

/**
 * The repository side of a fleet backup (backup --all, nightly's backup
 * step): under a shared lock, removes the providers' leftovers of earlier
 * runs, backs up every guest and records what this host saw.
 */
export async function backUpFleetGuests(setup: Awaited<ReturnType<typeof fleetGuests>>, repoOptions: RepoOptions, run: FleetRunSettings): Promise<GuestOutcome[]> {
  const board = new ProgressBoard(run.progress ?? noProgress());
  // Log lines go above the progress row on a terminal.
  const log = (line: string) => board.above(() => run.log(line));
  return withRepository(repoOptions, 'shared', run.command, async (repo, lock) => {
    startWorkersEarly();
    await prepareIndex(repo, run.quietIndex);
    const listing = await repo.listAllRestorePoints();
    const seen = reviewListing(repo, repoOptions, listing);
    for (const provider of setup.providers) {
      const removed = await provider.removeLeftovers().catch((err: unknown) => {
        log(`${provider.kind}: could not look for leftovers: ${(err as Error).message}`);
        return [] as string[];
      });
      if (removed.length > 0) log(`${provider.kind}: removed ${removed.length} leftover(s) of an earlier run: ${removed.join(', ')}`);
    }
    const runId = newRunId();
    const fleet = new FleetProgressRow(board.row(run.command), setup.guests.length);
    let outcomes: GuestOutcome[];
    try {
      outcomes = await withPool(repo, (pool) =>
        withSignalCleanup((cleanup) =>
          backupFleet(repo, pool, setup.guests, {
            concurrency: run.concurrency, tags: run.tags, runId, log, listing, about: (id) => seen.about(id), cleanup,
            holdQuiesceMs: run.holdQuiesceMs ?? 0,
            confirmLock: () => lock!.verifyFresh(),
            onProgress: fleet.onProgress,
          }),
        ),
      );
      fleet.finish('done');
    } catch (err) {
      fleet.finish('failed');
      throw err;
    } finally {
      board.close();
    }
    seen.saw(outcomes.flatMap((o) => (o.ok && o.id && o.time ? [{ id: o.id, guest: o.guest, time: o.time }] : [])));
    warnRecordProblems(seen);
    return outcomes;
  });
}

async function backupAllLocked(
  opts: BackupOptions,
  config: FerryConfig | undefined,
  concurrency: number,
  repoOptions: RepoOptions & ProgressFlags,
): Promise<void> {
  const setup = await fleetGuests(
    { qmpSocket: opts.qmpSocket, libvirt: opts.libvirt, xen: opts.xen, guest: opts.guest, exclude: opts.exclude, workDir: opts.workDir },
    config,
  );
  const log = (line: string) => {
    if (!opts.json) console.error(line);
  };
  const outcomes = await backUpFleetGuests(setup, repoOptions, {
    command: 'backup --all', concurrency, tags: opts.tag, quietIndex: Boolean(opts.json), log,
    progress: progressOutput({ ...repoOptions, json: opts.json }),
    // A rehearsal knob (tests, drills): hold each quiesced guest this long. Never set in production.
    holdQuiesceMs: Number(process.env.FERRY_HOLD_QUIESCE_MS ?? 0),
  });
  const failed = outcomes.filter((o) => !o.ok);
  if (opts.json) {
    console.log(JSON.stringify({ guests: outcomes, failed: failed.length, peakRssBytes: process.resourceUsage().maxRSS * 1024 }));
  } else {
    for (const o of outcomes) {
      console.log(o.ok
        ? `ok     ${o.guest} (${o.driver}, ${o.snapshotKinds.join('+')}): ${o.id?.slice(0, 8)}, paused ${o.pauseMs} ms${o.downMs ? `, shut down ${o.downMs} ms` : ''}, read ${formatBytes(o.readBytes)} of ${formatBytes(o.logicalBytes)}, ${formatBytes(o.newBytes)} new${o.fullReads.length ? `; full read: ${o.fullReads.join('; ')}` : ''}`
        : `FAILED ${o.guest} (${o.driver}): ${o.error}`);
    }
  }
  if (failed.length > 0) {
    throw new FleetFailedError(`${failed.length} of ${outcomes.length} guest(s) failed: ${failed.map((f) => `${f.guest}: ${f.error}`).join('; ')}`);
  }
}
