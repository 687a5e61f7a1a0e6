// `ferry schedule install|show|remove`: the nightly job as a systemd timer
// (or a cron.d file where systemd is not the init), src/schedule/.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { FerryError, UsageError } from '../../errors';
import { DEFAULT_CONFIG_PATH } from '../../config/ferryConfig';
import { UNIT_NAME, formatTimeOfDay, parseTimeOfDay, type SchedulerKind } from '../../schedule/scheduleFiles';
import { chooseScheduler, installSchedule, removeSchedule, showSchedule } from '../../schedule/scheduleInstall';

interface RootOption {
  root: string;
}

const ROOT_HELP = 'write under this directory instead of / (for tests and images; systemctl is then not run)';

export function registerSchedule(program: Command): void {
  const schedule = program.command('schedule').description("run 'ferry nightly' every night: a systemd timer, or a cron.d file where systemd is not the init system");
  schedule
    .command('install')
    .description('write the timer and service (or cron.d file) for ferry nightly, at low CPU and I/O priority, never two nights at once')
    .option('--at <HH:MM>', 'time of day (local time; a random delay of up to 5 minutes is added)', '02:00')
    .option('--config <file>', "ferry's config file for the nightly run", DEFAULT_CONFIG_PATH)
    .option('--scheduler <kind>', 'systemd or cron instead of choosing by what runs here')
    .option('--root <dir>', ROOT_HELP, '/')
    .action((opts: RootOption & { at: string; config: string; scheduler?: string }) => {
      const at = parseTimeOfDay(opts.at);
      if (opts.scheduler !== undefined && opts.scheduler !== 'systemd' && opts.scheduler !== 'cron') {
        throw new UsageError(`--scheduler: '${opts.scheduler}' is not a scheduler; use systemd or cron`);
      }
      const root = rootOf(opts);
      const choice = chooseScheduler(root, opts.scheduler as SchedulerKind | undefined);
      console.log(`${choice.kind === 'systemd' ? 'systemd timer' : 'cron.d file'}: ${choice.reason}`);
      const result = installSchedule(root, choice.kind, {
        at,
        configFile: opts.config,
        // Absolute node and script: cron's PATH may not find node, and a unit needs absolute paths.
        ferryCommand: [process.execPath, path.resolve(process.argv[1]!)],
      });
      for (const p of result.removed) console.log(`removed ${path.join(root, p)} (the earlier ${choice.kind === 'systemd' ? 'cron' : 'systemd'} schedule)`);
      for (const p of result.written) console.log(`wrote ${path.join(root, p)}`);
      console.log(`ferry nightly --config ${opts.config} runs every day at ${formatTimeOfDay(at)}`);
      if (choice.kind === 'systemd') activateTimer(root, 'install');
    });
  schedule
    .command('show')
    .description('say which schedule is installed: scheduler, time, command, files')
    .option('--root <dir>', ROOT_HELP, '/')
    .option('--json', 'print it as JSON (null when none is installed)')
    .action((opts: RootOption & { json?: boolean }) => {
      const shown = showSchedule(rootOf(opts));
      if (opts.json) {
        console.log(JSON.stringify(shown ?? null));
        return;
      }
      if (!shown) {
        console.log("no ferry schedule is installed ('ferry schedule install' writes one)");
        return;
      }
      console.log(`${shown.kind === 'systemd' ? 'systemd timer' : 'cron.d file'}: every day at ${shown.at}`);
      console.log(`runs: ${shown.command}`);
      for (const f of shown.files) console.log(`file: ${f}`);
    });
  schedule
    .command('remove')
    .description("remove the schedule 'ferry schedule install' wrote (never files it did not write)")
    .option('--root <dir>', ROOT_HELP, '/')
    .action((opts: RootOption) => {
      const root = rootOf(opts);
      const installed = showSchedule(root);
      if (installed?.kind === 'systemd') activateTimer(root, 'remove');
      const removed = removeSchedule(root);
      if (removed.length === 0) console.log('no ferry schedule was installed');
      for (const p of removed) console.log(`removed ${path.join(root, p)}`);
      if (installed?.kind === 'systemd') activateTimer(root, 'removed');
    });
}

function rootOf(opts: RootOption): string {
  const root = path.resolve(opts.root);
  if (!fs.existsSync(root)) throw new UsageError(`--root: ${opts.root} does not exist`);
  return root;
}

/**
 * On the live system, tell systemd: load the new files and (re)start the timer
 * on install; stop it before removal and reload after. Not under --root, nor
 * where systemd is not running (it reads the files at its next start).
 */
function activateTimer(root: string, when: 'install' | 'remove' | 'removed'): void {
  if (root !== '/') return;
  if (!fs.existsSync('/run/systemd/system')) {
    if (when === 'install') console.log('systemd is not running here: the timer starts when it does');
    return;
  }
  const steps: string[][] =
    when === 'install' ? [['daemon-reload'], ['restart', `${UNIT_NAME}.timer`]] : when === 'remove' ? [['stop', `${UNIT_NAME}.timer`]] : [['daemon-reload']];
  for (const args of steps) {
    try {
      execFileSync('systemctl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const detail = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
      throw new FerryError(`systemctl ${args.join(' ')} failed: ${detail}; the files are in place: run it yourself`);
    }
  }
}
