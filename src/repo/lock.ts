// Repository locks: a sealed object under locks/. Backups take shared locks
// (many may run at once); destructive commands take an exclusive one.
//
// A lock is stale, and anyone may remove it, when
//  - its host id is this host's and its process is gone (a crashed run on this
//    host; the host id, random and kept in a file, and not the hostname, which
//    two machines can share), or
//  - the storage has not seen it rewritten for the stale age: its mtime (the
//    storage's clock) is older than the stale age compared with the mtime of
//    the lock the reader has just written itself. Neither the writer's stamp
//    nor the reader's clock decides, so a host whose clock is off cannot make
//    a live lock look stale, nor a dead one look fresh.
// A full `sync` has no key: its locks are plaintext (KEYLESS_MAGIC || JSON,
// no hostname), readable by anyone; a lock it cannot read (sealed) counts as
// a conflict where it asks so (at the target).
// A holder rewrites its lock well inside the stale age. It gives up (and the
// command fails with LockLostError) when a rewrite fails, finds the lock
// removed (it is never recreated), or comes later than the stale age by the
// holder's own monotonic clock (it was suspended: someone may have taken the
// lock away meanwhile).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Repository } from './repository';
import { InputError, LockedError, LockLostError, describeSystemError } from '../errors';
import { randomBytes } from '../crypto/aead';
import { sealObject, openObject } from '../crypto/objectCodec';
import { Backend, NotFoundError } from '../storage/backend';
import { processAlive } from '../host/processAlive';

/** Where locks live, and the data key if the caller has one (a full sync has none). */
export interface LockScope {
  backend: Backend;
  location: string;
  /** Every data key of the ring, newest first (locks are sealed with the first): a host that has not seen a rotation yet seals with an older one. */
  dataKeys?: readonly Buffer[];
}

export function repositoryScope(repo: Repository): LockScope {
  return { backend: repo.backend, location: repo.location, dataKeys: repo.keys.dataKeys };
}

/** First bytes of a lock written without the key. A sealed lock starts with a random nonce instead. */
export const KEYLESS_MAGIC = Buffer.from('FERRYLCK', 'ascii');

export interface LockTiming {
  /** A lock the storage has not seen rewritten for this long is stale. */
  staleAfterMs: number;
  /** Holders rewrite their lock this often; well inside `staleAfterMs`. */
  refreshEveryMs: number;
}

export const DEFAULT_LOCK_TIMING: LockTiming = { staleAfterMs: 30 * 60 * 1000, refreshEveryMs: 5 * 60 * 1000 };

export interface LockOptions {
  /** This host's id (loadHostId): locks with it and a dead pid are this host's crashed runs. */
  hostId: string;
  timing?: LockTiming;
  /** Called once when the lock is lost, e.g. to fence the backend. */
  onLost?: (err: LockLostError) => void;
  /**
   * A live lock this process cannot read (sealed, and it has no key) conflicts.
   * A keyless sync sets it at the target, where a forget or prune it cannot see
   * would delete what it copies.
   */
  unreadableConflicts?: boolean;
}

export interface LockInfo {
  /** Hostname; empty in keyless locks (they are plaintext and should not name the host). */
  host: string;
  /** Random per-host id (32 hex digits); absent in locks of ferry before it. */
  hostId?: string;
  pid: number;
  /** Last refresh by the holder's clock, ISO time: for people to read, not for staleness. */
  time: string;
  exclusive: boolean;
  command: string;
}

const HOST_ID = /^[0-9a-f]{32}$/;

/**
 * This host's id, kept in `file` (created with a random id the first time).
 * The caller chooses the file: the CLI uses the state directory.
 */
export function loadHostId(file: string): string {
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new InputError(`host id file ${file}: cannot read it: ${describeSystemError(err)}`);
  }
  if (text !== undefined) {
    if (!HOST_ID.test(text)) throw new InputError(`host id file ${file}: is not 32 hex digits; delete it and ferry makes a new one`);
    return text;
  }
  const id = newHostId();
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const temp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
    fs.writeFileSync(temp, `${id}\n`, { mode: 0o600, flag: 'wx' });
    // link, not rename: if another ferry created the file meanwhile, its id wins and both use it.
    try {
      fs.linkSync(temp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      fs.rmSync(temp, { force: true });
    }
  } catch (err) {
    throw new InputError(`host id file ${file}: cannot create it: ${describeSystemError(err)}`);
  }
  return loadHostId(file);
}

