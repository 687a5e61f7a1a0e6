// `ferry nightly`: the one cron line. src/nightly/ decides the order of the
// steps and writes the report; this file does each step's work with the
// repository (locks, passphrase, state directory, signals), as the commands
// backup --all, forget, prune, check and sync do.
import * as os from 'node:os';
import { Command } from 'commander';
import { formatBytes } from '../format';
import { parseStorageOptions, useConfiguredMemoryLimit, withPool, withRepository, RepoOptions, lockOptions, openBackendAt, openRepository, whileLocked } from '../session';
import { obtainPassword } from '../password';
import { fleetGuests } from '../fleetGuests';
import { backUpFleetGuests } from './backup';
import { seenRestorePoints, stateDir, warnRecordProblems } from '../restorePointRecord';
import { DamageFoundError, FerryError, NightlyFailedError, NightlyNotRunError, UsageError } from '../../errors';
import { isS3Location } from '../../storage/open';
import { DEFAULT_CONFIG_PATH, FerryConfig, parseFerryConfig, settingsForGuest } from '../../config/ferryConfig';
import { readTomlFile } from '../../config/tomlChecker';
import { acquireHostRunLock } from '../../backup/hostRunLock';
import { planForget } from '../../retention/forgetPlan';
import { type RetentionPolicy, isEmptyPolicy } from '../../retention/retentionPolicy';
import { type PruneReport, pruneRepository } from '../../prune/pruneRun';
import { ObjectLockedError } from '../../storage/errors';
import { checkRepository } from '../../check/repositoryCheck';
import { ReadDataCursor } from '../../check/readDataSubset';
import { syncRepositories } from '../../sync/repositorySync';
import { checkSameIdentity } from '../../sync/copyTarget';
import { FencedBackend } from '../../storage/fenced';
import { Repository } from '../../repo/repository';
import type { RepositoryLock } from '../../repo/lock';
import { acquireLockWaiting } from '../../repo/lockWait';
import { lockWaitFromOptions } from '../lockWaitOption';
import { NightlyConfig, copyPruneDue, parseNightlyConfig } from '../../nightly/nightlyConfig';
import { NightlySteps, StepDone, runNightly } from '../../nightly/nightlyRun';
import { NightlyRecord } from '../../nightly/nightlyRecord';
import { offsiteSkipReason } from '../../nightly/offsite';
import { GuestReport, NightlyReport, NotificationResult, formatHumanReport, nothingDoneReport } from '../../nightly/report';
import { renderPromTextfile, writeTextfileAtomically } from '../../nightly/promTextfile';
import { postWebhook, runNotifyCommand } from '../../nightly/notify';
import { type ProgressFlags, type ProgressOutput, progressOutput } from '../progress';

interface NightlyOptions {
  config: string;
  json?: boolean;
  verbose?: boolean;
}

