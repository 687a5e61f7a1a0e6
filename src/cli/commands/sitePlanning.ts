// What `site plan` and `site restore --hosts` (plan and restore in one go)
// share: the restore point choice from --at/--guest/--tag, every pool
// measured on its host, and the plan built from them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Repository } from '../../repo/repository';
import { DoesNotFitError, StorageError, UsageError, describeSystemError } from '../../errors';
import { writeFileAtomically } from '../../restore/atomicFile';
import { checkGlobs, matchesGlob } from '../../config/glob';
import { ExecFileCommandRunner } from '../../hypervisor/commandRunner';
import type { SiteHosts } from '../../site/hostsFile';
import type { PoolCapacity } from '../../site/placement';
import { measurePool } from '../../site/poolCapacity';
import { hostCommandRunner } from '../../site/sshCommandRunner';
import { type SitePlan, buildSitePlan, chooseRestorePoints, parsePlanTime } from '../../site/sitePlan';

export interface PlanSelection {
  at?: string;
  guest: string[];
  tag: string[];
}

/** The plan options, checked before the repository is opened (bad input fails fast). */
export function checkPlanSelection(sel: PlanSelection): Date | undefined {
  const at = sel.at === undefined ? undefined : parsePlanTime(sel.at);
  if (sel.at !== undefined && !at) throw new UsageError(`--at: '${sel.at}' is not a time; use 2026-11-30 or 2026-11-30T02:00`);
  checkGlobs(sel.guest, '--guest');
  return at;
}

/** The plan for `hosts` of the restore points `sel` chooses; how many guests were chosen. */
export async function planSite(repo: Repository, hosts: SiteHosts, sel: PlanSelection): Promise<{ plan: SitePlan; chosen: number }> {
  const at = checkPlanSelection(sel);
  const { points, damaged } = await repo.listAllRestorePoints();
  for (const d of damaged) console.error(`ferry: warning: restore point ${d.id.slice(0, 8)} cannot be read (${d.problem}); it is left out of the plan`);
  const chosen = chooseRestorePoints(points, {
    ...(at ? { at } : {}),
    guest: (name) => sel.guest.length === 0 || sel.guest.some((p) => matchesGlob(name, p)),
    tags: sel.tag,
  });
  if (chosen.length === 0) {
    throw new UsageError(`site plan: no restore point in ${repo.location} matches${at ? ` at or before ${at.toISOString()}` : ''}${sel.guest.length ? ` for --guest ${sel.guest.join(', ')}` : ''}${sel.tag.length ? ` with --tag ${sel.tag.join(', ')}` : ''}`);
  }
  const plan = buildSitePlan(chosen, hosts, await measurePools(hosts), { repository: repo.location, ...(at ? { at } : {}) });
  return { plan, chosen: chosen.length };
}

/** Every pool of every host, measured on its host; hosts in parallel. */
async function measurePools(site: SiteHosts): Promise<PoolCapacity[]> {
  const local = new ExecFileCommandRunner();
  const perHost = await Promise.all(
    site.hosts.map(async (host) => {
      const runner = hostCommandRunner(host, local, site.sshConfig);
      const out: PoolCapacity[] = [];
      for (const pool of host.pools) out.push(await measurePool(runner, host, pool));
      return out;
    }),
  );
  return perHost.flat();
}

/**
 * `site restore --hosts` without a plan file: the plan made now, written to
 * `dir` so the run can be repeated (`--plan`) and read later; refused when a
 * guest does not fit, as `site plan` does.
 */
export async function planForRestore(repo: Repository, hosts: SiteHosts, sel: PlanSelection, dir: string, log: (line: string) => void): Promise<SitePlan> {
  const { plan, chosen } = await planSite(repo, hosts, sel);
  const file = path.join(dir, `plan-${plan.created.replace(/[:.]/g, '-')}.json`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StorageError(`cannot create ${dir} for the plan: ${describeSystemError(err)}`, { cause: err });
  }
  await writeFileAtomically(file, async (temp) => fs.writeFileSync(temp, `${JSON.stringify(plan, null, 2)}\n`), 0, 0o600);
  if (plan.unplaced.length > 0) {
    for (const u of plan.unplaced) log(`ferry: ${u.guest} does not fit: ${u.reasons.join('; ')}`);
    throw new DoesNotFitError(`${plan.unplaced.length} of ${chosen} guest(s) do not fit the hosts of ${hosts.file} (see above); nothing was restored; add hosts or pools, or narrow the plan with --guest (plan in ${file})`);
  }
  log(`planned ${plan.guests.length} guest(s): ${plan.guests.map((g) => `${g.guest} → ${g.host}`).join(', ')}; plan written to ${file} (repeat exactly this restore with --plan ${file})`);
  return plan;
}