/** A fresh random host id (32 hex digits). */
export function newHostId(): string {
  return randomBytes(16).toString('hex');
}

export class RepositoryLock {
  private timer?: NodeJS.Timeout;
  private released = false;
  /** The refresh in flight, if any: release waits for it, so a refresh never writes a released lock back. */
  private refreshing?: Promise<void>;
  /** Monotonic time (ms) at which the last successful write of the lock began. */
  private lastWriteStart: number;
  /** Set once the lock is lost; the command must fail with it. */
  lost?: LockLostError;

  constructor(
    private readonly scope: LockScope,
    readonly name: string,
    private info: LockInfo,
    private readonly timing: LockTiming,
    private readonly onLost: ((err: LockLostError) => void) | undefined,
    writeStart: number,
  ) {
    this.lastWriteStart = writeStart;
    this.schedule();
  }

  private schedule(): void {
    // One refresh at a time: the next is planned when this one is done.
    this.timer = setTimeout(() => {
      this.refreshing = this.refresh().finally(() => (this.refreshing = undefined));
    }, this.timing.refreshEveryMs);
    this.timer.unref();
  }

  private lose(reason: string, cause?: unknown): void {
    if (this.lost || this.released) return;
    const what = this.info.exclusive ? 'exclusive' : 'shared';
    this.lost = new LockLostError(
      `${this.scope.location}: this ${this.info.command} lost its ${what} lock (locks/${this.name}): ${reason}; ` +
        `it stopped, and what it wrote so far may be incomplete: run 'ferry check', then run the command again`,
      { cause },
    );
    clearTimeout(this.timer);
    this.onLost?.(this.lost);
  }

  /** Lost when the last successful write is longer ago than the stale age: others may have removed it since. */
  private checkLateness(): boolean {
    const since = monotonicNow() - this.lastWriteStart;
    if (since <= this.timing.staleAfterMs) return true;
    this.lose(
      `it was last refreshed ${seconds(since)} ago, more than the stale age of ${seconds(this.timing.staleAfterMs)} ` +
        `(the process was suspended or starved), so another process may have removed it`,
    );
    return false;
  }

  /** Whether the lock is still there; loses it if not, or if the storage cannot say. */
  private async checkPresent(): Promise<boolean> {
    try {
      if (await this.scope.backend.stat('locks', this.name)) return true;
      this.lose('another process removed it (it is not recreated)');
    } catch (err) {
      this.lose(`cannot check it: ${describeSystemError(err)}`, err);
    }
    return false;
  }

  private async refresh(): Promise<void> {
    if (this.released || this.lost) return;
    if (!this.checkLateness() || !(await this.checkPresent()) || this.released) return;
    const start = monotonicNow();
    this.info = { ...this.info, time: new Date().toISOString() };
    try {
      await this.scope.backend.write('locks', this.name, encodeLock(this.scope, this.info));
    } catch (err) {
      this.lose(`refreshing it failed: ${describeSystemError(err)}`, err);
      return;
    }
    this.lastWriteStart = start;
    if (!this.released) this.schedule();
  }

  /** Throws the LockLostError if the lock is lost, late, or gone: before a command reports success. */
  async verify(): Promise<void> {
    if (!this.lost && this.checkLateness()) await this.checkPresent();
    if (this.lost) throw this.lost;
  }

