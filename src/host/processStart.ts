// When a process of this host started, from /proc: how a live pid is told
// apart from the process that once had it (pids are reused, from low numbers
// again after a reboot).
import * as fs from 'node:fs';

/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux ferry runs on). */
const TICKS_PER_SECOND = 100;

/** When `pid` started, or undefined when /proc cannot tell (no such process, no /proc). */
export function processStartTime(pid: number): Date | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold anything: state is field 3, starttime 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[22 - 3]);
    const boot = bootTime();
    if (!Number.isFinite(ticks) || !Number.isFinite(boot)) return undefined;
    return new Date(boot * 1000 + (ticks * 1000) / TICKS_PER_SECOND);
  } catch {
    return undefined;
  }
}

let bootSeconds: number | undefined;

/** When this host booted (seconds since the epoch), read from /proc/stat once: it does not change. */
function bootTime(): number {
  bootSeconds ??= Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1]);
  return bootSeconds;
}

