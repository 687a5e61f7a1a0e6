// `ferry site restore`, the start phase: after the data and configs, the
// guests are started boot group by boot group (group 0 first), each group
// only once every guest of the one before runs and passed its health check.
// Within a group guests are started in boot priority order (lower first),
// then waited for together.
//
// The safe choices, in order:
// - a guest that runs on its target already is never touched (not written,
//   not defined, not started), unless this machine's journal says an earlier
//   run of this same plan started it: then it counts as started;
// - a group in which any guest failed (not restored, already running from
//   elsewhere, its start or its health check failed) stops the boot there:
//   later groups are not started, since they may depend on it. Each guest
//   left unstarted says why.
import { replaceFileSync } from '../host/replacedFile';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { FerryError, HypervisorError, StorageError, describeSystemError } from '../errors';
import type { CommandRunner } from '../hypervisor/commandRunner';
import { describeCommand } from '../hypervisor/commandRunner';
import { guestPresence, startCommands, startGuest } from './guestStart';
import type { HostDefinition, SiteHosts } from './hostsFile';
import type { PlannedGuest, SitePlan } from './sitePlan';

export interface StartOutcome {
  /**
   * started: by this run; already running: by an earlier run of this plan;
   * not started: `--no-start` or a dry run; skipped: not restored, running
   * from elsewhere, or an earlier boot group failed (see reason); failed: its
   * start command failed or it did not come up.
   */
  result: 'started' | 'already running' | 'not started' | 'skipped' | 'failed';
  reason?: string;
  /** When it was started (ISO 8601). */
  at?: string;
}

export interface HealthOutcome {
  /** healthy: its check passed; running: it runs and has no check; failed: see reason; not checked: not started. */
  result: 'healthy' | 'running' | 'failed' | 'not checked';
  /** The check, e.g. `serial "login:"`. */
  check?: string;
  reason?: string;
  /** When it was seen healthy (or running, without a check) (ISO 8601). */
  at?: string;
}

/** A health check of one started guest (src/health/ probes, adapted by the caller). */
export interface HealthWaiter {
  /** What is checked, for the report: `serial "login:"`, `tcp 10.0.0.5:5432`. */
  description: string;
  /** Resolves when the guest is healthy; throws a FerryError saying why not (its timeout included). */
  wait(): Promise<void>;
}

/** What the start phase needs to know of a guest's restore. */
export interface RestoredGuest {
  guest: string;
  ok: boolean;
  error?: string;
  /** The config files written on its host, the one to start from first. */
  configFiles: string[];
  /** It ran on its target before this run: `this-plan` when an earlier run of this plan started it. */
  alreadyRunning?: 'this-plan' | 'elsewhere';
}

export interface SiteBootOptions {
  dryRun: boolean;
  /** The runner that reaches `host` (this machine's, or ssh). */
  runnerFor: (host: HostDefinition) => CommandRunner;
  /** Where this machine records which guests a run of a plan started. */
  journalDir: string;
  /** How long a started guest may take to show as running. */
  runningTimeoutMs: number;
  /** The health check of a guest, if it has one. */
  healthCheck?: (guest: PlannedGuest, host: HostDefinition) => HealthWaiter | undefined;
  log: (line: string) => void;
}

export interface GuestBoot {
  start: StartOutcome;
  health: HealthOutcome;
}

/** Which guests this machine started for which plan, so a re-run knows its own. */
export class StartJournal {
  constructor(private readonly dir: string) {}

  private file(host: string, guest: string): string {
    return path.join(this.dir, `started-${createHash('sha256').update(`${host}\0${guest}`).digest('hex').slice(0, 32)}.json`);
  }

  /**
   * Whether the run of `plan` (its creation time) started `guest` on `host`
   * from `restorePoint`, or set out to: the record is written before the start
   * commands run too, so a definition they left (virsh define succeeded, start
   * failed, or ferry was killed between them) is known as this plan's own.
   */
  startedBy(host: string, guest: string, plan: string, restorePoint: string): boolean {
    const r = this.read(host, guest);
    return r?.plan === plan && r.restorePoint === restorePoint;
  }

