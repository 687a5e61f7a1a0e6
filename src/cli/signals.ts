// Signals and the exit they cause belong to the command line, not to the
// library (restic's cmd/restic/cleanup.go): library code registers what must be
// undone if the process is stopped (a paused guest to resume), and on SIGINT or
// SIGTERM this runs those hooks, then exits with the signal's exit code.
import { EXIT_CODES } from '../errors';
import type { CleanupHook, CleanupRegistry } from '../backup/fleetBackup';

/**
 * Run `body` with SIGINT/SIGTERM handlers installed: a signal runs every hook
 * registered at that moment (all of them, whatever one of them throws) and
 * ends the process with 130 (SIGINT) or 143 (SIGTERM).
 */
export async function withSignalCleanup<T>(body: (cleanup: CleanupRegistry) => Promise<T>): Promise<T> {
  const hooks = new Set<CleanupHook>();
  const registry: CleanupRegistry = {
    add(hook) {
      hooks.add(hook);
      return () => { hooks.delete(hook); };
    },
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const code = signal === 'SIGINT' ? EXIT_CODES.interrupted : EXIT_CODES.terminated;
    void Promise.allSettled([...hooks].map((h) => h(signal))).then(() => process.exit(code));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body(registry);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
