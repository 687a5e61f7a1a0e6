// A failed request to a remote store, with what the wrappers need to decide
// on it: the HTTP status and the S3 error code or Node error code. The message
// stays the one line the CLI prints; status and code are for RetryBackend.
import { StorageError } from '../errors';

export class StorageRequestError extends StorageError {
  constructor(
    message: string,
    /** HTTP status, when the server answered at all. */
    readonly status: number | undefined,
    /** S3 error code (`SlowDown`, `AccessDenied`) or Node error code (`ECONNRESET`), or one of ours (`TruncatedResponse`). */
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Codes that mean "the request may well succeed if sent again". */
const TRANSIENT_CODES = new Set([
  // Server-side S3 codes for overload and internal trouble.
  'SlowDown', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'TooManyRequests',
  'RequestTimeout', 'RequestTimeoutException', 'InternalError', 'ServiceUnavailable',
  // Transport: the connection or the response went wrong on the way.
  'TimeoutError', 'ETIMEDOUT', 'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE',
  'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'TruncatedResponse',
]);

/**
 * Whether a storage failure is worth retrying: 5xx, 408, 429, throttling,
 * timeouts, resets and responses cut short. Every other 4xx is the caller's
 * problem (credentials, permissions, a missing bucket) and retrying it only
 * multiplies the damage.
 */
export function isTransientError(err: unknown): boolean {
  if (err instanceof StorageRequestError) {
    if (err.status !== undefined && err.status > 0) {
      if (err.status >= 500 || err.status === 408 || err.status === 429) return true;
      if (err.status >= 400) return false;
    }
    return TRANSIENT_CODES.has(err.code);
  }
  // Other backends may let a raw Node error through.
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && TRANSIENT_CODES.has(code);
}

/**
 * A removal the storage refuses because the object's S3 Object Lock retention
 * has not passed yet: not a failure of the store, and not transient within a
 * run. Prune leaves such an object for a later run (docs/FORMAT.md rule 6).
 */
export class ObjectLockedError extends StorageRequestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 403, 'AccessDenied', options);
  }
}