  private read(host: string, guest: string): { plan?: string; restorePoint?: string; stage?: string } | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.file(host, guest), 'utf8')) as { plan?: string; restorePoint?: string; stage?: string };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof SyntaxError) return undefined;
      throw new StorageError(`cannot read the site restore journal in ${this.dir}: ${describeSystemError(err)}`, { cause: err });
    }
  }

  /** `starting`: written before its start commands run (virsh define may succeed and start fail); `started`: it runs. */
  record(host: string, guest: string, plan: string, restorePoint: string, stage: 'starting' | 'started'): void {
    const file = this.file(host, guest);
    try {
      replaceFileSync(file, JSON.stringify({ plan, restorePoint, host, guest, stage, time: new Date().toISOString() }), { mode: 0o600, folderMode: 0o700 });
    } catch (err) {
      throw new StorageError(`cannot write the site restore journal in ${this.dir}: ${describeSystemError(err)}`, { cause: err });
    }
  }
}

/** Boot groups in ascending order, each guest in it in plan order (priority, then name). */
function bootGroups(plan: SitePlan): PlannedGuest[][] {
  const groups = new Map<number, PlannedGuest[]>();
  for (const g of plan.guests) groups.set(g.bootGroup, [...(groups.get(g.bootGroup) ?? []), g]);
  return [...groups.keys()].sort((a, b) => a - b).map((k) => [...groups.get(k)!].sort((a, b) => a.bootPriority - b.bootPriority || (a.guest < b.guest ? -1 : 1)));
}

/**
 * Starts the restored guests group by group (see the top of this file) and
 * says, per guest, how its start and its health check went. A dry run prints
 * the commands it would run, in order, and runs none.
 */
export async function bootSite(
  plan: SitePlan,
  restored: ReadonlyMap<string, RestoredGuest>,
  site: SiteHosts,
  opts: SiteBootOptions,
): Promise<Map<string, GuestBoot>> {
  const out = new Map<string, GuestBoot>();
  const journal = new StartJournal(opts.journalDir);
  let stoppedBy: string | undefined;
  for (const group of bootGroups(plan)) {
    const groupNumber = group[0]!.bootGroup;
    if (stoppedBy !== undefined) {
      for (const g of group) out.set(g.guest, { start: { result: 'skipped', reason: stoppedBy }, health: { result: 'not checked' } });
      continue;
    }
    const started: Array<{ g: PlannedGuest; host: HostDefinition }> = [];
    for (const g of group) {
      const r = restored.get(g.guest);
      const host = site.hosts.find((h) => h.name === g.host);
      if (!r || !r.ok || !host) {
        const reason = r?.alreadyRunning === 'elsewhere' ? 'already runs there; not touched' : `not restored${r?.error ? `: ${r.error}` : ''}`;
        out.set(g.guest, { start: { result: 'skipped', reason }, health: { result: 'not checked' } });
        continue;
      }
      const config = r.configFiles[0];
      if (r.alreadyRunning === 'this-plan') {
        opts.log(`${host.name}: ${g.guest} runs already, started by an earlier run of this plan`);
        out.set(g.guest, { start: { result: 'already running', reason: 'started by an earlier run of this plan' }, health: { result: 'not checked' } });
        if (!opts.dryRun) started.push({ g, host });
        continue;
      }
      if (opts.dryRun) {
        for (const c of startCommands(host, g.guest, config ?? '?')) opts.log(`${host.name}: ${describeCommand(c.cmd, c.args)}   (boot group ${groupNumber})`);
        out.set(g.guest, { start: { result: 'not started', reason: 'dry run' }, health: { result: 'not checked' } });
        continue;
      }
      out.set(g.guest, await startOne(g, host, config, journal, plan, opts));
      if (out.get(g.guest)!.start.result === 'started') started.push({ g, host });
    }
    if (opts.dryRun) {
      if (group.some((g) => out.get(g.guest)!.start.result === 'not started')) opts.log(`(wait until boot group ${groupNumber} runs and passes its health checks)`);
      continue;
    }
    await Promise.all(started.map(async ({ g, host }) => {
      out.get(g.guest)!.health = await waitHealthy(g, host, opts);
    }));
    const bad = group.filter((g) => {
      const b = out.get(g.guest)!;
      return b.start.result === 'skipped' || b.start.result === 'failed' || b.health.result === 'failed';
    });
    if (bad.length > 0) {
      stoppedBy = `boot group ${groupNumber} did not come up (${bad.map((g) => `${g.guest}: ${out.get(g.guest)!.health.reason ?? out.get(g.guest)!.start.reason}`).join('; ')}); later groups were not started`;
      opts.log(`boot group ${groupNumber}: ${bad.length} of ${group.length} guest(s) failed (${bad.map((g) => g.guest).join(', ')}); later boot groups are not started`);
    } else {
      opts.log(`boot group ${groupNumber}: ${group.length} guest(s) up`);
    }
  }
  return out;
}

