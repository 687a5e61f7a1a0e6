// The storage seam. A Backend stores whole, immutable objects by (type, name);
// the repository above it never sees paths, buckets or HTTP. Cross-cutting
// behaviour (retries, rate limits, caching) wraps a Backend, never lives in one.
import { CorruptionError, StorageError } from '../errors';

/** Object kinds. 'restorepoints' are the repository's restore points (not src/snapshot/'s disk snapshots); 'syncs' the sync record (src/sync/syncRecord.ts). */
export type ObjectType = 'config' | 'keys' | 'data' | 'index' | 'restorepoints' | 'locks' | 'syncs';

export const OBJECT_TYPES: readonly ObjectType[] = ['config', 'keys', 'data', 'index', 'restorepoints', 'locks', 'syncs'];

/**
 * The folder (local, cache) or key prefix (S3) a type's objects live under.
 * Restore points live under `snapshots/`, the name the format has always
 * used (docs/FORMAT.md); every other type under its own name.
 */
export function objectFolder(type: ObjectType): string {
  return type === 'restorepoints' ? 'snapshots' : type;
}

export interface ObjectInfo {
  name: string;
  size: number;
  /**
   * Last modification, ms since the epoch, by the storage's own clock (file
   * mtime, S3 LastModified), when the backend knows it. Locks judge age by it
   * rather than by a writer's or reader's clock (src/repo/lock.ts).
   */
  mtime?: number;
}

/**
 * An object's bytes for a write: one Buffer, or its parts in order. Parts are
 * written as they are (a pack's blobs and its header), never joined into one
 * more pack-sized copy first, except where a storage API needs one body.
 */
export type ObjectBytes = Buffer | readonly Uint8Array[];

/** The parts of `bytes`, in order. */
export function objectParts(bytes: ObjectBytes): readonly Uint8Array[] {
  return Buffer.isBuffer(bytes) ? [bytes] : bytes;
}

/** Total length of `bytes`. */
export function objectLength(bytes: ObjectBytes): number {
  return objectParts(bytes).reduce((n, p) => n + p.length, 0);
}

/** `bytes` as one Buffer: the Buffer itself, or its parts joined (a copy). */
export function joinedObject(bytes: ObjectBytes): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.concat(bytes);
}

/** The first `length` bytes of `into`, as a Buffer to read into. */
export function readTarget(into: Uint8Array, length: number): Buffer {
  if (into.length < length) throw new RangeError(`a read of ${length} bytes does not fit in ${into.length}`);
  return Buffer.from(into.buffer, into.byteOffset, length);
}

/** `bytes` in `into` when given (copied to its start; a view of it returned), else `bytes` itself. */
export function placedInto(bytes: Uint8Array, into: Uint8Array | undefined): Buffer {
  if (!into) return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const target = readTarget(into, bytes.length);
  target.set(bytes);
  return target;
}

export interface Backend {
  /** Human-readable location, for messages: `/mnt/usb/ferry`, `s3:host/bucket/prefix`. */
  readonly location: string;

  /** Read a whole object. Throws NotFoundError if absent. */
  read(type: ObjectType, name: string): Promise<Buffer>;

  /**
   * Read `length` bytes at `offset`. Throws NotFoundError if absent, StorageError if short.
   * With `into` (at least `length` bytes) the bytes land at its start and a view of it is
   * returned: a caller that recycles its read buffers allocates none per read.
   */
  readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer>;

  /**
   * Store an object atomically: after a crash it is either absent or complete.
   * Durable when the promise resolves (fsync / S3 PUT acknowledged). The
   * caller may reuse `data`'s memory once the promise settles, not before.
   */
  write(type: ObjectType, name: string, data: ObjectBytes): Promise<void>;

  /**
   * An object written piece by piece and named when complete (a pack is named
   * by the hash of its bytes): its pieces go to storage as they come, not into
   * a pack-sized buffer first. Only a backend that can do so has it (a local
   * directory); `openObjectStream` gives every other one a stream that
   * collects the pieces and calls `write` at commit.
   */
  openStream?(type: ObjectType): Promise<ObjectStream>;

