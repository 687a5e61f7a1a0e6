// `ferry nightly`, the steps in order: backup of every selected guest →
// forget by the retention policy → prune (on its weekday) → check with a
// rotating read-data subset → sync to each offsite target (which then forgets
// by the same policy and is pruned on the same nights, unless
// offsite_retention = "keep-all") → coverage and the report. A step's failure is recorded and the steps after it still run: a
// failed guest stops nothing, a failed backup does not stop the sync (the
// copies then hold what the repository holds). The work of each step (the
// repository, its locks, the hypervisors) is given by the caller, which owns
// the process; this file owns the order, the skipping and the report.
import { formatBytes } from '../units/byteSize';
import * as os from 'node:os';
import { type KnownGuest, type PointSeen, computeCoverage } from './coverage';
import { type GuestReport, type NightlyReport, type RepositoryReport, type StepName, type StepReport, problemsOf } from './report';
import { type NightlyConfig, pruneTonight } from './nightlyConfig';
import type { NightlyTimes } from './nightlyRecord';

/** What a step that did its work reports: one line and its figures. */
export interface StepDone {
  summary: string;
  figures?: Record<string, number>;
}

export interface NightlySteps {
  /** The guests the hypervisors know (selected or not), then the backup of the selected ones. */
  backup(onKnown: (known: KnownGuest[]) => void): Promise<{ guests: GuestReport[] }>;
  /** Undefined when there is no retention policy to apply (the step is skipped with that reason). */
  forget(): Promise<StepDone | undefined>;
  prune(): Promise<StepDone>;
  /** `percent` 0: structure only. Throws when damage is found. */
  check(percent: number): Promise<StepDone>;
  /** Why the target is skipped tonight (a USB drive not mounted), or undefined. */
  offsiteSkipReason(target: string): string | undefined;
  /**
   * Copy what `target` lacks; with offsite_retention "follow", the copy then forgets by [retention]
   * and, when `prune` (prune_on's night), is pruned.
   */
  sync(target: string, tidy: { prune: boolean }): Promise<StepDone>;
  /** The repository's readable restore points, after the night's changes. */
  restorePoints(): Promise<PointSeen[]>;
  /** Bytes and count of pack files at a location; undefined when it cannot be listed. */
  size(location: string): Promise<{ bytes: number; packs: number } | undefined>;
  /** This host's record of an offsite copy's last prune (a copy that follows [retention] is pruned too). */
  offsiteTimes?(location: string): NightlyTimes;
  /** This host's record of the last prune and check, read and written per run. */
  times: { read(): NightlyTimes; write(times: NightlyTimes): void };
  log(line: string): void;
}

export async function runNightly(config: NightlyConfig, repository: string, steps: NightlySteps, clock: () => Date = () => new Date()): Promise<NightlyReport> {
  const started = clock();
  const reports: StepReport[] = [];
  const run = async (step: StepName, body: () => Promise<StepDone | { skip: string }>, target?: string): Promise<boolean> => {
    const t0 = Date.now();
    const at = target ? { target } : {};
    try {
      const done = await body();
      if ('skip' in done) reports.push({ step, ...at, status: 'skipped', reason: done.skip, durationMs: Date.now() - t0 });
      else reports.push({ step, ...at, status: 'ok', summary: done.summary, ...(done.figures ? { figures: done.figures } : {}), durationMs: Date.now() - t0 });
      return !('skip' in done);
    } catch (err) {
      const reason = (err as Error).message.replace(/\s*\n\s*/g, ' ');
      steps.log(`${step}${target ? ` ${target}` : ''}: FAILED: ${reason}`);
      reports.push({ step, ...at, status: 'failed', reason, durationMs: Date.now() - t0 });
      return false;
    }
  };

  let known: KnownGuest[] | undefined;
  let guests: GuestReport[] = [];
  await run('backup', async () => {
    ({ guests } = await steps.backup((k) => (known = k)));
    const ok = guests.filter((g) => g.ok);
    const sum = (f: (g: GuestReport) => number) => ok.reduce((n, g) => n + f(g), 0);
    const figures = { guests: guests.length, failed: guests.length - ok.length, readBytes: sum((g) => g.readBytes), storedBytes: sum((g) => g.storedBytes) };
    return { summary: `${ok.length} of ${guests.length} guest(s) backed up, ${formatBytes(figures.readBytes)} read, ${formatBytes(figures.storedBytes)} newly stored`, figures };
  });
  await run('forget', async () => (await steps.forget()) ?? { skip: 'no [retention] policy in ferry.conf' });
  const times = steps.times.read();
  const prune = pruneTonight(config.pruneOn, started);
  if (prune) {
    if (await run('prune', () => steps.prune())) times.lastPrune = clock().toISOString();
  } else {
    reports.push({ step: 'prune', status: 'skipped', reason: config.pruneOn === 'never' ? 'prune_on = "never"' : `prune_on = "${config.pruneOn}"`, durationMs: 0 });
  }
  if (await run('check', () => steps.check(config.checkReadDataPercent))) times.lastCheck = clock().toISOString();
  try {
    steps.times.write(times);
  } catch (err) {
    steps.log(`warning: could not keep the last prune and check times: ${(err as Error).message}`);
  }
  for (const target of config.offsite) {
    await run('sync', async () => {
      const skip = steps.offsiteSkipReason(target);
      return skip ? { skip } : steps.sync(target, { prune });
    }, target);
  }

  let points: PointSeen[] = [];
  try {
    points = await steps.restorePoints();
  } catch (err) {
    reports.push({ step: 'coverage', status: 'failed', reason: `listing the restore points: ${(err as Error).message}`, durationMs: 0 });
  }
  const coverage = computeCoverage(known, points, clock(), config.maxAgeMs);
  const repositories: RepositoryReport[] = [];
  for (const [location, role] of [[repository, 'primary'], ...config.offsite.map((o) => [o, 'offsite'])] as [string, RepositoryReport['role']][]) {
    const skipped = role === 'offsite' && reports.some((s) => s.step === 'sync' && s.target === location && s.status === 'skipped');
    const size = skipped ? undefined : await steps.size(location).catch(() => undefined);
    const copyPrune = role === 'offsite' ? steps.offsiteTimes?.(location).lastPrune : undefined;
    repositories.push({
      location,
      role,
      ...(size ? { sizeBytes: size.bytes, packs: size.packs } : {}),
      ...(role === 'primary' ? times : copyPrune ? { lastPrune: copyPrune } : {}),
    });
  }
  const finished = clock();
  const problems = problemsOf(coverage, guests, reports);
  return {
    version: 1,
    host: os.hostname(),
    repository,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    ok: problems.length === 0,
    problems,
    coverage,
    guests,
    steps: reports,
    repositories,
  };
}