export function registerNightly(program: Command): void {
  program
    .command('nightly')
    .description(
      'the nightly job from [nightly] in ferry.conf: back up every selected guest, forget by [retention], prune on prune_on\'s weekday, ' +
        'check reading a rotating check_read_data share of the packs (every pack within ceil(100/P) nights; cursor in the state directory, check-cursor/), ' +
        'sync to each offsite target (a USB path not mounted is skipped), then report: coverage first, on stdout, textfile, notify_webhook, notify_command. ' +
        'Exit 0: all done; 1: something failed (the report says what); 2: nothing could be done (bad config, no repository)',
    )
    .option('--config <file>', "ferry's config file", DEFAULT_CONFIG_PATH)
    .option('--json', 'print the report as JSON (shape: README, "The nightly job")')
    .option('--verbose', 'also log each step and guest on stderr as it happens')
    .action(async (opts: NightlyOptions, cmd: Command) => {
      const global = cmd.optsWithGlobals() as RepoOptions;
      const { config, nightly } = readConfig(opts.config);
      // The budget of every step that runs workers: backup, check, sync (--memory wins).
      useConfiguredMemoryLimit(config.memoryLimit);
      const repoOptions: RepoOptions = {
        ...global,
        repo: global.repo ?? process.env.FERRY_REPO ?? config.repository,
        passwordFile: global.passwordFile ?? config.passwordFile,
        // A scheduled night runs `nightly --config F` alone: its bandwidth caps (and its copies' Object Lock, nightlySteps) are in the file.
        limitUpload: global.limitUpload ?? nightly.limitUpload,
        limitDownload: global.limitDownload ?? nightly.limitDownload,
      };
      const location = repoOptions.repo;
      const progress = progressOutput({ ...(global as ProgressFlags), json: opts.json });
      const startedAt = new Date();
      let report: NightlyReport;
      try {
        if (!location) throw new NightlyNotRunError(`${opts.config}: no repository; set repository = "…" in it, or pass --repo`);
        // A bad --wait-lock would fail every step: refuse it as a night where nothing could be done.
        nothingDoneUnlessSync(() => lockWaitFromOptions(global));
        // Bad storage flags or keys would fail the steps one by one, after backups ran: refused before any.
        nothingDoneUnlessSync(() => parseStorageOptions(repoOptions));
        nothingDoneUnlessSync(() => requireLockableLocation(repoOptions, nightly, location));
        await nothingDoneUnless(async () => (await openRepository(optionsAt(repoOptions, location))).backend.close());
        const hostLock = await nothingDoneUnless(async () => acquireHostRunLock(process.env.FERRY_RUN_DIR ?? '/run/ferry'));
        try {
          report = await runNightly(nightly, location, nightlySteps(repoOptions, location, config, nightly, Boolean(opts.verbose), progress));
        } finally {
          hostLock.release();
        }
      } catch (err) {
        if (!(err instanceof NightlyNotRunError)) throw err;
        // The webhook and the textfile hear of it too: cron's mail may be the only other witness.
        await publish(nothingDoneReport(location ?? '', os.hostname(), startedAt, new Date(), err.message, nightly.maxAgeMs), nightly, opts);
        throw err;
      }
      await publish(report, nightly, opts);
      if (!report.ok) throw new NightlyFailedError(`nightly: ${report.problems.length} problem(s); first: ${report.problems[0]}`);
    });
}

/** The report to the textfile, the notifications (as notify_on says), then stdout. */
async function publish(report: NightlyReport, nightly: NightlyConfig, opts: NightlyOptions): Promise<void> {
  if (nightly.textfile) {
    try {
      writeTextfileAtomically(nightly.textfile, renderPromTextfile(report));
    } catch (err) {
      report.problems.push(`textfile: ${(err as Error).message}`);
      report.ok = false;
    }
  }
  const notifications: NotificationResult[] = [];
  if (nightly.notifyOn === 'always' || !report.ok) {
    if (nightly.notifyWebhook) notifications.push(await postWebhook(nightly.notifyWebhook, JSON.stringify(report), webhookTiming()));
    if (nightly.notifyCommand) notifications.push(await runNotifyCommand(nightly.notifyCommand, formatHumanReport(report)));
  }
  report.notifications = notifications;
  if (opts.json) {
    console.log(JSON.stringify(report));
  } else {
    let text = formatHumanReport(report);
    for (const n of notifications) text += `notify ${n.kind} ${n.target}: ${n.ok ? `sent${n.attempts > 1 ? ` (attempt ${n.attempts})` : ''}` : `FAILED: ${n.error}`}\n`;
    process.stdout.write(text);
  }
  for (const n of notifications.filter((x) => !x.ok)) process.stderr.write(`ferry: warning: notify ${n.kind} ${n.target} failed: ${n.error}\n`);
}

/**
 * The webhook's retry timing: FERRY_TEST_WEBHOOK_DELAY_MS exists for the test
 * suite only (milliseconds instead of 2 s, 4 s, 8 s); not documented.
 */
function webhookTiming(): { firstDelayMs?: number } {
  const text = process.env.FERRY_TEST_WEBHOOK_DELAY_MS;
  return text !== undefined && /^\d+$/.test(text) ? { firstDelayMs: Number(text) } : {};
}

/** ferry.conf with its [nightly] table; any mistake means nothing could be done (exit 2), in one line. */
function readConfig(file: string): { config: FerryConfig; nightly: NightlyConfig } {
  return nothingDoneUnlessSync(() => {
    const text = readTomlFile(file, 'config file', 'give an existing file with --config');
    return { config: parseFerryConfig(text, file), nightly: parseNightlyConfig(text, file) };
  });
}

