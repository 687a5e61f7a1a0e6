// Typed errors. Each carries what went wrong, where, and what to do; the CLI
// prints `ferry: <message>` as one line and exits with `exitCode`.

export class FerryError extends Error {
  /** Process exit code the CLI uses for this class of failure. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The user asked for something malformed or impossible (exit 2). */
export class UsageError extends FerryError {
  override readonly exitCode = 2;
}

/** A path is not a ferry repository, or its format version is unknown (exit 3). */
export class RepositoryNotFoundError extends FerryError {
  override readonly exitCode = 3;
}

/** No key slot opens with the given passphrase or key file (exit 4). */
export class WrongPasswordError extends FerryError {
  override readonly exitCode = 4;
}

/** The repository is locked by another process (exit 5). */
export class LockedError extends FerryError {
  override readonly exitCode = 5;
}

/**
 * This process lost its repository lock while it ran: a refresh failed, came
 * later than the stale age, or found the lock removed (exit 5, as locked).
 */
export class LockLostError extends FerryError {
  override readonly exitCode = 5;
}

/** Stored bytes fail authentication, are truncated or malformed (exit 6). */
export class CorruptionError extends FerryError {
  override readonly exitCode = 6;
  constructor(
    message: string,
    /**
     * The stored object that holds the damage, named as storage names it:
     * `<type>/<name>` (`data/<pack id>`, `index/<name>`, `snapshots/<id>`,
     * `keys/<id>`, `config/config`); just `<type>` when no single object of
     * that type is to blame (a blob no index file names: `index`).
     */
    readonly object: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An input image, target or config file cannot be used (exit 7). */
export class InputError extends FerryError {
  override readonly exitCode = 7;
}

/** A storage write or read failed (disk full, permission, network) (exit 8). */
export class StorageError extends FerryError {
  override readonly exitCode = 8;
}

/** Something ferry asked a hypervisor or snapshot tool to do failed (exit 9). */
export class HypervisorError extends FerryError {
  override readonly exitCode = 9;
}

/** `check` found damage (exit 10). */
export class DamageFoundError extends FerryError {
  override readonly exitCode = 10;
}

/** Turn a Node system error into a short phrase: "disk full (ENOSPC)". */
export function describeSystemError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOSPC': return 'no space left on device (ENOSPC)';
    case 'EDQUOT': return 'disk quota exceeded (EDQUOT)';
    case 'ENOENT': return 'no such file or directory (ENOENT)';
    case 'EACCES': return 'permission denied (EACCES)';
    case 'EPERM': return 'operation not permitted (EPERM)';
    case 'EISDIR': return 'is a directory (EISDIR)';
    case 'EROFS': return 'read-only file system (EROFS)';
    case 'EIO': return 'input/output error (EIO)';
    default: return e?.message ?? String(err);
  }
}
