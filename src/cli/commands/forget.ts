// `ferry forget`: remove restore points by id, or by a retention policy
// (--keep-* options, or [retention] in ferry.conf). Their data stays until
// 'ferry prune'. Damaged restore points (unreadable, so of unknown age) are never
// removed by a policy; forget them by id. With --prune, prune runs right
// after, under the same exclusive lock, and the report has both parts.
import { Command } from 'commander';
import { repeatable } from '../options';
import { loadOptionalConfig, withRepository, RepoOptions } from '../session';
import { table } from '../format';
import { Repository } from '../../repo/repository';
import { SeenRestorePoints } from '../../repo/seenRestorePoints';
import { CorruptionError, UsageError } from '../../errors';
import { DEFAULT_CONFIG_PATH, settingsForGuest } from '../../config/ferryConfig';
import { checkGlobs, matchesGlob } from '../../config/glob';
import { type ForgetGroup, planForget } from '../../retention/forgetPlan';
import { type RetentionPolicy, isEmptyPolicy, parseRetentionDuration } from '../../retention/retentionPolicy';
import { seenRestorePoints, warnRecordProblems } from '../restorePointRecord';
import { addPruneFlags, describePrune, pruneSettings, runPrune, type PruneFlags } from './prune';
import type { PruneReport } from '../../prune/pruneRun';

interface ForgetOptions {
  dryRun?: boolean;
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  keepTag: string[];
  guest: string[];
  host: string[];
  tag: string[];
  config?: string;
  prune?: boolean;
  repackBelow?: string;
  maxRepack?: string;
  json?: boolean;
}

/** What a forget did (or would do, with --dry-run): `--json` prints it. */
interface ForgetReport {
  dryRun: boolean;
  /** Full ids of the restore points removed. */
  removed: string[];
  /** Restore points a policy kept (ids given: not counted). */
  kept?: number;
  groups?: ForgetGroup[];
  prune?: PruneReport;
}

/** Where forget's human report goes: stdout, or nowhere under --json. */
type Say = (line: string) => void;


export function registerForget(program: Command): void {
  const command = program
    .command('forget [id...]')
    .description(
      'remove restore points by id, or those a retention policy does not keep (per guest and source host; ' +
        "hours, days, weeks (ISO, Monday first), months and years in this host's local time zone, TZ). Their data stays in the repository until 'ferry prune'",
    )
    .option('--keep-last <n>', 'keep the newest N points')
    .option('--keep-hourly <n>', 'keep the newest point of each of the last N hours that have one')
    .option('--keep-daily <n>', 'keep the newest point of each of the last N days that have one')
    .option('--keep-weekly <n>', 'keep the newest point of each of the last N weeks that have one')
    .option('--keep-monthly <n>', 'keep the newest point of each of the last N months that have one')
    .option('--keep-yearly <n>', 'keep the newest point of each of the last N years that have one')
    .option('--keep-within <duration>', "keep points younger than this (e.g. 14d, 2w, 6m, 1y), back from the guest's newest point")
    .option('--keep-tag <tag>', 'keep points with this tag (repeatable)', repeatable, [])
    .option('--guest <pattern>', 'only guests matching this name or pattern (repeatable)', repeatable, [])
    .option('--host <name>', 'only points backed up on this host (repeatable)', repeatable, [])
    .option('--tag <tag>', 'only points with this tag (repeatable)', repeatable, [])
    .option('--config <file>', `ferry's config file: its [retention] policy applies when no --keep-* option is given (default ${DEFAULT_CONFIG_PATH} if it exists)`)
    .option('--dry-run', 'only say what would be kept and removed, and why')
    .option('--prune', "then run 'ferry prune' under the same lock (with --dry-run: what it would free once these points are gone)");
  addPruneFlags(command, 'forget --prune')
    .option('--json', 'print the report (and with --prune the prune report) as JSON')
    .action(async (refs: string[], opts: ForgetOptions, cmd: Command) => {
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      const policyFor = policyFromOptions(refs, opts);
      const prune = pruneFlagsOf(opts);
      const say: Say = opts.json ? () => undefined : (line) => console.log(line);
      await withRepository(ropts, 'exclusive', prune ? 'forget --prune' : 'forget', async (repo, lock) => {
        const seen = seenRestorePoints(repo, ropts);
        const report = policyFor ? await forgetByPolicy(repo, seen, policyFor, opts, say) : await forgetByIds(repo, seen, refs, Boolean(opts.dryRun), say);
        warnRecordProblems(seen);
        if (prune) {
          report.prune = await runPrune(repo, lock, prune, { mode: opts.dryRun ? 'dry-run' : 'prune', forgotten: new Set(report.removed) });
          say(`prune${opts.dryRun ? ' (dry run)' : ''}:`);
          for (const l of describePrune(report.prune)) say(`  ${l}`);
        }
        if (opts.json) console.log(JSON.stringify(report));
      });
    });
}

