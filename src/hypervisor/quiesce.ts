// Helpers every driver uses to build a QuiesceHandle.
import type { QuiesceHandle } from './driver';

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
