// What every repository command starts with: resolve --repo / FERRY_REPO to a
// Backend, get the passphrase, open the repository, take the lock, and always
// release the lock and the worker pool at the end.
import { Backend } from '../storage/backend';
import { LocalBackend } from '../storage/local';
import { Repository } from '../repo/repository';
import { acquireLock } from '../repo/lock';
import { PipelinePool } from '../workers/pipelinePool';
import { UsageError } from '../errors';
import { obtainPassword, PasswordOptions } from './password';

export interface RepoOptions extends PasswordOptions {
  repo?: string;
}

export function repoLocation(opts: RepoOptions): string {
  const location = opts.repo ?? process.env.FERRY_REPO;
  if (!location) throw new UsageError('no repository: pass --repo PATH or set FERRY_REPO');
  return location;
}

export function openBackendAt(location: string): Backend {
  if (/^s3:/.test(location)) {
    // Loaded lazily: the S3 SDK takes ~150 ms to load and local runs never need it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { openBackend } = require('../storage/open') as { openBackend: (l: string) => Backend };
    return openBackend(location);
  }
  return new LocalBackend(location);
}

export async function openRepository(opts: RepoOptions): Promise<Repository> {
  const backend = openBackendAt(repoLocation(opts));
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
