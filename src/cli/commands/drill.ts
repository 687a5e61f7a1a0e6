// `ferry drill`: prove that restore points boot (issue 7 §4). For each
// selected guest its latest restore point is restored into a scratch
// directory, booted in an isolated QEMU and watched for its health signal.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { Command } from 'commander';
import { checkGlobs, matchesGlob } from '../../config/glob';
import { DEFAULT_CONFIG_PATH, settingsForGuest } from '../../config/ferryConfig';
import { chooseAccelerator } from '../../drill/accelerator';
import { type DrillResult, drillRestorePoint } from '../../drill/restoreDrill';
import { DrillUnprovenError, FleetFailedError, UsageError } from '../../errors';
import { ExecFileCommandRunner } from '../../hypervisor/commandRunner';
import { formatBytes, formatDuration, table } from '../format';
import { repeatable } from '../options';
import { reviewListing } from '../restorePointRecord';
import { type RepoOptions, loadIndexForReading, loadOptionalConfig, withPool, startWorkersEarly, withRepository } from '../session';

interface DrillCliOptions {
  guest: string[];
  all?: boolean;
  json?: boolean;
  keep?: boolean;
  config?: string;
  scratch?: string;
}

export function registerDrill(program: Command): void {
  program
    .command('drill')
    .description('restore the latest restore point of each selected guest to scratch storage, boot it in an isolated QEMU, wait for its health signal, report pass or fail')
    .option('--guest <pattern>', 'guests matching this name or pattern (repeatable)', repeatable, [])
    .option('--all', 'every guest in the repository')
    .option('--json', 'print the report as JSON')
    .option('--keep', 'keep each scratch directory (restored disks, console log) and print where')
    .option('--config <file>', `ferry's config file: the guests' health and health_timeout (default ${DEFAULT_CONFIG_PATH} if it exists)`)
    .option('--scratch <dir>', 'make the scratch directories here (default: the system temporary directory); needs room for the guests\' data')
    .action(async (opts: DrillCliOptions, cmd: Command) => {
      if (!opts.all && opts.guest.length === 0) throw new UsageError('drill: name the guests with --guest PATTERN (repeatable) or give --all');
      if (opts.all && opts.guest.length > 0) throw new UsageError('drill: give either --all or --guest, not both');
      checkGlobs(opts.guest, '--guest');
      const workDir = opts.scratch ?? os.tmpdir();
      if (!fs.existsSync(workDir) || !fs.statSync(workDir).isDirectory()) throw new UsageError(`--scratch ${workDir}: not a directory; give an existing directory with room for the guests' data`);
      const config = loadOptionalConfig(opts.config);
      const ropts = cmd.optsWithGlobals() as RepoOptions;
      const say = (line: string) => { if (!opts.json) process.stderr.write(`${line}\n`); };

      const results = await withRepository(ropts, 'shared', 'drill', async (repo) => {
        startWorkersEarly();
        await loadIndexForReading(repo);
        const listing = await repo.listAllRestorePoints();
        const seen = reviewListing(repo, ropts, listing, { warnDamaged: false });
        const guests = [...new Set(listing.points.map((p) => p.guest))].sort();
        const selected = opts.all ? guests : guests.filter((g) => opts.guest.some((p) => matchesGlob(g, p)));
        const unmatched = opts.guest.filter((p) => !guests.some((g) => matchesGlob(g, p)));
        if (unmatched.length > 0) throw new UsageError(`--guest ${unmatched.join(', ')}: no guest in the repository matches; \`ferry list\` shows its guests`);
        if (selected.length === 0) throw new UsageError('drill: the repository holds no restore points');
        const runner = new ExecFileCommandRunner();
        const accel = await chooseAccelerator(runner, { qemuBinary: 'qemu-system-x86_64', workDir });
        say(`drill: QEMU with ${accel.accel} (${accel.why})`);
        return withPool(repo, async (pool) => {
          const out: DrillResult[] = [];
          for (const guest of selected) {
            let rp;
            try {
              rp = await repo.findRestorePoint('latest', guest, { about: (id) => seen.about(id), listing });
            } catch (err) {
              out.push({ guest, restorePoint: '', time: '', outcome: 'failed', stage: 'restore', reason: (err as Error).message, restoreMs: 0, restoredBytes: 0, notes: [] });
              continue;
            }
            const settings = config ? settingsForGuest(config, guest) : undefined;
            const result = await drillRestorePoint(repo, pool, rp, {
              workDir, accel, runner,
              ...(settings?.health ? { health: settings.health } : {}),
              ...(settings?.healthTimeoutMs !== undefined ? { healthTimeoutMs: settings.healthTimeoutMs } : {}),
              keep: opts.keep ? 'scratch' : 'nothing',
              onStep: (step) => say(`drill: ${step}`),
            });
            say(`drill: ${summaryLine(result)}`);
            out.push(result);
          }
          return out;
        });
      });

      if (opts.json) console.log(JSON.stringify(results, null, 2));
      else printReport(results);
      const failed = results.filter((r) => r.outcome === 'failed');
      if (failed.length > 0) throw new FleetFailedError(`drill: ${failed.length} of ${results.length} guest(s) failed: ${failed.map((r) => `${r.guest} (${r.stage})`).join(', ')}`);
      const unproven = results.filter((r) => r.outcome === 'fsck-only');
      if (unproven.length > 0) throw new DrillUnprovenError(`drill: ${unproven.length} of ${results.length} guest(s) could not be booted here, only their file systems checked (fsck-only): ${unproven.map((r) => r.guest).join(', ')}`);
    });
}

function summaryLine(r: DrillResult): string {
  if (r.outcome === 'passed') return `${r.guest}: PASSED, healthy ${formatDuration(r.boot!.bootMs)} after start (${r.boot!.health.status === 'passed' ? r.boot!.health.detail : ''})`;
  if (r.outcome === 'fsck-only') return `${r.guest}: FSCK-ONLY (not booted; file systems: ${r.fsck!.map((c) => `${c.disk} p${c.partition} ${c.fileSystem ?? '-'} ${c.result}`).join(', ')})`;
  return `${r.guest}: FAILED at ${r.stage}: ${r.reason}`;
}

function printReport(results: DrillResult[]): void {
  console.log(table([
    ['GUEST', 'RESTORE POINT', 'TIME', 'RESULT', 'RESTORED', 'BOOT', 'HOW'],
    ...results.map((r) => [
      r.guest,
      r.restorePoint.slice(0, 8) || '-',
      r.time || '-',
      r.outcome === 'failed' ? `FAILED (${r.stage})` : r.outcome.toUpperCase(),
      r.restoredBytes ? formatBytes(r.restoredBytes) : '-',
      r.boot ? formatDuration(r.boot.bootMs) : '-',
      r.boot ? `${r.boot.method}, ${r.boot.accel}` : r.fsck ? 'fsck' : '-',
    ]),
  ]));
  for (const r of results) {
    if (r.reason) console.log(`${r.guest}: ${r.reason}`);
    for (const n of r.notes) console.log(`${r.guest}: note: ${n}`);
    for (const c of r.fsck ?? []) console.log(`${r.guest}: ${c.disk} partition ${c.partition}: ${c.fileSystem ?? 'no file system'}: ${c.result} (${c.detail})`);
    if (r.kept) console.log(`${r.guest}: kept ${r.kept}`);
  }
}
