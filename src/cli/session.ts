// What every repository command starts with: resolve --repo / FERRY_REPO to a
// Backend, get the passphrase, open the repository, take the lock, and always
// release the lock and the worker pool at the end.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Backend, OBJECT_LOCK_MODES, ObjectLockMode } from '../storage/backend';
import type { RetryEvent } from '../storage/retry';
import { LocalBackend } from '../storage/local';
import { openBackend, wrapBackend } from '../storage/open';
import { Repository } from '../repo/repository';
import { preferIntactCopies } from '../repo/packHealth';
import { DEFAULT_LOCK_TIMING, LockMode, LockOptions, LockTiming, loadHostId, newHostId, RepositoryLock } from '../repo/lock';
import { FencedBackend } from '../storage/fenced';
import { PipelinePool } from '../workers/pipelinePool';
import { InputError, UsageError } from '../errors';
import { obtainPassword, PasswordOptions } from './password';
import type { StateOptions } from './restorePointRecord';
import { acquireLockWaiting } from '../repo/lockWait';
import { lockWaitFromOptions } from './lockWaitOption';
import { DEFAULT_CONFIG_PATH, type FerryConfig, loadFerryConfig, parseMemoryLimit } from '../config/ferryConfig';
import { parseByteRate } from '../units/byteSize';

export interface RepoOptions extends PasswordOptions, StorageOptions, StateOptions {
  repo?: string;
  /** `--wait-lock 60s`: wait this long for a conflicting lock to go (src/cli/lockWaitOption.ts). */
  waitLock?: string;
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
  /** `--object-lock-mode COMPLIANCE|GOVERNANCE`, with --object-lock-days (default COMPLIANCE). */
  objectLockMode?: string;
  /**
   * Keep the file remembering each object's retention (storage/retentionMemo.ts) even
   * where the object cache is off for another reason (sync's target); --no-cache turns both off.
   */
  rememberRetention?: boolean;
  /** `--insecure-http`: allow s3:http:// to a host other than this one. */
  insecureHttp?: boolean;
}

export function repoLocation(opts: RepoOptions): string {
  const location = opts.repo ?? process.env.FERRY_REPO;
  if (!location) throw new UsageError('no repository: pass --repo PATH or set FERRY_REPO');
  return location;
}