/** The prune settings of `forget --prune`; prune's options without --prune are a mistake worth a line. */
function pruneFlagsOf(opts: ForgetOptions): ReturnType<typeof pruneSettings> | undefined {
  const flags: PruneFlags = { repackBelow: opts.repackBelow, maxRepack: opts.maxRepack };
  if (opts.prune) return pruneSettings(flags);
  const given = Object.entries({ '--repack-below': flags.repackBelow, '--max-repack': flags.maxRepack }).filter(([, v]) => v !== undefined).map(([k]) => k);
  if (given.length > 0) throw new UsageError(`forget: ${given.join(', ')} only applies with --prune`);
  return undefined;
}

/** The policy per guest, or undefined when ids were given. Refuses ids and a policy together, and neither. */
function policyFromOptions(refs: string[], opts: ForgetOptions): ((guest: string) => RetentionPolicy | undefined) | undefined {
  const flags = commandLinePolicy(opts);
  const narrowed = opts.guest.length > 0 || opts.host.length > 0 || opts.tag.length > 0;
  if (refs.length > 0) {
    if (flags || narrowed) throw new UsageError('forget: give restore point ids, or a policy (--keep-*, --guest, --host, --tag), not both');
    return undefined;
  }
  checkGlobs(opts.guest, '--guest');
  if (flags) return () => flags;
  const fromConfig = loadOptionalConfig(opts.config);
  if (!fromConfig || (!fromConfig.retention && !fromConfig.guestRules.some((r) => r.settings.retention))) {
    throw new UsageError(
      `forget: nothing to forget by; give restore point ids, --keep-* options, or a [retention] policy in ${opts.config ?? DEFAULT_CONFIG_PATH} (see docs/ferry.conf.example)`,
    );
  }
  return (guest) => settingsForGuest(fromConfig, guest).retention;
}

function commandLinePolicy(opts: ForgetOptions): RetentionPolicy | undefined {
  const policy: RetentionPolicy = {};
  const counts = [
    ['keepLast', 'last', '--keep-last'], ['keepHourly', 'hourly', '--keep-hourly'], ['keepDaily', 'daily', '--keep-daily'],
    ['keepWeekly', 'weekly', '--keep-weekly'], ['keepMonthly', 'monthly', '--keep-monthly'], ['keepYearly', 'yearly', '--keep-yearly'],
  ] as const;
  let given = false;
  for (const [option, rule, flag] of counts) {
    const text = opts[option];
    if (text === undefined) continue;
    given = true;
    if (!/^\d{1,7}$/.test(text)) throw new UsageError(`${flag}: '${text}' is not a whole number; e.g. ${flag} 7`);
    policy[rule] = Number(text);
  }
  if (opts.keepWithin !== undefined) {
    given = true;
    const within = parseRetentionDuration(opts.keepWithin);
    if (!within) throw new UsageError(`--keep-within: '${opts.keepWithin}' is not a duration; use a number with y, m, w, d or h, e.g. 14d`);
    policy.within = within;
  }
  if (opts.keepTag.length > 0) {
    given = true;
    policy.tags = opts.keepTag;
  }
  if (!given) return undefined;
  if (isEmptyPolicy(policy)) throw new UsageError('forget: every --keep-* option is 0, which would remove every restore point; give at least one rule above 0');
  return policy;
}

