// `ferry site …`: bring a whole site back on fresh hosts. `site plan` chooses
// each guest's restore point and places it on the hosts of a hosts.toml,
// measuring every storage pool on its host (locally, or over ssh).
import * as fs from 'node:fs';
import { Command } from 'commander';
import { repeatable } from '../options';
import * as os from 'node:os';
import * as path from 'node:path';
import { stateDir } from '../restorePointRecord';
import { loadIndexForReading, loadOptionalConfig, withPool, startWorkersEarly, withRepository, RepoOptions } from '../session';
import { formatBytes, table } from '../format';
import { writeFileAtomically } from '../../restore/atomicFile';
import { DoesNotFitError, FleetFailedError, InputError, UsageError, describeSystemError } from '../../errors';
import { ExecFileCommandRunner } from '../../hypervisor/commandRunner';
import { loadSiteHosts } from '../../site/hostsFile';
import { SITE_PLAN_FORMAT, SITE_PLAN_VERSION, type SitePlan } from '../../site/sitePlan';
import { checkPlanSelection, planForRestore, planSite } from './sitePlanning';
import { type GuestRestoreReport, restoreSite } from '../../site/siteRestore';
import { DEFAULT_CONFIG_PATH, type FerryConfig, settingsForGuest } from '../../config/ferryConfig';
import { type GuestHealthSetting, healthSettingFor, healthWaiter } from '../../site/siteHealth';
import { pullHostRestorer, registerSiteRestoreLocal } from './sitePull';
import { obtainPassword } from '../password';
import { type ProgressFlags, noProgress, progressOutput } from '../progress';
import { SiteProgressBoard } from '../siteProgress';

interface PlanOptions {
  hosts: string;
  at?: string;
  guest: string[];
  tag: string[];
  out?: string;
  json?: boolean;
}


export function registerSite(program: Command): void {
  const site = program.command('site').description('restore a whole site onto fresh hosts (plan first)');
  site
    .command('plan')
    .description("choose each guest's restore point and place it on the target hosts of a hosts file (memory, vCPUs, pool space, pins, anti-affinity)")
    .requiredOption('--hosts <file>', 'the target hosts and their storage pools (hosts.toml; see README, "Disaster recovery")')
    .option('--at <time>', "the latest restore point at or before this time: 2026-11-30 (end of that day) or 2026-11-30T02:00, this host's local time unless an offset is given")
    .option('--guest <pattern>', 'only guests matching this name or pattern (repeatable)', repeatable, [])
    .option('--tag <tag>', 'only restore points with this tag (repeatable)', repeatable, [])
    .option('--out <file>', 'write the plan (JSON) to this file, for `site restore --plan`')
    .option('--json', 'print the plan as JSON instead of a table')
    .action(async (opts: PlanOptions, cmd: Command) => {
      checkPlanSelection(opts);
      const hosts = loadSiteHosts(opts.hosts);
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      await withRepository(ropts, 'none', 'site plan', async (repo) => {
        const { plan, chosen } = await planSite(repo, hosts, opts);
        if (opts.out) {
          await writeFileAtomically(opts.out, async (temp) => fs.writeFileSync(temp, `${JSON.stringify(plan, null, 2)}\n`), 0, 0o644);
        }
        if (opts.json) console.log(JSON.stringify(plan));
        else printPlan(plan);
        if (plan.unplaced.length > 0) {
          for (const u of plan.unplaced) console.error(`ferry: ${u.guest} does not fit: ${u.reasons.join('; ')}`);
          throw new DoesNotFitError(
            `${plan.unplaced.length} of ${chosen} guest(s) do not fit the hosts of ${opts.hosts} (see above); add hosts or pools, or narrow the plan with --guest` +
              (opts.out ? `; the plan in ${opts.out} lists them as unplaced` : ''),
          );
        }
        if (opts.out) console.error(`plan for ${plan.guests.length} guest(s) written to ${opts.out}`);
      });
    });
  registerSiteRestore(site);
  registerSiteRestoreLocal(site);
}

interface RestoreOptions {
  plan?: string;
  /** Plan now (no --plan): as for `site plan`. */
  at?: string;
  guest: string[];
  tag: string[];
  hosts?: string;
  dryRun?: boolean;
  force?: boolean;
  seed?: boolean;
  json?: boolean;
  tmpDir?: string;
  newMacs?: boolean;
  /** false with --no-start. */
  start: boolean;
  config?: string;
  pull?: boolean;
}

