// Helpers every driver uses to build a QuiesceHandle.
import type { GuestHooks, QuiesceHandle } from './driver';
import type { CommandRunner } from './commandRunner';
import { runGuestHook } from './hooks';

/**
 * Wraps a resume action so that it runs at most once successfully: a second
 * call after success is a no-op, a concurrent call shares the running attempt,
 * and a call after a failure tries again (a guest must never stay paused).
 */
export function onceSuccessful(action: () => Promise<void>): () => Promise<void> {
  let done = false;
  let inFlight: Promise<void> | undefined;
  return () => {
    if (done) return Promise.resolve();
    if (inFlight) return inFlight;
    inFlight = action().then(
      () => { done = true; inFlight = undefined; },
      (err: unknown) => { inFlight = undefined; throw err; },
    );
    return inFlight;
  };
}

/** A handle for a guest that needed nothing (shut off, already paused). */
export function nothingToRelease(guest: string): QuiesceHandle {
  return { guest, quiesced: false, release: () => Promise.resolve() };
}

/**
 * `quiesce = "none"`: the guest is not held, but its pre hook runs now and
 * its post hook on release (they may flush a database all the same).
 */
export async function hooksOnly(runner: CommandRunner, guest: string, hooks: GuestHooks): Promise<QuiesceHandle> {
  if (hooks.pre) await runGuestHook(runner, hooks.pre, guest, 'pre');
  return {
    guest,
    quiesced: false,
    release: onceSuccessful(async () => {
      if (hooks.post) await runGuestHook(runner, hooks.post, guest, 'post');
    }),
  };
}
