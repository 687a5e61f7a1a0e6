// Helpers every driver uses to build a QuiesceHandle and to scope one.
import type { GuestInfo, HypervisorDriver, GuestHooks, QuiesceHandle } from './driver';

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
 * Quiesces `guest`, runs `body`, and always releases the guest afterwards,
 * also when `body` throws. A release failure is thrown only if `body`
 * succeeded; otherwise the body's error wins and the release error is its cause.
 */
export async function withQuiesced<T>(
  driver: HypervisorDriver,
  guest: GuestInfo,
  body: (handle: QuiesceHandle) => Promise<T>,
  hooks?: GuestHooks,
): Promise<T> {
  const handle = await driver.quiesce(guest, hooks);
  let result: T;
  try {
    result = await body(handle);
  } catch (bodyError) {
    try {
      await handle.release();
    } catch (releaseError) {
      if (bodyError instanceof Error && bodyError.cause === undefined) {
        (bodyError as Error & { cause?: unknown }).cause = releaseError;
      }
    }
    throw bodyError;
  }
  await handle.release();
  return result;
}