async function startOne(g: PlannedGuest, host: HostDefinition, config: string | undefined, journal: StartJournal, plan: SitePlan, opts: SiteBootOptions): Promise<GuestBoot> {
  const notChecked: HealthOutcome = { result: 'not checked' };
  if (!config) return { start: { result: 'failed', reason: 'no config was written for it' }, health: notChecked };
  const runner = opts.runnerFor(host);
  try {
    // Asked again right before: something may have started it while the data was written.
    const presence = await guestPresence(runner, host, g.guest);
    if (presence.runs) {
      opts.log(`${host.name}: guest ${g.guest} already runs on host ${host.name} (${presence.how}); not touched`);
      return { start: { result: 'skipped', reason: `already runs on host ${host.name} (${presence.how}); not touched` }, health: notChecked };
    }
    journal.record(host.name, g.guest, plan.created, g.restorePoint, 'starting');
    await startGuest(runner, host, g.guest, config);
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    opts.log(`${host.name}: ${g.guest} did not start: ${err.message}`);
    return { start: { result: 'failed', reason: err.message }, health: notChecked };
  }
  journal.record(host.name, g.guest, plan.created, g.restorePoint, 'started');
  const at = new Date().toISOString();
  opts.log(`${host.name}: ${g.guest} started (${startCommands(host, g.guest, config).map((c) => describeCommand(c.cmd, c.args)).join('; ')})`);
  return { start: { result: 'started', at }, health: notChecked };
}

/** Running (asked of the hypervisor until it says so), then its health check if it has one. */
async function waitHealthy(g: PlannedGuest, host: HostDefinition, opts: SiteBootOptions): Promise<HealthOutcome> {
  const runner = opts.runnerFor(host);
  const since = Date.now();
  const check = opts.healthCheck?.(g, host);
  const withCheck = check ? { check: check.description } : {};
  try {
    for (;;) {
      if ((await guestPresence(runner, host, g.guest)).runs) break;
      if (Date.now() - since > opts.runningTimeoutMs) {
        throw new HypervisorError(`${host.name}: ${g.guest} was started but does not run after ${Math.round(opts.runningTimeoutMs / 1000)} s (it stopped, or crashed; see the host's hypervisor log)`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    if (!check) {
      opts.log(`${host.name}: ${g.guest} runs (no health check configured)`);
      return { result: 'running', at: new Date().toISOString() };
    }
    await check.wait();
  } catch (err) {
    if (!(err instanceof FerryError)) throw err;
    opts.log(`${host.name}: ${g.guest} is not healthy: ${err.message}`);
    return { result: 'failed', ...withCheck, reason: err.message };
  }
  const seconds = ((Date.now() - since) / 1000).toFixed(1);
  opts.log(`${host.name}: ${g.guest} healthy (${check.description}, ${seconds} s after its start)`);
  return { result: 'healthy', ...withCheck, at: new Date().toISOString() };
}
