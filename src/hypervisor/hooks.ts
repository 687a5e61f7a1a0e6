// Runs a per-guest hook command (GuestHooks.pre / .post) on the host.
import type { CommandRunner } from './commandRunner';
import { runChecked } from './commandRunner';
import { UsageError } from '../errors';

/** Runs `argv` with `{name}` replaced by the guest name; throws HypervisorError on failure. */
export async function runGuestHook(
  runner: CommandRunner,
  argv: readonly string[],
  guestName: string,
  which: 'pre' | 'post',
): Promise<void> {
  if (argv.length === 0 || argv[0] === '') {
    throw new UsageError(`${which} hook for guest ${guestName} is empty: give a command and its arguments`);
  }
  const [cmd, ...args] = argv.map((a) => a.split('{name}').join(guestName));
  try {
    await runChecked(runner, cmd!, args);
  } catch (err) {
    if (err instanceof Error) err.message = `${which} hook for guest ${guestName}: ${err.message}`;
    throw err;
  }
}