function registerSiteRestore(site: Command): void {
  site
    .command('restore')
    .description("write every planned guest's disks and config onto its target host (hosts in parallel, every chunk verified), then start the guests boot group by boot group, each group running before the next starts")
    .option('--plan <file>', 'the plan `site plan --out` wrote')
    .option('--hosts <file>', 'the hosts file (default: the one the plan names); without --plan: plan for these hosts now and restore in one go')
    .option('--at <time>', 'without --plan: as for `site plan`')
    .option('--guest <pattern>', 'without --plan: as for `site plan` (repeatable)', repeatable, [])
    .option('--tag <tag>', 'without --plan: as for `site plan` (repeatable)', repeatable, [])
    .option('--dry-run', 'print what would be created, written and run, and do nothing')
    .option('--force', 'overwrite disks, configs and definitions (a shut-off libvirt domain, an xl cfg of the name) that exist on the targets (default: that guest fails); a guest that runs on its target is never touched')
    .option('--seed', 'use a disk that exists on a target as a seed (an older copy of it): compare it chunk by chunk, write only what differs')
    .option('--new-macs', "give every NIC a new MAC address (the same ones on every run of this plan); default: keep the guests' own")
    .option('--no-start', 'stop after the disks and configs: start no guest')
    .option('--config <file>', `ferry.conf whose [guest."PATTERN"] health checks apply where the hosts file sets none (default ${DEFAULT_CONFIG_PATH} if it exists)`)
    .option('--json', 'print the report as JSON')
    .option('--pull', "each ssh host runs its own ferry (hosts file: ferry, repository) and reads its guests from the repository itself; the controller sends it only the plan and the passphrase, over ssh")
    .option('--tmp-dir <dir>', 'where disks bound for ssh hosts are staged, a few regions (128 MiB) at a time (default: TMPDIR or /tmp)')
    .action(async (opts: RestoreOptions, cmd: Command) => {
      if (opts.seed && opts.force) throw new UsageError('--seed and --force: choose one (--seed keeps and updates what is there, --force overwrites it)');
      const planned = restoreSource(opts);
      if (planned && planned.unplaced.length > 0) {
        throw new DoesNotFitError(`${opts.plan}: ${planned.unplaced.length} guest(s) of the plan are unplaced (${planned.unplaced.map((u) => u.guest).join(', ')}); plan again with more room`);
      }
      const hosts = loadSiteHosts(opts.hosts ?? planned!.hostsFile);
      const ropts = cmd.optsWithGlobals() as RepoOptions & ProgressFlags;
      // A dry run prints what it would do, and does nothing to count.
      const progressTo = opts.dryRun ? noProgress() : progressOutput({ ...ropts, json: opts.json });
      const config = loadOptionalConfig(opts.config);
      const local = new ExecFileCommandRunner();
      // --pull hands the passphrase on to each host: asked for once, here.
      const passphrase = opts.pull ? await obtainPassword(ropts) : undefined;
      await withRepository(passphrase ? { ...ropts, passphrase } : ropts, 'shared', 'site restore', async (repo) => {
        startWorkersEarly();
        const plan = planned ?? (await planForRestore(repo, hosts, opts, path.join(stateDir(ropts), 'site-restore', 'plans'), (line) => console.error(line)));
        await loadIndexForReading(repo);
        // A row per host with guests in the plan, in the hosts file's order.
        const progress = new SiteProgressBoard(progressTo, hosts.hosts.map((h) => h.name).filter((name) => plan.guests.some((g) => g.host === name)));
        const log = (line: string) => (opts.dryRun ? console.log(line) : progress.board.log(`${new Date().toISOString()} ${line}`));
        const reports = await withPool(repo, (pool) =>
          restoreSite(repo, pool, plan, hosts, {
            dryRun: Boolean(opts.dryRun),
            existing: opts.seed ? 'seed' : opts.force ? 'overwrite' : 'refuse',
            local,
            scratchDir: opts.tmpDir ?? os.tmpdir(),
            journalDir: path.join(stateDir(ropts), 'site-restore'),
            macs: opts.newMacs ? { kind: 'new', seed: plan.created } : { kind: 'keep' },
            start: opts.start ? 'boot-groups' : 'no-start',
            healthCheck: (g, host) => {
              const setting = healthSettingFor(hosts, g.guest, config && ((name) => configHealth(config, name)));
              return setting && healthWaiter(setting, host, g.guest, local, hosts.sshConfig);
            },
            // Above the hosts' progress rows on a terminal.
            log,
            onProgress: progress.onProgress,
            ...(passphrase ? {
              pullHost: pullHostRestorer(repo, plan, hosts, {
                passphrase, local, dryRun: Boolean(opts.dryRun), journalDir: path.join(stateDir(ropts), 'site-restore'),
                existing: opts.seed ? 'seed' : opts.force ? 'overwrite' : 'refuse',
                macs: opts.newMacs ? { kind: 'new', seed: plan.created } : { kind: 'keep' },
                log,
              }),
            } : {}),
          }),
        ).finally(() => progress.close());
        if (opts.json) console.log(JSON.stringify(reports));
        else if (!opts.dryRun) printReport(reports);
        const bad = reports.filter((r) => !r.ok || r.start?.result === 'failed' || r.start?.result === 'skipped' || r.health?.result === 'failed');
        if (bad.length > 0) throw new FleetFailedError(`${bad.length} of ${reports.length} guest(s) were not restored or did not come up: ${bad.map((r) => r.guest).join(', ')} (see above)`);
      });
    });
}