function notRun(err: unknown): unknown {
  return err instanceof FerryError && !(err instanceof NightlyNotRunError) ? new NightlyNotRunError(`nothing done: ${err.message}`, { cause: err }) : err;
}

function nothingDoneUnlessSync<T>(body: () => T): T {
  try {
    return body();
  } catch (err) {
    throw notRun(err);
  }
}

async function nothingDoneUnless<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    throw notRun(err);
  }
}

/**
 * The options to open one location of the night with: Object Lock and the
 * bandwidth caps apply to the S3 locations it writes, the repository and its
 * copies alike; a local directory or USB drive cannot hold a lock, and a cap
 * meant for the uplink would only slow it.
 */
function optionsAt(given: RepoOptions, location: string): RepoOptions {
  if (isS3Location(location)) return { ...given, repo: location };
  return { ...given, repo: location, objectLockDays: undefined, objectLockMode: undefined, limitUpload: undefined, limitDownload: undefined };
}

/** Object Lock with no S3 location to apply it to is a mistake, not a lock. */
function requireLockableLocation(given: RepoOptions, nightly: NightlyConfig, location: string): void {
  if ((given.objectLockDays ?? given.objectLockMode) !== undefined && ![location, ...nightly.offsite].some(isS3Location)) {
    throw new UsageError('--object-lock-days: neither the repository nor an offsite copy is on S3; Object Lock applies to S3 locations only');
  }
  if (nightly.offsiteObjectLockDays !== undefined && !nightly.offsite.some(isS3Location)) {
    throw new UsageError('[nightly] offsite_object_lock_days: no offsite copy is on S3; Object Lock applies to S3 locations only');
  }
}