/** `500K`, `10M`, `1.5M/s`, `2G` → bytes per second, or a usage error naming `what` (a flag). */
export function parseRate(text: string, what: string): number {
  const rate = parseByteRate(text);
  if (rate === undefined) throw new UsageError(`${what}: '${text}' is not a rate; use bytes per second with K, M or G, e.g. 10M`);
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

/** The bandwidth and Object Lock flags read, or a usage error for the first that is not valid. */
export function parseStorageOptions(opts: StorageOptions): { rateLimit: { uploadBytesPerSec?: number; downloadBytesPerSec?: number }; lockDays?: number; lockMode?: ObjectLockMode } {
  const rateLimit = {
    uploadBytesPerSec: opts.limitUpload ? parseRate(opts.limitUpload, '--limit-upload') : undefined,
    downloadBytesPerSec: opts.limitDownload ? parseRate(opts.limitDownload, '--limit-download') : undefined,
  };
  const lockDays = opts.objectLockDays === undefined ? undefined : parseWholeNumber(opts.objectLockDays, '--object-lock-days', 1, 36500);
  return { rateLimit, lockDays, lockMode: parseObjectLockMode(opts.objectLockMode, lockDays) };
}

/**
 * A location to a Backend, through the one factory (storage/open.ts: local
 * directory, s3:, anything else refused) and its standard stack of wrappers:
 * rate limit innermost, retry around it, cache outermost. A local directory
 * gets only the rate limit, if asked.
 */
export function openBackendAt(location: string, opts: StorageOptions = {}): Backend {
  const { rateLimit, lockDays, lockMode } = parseStorageOptions(opts);
  const concurrency = s3Concurrency(opts);
  const inner = openBackend(location, {
    insecureHttp: opts.insecureHttp,
    s3: {
      objectLockDays: lockDays,
      objectLockMode: lockMode,
      maxSockets: Math.max(concurrency * 2, 16),
      partConcurrency: Math.min(concurrency, 8),
      // A pack up to 64 MiB (default 16 MiB) goes up in one PUT, not parts + 2 calls: measured with
      // 32 MiB packs, 246 → ~40 requests per GiB on a sync. Packs are already uploaded several at a time.
      multipartThreshold: 64 * 1024 * 1024,
    },
  });
  const local = inner instanceof LocalBackend;
  if (local && lockDays !== undefined) {
    throw new UsageError(`--object-lock-days: ${location} is a local directory; Object Lock applies to S3 repositories only`);
  }
  return wrapBackend(inner, {
    rateLimit,
    // A local directory's errors are not transient: no retry (wrapBackend retries any backend given retry options).
    retry: local ? undefined : { onRetry: logRetry },
    cacheDir: local || opts.cache === false ? undefined : cacheDirFor(inner.location),
    retentionMemoFile: local || (opts.cache === false && !opts.rememberRetention) ? undefined : path.join(cacheDirFor(inner.location), 'object-retention'),
  });
}

/** `--object-lock-mode`: checked before anything is opened, so a bad one writes nothing. */
function parseObjectLockMode(text: string | undefined, lockDays: number | undefined): ObjectLockMode | undefined {
  if (text === undefined) return undefined;
  const mode = OBJECT_LOCK_MODES.find((m) => m === text.toUpperCase());
  if (!mode) {
    throw new UsageError(`--object-lock-mode: '${text}' is not an Object Lock mode; use COMPLIANCE (the default: nobody can shorten or lift the lock) or GOVERNANCE (users allowed to bypass it can)`);
  }
  if (lockDays === undefined) throw new UsageError('--object-lock-mode: give --object-lock-days N too; the mode is for the retention that sets');
  return mode;
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

/**
 * This host's id file: `$XDG_STATE_HOME/ferry/host-id` (default
 * ~/.local/state). Tests give each simulated host its own XDG_STATE_HOME.
 */
export function hostIdFile(): string {
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'ferry', 'host-id');
}

/**
 * Lock timing. FERRY_TEST_LOCK_STALE_MS / FERRY_TEST_LOCK_REFRESH_MS exist for
 * the test suite only (seconds instead of 30 / 5 minutes); not documented.
 */
function lockTiming(): LockTiming {
  const ms = (name: string, fallback: number): number => {
    const text = process.env[name];
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name}: '${text}' must be a whole number of milliseconds`);
    return n;
  };
  const timing = {
    staleAfterMs: ms('FERRY_TEST_LOCK_STALE_MS', DEFAULT_LOCK_TIMING.staleAfterMs),
    refreshEveryMs: ms('FERRY_TEST_LOCK_REFRESH_MS', DEFAULT_LOCK_TIMING.refreshEveryMs),
  };
  if (timing.refreshEveryMs >= timing.staleAfterMs) throw new UsageError('FERRY_TEST_LOCK_REFRESH_MS must be less than FERRY_TEST_LOCK_STALE_MS');
  return timing;
}

/**
 * This host's id. A state directory that cannot be used must not stop the
 * nightly backup: the run then uses an id of its own, and says what that costs.
 */
function hostId(): string {
  try {
    return loadHostId(hostIdFile());
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    process.stderr.write(`ferry: warning: ${err.message}; this run uses a host id of its own, so a lock it leaves behind is removed only after 30 minutes, not at once\n`);
    return newHostId();
  }
}

/** How this process takes locks: its host id and the timing. */
export function lockOptions(onLost?: LockOptions['onLost']): LockOptions {
  return { hostId: hostId(), timing: lockTiming(), onLost };
}

/**
 * Run `body` holding `locks`, and fail with the LockLostError if one was
 * lost meanwhile (whatever the body did: its errors are then consequences of
 * the fenced backend), or if it is found gone or late at the end.
 */
export async function whileLocked<T>(locks: RepositoryLock[], body: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await body();
  } catch (err) {
    const lost = locks.find((l) => l.lost)?.lost;
    throw lost ?? err;
  }
  for (const lock of locks) await lock.verify();
  return result;
}

export async function openRepository(opts: RepoOptions): Promise<Repository> {
  return (await openFencedRepository(opts)).repo;
}

/** The repository over a FencedBackend: a command that loses its lock can no longer touch it. */
async function openFencedRepository(opts: RepoOptions): Promise<{ repo: Repository; fenced: FencedBackend }> {
  const fenced = new FencedBackend(openBackendAt(repoLocation(opts), opts));
  try {
    return { repo: await Repository.open(fenced, await obtainPassword(opts), warnSkippedKeySlot), fenced };
  } catch (err) {
    await fenced.close();
    throw err;
  }
}

/** Open, lock, run, and clean up whatever happens. */
export async function withRepository<T>(
  opts: RepoOptions,
  lockMode: LockMode | 'none',
  command: string,
  body: (repo: Repository, lock: RepositoryLock | undefined) => Promise<T>,
): Promise<T> {
  const wait = lockWaitFromOptions(opts); // a bad --wait-lock is refused before anything is opened
  const { repo, fenced } = await openFencedRepository(opts);
  try {
    if (lockMode === 'none') return await body(repo, undefined);
    const lock = await acquireLockWaiting(repo, lockMode, command, lockOptions((err) => fenced.fence(err)), wait);
    try {
      return await whileLocked([lock], () => body(repo, lock));
    } finally {
      await lock.release();
    }
  } finally {
    await repo.backend.close();
  }
}

/** Worker threads: FERRY_THREADS if set (tests, small hosts), else one per core. */
export function workerThreads(): number | undefined {
  return Number(process.env.FERRY_THREADS) || undefined;
}

/** The memory budget of this run (`--memory`, or ferry.conf's memory_limit where a command reads it); undefined: the default. */
let memoryBudget: number | undefined;

/** `--memory SIZE`, set for the whole run before a command's action (main.ts). */
export function useMemoryOption(opts: { memory?: string }): void {
  if (opts.memory === undefined) return;
  memoryBudget = parseMemoryLimit(opts.memory);
  if (memoryBudget === undefined) throw new UsageError(`--memory: '${opts.memory}' is not a memory size of at least 96M; use K, M or G, e.g. 160M`);
}

/** ferry.conf's memory_limit, unless --memory was given. */
export function useConfiguredMemoryLimit(bytes: number | undefined): void {
  memoryBudget ??= bytes;
}

/**
 * ferry.conf for a command that reads it when there is one: `--config FILE`,
 * else the default path if it exists. Its memory_limit becomes the run's
 * budget (unless --memory was given), so every such command keeps it.
 */
export function loadOptionalConfig(file: string | undefined): FerryConfig | undefined {
  const config = file ? loadFerryConfig(file) : fs.existsSync(DEFAULT_CONFIG_PATH) ? loadFerryConfig(DEFAULT_CONFIG_PATH) : undefined;
  useConfiguredMemoryLimit(config?.memoryLimit);
  return config;
}

/** The run's memory budget in bytes, or undefined for the default (workers/memoryBudget.ts). */
export function memoryBudgetBytes(): number | undefined {
  return memoryBudget;
}

/**
 * For a command that will run a worker pool, called once the repository is unlocked: start
 * the pool's threads now, so they load while the index is read (PipelinePool.startEarly).
 * Not before the unlock: Argon2id's 64 MiB and two loading isolates at once raise the peak.
 */
export function startWorkersEarly(): void {
  PipelinePool.startEarly(workerThreads(), memoryBudget);
}

/** Run with a worker pool that is always torn down, sized by the memory budget. */
export async function withPool<T>(repo: Repository, body: (pool: PipelinePool) => Promise<T>): Promise<T> {
  const pool = new PipelinePool(repo.keys, repo.settings, workerThreads(), memoryBudget);
  try {
    return await body(pool);
  } finally {
    await pool.close();
  }
}

/** A key slot with out-of-bounds KDF parameters is never run (crypto/keySlot.ts); say which was skipped. */
function warnSkippedKeySlot(id: string, problem: string): void {
  process.stderr.write(`ferry: warning: key slot keys/${id} skipped: ${problem}; remove it with 'ferry key remove ${id}' if it is not yours\n`);
}

/** Commands that can work around a damaged index file say so and go on. */
export function warnDamagedIndex(name: string): void {
  process.stderr.write(`ferry: warning: index/${name} is damaged and ignored; its packs are read from their own headers ('ferry check' reports it)\n`);
}

/**
 * The index as every reading command needs it: index files (a damaged one
 * warned about and skipped), packs no index names found again from their own
 * headers (in memory only), and intact copies preferred over damaged packs.
 */
export async function loadIndexForReading(repo: Repository): Promise<void> {
  await repo.loadIndex(warnDamagedIndex);
  const packs = await repo.listPacks();
  await repo.indexOrphanPacks({ keep: 'memory-only', packs });
  await preferIntactCopies(repo, packs);
}
