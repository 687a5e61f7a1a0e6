// Repository locks: a sealed object under locks/. Backups take shared locks
// (many may run at once); destructive commands take an exclusive one. A lock
// is stale when its process is gone (same host) or it has not been refreshed
// for STALE_AFTER_MS, so a crashed nightly run never blocks the next forever.
import * as os from 'node:os';
import { Repository } from './repository';
import { LockedError } from '../errors';
import { randomBytes } from '../crypto/aead';
import { sealObject, openObject } from '../crypto/objectCodec';
import { NotFoundError } from '../storage/backend';

export const REFRESH_EVERY_MS = 5 * 60 * 1000;
export const STALE_AFTER_MS = 30 * 60 * 1000;

export interface LockInfo {
  host: string;
  pid: number;
  /** Last refresh, ISO time. */
  time: string;
  exclusive: boolean;
  command: string;
}

export class RepositoryLock {
  private timer?: NodeJS.Timeout;
  private released = false;

  constructor(private readonly repo: Repository, readonly name: string, private info: LockInfo) {
    this.timer = setInterval(() => void this.refresh(), REFRESH_EVERY_MS);
    this.timer.unref();
  }

  private async refresh(): Promise<void> {
    if (this.released) return;
    this.info = { ...this.info, time: new Date().toISOString() };
    await this.repo.backend.write('locks', this.name, encodeLock(this.repo, this.info)).catch(() => undefined);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.repo.backend.remove('locks', this.name);
  }
}

function encodeLock(repo: Repository, info: LockInfo): Buffer {
  return sealObject(repo.keys.dataKey, 'lock', Buffer.from(JSON.stringify(info)));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isStale(info: LockInfo, now = Date.now()): boolean {
  if (info.host === os.hostname() && !processAlive(info.pid)) return true;
  return now - Date.parse(info.time) > STALE_AFTER_MS;
}

/** All locks, with the undecodable ones reported as `undefined` info. */
export async function listLocks(repo: Repository): Promise<{ name: string; info?: LockInfo }[]> {
  const out: { name: string; info?: LockInfo }[] = [];
  for await (const obj of repo.backend.list('locks')) {
    try {
      const plain = openObject(repo.keys.dataKeys, 'lock', await repo.backend.read('locks', obj.name));
      out.push({ name: obj.name, info: plain ? (JSON.parse(plain.toString('utf8')) as LockInfo) : undefined });
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err; // released while we listed
    }
  }
  return out;
}

/**
 * Take a lock. Stale locks are removed on the way. Write first, then look:
 * if two processes race, both see each other and the loser backs off.
 */
export async function acquireLock(repo: Repository, exclusive: boolean, command: string): Promise<RepositoryLock> {
  const info: LockInfo = { host: os.hostname(), pid: process.pid, time: new Date().toISOString(), exclusive, command };
  const name = randomBytes(16).toString('hex');
  await repo.backend.write('locks', name, encodeLock(repo, info));
  const lock = new RepositoryLock(repo, name, info);
  for (const other of await listLocks(repo)) {
    if (other.name === name || !other.info) continue;
    if (isStale(other.info)) {
      await repo.backend.remove('locks', other.name);
      continue;
    }
    if (exclusive || other.info.exclusive) {
      await lock.release();
      const o = other.info;
      throw new LockedError(
        `${repo.location} is locked (${o.exclusive ? 'exclusive' : 'shared'}) by '${o.command}', pid ${o.pid} on ${o.host} since ${o.time}; wait for it to finish, or run 'ferry unlock' if that process is gone`,
      );
    }
  }
  return lock;
}

/** Remove stale locks (or all with `all`); returns how many were removed. */
export async function removeLocks(repo: Repository, all: boolean): Promise<number> {
  let removed = 0;
  for (const l of await listLocks(repo)) {
    if (all || !l.info || isStale(l.info)) {
      await repo.backend.remove('locks', l.name);
      removed++;
    }
  }
  return removed;
}