function nightlySteps(given: RepoOptions, location: string, config: FerryConfig, nightly: NightlyConfig, verbose: boolean, progress: ProgressOutput): NightlySteps {
  /** The repository's options. */
  const ropts = optionsAt(given, location);
  /** An offsite copy's: the repository's, with the copies' Object Lock of [nightly] unless the flags give one. */
  const copyOptions = (target: string) =>
    optionsAt(
      given.objectLockDays !== undefined || nightly.offsiteObjectLockDays === undefined
        ? given
        : { ...given, objectLockDays: String(nightly.offsiteObjectLockDays), objectLockMode: given.objectLockMode ?? nightly.offsiteObjectLockMode },
      target,
    );
  const log = (line: string) => {
    if (verbose) process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  };
  /** Whether an offsite copy forgets by [retention] and is pruned like the repository. */
  const followsRetention = () => nightly.offsiteRetention === 'follow' && hasRetention(config);

  /** The copy `ferry sync` makes: shared locks at both ends, it only adds objects. */
  async function copyToOffsite(target: string): Promise<StepDone> {
    const secret = await obtainPassword(ropts);
    const source = new FencedBackend(openBackendAt(location, { ...ropts, objectLockDays: undefined, objectLockMode: undefined }));
    const locks: RepositoryLock[] = [];
    let dst: FencedBackend | undefined;
    try {
      dst = new FencedBackend(openBackendAt(target, { ...copyOptions(target), cache: false, rememberRetention: ropts.cache !== false }));
      const fenced = dst;
      await checkSameIdentity(source, fenced);
      const lock = lockOptions((err) => {
        source.fence(err);
        fenced.fence(err);
      });
      // Shared at both ends, as `ferry sync`: it only adds objects.
      const wait = lockWaitFromOptions(ropts);
      locks.push(await acquireLockWaiting(await Repository.open(source, secret), 'shared', 'nightly (sync source)', lock, wait));
      locks.push(await acquireLockWaiting(await Repository.open(fenced, secret), 'shared', 'nightly (sync target)', lock, wait));
      // A copy that forgets and prunes on its own gets only the packs holding blobs it lacks: by name,
      // SRC's packs that its last prune dropped as garbage would come back every night.
      const targetPrunes = followsRetention();
      const s = await whileLocked(locks, () => syncRepositories(source, fenced, { concurrency: 4, verify: false, secret, targetPrunes }));
      return {
        summary: `copied ${s.copied.objects} object(s), ${formatBytes(s.copied.bytes)}; ${s.skipped.objects} already there; ${s.restorePoints} restore point(s)`,
        figures: { copiedObjects: s.copied.objects, copiedBytes: s.copied.bytes, restorePoints: s.restorePoints },
      };
    } finally {
      try {
        for (const l of locks) await l.release();
      } finally {
        await source.close();
        await dst?.close();
      }
    }
  }

  return {
    log: (line) => process.stderr.write(`ferry: ${line}\n`),
    times: NightlyRecord.at(stateDir(ropts), location),
    offsiteTimes: (target) => NightlyRecord.at(stateDir(ropts), target).read(),
    offsiteSkipReason,

    async backup(onKnown) {
      const setup = await fleetGuests({ qmpSocket: [], guest: [], exclude: [], workDir: nightly.workDir }, config);
      onKnown(setup.known);
      const outcomes = await backUpFleetGuests(setup, ropts, { command: 'nightly (backup)', concurrency: config.concurrency, tags: nightly.tags, quietIndex: !verbose, log, progress });
      const guests: GuestReport[] = outcomes.map((o) => ({
        guest: o.guest, driver: o.driver, ok: o.ok, ...(o.id ? { id: o.id, time: o.time } : {}), ...(o.error ? { error: o.error } : {}),
        durationMs: o.durationMs, pauseMs: o.pauseMs, downMs: o.downMs, logicalBytes: o.logicalBytes, readBytes: o.readBytes, storedBytes: o.newBytes,
      }));
      return { guests };
    },

    async forget() {
      if (!hasRetention(config)) return undefined;
      return withRepository(ropts, 'exclusive', 'nightly (forget)', async (repo): Promise<StepDone> => {
        const { doomed, kept, groups, locked } = await forgetByRetention(repo, config, ropts);
        return { summary: `removed ${doomed} restore point(s), kept ${kept}, in ${groups} group(s)${lockedNote(locked)}`, figures: { removed: doomed, kept, locked } };
      });
    },

    prune() {
      return withRepository(ropts, 'exclusive', 'nightly (prune)', async (repo, lock): Promise<StepDone> => {
        const r = await pruneLocked(repo, lock!);
        return { summary: pruneSummary(r), figures: { bytesFreed: r.bytesFreed, blobsFreed: r.blobsFreed, packsDeleted: r.packsDeleted, packsRepacked: r.packsRepacked } };
      });
    },

    check(percent) {
      // No local cache: check judges the repository, not what this host kept of it.
      return withRepository({ ...ropts, cache: false }, 'shared', 'nightly (check)', async (repo): Promise<StepDone> => {
        const cursor = ReadDataCursor.at(stateDir(ropts), repo.repositoryId);
        const subset = percent > 0 ? cursor.next(Math.ceil(100 / percent)) : undefined;
        const report = await withPool(repo, (pool) => checkRepository(repo, pool, subset ? { readDataSubset: subset } : 'structure'));
        const cursorWarning = subset ? cursor.advance(subset) : undefined;
        if (cursorWarning) console.error(`ferry: warning: ${cursorWarning}`);
        if (report.damage.length > 0) {
          throw new DamageFoundError(
            `${report.damage.length} damaged object(s), ${report.affected.length} restore point(s) affected; first: ${report.damage[0].object}: ${report.damage[0].problem}; run 'ferry check --read-data'`,
          );
        }
        const read = subset ? `, read ${report.packsRead} pack(s) in full (subset ${subset.bucket + 1}/${subset.of})` : '';
        return {
          summary: `no damage in ${report.packs} pack(s), ${report.restorePoints} restore point(s)${read}`,
          figures: { packs: report.packs, packsRead: report.packsRead, blobsVerified: report.blobsVerified, ...(subset ? { subset: subset.bucket + 1, subsets: subset.of } : {}) },
        };
      });
    },

    async sync(target, tidy) {
      const copied = await copyToOffsite(target);
      if (!followsRetention()) return copied;
      // The copy keeps to the same policy, by the times of its own points (not by what the repository
      // still lists, which a repository restored from an older drive would get wrong).
      return withRepository({ ...copyOptions(target), cache: false }, 'exclusive', 'nightly (offsite forget)', async (repo, lock): Promise<StepDone> => {
        const forgot = await forgetByRetention(repo, config, ropts);
        const record = NightlyRecord.at(stateDir(ropts), target);
        const times = record.read();
        const pruned = copyPruneDue(tidy.prune, nightly.pruneOn, times.lastPrune, new Date())
          ? await pruneLocked(repo, lock!)
          : undefined;
        if (pruned) {
          try {
            record.write({ ...times, lastPrune: new Date().toISOString() });
          } catch (err) {
            console.error(`ferry: warning: could not keep the last prune time of ${target}: ${(err as Error).message}`);
          }
        }
        return {
          summary: `${copied.summary}; forgot ${forgot.doomed} by [retention]${lockedNote(forgot.locked)}${pruned ? `; prune ${pruneSummary(pruned)}` : ''}`,
          figures: { ...copied.figures, removed: forgot.doomed, locked: forgot.locked, ...(pruned ? { bytesFreed: pruned.bytesFreed } : {}) },
        };
      });
    },

    restorePoints() {
      return withRepository(ropts, 'none', 'nightly (coverage)', async (repo) =>
        (await repo.listAllRestorePoints()).points.map((p) => ({ id: p.id, guest: p.guest, time: p.time })),
      );
    },

    async size(at) {
      const backend = openBackendAt(at, { ...optionsAt(given, at), cache: false });
      try {
        let total = 0;
        let packs = 0;
        for await (const info of backend.list('data')) {
          total += info.size;
          packs++;
        }
        return { bytes: total, packs };
      } finally {
        await backend.close();
      }
    },
  };
}