  /** Size of an object, or undefined if absent. */
  stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined>;

  /** All complete objects of a type (never in-progress temporary ones). */
  list(type: ObjectType): AsyncIterable<ObjectInfo>;

  /** Remove an object; absent is not an error. */
  remove(type: ObjectType, name: string): Promise<void>;

  /** Release connections and handles. */
  close(): Promise<void>;

  /**
   * Drop a local (cached) copy, so that the next read comes from the repository
   * itself. Only a caching wrapper has it: a copy that fails authentication
   * above may be the cache's fault, not the repository's.
   */
  evict?(type: ObjectType, name: string): Promise<void>;

  /**
   * S3 Object Lock, when this backend writes every object with a retention
   * (`--object-lock-days`); absent otherwise. Each wrapper passes it on with
   * its own behaviour (retried, fenced, remembered: retentionMemo.ts).
   */
  readonly objectLock?: ObjectLock;
}

/**
 * One object on its way to storage (Backend.openStream). Until `commit` it is
 * no object: `list` and `read` do not see it, and after a crash or `abort`
 * nothing of it is left but, at worst, a temporary file that leftover cleanup
 * removes by age (leftovers.ts).
 */
export interface ObjectStream {
  /** Append `bytes`; the caller may reuse their memory once the promise settles. */
  append(bytes: Uint8Array): Promise<void>;
  /** Make what was appended the object `name`, atomically and durably, as `write` does. */
  commit(name: string): Promise<void>;
  /** Drop what was appended; never throws. */
  abort(): Promise<void>;
}

/** S3 Object Lock modes: COMPLIANCE, nobody can shorten or lift it; GOVERNANCE, users with s3:BypassGovernanceRetention can. */
export type ObjectLockMode = 'COMPLIANCE' | 'GOVERNANCE';
export const OBJECT_LOCK_MODES: readonly ObjectLockMode[] = ['COMPLIANCE', 'GOVERNANCE'];

export interface Retention {
  mode: ObjectLockMode;
  until: Date;
}

/**
 * What packs and index files get on top of the lock period, at write and when a
 * newer restore point needs them (repo/retentionCoverage.ts): a tenth of it, at
 * least a day. So an object every night's restore point needs is raised about
 * every N/10 days rather than every night, and a pack written during a backup
 * still outlasts the restore point written at its end.
 */
export function objectLockMargin(days: number): number {
  return Math.max(1, Math.ceil(days / 10)) * 86_400_000;
}

/** What a locked backend gives new objects, and one object's retention, read and raised. */
export interface ObjectLock {
  readonly mode: ObjectLockMode;
  /** Every object written gets a retention of this many days from its write (packs and index files: objectLockMargin more). */
  readonly days: number;
  /** The object's retention, or undefined when it has none. NotFoundError when the object is absent. */
  retention(type: ObjectType, name: string): Promise<Retention | undefined>;
  /** Set the object's retention to `to`; the caller raises it only (COMPLIANCE can never be shortened). */
  extendRetention(type: ObjectType, name: string, to: Retention): Promise<void>;
}

/**
 * An object the caller expected is not there (a storage failure, exit 8, if
 * it reaches the user; check and repair catch it and name the damage).
 */
export class NotFoundError extends StorageError {
  constructor(readonly type: ObjectType, readonly objectName: string, location: string) {
    super(`${location}: ${objectFolder(type)}/${objectName} not found`);
    this.name = 'NotFoundError';
  }
}

/**
 * A range read ran past the end of an object: the object is shorter than its
 * reader knows it must be (a torn write, a truncated copy). That is damage to
 * stored data, not a failing storage device.
 */
export class TruncatedObjectError extends CorruptionError {
  constructor(readonly type: ObjectType, readonly objectName: string, message: string) {
    super(message, `${objectFolder(type)}/${objectName}`);
    this.name = 'TruncatedObjectError';
  }
}