  /**
   * verify() with the stricter bound of FORMAT.md's garbage-collection rule 3,
   * for a backup right before it writes a restore point naming blobs it did not
   * store itself: refreshed less than half the stale age ago by this process's
   * monotonic clock, so at least that long separates this check from the
   * earliest moment a prune can judge the lock stale and take the exclusive one.
   */
  async verifyFresh(): Promise<void> {
    const since = monotonicNow() - this.lastWriteStart;
    if (!this.lost && since >= this.timing.staleAfterMs / 2) {
      this.lose(
        `it was last refreshed ${seconds(since)} ago, more than half the stale age of ${seconds(this.timing.staleAfterMs)} ` +
          `(the process was suspended or starved), so a prune could remove what this restore point would name; nothing was written for it`,
      );
    }
    await this.verify();
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearTimeout(this.timer);
    await this.refreshing;
    // A lost lock is not ours to remove any more (the backend may be fenced too); it goes stale.
    if (!this.lost) await this.scope.backend.remove('locks', this.name);
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function monotonicNow(): number {
  return performance.now();
}

function encodeLock(scope: LockScope, info: LockInfo): Buffer {
  if (scope.dataKeys) return sealObject(scope.dataKeys[0]!, 'lock', Buffer.from(JSON.stringify(info)));
  return Buffer.concat([KEYLESS_MAGIC, Buffer.from(JSON.stringify({ ...info, host: '' }))]);
}

/** The lock's info, or undefined if this process cannot read it (sealed without our key, or damaged). */
function decodeLock(scope: LockScope, bytes: Buffer): LockInfo | undefined {
  let plain: Buffer | undefined;
  if (bytes.subarray(0, KEYLESS_MAGIC.length).equals(KEYLESS_MAGIC)) plain = bytes.subarray(KEYLESS_MAGIC.length);
  else if (scope.dataKeys) plain = openObject(scope.dataKeys, 'lock', bytes);
  if (!plain) return undefined;
  try {
    const info = JSON.parse(plain.toString('utf8')) as LockInfo;
    return typeof info === 'object' && info !== null && typeof info.exclusive === 'boolean' ? info : undefined;
  } catch {
    return undefined; // unreadable: judged by its age only
  }
}

/** Who holds a lock, for messages: the hostname, or the host id of a keyless lock. */
function holder(o: LockInfo): string {
  return o.host || `host id ${o.hostId ?? '?'}`;
}


export interface ListedLock {
  name: string;
  /** Undefined when this process cannot read it: sealed and no key here, another repository's, or damaged. */
  info?: LockInfo;
  /** Last modification by the storage's clock, if the backend reports it. */
  mtime?: number;
}

/**
 * Stale: this host's (same host id) with its process gone, or not rewritten
 * for the stale age as the storage's clock says: `storageNow` is the mtime of
 * a lock the reader has just written.
 */
export function isStale(lock: ListedLock, hostId: string, staleAfterMs: number, storageNow: number | undefined): boolean {
  if (lock.info?.hostId === hostId && !processAlive(lock.info.pid)) return true;
  return lock.mtime !== undefined && storageNow !== undefined && storageNow - lock.mtime > staleAfterMs;
}

/** All locks, with the undecodable ones reported as `undefined` info. */
export async function listLocks(scope: LockScope): Promise<ListedLock[]> {
  const out: ListedLock[] = [];
  for await (const obj of scope.backend.list('locks')) {
    try {
      out.push({ name: obj.name, mtime: obj.mtime, info: decodeLock(scope, await scope.backend.read('locks', obj.name)) });
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err; // released while we listed
    }
  }
  return out;
}

/**
 * A look without writing: whether a lock that would conflict with `mode` is
 * listed and not stale by what can be told without a write of our own (this
 * host's with its process gone). A waiter peeks between its real tries, so
 * its own exclusive try-locks do not knock out other commands meanwhile.
 */
export async function conflictingLockListed(where: Repository | LockScope, mode: LockMode, hostId: string): Promise<boolean> {
  const scope = where instanceof Repository ? repositoryScope(where) : where;
  for (const other of await listLocks(scope)) {
    if (isStale(other, hostId, Number.POSITIVE_INFINITY, undefined)) continue;
    if (mode === 'exclusive' || !other.info || other.info.exclusive) return true;
  }
  return false;
}

/** Write a new lock; returns its name and the monotonic time the write began. */
async function writeNewLock(scope: LockScope, info: LockInfo): Promise<{ name: string; writeStart: number }> {
  const name = randomBytes(16).toString('hex');
  const writeStart = monotonicNow();
  await scope.backend.write('locks', name, encodeLock(scope, info));
  return { name, writeStart };
}

function newLockInfo(hostId: string, mode: LockMode, command: string): LockInfo {
  return { host: os.hostname(), hostId, pid: process.pid, time: new Date().toISOString(), exclusive: mode === 'exclusive', command };
}

/** Many shared locks may be held at once; an exclusive one excludes every other lock. */
export type LockMode = 'shared' | 'exclusive';

/**
 * Take a lock. Stale locks are removed on the way. Write first, then look:
 * if two processes race, both see each other and the loser backs off.
 */
export async function acquireLock(where: Repository | LockScope, mode: LockMode, command: string, opts: LockOptions): Promise<RepositoryLock> {
  const scope = where instanceof Repository ? repositoryScope(where) : where;
  const timing = opts.timing ?? DEFAULT_LOCK_TIMING;
  const info = newLockInfo(opts.hostId, mode, command);
  const { name, writeStart } = await writeNewLock(scope, info);
  const lock = new RepositoryLock(scope, name, info, timing, opts.onLost, writeStart);
  try {
    const locks = await listLocks(scope);
    const storageNow = locks.find((l) => l.name === name)?.mtime;
    for (const other of locks) {
      if (other.name === name) continue;
      if (isStale(other, opts.hostId, timing.staleAfterMs, storageNow)) {
        await scope.backend.remove('locks', other.name);
        continue;
      }
      if (!other.info) {
        if (!opts.unreadableConflicts) continue; // another repository's, or damaged: it goes stale
        throw new LockConflictError(
          scope.location,
          `holds a lock this ${command} cannot read without the passphrase (locks/${other.name}), and it is not stale`,
          'give the passphrase (--password-file) so ferry can tell whether it conflicts, or wait for it to go',
        );
      }
      if (info.exclusive || other.info.exclusive) {
        const o = other.info;
        throw new LockConflictError(scope.location, `is locked (${o.exclusive ? 'exclusive' : 'shared'}) by '${o.command}', pid ${o.pid} on ${holder(o)} since ${o.time}`, lockAdvice(o));
      }
    }
  } catch (err) {
    await lock.release();
    throw err;
  }
  return lock;
}

/**
 * A live lock of another process conflicts with the one asked for (exit 5, as
 * locked). Its parts let a caller that waited say who still holds it.
 */
export class LockConflictError extends LockedError {
  constructor(
    readonly location: string,
    /** Who holds it, as a predicate of the location: "is locked (exclusive) by 'prune', pid 12 on host since ...". */
    readonly holder: string,
    /** What to do about it. */
    readonly advice: string,
  ) {
    super(`${location} ${holder}; ${advice}`);
  }
}

/**
 * What to do about a live lock. Plain `ferry unlock` removes only stale locks,
 * which this one is not: a lock of this host's running process is to wait
 * for; one of another host cannot be judged from here, so only `--all` removes it.
 */
export function lockAdvice(o: LockInfo): string {
  if (o.host === os.hostname()) return `wait for it to finish (pid ${o.pid} may be running on this host)`;
  return `wait for it to finish; if no ferry runs on ${holder(o)} any more, remove the lock with 'ferry unlock --all' (plain 'ferry unlock' removes only locks of dead processes of this host and locks not refreshed for ${DEFAULT_LOCK_TIMING.staleAfterMs / 60000} minutes)`;
}

/** Which locks `ferry unlock` removes: stale ones (of dead processes, or not refreshed for the stale age), or every one. */
export type LocksToRemove = 'stale' | 'all';

/** Remove the chosen locks; returns how many were removed. */
export async function removeLocks(repo: Repository, which: LocksToRemove, opts: LockOptions): Promise<number> {
  const timing = opts.timing ?? DEFAULT_LOCK_TIMING;
  const scope = repositoryScope(repo);
  // A lock of our own, written now, tells the storage's time; it blocks no one (shared) and goes at the end.
  const probe = await writeNewLock(scope, newLockInfo(opts.hostId, 'shared', 'unlock'));
  try {
    const locks = await listLocks(scope);
    const storageNow = locks.find((l) => l.name === probe.name)?.mtime;
    let removed = 0;
    for (const l of locks) {
      if (l.name === probe.name) continue;
      if (which === 'all' || !l.info || isStale(l, opts.hostId, timing.staleAfterMs, storageNow)) {
        await repo.backend.remove('locks', l.name);
        removed++;
      }
    }
    return removed;
  } finally {
    await repo.backend.remove('locks', probe.name);
  }
}