function hasRetention(config: FerryConfig): boolean {
  return Boolean(config.retention) || config.guestRules.some((r) => r.settings.retention);
}

/**
 * Remove the restore points [retention] does not keep (per guest; a guest whose policy keeps nothing is
 * left alone, never emptied, as `forget` does); this host's record of the repository's points (the
 * repository's, or a copy's as `list --repo` of the drive saw it) hears of those removed. A point whose
 * S3 Object Lock retention has not passed stays (counted in `locked`): a later night removes it.
 */
async function forgetByRetention(repo: Repository, config: FerryConfig, ropts: RepoOptions): Promise<{ doomed: number; kept: number; groups: number; locked: number }> {
  const seen = seenRestorePoints(repo, ropts);
  const { points } = await repo.listAllRestorePoints();
  const policies = new Map<string, RetentionPolicy>();
  for (const { guest } of points) {
    const policy = policies.has(guest) ? undefined : settingsForGuest(config, guest).retention;
    if (policy && !isEmptyPolicy(policy)) policies.set(guest, policy);
  }
  const groups = planForget(points.filter((p) => policies.has(p.guest)), (guest) => policies.get(guest)!);
  const doomed = groups.flatMap((g) => g.decisions.filter((d) => !d.keep).map((d) => d.id));
  const removed: string[] = [];
  let locked = 0;
  try {
    for (const id of doomed) {
      try {
        await repo.removeRestorePoint(id);
        removed.push(id);
      } catch (err) {
        if (!(err instanceof ObjectLockedError)) throw err;
        locked++;
      }
    }
  } finally {
    seen.forgot(removed);
    warnRecordProblems(seen);
  }
  return { doomed: removed.length, kept: groups.reduce((n, g) => n + g.decisions.filter((d) => d.keep).length, 0), groups: groups.length, locked };
}

/** `ferry prune` at its defaults, under the exclusive lock the caller holds. */
function pruneLocked(repo: Repository, lock: RepositoryLock): Promise<PruneReport> {
  return pruneRepository(repo, { repackBelow: 0.5, mode: 'prune', confirmLock: () => lock.verify() });
}

function lockedNote(locked: number): string {
  return locked > 0 ? ` (${locked} more under S3 Object Lock until their retention passes)` : '';
}

function pruneSummary(r: PruneReport): string {
  return `freed ${r.blobsFreed} blob(s), ${formatBytes(r.bytesFreed)}; packs ${r.packsBefore} → ${r.packsAfter} (${r.packsRepacked} repacked)`;
}
