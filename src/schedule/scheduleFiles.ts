// What `ferry schedule install` writes, as text (no file system here): a
// systemd service + timer, or one cron.d file where systemd is not the init.
// Both run `ferry nightly --config F` once a day at low CPU and I/O priority,
// never two at once: systemd does not start a service that is still running,
// and the cron line takes `flock -n` on a lock file first.
import { UsageError } from '../errors';

export type SchedulerKind = 'systemd' | 'cron';

/** Every file the schedule consists of carries this line, so `remove` deletes only files ferry wrote. */
export const WRITTEN_BY = "# Written by 'ferry schedule install'; 'ferry schedule remove' removes it.";

export const UNIT_NAME = 'ferry-nightly';
export const SERVICE_PATH = `/etc/systemd/system/${UNIT_NAME}.service`;
export const TIMER_PATH = `/etc/systemd/system/${UNIT_NAME}.timer`;
/** What `systemctl enable` makes for `WantedBy=timers.target`. */
export const TIMER_WANTS_LINK = `/etc/systemd/system/timers.target.wants/${UNIT_NAME}.timer`;
export const CRON_PATH = `/etc/cron.d/${UNIT_NAME}`;
export const CRON_LOCK_PATH = `/run/lock/${UNIT_NAME}.lock`;
/** Random delay before a night starts (systemd RandomizedDelaySec; shuf in cron), so many hosts do not start at one second. */
export const RANDOM_DELAY_SEC = 300;
/** The exit status `flock -n -E` gives when the previous night still holds the lock (no ferry exit code uses it). */
const FLOCK_BUSY = 75;

export interface TimeOfDay {
  hour: number;
  minute: number;
}

export interface ScheduleSettings {
  at: TimeOfDay;
  /** ferry's config file, as the scheduled run sees it (absolute). */
  configFile: string;
  /** How to start ferry: absolute paths, e.g. [node, .../bin/ferry]. */
  ferryCommand: readonly string[];
}

export interface ScheduleFile {
  /** Absolute path on the target system. */
  path: string;
  content: string;
}

/** `02:00`, `2:30`, `23:59` → hour and minute. */
export function parseTimeOfDay(text: string): TimeOfDay {
  const m = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(text.trim());
  if (!m) throw new UsageError(`schedule time '${text}' is not a time of day; use HH:MM on a 24-hour clock, e.g. 02:00`);
  return { hour: Number(m[1]), minute: Number(m[2]) };
}

export function formatTimeOfDay(t: TimeOfDay): string {
  return `${String(t.hour).padStart(2, '0')}:${String(t.minute).padStart(2, '0')}`;
}

/**
 * Paths go into unit files and a crontab unquoted: only characters neither
 * systemd (specifiers %, variables $, quotes, spaces) nor sh treats specially.
 */
function checkPath(what: string, p: string): void {
  if (!p.startsWith('/') || !/^[A-Za-z0-9._+/@,:=-]+$/.test(p)) {
    throw new UsageError(
      `${what} '${p}': must be an absolute path of letters, digits and . _ + / @ , : = - only (a unit file or crontab would have to escape the others); use such a path, e.g. a symlink`,
    );
  }
}

function nightlyCommand(s: ScheduleSettings): string {
  for (const part of s.ferryCommand) checkPath('ferry program', part);
  checkPath('config file', s.configFile);
  return [...s.ferryCommand, 'nightly', '--config', s.configFile].join(' ');
}

/** The files of the chosen scheduler, in the order they are written (a timer after its service). */
export function scheduleFiles(kind: SchedulerKind, s: ScheduleSettings): ScheduleFile[] {
  const command = nightlyCommand(s);
  const at = formatTimeOfDay(s.at);
  if (kind === 'systemd') {
    const service = [
      WRITTEN_BY,
      '[Unit]',
      'Description=ferry nightly: backup, retention, prune, check, offsite sync and report',
      'Wants=network-online.target',
      'After=network-online.target local-fs.target',
      '',
      '[Service]',
      // oneshot: the timer does not start it again while it runs, so two nights never overlap.
      'Type=oneshot',
      `ExecStart=${command}`,
      'Nice=10',
      'IOSchedulingClass=idle',
      'CPUSchedulingPolicy=batch',
      // A stop or the end of the run must not kill ferry's quiesce watchdogs with it: one may still
      // be resuming or starting a guest that ferry held.
      'KillMode=process',
      '',
    ].join('\n');
    const timer = [
      WRITTEN_BY,
      '[Unit]',
      `Description=ferry nightly at ${at}`,
      '',
      '[Timer]',
      `OnCalendar=*-*-* ${at}:00`,
      // A night missed while the machine was off runs at the next boot.
      'Persistent=true',
      `RandomizedDelaySec=${RANDOM_DELAY_SEC}`,
      `Unit=${UNIT_NAME}.service`,
      '',
      '[Install]',
      'WantedBy=timers.target',
      '',
    ].join('\n');
    return [
      { path: SERVICE_PATH, content: service },
      { path: TIMER_PATH, content: timer },
    ];
  }
  const cron = [
    WRITTEN_BY,
    `# ferry nightly every day at ${at} (after a random delay of up to ${RANDOM_DELAY_SEC} s), at low CPU and I/O priority.`,
    `# flock -n skips a night while the previous one still runs (and says so in cron's mail).`,
    '# Unlike the systemd timer, cron does not catch up on a night the machine was off.',
    'SHELL=/bin/sh',
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    `${s.at.minute} ${s.at.hour} * * * root ${cronCommand(command, CRON_LOCK_PATH, RANDOM_DELAY_SEC)}`,
    '',
  ].join('\n');
  return [{ path: CRON_PATH, content: cron }];
}

/** The shell command of the cron line (no `%`, which cron would turn into a newline). */
export function cronCommand(command: string, lockFile: string, delaySec: number): string {
  return (
    `sleep $(shuf -i 0-${delaySec} -n 1); ` +
    `flock -n -E ${FLOCK_BUSY} ${lockFile} nice -n 10 ionice -c 3 chrt --batch 0 ${command}; ` +
    `[ $? -ne ${FLOCK_BUSY} ] || echo "ferry nightly: not started: the previous night still runs (it holds ${lockFile})"`
  );
}

/** What an installed schedule says, read back from its files. */
export interface InstalledSchedule {
  kind: SchedulerKind;
  at: string;
  command: string;
  files: string[];
}

/** Reads the time and command back from files `scheduleFiles` wrote; undefined parts if they were edited beyond recognition. */
export function describeInstalled(kind: SchedulerKind, contents: ReadonlyMap<string, string>): { at?: string; command?: string } {
  if (kind === 'systemd') {
    const at = /^OnCalendar=\*-\*-\* (\d\d:\d\d):00$/m.exec(contents.get(TIMER_PATH) ?? '')?.[1];
    const command = /^ExecStart=(.*)$/m.exec(contents.get(SERVICE_PATH) ?? '')?.[1];
    return { at, command };
  }
  const line = /^(\d+) (\d+) \* \* \* root .* chrt --batch 0 (.*?); \[/m.exec(contents.get(CRON_PATH) ?? '');
  return line ? { at: formatTimeOfDay({ hour: Number(line[2]), minute: Number(line[1]) }), command: line[3] } : {};
}