/** ferry.conf's health check for a guest, if it sets one. */
function configHealth(config: FerryConfig, guest: string): GuestHealthSetting | undefined {
  const s = settingsForGuest(config, guest);
  return s.health ? { check: s.health, ...(s.healthTimeoutMs !== undefined ? { timeoutMs: s.healthTimeoutMs } : {}) } : undefined;
}

/** The plan file given, or undefined to plan now (--hosts with the plan options). */
function restoreSource(opts: RestoreOptions): SitePlan | undefined {
  if (opts.plan === undefined) {
    if (opts.hosts === undefined) throw new UsageError("site restore: give --plan FILE (from 'site plan --out'), or --hosts FILE to plan and restore in one go");
    checkPlanSelection(opts);
    return undefined;
  }
  if (opts.at !== undefined || opts.guest.length > 0 || opts.tag.length > 0) {
    throw new UsageError(`site restore: --at, --guest and --tag choose what to plan, and ${opts.plan} is planned already; give them to 'site plan', or leave out --plan`);
  }
  return readPlan(opts.plan);
}

function readPlan(file: string): SitePlan {
  let plan: Partial<SitePlan>;
  try {
    plan = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<SitePlan>;
  } catch (err) {
    throw new InputError(`${file}: cannot read the plan (${err instanceof SyntaxError ? `not JSON: ${err.message}` : describeSystemError(err)}); write one with 'ferry site plan --out'`, { cause: err });
  }
  if (plan.format !== SITE_PLAN_FORMAT || plan.version !== SITE_PLAN_VERSION || !Array.isArray(plan.guests) || !Array.isArray(plan.unplaced) || typeof plan.hostsFile !== 'string') {
    throw new InputError(`${file}: not a ferry site plan of version ${SITE_PLAN_VERSION}; write one with 'ferry site plan --out'`);
  }
  return plan as SitePlan;
}

function printReport(reports: GuestRestoreReport[]): void {
  console.log(
    table([
      ['guest', 'host', 'restore point', 'result', 'written', 'time', 'group', 'start', 'health', 'config'],
      ...reports.map((r) => [
        r.guest, r.host, r.restorePoint.slice(0, 8),
        r.ok ? (r.alreadyRunning === 'this-plan' ? 'runs already' : r.disks.every((d) => d.alreadyRestored) ? 'already restored' : 'restored') : `FAILED: ${r.error}`,
        formatBytes(r.writtenBytes), `${(r.durationMs / 1000).toFixed(1)} s`, String(r.bootGroup),
        r.start ? `${r.start.result}${r.start.reason && r.ok ? ` (${r.start.reason})` : ''}` : 'not started (--no-start)',
        r.health ? `${r.health.result}${r.health.check ? ` (${r.health.check})` : ''}${r.health.reason ? `: ${r.health.reason}` : ''}` : '-',
        r.configFiles[0] ?? '-',
      ]),
    ]),
  );
}

function printPlan(plan: SitePlan): void {
  const rows = plan.guests.map((g) => [
    g.guest,
    g.restorePoint.slice(0, 8),
    g.time.replace(/\.\d+Z$/, 'Z'),
    g.host,
    [...new Set(g.disks.map((d) => d.pool))].join(','),
    `${formatBytes(g.disks.reduce((n, d) => n + d.sizeBytes, 0))} (${formatBytes(g.disks.reduce((n, d) => n + d.dataBytes, 0))} data)`,
    String(g.bootGroup),
  ]);
  console.log(table([['guest', 'restore point', 'time', 'host', 'pool', 'size', 'boot group'], ...rows]));
  const sparse = plan.pools.filter((p) => p.sparse).map((p) => `${p.host}/${p.pool}`);
  if (sparse.length > 0) console.log(`(pools ${sparse.join(', ')} hold sparse files or thin volumes: disks there count by their data bytes)`);
}
