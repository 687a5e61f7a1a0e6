// Typed errors. Each carries what went wrong, where, and what to do; the CLI
// prints `ferry: <message>` as one line and exits with `exitCode`.

/**
 * Every exit code ferry uses, in one place (README "Errors" points here). The
 * error classes below carry them; the CLI uses the last three.
 */
export const EXIT_CODES = {
  ok: 0,
  /** A FerryError without a more specific class; `nightly`: a step or guest failed (the report says which). */
  failure: 1,
  /** Also `nightly`: nothing could be done (bad [nightly] config, no repository). */
  usage: 2,
  notARepository: 3,
  wrongPassword: 4,
  locked: 5,
  corruption: 6,
  badInput: 7,
  storage: 8,
  hypervisor: 9,
  damageFound: 10,
  /** `backup --all`, `site restore`, `drill`: some guests failed (the summary names them). */
  someGuestsFailed: 11,
  /** `site plan` / `site restore`: the fleet does not fit the target hosts (the plan says what, where, by how much). */
  doesNotFit: 12,
  /** `drill`: nothing failed, but some guests could only have their file systems checked (fsck-only): not proven to boot. */
  drillUnproven: 13,
  /** Not a FerryError: a bug, reported as "internal error" (sysexits EX_SOFTWARE). */
  internal: 70,
  /** Stopped by SIGINT / SIGTERM (128 + signal number, as shells report it). */
  interrupted: 130,
  terminated: 143,
} as const;

/**
 * Bad input given through one parameter of a library call, told in the
 * library's words ("restore target /x: ..."); the CLI, which knows which flag
 * fed the parameter, words it with the flag instead (cli/flagNames.ts).
 */
export interface Culprit {
  /** The parameter, in words: 'restore target', 'disk number'. */
  parameter: string;
  value: string;
  /** What is wrong with the value, and what to do. */
  detail: string;
  /** A parameter that lets the call go ahead anyway, and what it does then (e.g. force: overwrite it). */
  override?: { parameter: string; effect: string };
}

/** The message a culprit makes without the CLI: `restore target /x: ...; force overwrites it`. */
export function culpritMessage(c: Culprit): string {
  return `${c.parameter} ${c.value}: ${c.detail}${c.override ? `; ${c.override.parameter} would ${c.override.effect}` : ''}`;
}

export class FerryError extends Error {
  /** Process exit code the CLI uses for this class of failure. */
  readonly exitCode: number = EXIT_CODES.failure;
  /** The input at fault, when the error is about one parameter of the call. */
  readonly culprit?: Culprit;
  constructor(message: string, options?: { cause?: unknown; culprit?: Culprit }) {
    super(message, options);
    this.name = new.target.name;
    if (options?.culprit) this.culprit = options.culprit;
  }

  /** An error about one input, its message made from the culprit. */
  static about<E extends FerryError>(this: new (message: string, options?: { cause?: unknown; culprit?: Culprit }) => E, culprit: Culprit, options?: { cause?: unknown }): E {
    return new this(culpritMessage(culprit), { ...options, culprit });
  }
}

/** The user asked for something malformed or impossible (exit 2). */
export class UsageError extends FerryError {
  override readonly exitCode = EXIT_CODES.usage;
}

/** A path is not a ferry repository, or its format version is unknown (exit 3). */
export class RepositoryNotFoundError extends FerryError {
  override readonly exitCode = EXIT_CODES.notARepository;
}

/** No key slot opens with the given passphrase or key file (exit 4). */
export class WrongPasswordError extends FerryError {
  override readonly exitCode = EXIT_CODES.wrongPassword;
}

/** The repository is locked by another process (exit 5). */
export class LockedError extends FerryError {
  override readonly exitCode = EXIT_CODES.locked;
}

/**
 * This process lost its repository lock while it ran: a refresh failed, came
 * later than the stale age, or found the lock removed (exit 5, as locked).
 */
export class LockLostError extends FerryError {
  override readonly exitCode = EXIT_CODES.locked;
}

/** Stored bytes fail authentication, are truncated or malformed (exit 6). */
export class CorruptionError extends FerryError {
  override readonly exitCode = EXIT_CODES.corruption;
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
  override readonly exitCode = EXIT_CODES.badInput;
}

/** A storage write or read failed (disk full, permission, network) (exit 8). */
export class StorageError extends FerryError {
  override readonly exitCode = EXIT_CODES.storage;
}

/** Something ferry asked a hypervisor or snapshot tool to do failed (exit 9). */
export class HypervisorError extends FerryError {
  override readonly exitCode = EXIT_CODES.hypervisor;
}

/** `check` found damage (exit 10). */
export class DamageFoundError extends FerryError {
  override readonly exitCode = EXIT_CODES.damageFound;
}

/** `backup --all`: some guests failed; the summary said which (exit 11). */
export class FleetFailedError extends FerryError {
  override readonly exitCode = EXIT_CODES.someGuestsFailed;
}

/** `drill`: some guests were only file-system checked, not booted (exit 13). */
export class DrillUnprovenError extends FerryError {
  override readonly exitCode = EXIT_CODES.drillUnproven;
}

/** A site plan cannot place every guest on the target hosts (exit 12). */
export class DoesNotFitError extends FerryError {
  override readonly exitCode = EXIT_CODES.doesNotFit;
}

/** `ferry nightly`: some step or guest failed; the report said which (exit 1). */
export class NightlyFailedError extends FerryError {}

/** `ferry nightly`: nothing could be done (bad config, no repository) (exit 2). */
export class NightlyNotRunError extends FerryError {
  override readonly exitCode = EXIT_CODES.usage;
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
