// Scopes a quiesce in driver tests: the guest is always released, also when the body throws.
import type { GuestHooks, GuestInfo, HypervisorDriver, QuiesceHandle } from '../../src/hypervisor/driver';

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
