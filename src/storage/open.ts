// From a location string to a Backend, and the standard stack of wrappers.
import { Backend } from './backend';
import { LocalBackend } from './local';
import { S3Backend, S3Options, parseS3Location, requireSecureTransport } from './s3';
import { RetryBackend, RetryOptions } from './retry';
import { RateLimitedBackend, RateLimits } from './ratelimit';
import { CachedBackend } from './cache';
import { RetentionMemoBackend } from './retentionMemo';
import { UsageError } from '../errors';

export interface OpenOptions {
  s3?: S3Options;
  /** Allow `s3:http://` to a host other than this one (`--insecure-http`). */
  insecureHttp?: boolean;
}

/** Whether `location` names an S3 repository (`s3:…`), not a local directory. */
export function isS3Location(location: string): boolean {
  return location.startsWith('s3:');
}

/**
 * `s3://bucket/prefix` or `s3:http(s)://host:port/bucket/prefix` → S3Backend
 * (plain http only to this machine unless `insecureHttp`); any other string is
 * a local directory. Other URL schemes are refused rather than taken for a
 * directory named `sftp:`.
 */

export function openBackend(location: string, options: OpenOptions = {}): Backend {
  if (isS3Location(location)) {
    const where = parseS3Location(location);
    requireSecureTransport(where, options.insecureHttp ?? false);
    return new S3Backend(where, options.s3);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(location);
  if (scheme) {
    throw new UsageError(`${location}: unsupported repository scheme '${scheme[1]}:'; use a directory path or an s3: location`);
  }
  return new LocalBackend(location);
}

export interface StackOptions {
  /** Retry transient failures (default on for remote backends); false turns it off. */
  retry?: RetryOptions | false;
  /** Bandwidth caps. */
  rateLimit?: RateLimits;
  /** Local cache directory for index, restore points (snapshots/), keys, config (remote backends only). */
  cacheDir?: string;
  /** S3 Object Lock: the file remembering the retention of each object (retentionMemo.ts); only used when the backend locks. */
  retentionMemoFile?: string;
}

/**
 * Wrap a backend in the usual decorators, inside out as restic does:
 * rate limit (so retried bytes count too) → retry → retention memo → cache
 * (so a cache hit costs neither a request nor a retry). A local directory gets only what was
 * asked for explicitly: its errors are not transient and it needs no cache.
 */
export function wrapBackend(inner: Backend, options: StackOptions = {}): Backend {
  const remote = !(inner instanceof LocalBackend);
  let be = inner;
  if (options.rateLimit && (options.rateLimit.uploadBytesPerSec || options.rateLimit.downloadBytesPerSec)) {
    be = new RateLimitedBackend(be, options.rateLimit);
  }
  if (options.retry !== false && (remote || options.retry)) be = new RetryBackend(be, options.retry || {});
  if (options.retentionMemoFile && be.objectLock) be = new RetentionMemoBackend(be, options.retentionMemoFile);
  if (options.cacheDir && remote) be = new CachedBackend(be, options.cacheDir);
  return be;
}
