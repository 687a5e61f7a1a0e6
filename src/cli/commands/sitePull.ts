// `ferry site restore --pull` on both ends (src/site/pulledRestore.ts): the
// controller's per-host callback, and the hidden `site restore-local --plan -`
// that the controller runs on each ssh host, reading its request from stdin.
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { EXIT_CODES, InputError, UsageError } from '../../errors';
import { ExecFileCommandRunner, type CommandRunner } from '../../hypervisor/commandRunner';
import type { SiteHosts } from '../../site/hostsFile';
import type { SitePlan } from '../../site/sitePlan';
import type { Repository } from '../../repo/repository';
import { type GuestRestoreReport, restoreSite } from '../../site/siteRestore';
import { StartJournal } from '../../site/siteBoot';
import { PULL_REPORT_FORMAT, type PullSettings, holdHostRunLock, parsePullRequest, pullHost, readRequestLine } from '../../site/pulledRestore';
import { stateDir } from '../restorePointRecord';
import { type RepoOptions, loadIndexForReading, withPool, startWorkersEarly, withRepository } from '../session';

/** How long a re-run on a host waits for the run of a killed controller to notice and stop. */
const WAIT_FOR_EARLIER_RUN_MS = 60_000;

/** The controller's side: `opts.pullHost` for restoreSite. */
export function pullHostRestorer(
  repo: Repository,
  plan: SitePlan,
  site: SiteHosts,
  settings: Omit<PullSettings, 'repository' | 'repositoryId' | 'sshConfig' | 'startedByThisPlan'> & { journalDir: string },
): (host: SiteHosts['hosts'][number], guests: SitePlan['guests']) => Promise<GuestRestoreReport[]> {
  const journal = new StartJournal(settings.journalDir);
  const full: PullSettings = {
    ...settings,
    repository: repo.location,
    repositoryId: repo.repositoryId.toString('hex'),
    ...(site.sshConfig ? { sshConfig: site.sshConfig } : {}),
    startedByThisPlan: (host, g) => journal.startedBy(host, g.guest, plan.created, g.restorePoint),
  };
  return (host, guests) => pullHost(host, guests, plan, full);
}

export function registerSiteRestoreLocal(site: Command): void {
  site
    .command('restore-local', { hidden: true })
    .description("the host's side of `site restore --pull`: restore this host's part of a plan, read from stdin with the passphrase, to its local pools")
    .requiredOption('--plan <file>', "'-': the request on stdin, as `site restore --pull` sends it over ssh")
    .action(async (opts: { plan: string }, cmd: Command) => {
      if (opts.plan !== '-') throw new UsageError("site restore-local: --plan must be '-' (the request comes on stdin from `ferry site restore --pull`)");
      const request = parsePullRequest(await readRequestLine(process.stdin));
      // The controller keeps our stdin open while it lives: its end means it was killed or lost the ssh connection.
      // Stop as a SIGKILL would stop us: the journal lets the next run continue.
      const controllerGone = () => {
        process.stderr.write('ferry: the controller went away (its ssh session closed); stopping here: run site restore --pull again to continue\n');
        process.exit(EXIT_CODES.failure);
      };
      process.stdin.on('end', controllerGone);
      process.stdin.on('error', controllerGone);
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      const journalDir = path.join(stateDir(ropts), 'site-restore');
      const release = await holdHostRunLock(journalDir, { waitMs: WAIT_FOR_EARLIER_RUN_MS });
      try {
        const reports = await restoreHere(request, { ...ropts, repo: request.repository, passphrase: Buffer.from(request.passphrase, 'base64') }, journalDir, new ExecFileCommandRunner());
        process.stdout.write(`${JSON.stringify({ format: PULL_REPORT_FORMAT, reports })}\n`);
      } finally {
        release();
        process.stdin.off('end', controllerGone);
        process.stdin.off('error', controllerGone);
        process.stdin.destroy();
      }
    });
}

async function restoreHere(request: ReturnType<typeof parsePullRequest>, ropts: RepoOptions, journalDir: string, local: CommandRunner): Promise<GuestRestoreReport[]> {
  return withRepository(ropts, 'shared', 'site restore-local', async (repo) => {
    startWorkersEarly();
    if (repo.repositoryId.toString('hex') !== request.repositoryId) {
      throw new InputError(`${repo.location}, as host ${request.host.name} reaches it, is another repository than the controller's; set repository = "…" for ${request.host.name} in the hosts file to where it reaches that one`);
    }
    await loadIndexForReading(repo);
    // Guests the controller started in an earlier run of this plan: that they run here is expected, not a conflict.
    const started = new StartJournal(journalDir);
    for (const name of request.startedByThisPlan) {
      const g = request.plan.guests.find((x) => x.guest === name);
      if (g) started.record(request.host.name, g.guest, request.plan.created, g.restorePoint, 'started');
    }
    const site: SiteHosts = { file: `the plan ${request.plan.hostsFile} sent by the controller`, hosts: [request.host], rules: [] };
    return withPool(repo, (pool) =>
      restoreSite(repo, pool, request.plan, site, {
        dryRun: request.dryRun,
        existing: request.existing,
        local,
        scratchDir: os.tmpdir(),
        journalDir,
        macs: request.macs,
        start: 'no-start',
        // Plain lines: the controller stamps and prints them.
        log: (line) => process.stderr.write(`${line}\n`),
      }),
    );
  });
}
