// `--wait-lock DURATION` (a global option, so every command that takes a
// repository lock has it): how long to wait for a conflicting lock, and the
// lines that say so on stderr. The waiting itself is src/repo/lockWait.ts.
import { UsageError } from '../errors';
import type { LockWait } from '../repo/lockWait';
import { parseDuration } from '../units/duration';
import { formatDuration } from './format';

/** `90`, `90s`, `10m`, `1.5h`, `500ms` → milliseconds (a bare number is seconds). */
export function parseWaitDuration(text: string): number {
  const ms = parseDuration(text, { bareUnit: 's' });
  if (ms === undefined || ms > 7 * 24 * 3_600_000) {
    throw new UsageError(`--wait-lock: '${text}' is not a duration; use a number with ms, s, m or h (up to a week), e.g. 60s or 10m`);
  }
  return ms;
}

/** The wait `--wait-lock` asks for, or undefined (fail at once with exit 5, as before). */
export function lockWaitFromOptions(opts: { waitLock?: string }): LockWait | undefined {
  if (opts.waitLock === undefined) return undefined;
  const maxWaitMs = parseWaitDuration(opts.waitLock);
  let said = '';
  return {
    maxWaitMs,
    // One line per holder (not per try): under cron it explains a late start in the mail.
    onConflict: (conflict) => {
      const text = `${conflict.location} ${conflict.holder}`;
      if (text === said) return;
      said = text;
      process.stderr.write(`ferry: ${text}; waiting up to ${formatDuration(maxWaitMs)} for it to go (--wait-lock)\n`);
    },
    onAcquired: (waitedMs) => process.stderr.write(`ferry: got the lock after waiting ${formatDuration(Math.round(waitedMs))}\n`),
  };
}
