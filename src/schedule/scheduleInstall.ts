// Installing, reading back and removing the nightly schedule under a root
// directory ('/' for real; a temporary directory in tests). Which scheduler:
// systemd when it is the running init (/run/systemd/system exists, as
// sd_booted(3) tests), else cron.d when cron's folder is there. Files are
// written whole (temporary name, rename); a file ferry did not write (no
// WRITTEN_BY line) is never overwritten or removed. Starting the timer on the
// live system (systemctl) is the caller's business.
import { replaceFileSync } from '../host/replacedFile';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError, describeSystemError } from '../errors';
import {
  CRON_PATH, InstalledSchedule, SERVICE_PATH, ScheduleSettings, SchedulerKind, TIMER_PATH, TIMER_WANTS_LINK, WRITTEN_BY,
  describeInstalled, scheduleFiles,
} from './scheduleFiles';

export interface SchedulerChoice {
  kind: SchedulerKind;
  /** Why, in a few words, for the one line install prints. */
  reason: string;
}

const SYSTEMD_RUNNING = '/run/systemd/system';
const CRON_DIR = '/etc/cron.d';

/** Where a target-system path is under `root`. */
function under(root: string, p: string): string {
  return path.join(root, p);
}

/** systemd if it is the running init under `root`, else cron if cron.d exists; `forced` skips the detection. */
export function chooseScheduler(root: string, forced?: SchedulerKind): SchedulerChoice {
  if (forced) return { kind: forced, reason: 'as asked' };
  if (isDirectory(under(root, SYSTEMD_RUNNING))) return { kind: 'systemd', reason: `systemd is the init system here (${SYSTEMD_RUNNING} exists)` };
  if (isDirectory(under(root, CRON_DIR))) return { kind: 'cron', reason: `systemd is not running here (no ${SYSTEMD_RUNNING}) and cron reads ${CRON_DIR}` };
  throw new InputError(
    `${root}: neither is systemd running (no ${SYSTEMD_RUNNING}) nor is cron installed (no ${CRON_DIR}); install cron, or choose a scheduler explicitly`,
  );
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const ALL_FILES: Record<SchedulerKind, string[]> = { systemd: [SERVICE_PATH, TIMER_PATH], cron: [CRON_PATH] };

/** Our file's text, undefined if there is none; throws if something ferry did not write is there. */
function ownFile(root: string, p: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(under(root, p), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InputError(`${under(root, p)}: cannot read it: ${describeSystemError(err)}`);
  }
  if (!text.split('\n').includes(WRITTEN_BY)) {
    throw new InputError(`${under(root, p)} exists and was not written by 'ferry schedule install'; ferry leaves it alone: move it away, or schedule 'ferry nightly' there yourself`);
  }
  return text;
}

export interface InstallResult {
  kind: SchedulerKind;
  /** Paths written (on the target system). */
  written: string[];
  /** Files of the other scheduler an earlier install left, removed so that only one runs. */
  removed: string[];
}

/** Write the schedule's files (and the timer's enable link); an earlier install's files of the other kind go. */
export function installSchedule(root: string, kind: SchedulerKind, settings: ScheduleSettings): InstallResult {
  const files = scheduleFiles(kind, settings);
  const other: SchedulerKind = kind === 'systemd' ? 'cron' : 'systemd';
  // Every refusal before the first write.
  for (const p of [...ALL_FILES.systemd, ...ALL_FILES.cron]) ownFile(root, p);
  const configOnTarget = under(root, settings.configFile);
  if (!fs.existsSync(configOnTarget)) {
    throw new InputError(`config file ${configOnTarget} does not exist; every night would fail: write it first (see docs/ferry.conf.example)`);
  }
  try {
    for (const f of files) writeWhole(under(root, f.path), f.content);
    if (kind === 'systemd') {
      const link = under(root, TIMER_WANTS_LINK);
      fs.mkdirSync(path.dirname(link), { recursive: true, mode: 0o755 });
      fs.rmSync(link, { force: true });
      fs.symlinkSync(TIMER_PATH, link);
    }
  } catch (err) {
    throw new InputError(`${root}: cannot write the schedule: ${describeSystemError(err)}`);
  }
  return { kind, written: files.map((f) => f.path), removed: removeKind(root, other) };
}

function writeWhole(file: string, content: string): void {
  // 0644 whatever the umask: cron and systemd read it as root, others may look.
  replaceFileSync(file, content, { mode: 0o644, folderMode: 0o755 });
}

/** The installed schedule, if any (both kinds at once only if someone copied files by hand: systemd's is named). */
export function showSchedule(root: string): InstalledSchedule | undefined {
  for (const kind of ['systemd', 'cron'] as const) {
    const contents = new Map<string, string>();
    for (const p of ALL_FILES[kind]) {
      const text = ownFile(root, p);
      if (text !== undefined) contents.set(p, text);
    }
    if (contents.size === 0) continue;
    const { at, command } = describeInstalled(kind, contents);
    const files = [...contents.keys()];
    if (kind === 'systemd' && isSymlink(under(root, TIMER_WANTS_LINK))) files.push(TIMER_WANTS_LINK);
    return { kind, at: at ?? '(unreadable)', command: command ?? '(unreadable)', files };
  }
  return undefined;
}

function isSymlink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Remove every file of the schedule; returns the paths removed. */
export function removeSchedule(root: string): string[] {
  for (const p of [...ALL_FILES.systemd, ...ALL_FILES.cron]) ownFile(root, p);
  return [...removeKind(root, 'systemd'), ...removeKind(root, 'cron')];
}

function removeKind(root: string, kind: SchedulerKind): string[] {
  const removed: string[] = [];
  const paths = kind === 'systemd' ? [TIMER_WANTS_LINK, TIMER_PATH, SERVICE_PATH] : [CRON_PATH];
  for (const p of paths) {
    // The enable link is ours when it points at our timer.
    if (p === TIMER_WANTS_LINK ? !isSymlink(under(root, p)) || fs.readlinkSync(under(root, p)) !== TIMER_PATH : ownFile(root, p) === undefined) continue;
    try {
      fs.rmSync(under(root, p));
    } catch (err) {
      throw new InputError(`${under(root, p)}: cannot remove it: ${describeSystemError(err)}`);
    }
    removed.push(p);
  }
  return removed;
}
