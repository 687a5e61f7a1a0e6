// Waiting for a conflicting lock to go (`--wait-lock`): acquireLock tried
// again and again, with growing, jittered pauses, until it succeeds or the
// wait is over. Every try is a whole acquireLock, so the stale-lock rules of
// lock.ts apply on each (a crashed holder's lock is removed on the next try,
// one unrefreshed for the stale age as soon as it is), and this process holds
// no lock between tries: two waiters never block each other for good.
// Between real tries it only looks (conflictingLockListed): an exclusive
// try-lock written every few seconds for hours would make other commands
// that do not wait fail with exit 5. A real try still comes at least every
// REAL_TRY_EVERY_MS, so a stale lock of a dead host is removed in time.
import { Repository } from './repository';
import { acquireLock, conflictingLockListed, LockConflictError, LockMode, LockOptions, LockScope, RepositoryLock } from './lock';

export interface LockWait {
  /** How long to wait, in all, for conflicting locks to go. */
  maxWaitMs: number;
  /** Each time a try finds a conflict and another try follows: who holds it, how long waited so far. */
  onConflict?: (conflict: LockConflictError, waitedMs: number) => void;
  /** The lock was taken after waiting this long (only when there was a conflict). */
  onAcquired?: (waitedMs: number) => void;
}

/** The first pause between tries; it doubles up to MAX_PAUSE_MS, each time ±25 %. */
const FIRST_PAUSE_MS = 500;
const MAX_PAUSE_MS = 10_000;
/** The longest time between real tries (writes) while looks say the conflict is still there. */
const REAL_TRY_EVERY_MS = 60_000;

/** acquireLock, waiting up to `wait.maxWaitMs` for a conflicting lock to go; without `wait`, acquireLock itself. */
export async function acquireLockWaiting(
  where: Repository | LockScope,
  mode: LockMode,
  command: string,
  opts: LockOptions,
  wait: LockWait | undefined,
): Promise<RepositoryLock> {
  if (!wait) return acquireLock(where, mode, command, opts);
  const started = performance.now();
  let pause = FIRST_PAUSE_MS;
  let conflicts = 0;
  let lastTry = 0;
  for (;;) {
    const waited = performance.now() - started;
    const lastChance = waited >= wait.maxWaitMs;
    if (conflicts > 0 && !lastChance && performance.now() - lastTry < REAL_TRY_EVERY_MS && (await conflictingLockListed(where, mode, opts.hostId))) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait.maxWaitMs - waited, pause * (0.75 + Math.random() / 2))));
      pause = Math.min(pause * 2, MAX_PAUSE_MS);
      continue;
    }
    lastTry = performance.now();
    try {
      const lock = await acquireLock(where, mode, command, opts);
      if (conflicts > 0) wait.onAcquired?.(performance.now() - started);
      return lock;
    } catch (err) {
      if (!(err instanceof LockConflictError)) throw err;
      const waited = performance.now() - started;
      const left = wait.maxWaitMs - waited;
      if (left <= 0) {
        throw new LockConflictError(err.location, `${err.holder}, still after waiting ${(waited / 1000).toFixed(1)} s`, err.advice);
      }
      conflicts++;
      wait.onConflict?.(err, waited);
      // The last try comes at the end of the wait, not a pause before it.
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, pause * (0.75 + Math.random() / 2))));
      pause = Math.min(pause * 2, MAX_PAUSE_MS);
    }
  }
}