async function forgetByPolicy(
  repo: Repository,
  seen: SeenRestorePoints,
  policyFor: (guest: string) => RetentionPolicy | undefined,
  opts: ForgetOptions,
  say: Say,
): Promise<ForgetReport> {
  const { points, damaged } = await repo.listAllRestorePoints();
  for (const d of damaged) console.error(`ferry: warning: restore point ${d.id.slice(0, 8)} cannot be read (${d.problem}); a policy never removes it: forget it by id`);
  const selected = (guest: string) => opts.guest.length === 0 || opts.guest.some((g) => matchesGlob(guest, g));
  // A guest whose configured policy keeps nothing is left alone (with a line), never emptied.
  const policies = new Map<string, RetentionPolicy>();
  const unmanaged = new Set<string>();
  for (const { guest } of points) {
    if (policies.has(guest) || unmanaged.has(guest)) continue;
    if (!selected(guest)) continue;
    const policy = policyFor(guest);
    if (policy && !isEmptyPolicy(policy)) policies.set(guest, policy);
    else unmanaged.add(guest);
  }
  for (const guest of unmanaged) console.error(`ferry: ${guest}: the config's retention policy keeps nothing for this guest; its restore points are left as they are`);
  const managed = points.filter((p) => policies.has(p.guest));
  const groups = planForget(managed, (guest) => policies.get(guest)!, { guest: selected, hosts: opts.host, tags: opts.tag });
  printPlan(groups, Boolean(opts.dryRun), say);
  const doomed = groups.flatMap((g) => g.decisions.filter((d) => !d.keep).map((d) => d.id));
  if (!opts.dryRun) {
    // Off this host's record first: a `list` running meanwhile must not take the removal for a loss.
    seen.forgot(doomed);
    for (const id of doomed) await repo.removeRestorePoint(id);
  }
  const keptCount = groups.reduce((n, g) => n + g.decisions.filter((d) => d.keep).length, 0);
  say(`${opts.dryRun ? 'would remove' : 'removed'} ${doomed.length} restore point(s), kept ${keptCount}, in ${groups.length} group(s)`);
  return { dryRun: Boolean(opts.dryRun), removed: doomed, kept: keptCount, groups };
}

function printPlan(groups: ForgetGroup[], dryRun: boolean, say: Say): void {
  for (const g of groups) {
    say(`${g.guest} (from ${g.hostname || 'unknown host'}):`);
    say(
      table(
        g.decisions.map((d) => ['  ' + (d.keep ? 'keep' : dryRun ? 'would remove' : 'remove'), d.id.slice(0, 8), d.time.replace(/\.\d+Z$/, 'Z'), d.reasons.join(', ')]),
      ),
    );
  }
}

async function forgetByIds(repo: Repository, seen: SeenRestorePoints, refs: string[], dryRun: boolean, say: Say): Promise<ForgetReport> {
  if (refs.length === 0) throw new UsageError('forget: give restore point ids or a policy');
  // Resolve every id first: an ambiguous one stops the command before anything is removed. An id
  // that names nothing is skipped with a line, so re-running a forget that was interrupted finishes it.
  const names: string[] = [];
  for await (const info of repo.backend.list('restorepoints')) names.push(info.name);
  const ids: string[] = [];
  for (const ref of refs) {
    if (ref !== 'latest' && !names.some((n) => n.startsWith(ref))) {
      forgetGone(repo, seen, ref, dryRun, say);
      continue;
    }
    ids.push(ref === 'latest' ? (await repo.findRestorePoint('latest')).id : await repo.restorePointName(ref));
  }
  for (const id of ids) await forgetOne(repo, seen, id, dryRun, say);
  return { dryRun, removed: ids };
}

/** An id the repository no longer has: forgetting it acknowledges the loss if this host still expects it, else it is skipped. */
function forgetGone(repo: Repository, seen: SeenRestorePoints, ref: string, dryRun: boolean, say: Say): void {
  const expected = ref.length >= 4 ? seen.vanished([]).filter((p) => p.id.startsWith(ref)) : [];
  if (expected.length !== 1) {
    console.error(`skipped ${ref}: no such restore point (already removed?)`);
    return;
  }
  if (!dryRun) seen.forgot([expected[0].id]);
  say(`restore point ${expected[0].id.slice(0, 8)} (${expected[0].guest}, ${expected[0].time}) was already gone from ${repo.location}; this host ${dryRun ? 'would no longer expect' : 'no longer expects'} it`);
}

async function forgetOne(repo: Repository, seen: SeenRestorePoints, id: string, dryRun: boolean, say: Say): Promise<void> {
  const would = dryRun ? 'would remove' : 'removed';
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
  say(`${would} restore point ${id.slice(0, 8)} ${describe}`);
}
