// Retries transient storage failures (5xx, throttling, timeouts, resets,
// responses cut short) with exponential backoff and jitter, a bounded number
// of times, and says so through a logger. Permanent failures (wrong
// credentials, missing bucket, NotFound) go straight through: retrying them
// only turns one clear error into a storm of identical requests.
import { Backend, NotFoundError, ObjectBytes, ObjectInfo, ObjectLock, ObjectType } from './backend';
import { StorageRequestError, isTransientError } from './errors';

export interface RetryEvent {
  location: string;
  operation: 'read' | 'readRange' | 'write' | 'stat' | 'list' | 'remove' | 'retention' | 'extendRetention';
  type: ObjectType;
  name?: string;
  /** The attempt that failed, 1-based. */
  attempt: number;
  maxAttempts: number;
  /** How long until the next attempt. */
  delayMs: number;
  error: Error;
}

export interface RetryOptions {
  /** Attempts per operation, the first one included (default 8: ~1 min of backoff in total). */
  maxAttempts?: number;
  /** Delay cap of the first retry (default 500 ms); it doubles each time. */
  baseDelayMs?: number;
  /** Largest delay between two attempts (default 30 s). */
  maxDelayMs?: number;
  /** Told about every retry before it sleeps; the CLI logs a line. */
  onRetry?: (event: RetryEvent) => void;
  /** Decides what is worth retrying (default isTransientError). */
  isRetryable?: (err: unknown) => boolean;
}

export class RetryBackend implements Backend {
  readonly location: string;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly retryable: (err: unknown) => boolean;
  readonly objectLock?: ObjectLock;

  constructor(private readonly inner: Backend, private readonly options: RetryOptions = {}) {
    this.location = inner.location;
    const lock = inner.objectLock;
    if (lock) {
      // Setting a retention is safe to repeat: the same date again changes nothing.
      this.objectLock = {
        mode: lock.mode,
        days: lock.days,
        retention: (type, name) => this.retry('retention', type, name, () => lock.retention(type, name)),
        extendRetention: (type, name, to) => this.retry('extendRetention', type, name, () => lock.extendRetention(type, name, to)),
      };
    }
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 8);
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.retryable = options.isRetryable ?? isTransientError;
  }

  read(type: ObjectType, name: string): Promise<Buffer> {
    return this.retry('read', type, name, () => this.inner.read(type, name));
  }

  readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    return this.retry('readRange', type, name, () => this.inner.readRange(type, name, offset, length, into));
  }

  write(type: ObjectType, name: string, data: ObjectBytes): Promise<void> {
    // Safe to repeat: a write replaces the whole object, and a failed one left nothing behind.
    return this.retry('write', type, name, () => this.inner.write(type, name, data));
  }

  stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    return this.retry('stat', type, name, () => this.inner.stat(type, name));
  }

  remove(type: ObjectType, name: string): Promise<void> {
    return this.retry('remove', type, name, () => this.inner.remove(type, name));
  }

  /**
   * A listing that fails part-way is started again from the top; names already
   * handed out are skipped, so the caller sees each object once.
   */
  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const seen = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const info of this.inner.list(type)) {
          if (seen.has(info.name)) continue;
          seen.add(info.name);
          yield info;
        }
        return;
      } catch (err) {
        await this.backoff(err, attempt, 'list', type);
      }
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async retry<T>(operation: RetryEvent['operation'], type: ObjectType, name: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        await this.backoff(err, attempt, operation, type, name);
      }
    }
  }

  /** Rethrow unless the error is transient and attempts remain; otherwise log and sleep. */
  private async backoff(err: unknown, attempt: number, operation: RetryEvent['operation'], type: ObjectType, name?: string): Promise<void> {
    if (err instanceof NotFoundError || !this.retryable(err)) throw err;
    if (attempt >= this.maxAttempts) {
      // Say that retrying already happened, so nobody wraps this in another retry loop.
      if (err instanceof StorageRequestError && attempt > 1) {
        throw new StorageRequestError(`${err.message} (gave up after ${attempt} attempts)`, err.status, err.code, { cause: err });
      }
      throw err;
    }
    // "Equal jitter": at least half the exponential step, so retries do spread out,
    // and random in the other half, so many clients do not retry in lockstep.
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
    this.options.onRetry?.({
      location: this.location,
      operation,
      type,
      name,
      attempt,
      maxAttempts: this.maxAttempts,
      delayMs,
      error: err instanceof Error ? err : new Error(String(err)),
    });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}
