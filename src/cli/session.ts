// What every repository command starts with: resolve --repo / FERRY_REPO to a
// Backend, get the passphrase, open the repository, take the lock, and always
// release the lock and the worker pool at the end.
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Backend } from '../storage/backend';
import type { RetryEvent } from '../storage/retry';
import { LocalBackend } from '../storage/local';
import { Repository } from '../repo/repository';
import { acquireLock } from '../repo/lock';
import { PipelinePool } from '../workers/pipelinePool';
import { UsageError } from '../errors';
import { obtainPassword, PasswordOptions } from './password';

export interface RepoOptions extends PasswordOptions, StorageOptions {
  repo?: string;
}

/** Global options that shape how a repository location is reached (see src/cli/main.ts). */
export interface StorageOptions {
  /** `--limit-upload 10M`: bytes per second (K, M, G; optional `/s`). */
  limitUpload?: string;
  limitDownload?: string;
  /** `--s3-concurrency N`: connections and transfers in flight. */
  s3Concurrency?: string;
  /** false with `--no-cache`. */
  cache?: boolean;
  /** `--object-lock-days N`: S3 Object Lock retention for every object written. */
  objectLockDays?: string;
  /** `--insecure-http`: allow s3:http:// to a host other than this one. */
  insecureHttp?: boolean;
}

export function repoLocation(opts: RepoOptions): string {
  const location = opts.repo ?? process.env.FERRY_REPO;
  if (!location) throw new UsageError('no repository: pass --repo PATH or set FERRY_REPO');
  return location;
}

const RATE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** `500K`, `10M`, `1.5M/s`, `2G` → bytes per second. */
export function parseRate(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?(?:\/s)?$/i.exec(text.trim());
  const rate = m ? Math.floor(Number(m[1]) * RATE_UNITS[m[2].toUpperCase()]) : NaN;
  if (!(rate >= 1)) throw new UsageError(`${what}: '${text}' is not a rate; use bytes per second with K, M or G, e.g. 10M`);
  return rate;
}

function parseWholeNumber(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${what}: '${text}' must be a whole number from ${min} to ${max}`);
  return n;
}

/** Transfers in flight for S3 (and for sync's copies); the SDK keeps up to this many connections. */
export function s3Concurrency(opts: StorageOptions): number {
  return opts.s3Concurrency === undefined ? DEFAULT_S3_CONCURRENCY : parseWholeNumber(opts.s3Concurrency, '--s3-concurrency', 1, 256);
}

const DEFAULT_S3_CONCURRENCY = 8;

/**
 * The cache directory for a remote location: `$XDG_CACHE_HOME/ferry/<hash>`
 * (default ~/.cache). Keyed by the location, not the repository id, because
 * the id is only known after reading `config` — which the cache is meant to
 * save. Two locations of one repository get two caches; that costs space, not
 * correctness (the cached objects are content-named and authenticated above).
 */
export function cacheDirFor(location: string): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  const key = createHash('sha256').update(location).digest('hex').slice(0, 32);
  return path.join(base, 'ferry', key);
}

/**
 * A location to a Backend. Local directories are used as they are (rate
 * limits if asked); S3 gets the standard stack of wrappers (open.ts,
 * wrapBackend): rate limit innermost, retry around it, cache outermost.
 */
export function openBackendAt(location: string, opts: StorageOptions = {}): Backend {
  const rateLimit = {
    uploadBytesPerSec: opts.limitUpload ? parseRate(opts.limitUpload, '--limit-upload') : undefined,
    downloadBytesPerSec: opts.limitDownload ? parseRate(opts.limitDownload, '--limit-download') : undefined,
  };
  const concurrency = s3Concurrency(opts);
  const lockDays = opts.objectLockDays === undefined ? undefined : parseWholeNumber(opts.objectLockDays, '--object-lock-days', 1, 36500);
  if (/^s3:/.test(location)) {
    // Loaded lazily: the S3 SDK takes ~150 ms to load and local runs never need it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const open = require('../storage/open') as typeof import('../storage/open');
    const inner = open.openBackend(location, {
      insecureHttp: opts.insecureHttp,
      s3: {
        objectLockDays: lockDays,
        maxSockets: Math.max(concurrency * 2, 16),
        partConcurrency: Math.min(concurrency, 8),
        // A default 32 MiB pack goes up in one PUT (1 request, not 4 parts + 2 calls): measured
        // 246 → ~40 requests per GiB on a sync. Packs are already uploaded several at a time.
        multipartThreshold: 64 * 1024 * 1024,
      },
    });
    return open.wrapBackend(inner, {
      rateLimit,
      retry: { onRetry: logRetry },
      cacheDir: opts.cache === false ? undefined : cacheDirFor(inner.location),
    });
  }
  if (lockDays !== undefined) {
    throw new UsageError(`--object-lock-days: ${location} is a local directory; Object Lock applies to S3 repositories only`);
  }
  const local = new LocalBackend(location);
  if (!rateLimit.uploadBytesPerSec && !rateLimit.downloadBytesPerSec) return local;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { RateLimitedBackend } = require('../storage/ratelimit') as typeof import('../storage/ratelimit');
  return new RateLimitedBackend(local, rateLimit);
}

/** Under cron a retry is worth a line in the mail: it explains a slow night. */
function logRetry(e: RetryEvent): void {
  process.stderr.write(
    `ferry: warning: ${e.location}: ${e.operation} ${e.type}${e.name ? `/${e.name.slice(0, 16)}` : ''} failed (${oneLine(e.error.message)}); ` +
      `retry ${e.attempt}/${e.maxAttempts - 1} in ${(e.delayMs / 1000).toFixed(1)} s\n`,
  );
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}

export async function openRepository(opts: RepoOptions): Promise<Repository> {
  const backend = openBackendAt(repoLocation(opts), opts);
  try {
    return await Repository.open(backend, await obtainPassword(opts));
  } catch (err) {
    await backend.close();
    throw err;
  }
}

export type LockMode = 'none' | 'shared' | 'exclusive';

/** Open, lock, run, and clean up whatever happens. */
export async function withRepository<T>(
  opts: RepoOptions,
  lockMode: LockMode,
  command: string,
  body: (repo: Repository) => Promise<T>,
): Promise<T> {
  const repo = await openRepository(opts);
  try {
    const lock = lockMode === 'none' ? undefined : await acquireLock(repo, lockMode === 'exclusive', command);
    try {
      return await body(repo);
    } finally {
      await lock?.release();
    }
  } finally {
    await repo.backend.close();
  }
}

/** Run with a worker pool that is always torn down. */
export async function withPool<T>(repo: Repository, body: (pool: PipelinePool) => Promise<T>): Promise<T> {
  const pool = new PipelinePool(repo);
  try {
    return await body(pool);
  } finally {
    await pool.close();
  }
}

/** Commands that can work around a damaged index file say so and go on. */
export function warnDamagedIndex(name: string): void {
  process.stderr.write(`ferry: warning: index/${name} is damaged and ignored; its packs are read from their own headers ('ferry check' reports it)\n`);
}
