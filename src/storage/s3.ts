// A repository in an S3 bucket (AWS, Ceph RGW, MinIO). Same object layout as
// LocalBackend under an optional key prefix:
//   <prefix>/config, <prefix>/keys/<name>, <prefix>/data/<xx>/<name>,
//   <prefix>/index/<name>, <prefix>/snapshots/<name>, <prefix>/locks/<name>
// Objects are written whole: a PUT, or a multipart upload that only becomes
// visible on CompleteMultipartUpload, so a dropped connection never leaves a
// partial object. This class does exactly one request per attempt (the SDK's
// own retries are off); retries, rate limits and caching are wrappers.
//
// Object Lock: with `objectLockDays`, every object (but locks and the sync
// record) is written with a COMPLIANCE (default) or GOVERNANCE retention of
// that many days (packs and index files a margin more: objectLockMargin), and remove()
// deletes object versions (so prune frees space once retention has passed)
// instead of hiding them behind a delete marker; a locked version makes
// remove() fail with a clear StorageError. The bucket must have been created
// with Object Lock enabled (`aws s3api create-bucket --object-lock-enabled-for-bucket`,
// which also turns on versioning); Object Lock cannot be added to an existing
// bucket on every server.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { Backend, NotFoundError, ObjectBytes, ObjectInfo, ObjectLock, ObjectLockMode, ObjectType, Retention, TruncatedObjectError, joinedObject, objectFolder, objectLockMargin, placedInto } from './backend';
import { ObjectLockedError, StorageRequestError } from './errors';
import { StorageError, UsageError } from '../errors';

let loadedSdk: typeof S3Sdk | undefined;
/** The AWS SDK, loaded on first use: it takes ~150 ms to load and runs against local repositories never need it. */
function sdk(): typeof S3Sdk {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loadedSdk ??= require('@aws-sdk/client-s3') as typeof S3Sdk);
}

const MiB = 1024 * 1024;
/** S3 refuses parts below 5 MiB (except the last). */
const MIN_PART_SIZE = 5 * MiB;
/** S3 allows at most 10,000 parts per upload. */
const MAX_PARTS = 10_000;

export interface S3Location {
  /** `http(s)://host[:port]` for path-style servers (Ceph RGW, MinIO); undefined for AWS. */
  endpoint?: string;
  bucket: string;
  /** Key prefix without leading or trailing slash; '' for the bucket root. */
  prefix: string;
  /** The location as the user wrote it (normalised), for messages. */
  display: string;
}

export interface S3Options {
  /** Objects above this size are uploaded in parts (default 16 MiB). */
  multipartThreshold?: number;
  /** Part size for multipart uploads (default 8 MiB, at least 5 MiB). */
  partSize?: number;
  /** Parts of one object in flight at once (default 4). */
  partConcurrency?: number;
  /** Keys per ListObjectsV2 page (default and S3 maximum 1000). */
  listPageSize?: number;
  /** A request fails with a timeout after this long without a byte either way (default 60 s). */
  idleTimeoutMs?: number;
  /** Connecting to the server may take this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Write every object with an Object Lock retention of this many days (see top of file). */
  objectLockDays?: number;
  /** Retention mode for `objectLockDays` (default COMPLIANCE: nobody, not even root, can shorten it). */
  objectLockMode?: ObjectLockMode;
  /** Explicit credentials; default is the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Region; default AWS_REGION / AWS_DEFAULT_REGION / the profile, else us-east-1 for custom endpoints. */
  region?: string;
  /** Most concurrent connections (default 50). */
  maxSockets?: number;
}

const BUCKET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

/**
 * Parse an S3 repository location:
 *  - `s3://bucket[/prefix]` — AWS, virtual-hosted, region and credentials from the AWS chain;
 *  - `s3:http[s]://host[:port]/bucket[/prefix]` — any S3 server, path-style;
 *  - `s3:host[:port]/bucket[/prefix]` — the same over https.
 */
export function parseS3Location(location: string): S3Location {
  const bad = (why: string): UsageError =>
    new UsageError(
      `${location}: ${why}; expected s3://bucket/prefix (AWS) or s3:https://host:port/bucket/prefix (Ceph RGW, MinIO)`,
    );
  if (!location.startsWith('s3:')) throw bad('not an S3 location');
  let rest = location.slice(3);
  let endpoint: string | undefined;
  let display: string;
  if (rest.startsWith('//')) {
    rest = rest.slice(2);
    display = 's3://';
  } else {
    const m = /^(https?:\/\/)?([^/]+)(?:\/(.*))?$/i.exec(rest);
    if (!m || m[3] === undefined) throw bad('no bucket after the host');
    const scheme = (m[1] ?? 'https://').toLowerCase();
    let url: URL;
    try {
      url = new URL(`${scheme}${m[2]}`);
    } catch {
      throw bad(`'${m[2]}' is not a host[:port]`);
    }
    endpoint = `${url.protocol}//${url.host}`;
    display = `s3:${endpoint}/`;
    rest = m[3];
  }
  const parts = rest.split('/').filter((p) => p !== '');
  const bucket = parts.shift();
  if (!bucket) throw bad('no bucket name');
  if (!BUCKET_RE.test(bucket)) throw bad(`'${bucket}' is not a valid bucket name`);
  if (parts.some((p) => p === '.' || p === '..')) throw bad("'.' and '..' are not allowed in the prefix");
  const prefix = parts.join('/');
  return { endpoint, bucket, prefix, display: `${display}${bucket}${prefix ? `/${prefix}` : ''}` };
}

/** Whether a URL hostname names this machine: localhost, 127.0.0.0/8 or ::1. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (host === '::1') return true;
  const v4 = /^(?:::ffff:)?(\d+)\.\d+\.\d+\.\d+$/.exec(host);
  return v4 !== null && Number(v4[1]) === 127;
}

/**
 * Plain http leaves every request open on the wire: anyone on the path can
 * read the repository's layout and sizes, and replay, alter or block requests.
 * Refused unless the server is on this machine or the user said so.
 */
export function requireSecureTransport(loc: S3Location, allowInsecureHttp: boolean): void {
  if (!loc.endpoint?.startsWith('http://') || allowInsecureHttp) return;
  if (isLoopbackHost(new URL(loc.endpoint).hostname)) return;
  throw new UsageError(
    `${loc.display}: plain http to another host lets anyone on the network read, replay or alter the requests; ` +
      'use s3:https://… (for a private CA set NODE_EXTRA_CA_CERTS=/path/ca.pem), or pass --insecure-http to allow it',
  );
}

/** Object key relative to the prefix, as in LocalBackend. */
function relativeKey(type: ObjectType, name: string): string {
  if (type === 'config') return 'config';
  if (type === 'data') return `data/${name.slice(0, 2)}/${name}`;
  return `${objectFolder(type)}/${name}`;
}

export class S3Backend implements Backend {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly threshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly pageSize: number;
  private readonly idleTimeoutMs: number;
  readonly objectLock?: ObjectLock;

  constructor(where: S3Location | string, private readonly options: S3Options = {}) {
    const loc = typeof where === 'string' ? parseS3Location(where) : where;
    this.location = loc.display;
    this.bucket = loc.bucket;
    this.prefix = loc.prefix;
    this.partSize = Math.max(MIN_PART_SIZE, options.partSize ?? 8 * MiB);
    this.threshold = Math.max(this.partSize, options.multipartThreshold ?? 16 * MiB);
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 4);
    this.pageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    if (options.objectLockDays !== undefined && !(options.objectLockDays >= 1)) {
      throw new UsageError(`${this.location}: objectLockDays must be a whole number of days ≥ 1`);
    }
    if (options.objectLockDays !== undefined) {
      this.objectLock = {
        mode: options.objectLockMode ?? 'COMPLIANCE',
        days: options.objectLockDays,
        retention: (type, name) => this.retention(type, name),
        extendRetention: (type, name, to) => this.extendRetention(type, name, to),
      };
    }

    // The SDK prints a multi-line deprecation warning for Node 20 on first use;
    // under cron that is noise in every mail. Respect an explicit setting.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
    const config: S3ClientConfig = {
      // One request per attempt: RetryBackend decides, with logging and bounds.
      maxAttempts: 1,
      // A streaming or multipart body breaks with the SDK's default checksums on Ceph RGW;
      // integrity is covered by Content-MD5 on upload and authenticated encryption above.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? 10_000,
        // Idle timeout on the socket: fires on a stalled request or a stalled body alike.
        socketTimeout: this.idleTimeoutMs,
        httpAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 50 },
        httpsAgent: { keepAlive: true, maxSockets: options.maxSockets ?? 50 },
      },
    };
    if (options.credentials) config.credentials = options.credentials;
    if (loc.endpoint) {
      config.endpoint = loc.endpoint;
      config.forcePathStyle = true;
      config.region = region ?? 'us-east-1';
    } else {
      // AWS: let the SDK find the region in env or profile; follow a bucket in another region.
      if (region) config.region = region;
      config.followRegionRedirects = true;
    }
    this.client = new (sdk().S3Client)(config);
  }

  /** Full object key in the bucket. */
  key(type: ObjectType, name: string): string {
    const rel = relativeKey(type, name);
    return this.prefix ? `${this.prefix}/${rel}` : rel;
  }

  private typePrefix(type: ObjectType): string {
    return this.prefix ? `${this.prefix}/${objectFolder(type)}/` : `${objectFolder(type)}/`;
  }

  async read(type: ObjectType, name: string): Promise<Buffer> {
    try {
      const out = await this.client.send(new (sdk().GetObjectCommand)({ Bucket: this.bucket, Key: this.key(type, name) }));
      return await this.collect(out.Body, out.ContentLength, type, name);
    } catch (err) {
      throw this.translate(err, 'reading', type, name);
    }
  }

  async readRange(type: ObjectType, name: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    // The SDK hands over its own buffers: copied into `into` when the caller recycles one.
    return placedInto(await this.readRangeOwn(type, name, offset, length), into);
  }

  private async readRangeOwn(type: ObjectType, name: string, offset: number, length: number): Promise<Buffer> {
    if (length === 0) {
      // An empty Range is invalid HTTP; answer the existence question the caller implicitly asks.
      if (!(await this.stat(type, name))) throw new NotFoundError(type, name, this.location);
      return Buffer.alloc(0);
    }
    try {
      const out = await this.client.send(
        new (sdk().GetObjectCommand)({
          Bucket: this.bucket,
          Key: this.key(type, name),
          Range: `bytes=${offset}-${offset + length - 1}`,
        }),
      );
      // The server clips a range that runs past the end; that is a short object, not a short response.
      if (out.ContentLength !== undefined && out.ContentLength < length) {
        throw this.shortObject(type, name, offset, length, out.ContentLength);
      }
      const buf = await this.collect(out.Body, out.ContentLength, type, name);
      // A server that ignores Range answers 200 with the whole object.
      if (!out.ContentRange && buf.length > length) {
        if (buf.length < offset + length) throw this.shortObject(type, name, offset, length, Math.max(0, buf.length - offset));
        return buf.subarray(offset, offset + length);
      }
      if (buf.length < length) throw this.shortObject(type, name, offset, length, buf.length);
      return buf;
    } catch (err) {
      if (errorCode(err) === 'InvalidRange') {
        // Offset at or past the end (416).
        throw this.shortObject(type, name, offset, length, 0);
      }
      throw this.translate(err, 'reading', type, name);
    }
  }

  async write(type: ObjectType, name: string, bytes: ObjectBytes): Promise<void> {
    // One body for the PUT (and its MD5) or the parts of a multipart upload: a network write, not the local pack path.
    const data = joinedObject(bytes);
    try {
      if (data.length > this.threshold) {
        await this.writeMultipart(type, name, data);
      } else {
        await this.client.send(
          new (sdk().PutObjectCommand)({
            Bucket: this.bucket,
            Key: this.key(type, name),
            Body: data,
            ContentLength: data.length,
            // The server refuses a body damaged on the way instead of storing it.
            ContentMD5: md5(data),
            ...this.lockParams(type),
          }),
        );
      }
    } catch (err) {
      throw this.translate(err, 'writing', type, name);
    }
  }

  private async writeMultipart(type: ObjectType, name: string, data: Buffer): Promise<void> {
    const Key = this.key(type, name);
    const partSize = Math.max(this.partSize, Math.ceil(data.length / MAX_PARTS));
    const created = await this.client.send(
      new (sdk().CreateMultipartUploadCommand)({ Bucket: this.bucket, Key, ...this.lockParams(type) }),
    );
    const UploadId = created.UploadId;
    if (!UploadId) throw new StorageError(`${this.location}: writing ${relativeKey(type, name)}: the server returned no multipart UploadId`);
    try {
      const count = Math.ceil(data.length / partSize);
      const etags: string[] = new Array(count);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < count) {
          const i = next++;
          const body = data.subarray(i * partSize, Math.min(data.length, (i + 1) * partSize));
          const out = await this.client.send(
            new (sdk().UploadPartCommand)({
              Bucket: this.bucket,
              Key,
              UploadId,
              PartNumber: i + 1,
              Body: body,
              ContentLength: body.length,
              ContentMD5: md5(body),
            }),
          );
          if (!out.ETag) throw new StorageError(`${this.location}: writing ${relativeKey(type, name)}: part ${i + 1} got no ETag`);
          etags[i] = out.ETag;
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.partConcurrency, count) }, worker));
      // Ceph RGW answers Complete with an empty ETag; nothing here depends on it.
      const done = await this.client.send(
        new (sdk().CompleteMultipartUploadCommand)({
          Bucket: this.bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
      const lock = this.lockParams(type);
      if (lock.ObjectLockMode) {
        // Ceph RGW 16 drops the retention given at CreateMultipartUpload; set it on the
        // finished version. On AWS this extends it by the upload's duration, which is allowed.
        await this.client.send(
          new (sdk().PutObjectRetentionCommand)({
            Bucket: this.bucket,
            Key,
            VersionId: done.VersionId || undefined,
            Retention: { Mode: lock.ObjectLockMode, RetainUntilDate: lock.ObjectLockRetainUntilDate },
          }),
        );
      }
    } catch (err) {
      // Best effort: an upload left behind is invisible but billed; abortStaleUploads() finds it later.
      await this.client.send(new (sdk().AbortMultipartUploadCommand)({ Bucket: this.bucket, Key, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  async stat(type: ObjectType, name: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new (sdk().HeadObjectCommand)({ Bucket: this.bucket, Key: this.key(type, name) }));
      return { name, size: out.ContentLength ?? 0, mtime: out.LastModified?.getTime() };
    } catch (err) {
      if (isNotFound(err)) {
        // HEAD errors carry no body, so a missing bucket also looks like "no such object";
        // check the bucket once, or `init`/`open` would report "no repository here" instead.
        await this.verifyBucket();
        return undefined;
      }
      throw this.translate(err, 'reading', type, name);
    }
  }

  private bucketVerified = false;

  private async verifyBucket(): Promise<void> {
    if (this.bucketVerified) return;
    try {
      await this.client.send(new (sdk().HeadBucketCommand)({ Bucket: this.bucket }));
      this.bucketVerified = true;
    } catch (err) {
      const missing = httpStatus(err) === 404 ? Object.assign(err as object, { name: 'NoSuchBucket' }) : err;
      throw this.translate(missing, 'reading');
    }
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    if (type === 'config') {
      const st = await this.stat('config', 'config');
      if (st) yield st;
      return;
    }
    const Prefix = this.typePrefix(type);
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new (sdk().ListObjectsV2Command)({ Bucket: this.bucket, Prefix, ContinuationToken, MaxKeys: this.pageSize }),
        );
      } catch (err) {
        throw this.translate(err, 'listing', type);
      }
      for (const obj of page.Contents ?? []) {
        const rel = obj.Key?.slice(Prefix.length);
        if (!rel) continue;
        const segments = rel.split('/');
        // data/<xx>/<name>; every other type is flat. Anything else is not ours (a folder marker, a stray upload).
        const name = type === 'data' ? (segments.length === 2 ? segments[1] : '') : segments.length === 1 ? segments[0] : '';
        if (!name) continue;
        yield { name, size: obj.Size ?? 0, mtime: obj.LastModified?.getTime() };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async remove(type: ObjectType, name: string): Promise<void> {
    const Key = this.key(type, name);
    try {
      if (this.options.objectLockDays === undefined) {
        await this.client.send(new (sdk().DeleteObjectCommand)({ Bucket: this.bucket, Key }));
        return;
      }
      // Versioned (locked) bucket: delete the versions themselves, so space is freed and a
      // still-locked version is reported rather than hidden behind a delete marker.
      let KeyMarker: string | undefined;
      let VersionIdMarker: string | undefined;
      do {
        const page = await this.client.send(
          new (sdk().ListObjectVersionsCommand)({ Bucket: this.bucket, Prefix: Key, KeyMarker, VersionIdMarker }),
        );
        const versions = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])].filter((v) => v.Key === Key);
        for (const v of versions) {
          await this.client.send(new (sdk().DeleteObjectCommand)({ Bucket: this.bucket, Key, VersionId: v.VersionId }));
        }
        KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        VersionIdMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
      } while (KeyMarker);
    } catch (err) {
      if (errorCode(err) === 'AccessDenied' && this.options.objectLockDays !== undefined) {
        throw await this.lockedError(err, type, name);
      }
      throw this.translate(err, 'removing', type, name);
    }
  }

  /**
   * Abort multipart uploads under the prefix started more than `olderThanMs` ago:
   * a process killed mid-upload leaves parts that are invisible but billed.
   */
  async abortStaleUploads(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let aborted = 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new (sdk().ListMultipartUploadsCommand)({
            Bucket: this.bucket,
            Prefix: this.prefix ? `${this.prefix}/` : undefined,
            KeyMarker,
            UploadIdMarker,
          }),
        );
        for (const u of page.Uploads ?? []) {
          if (!u.Key || !u.UploadId || (u.Initiated && u.Initiated.getTime() > cutoff)) continue;
          await this.client.send(new (sdk().AbortMultipartUploadCommand)({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          aborted++;
        }
        KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
        UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
      } while (KeyMarker);
    } catch (err) {
      throw this.translate(err, 'cleaning up uploads in');
    }
    return aborted;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /**
   * The retention a new object of `type` gets: the lock period, and for packs and index files
   * (which later restore points deduplicate against) the margin of objectLockMargin on top.
   */
  private lockParams(type: ObjectType): { ObjectLockMode?: ObjectLockMode; ObjectLockRetainUntilDate?: Date } {
    const days = this.options.objectLockDays;
    if (days === undefined || UNLOCKED_TYPES.has(type)) return {};
    const margin = type === 'data' || type === 'index' ? objectLockMargin(days) : 0;
    return {
      ObjectLockMode: this.options.objectLockMode ?? 'COMPLIANCE',
      ObjectLockRetainUntilDate: new Date(Date.now() + days * 86_400_000 + margin),
    };
  }

  /** GetObjectRetention: one request. */
  private async retention(type: ObjectType, name: string): Promise<Retention | undefined> {
    try {
      const r = await this.client.send(new (sdk().GetObjectRetentionCommand)({ Bucket: this.bucket, Key: this.key(type, name) }));
      const mode = r.Retention?.Mode;
      const until = r.Retention?.RetainUntilDate;
      return (mode === 'COMPLIANCE' || mode === 'GOVERNANCE') && until ? { mode, until } : undefined;
    } catch (err) {
      // An object written without a retention (before the lock was asked for) has none to report.
      if (NO_RETENTION_CODES.has(errorCode(err) ?? '')) return undefined;
      throw this.translate(err, 'reading the retention of', type, name, 'reading');
    }
  }

  /** PutObjectRetention on the current version: one request. */
  private async extendRetention(type: ObjectType, name: string, to: Retention): Promise<void> {
    try {
      await this.client.send(
        new (sdk().PutObjectRetentionCommand)({
          Bucket: this.bucket,
          Key: this.key(type, name),
          Retention: { Mode: to.mode, RetainUntilDate: to.until },
        }),
      );
    } catch (err) {
      throw this.translate(err, 'extending the retention of', type, name, 'reading');
    }
  }

  /** Read a response body into one buffer, refusing a body shorter than announced. */
  private async collect(body: unknown, announced: number | undefined, type: ObjectType, name: string): Promise<Buffer> {
    if (!body) return Buffer.alloc(0);
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of body as Readable) {
      const b = chunk as Buffer;
      chunks.push(b);
      total += b.length;
    }
    if (announced !== undefined && total !== announced) {
      throw new StorageRequestError(
        `${this.location}: reading ${relativeKey(type, name)}: response cut short (${total} of ${announced} bytes): the connection broke; run the command again`,
        undefined,
        'TruncatedResponse',
      );
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
  }

  private shortObject(type: ObjectType, name: string, offset: number, length: number, got: number): TruncatedObjectError {
    return new TruncatedObjectError(
      type,
      name,
      `${this.location}: ${relativeKey(type, name)}: object is truncated: bytes ${offset}-${offset + length} were expected, it holds only ${got} of them; run 'ferry repair'`,
    );
  }

  private async lockedError(err: unknown, type: ObjectType, name: string): Promise<StorageError> {
    let until = '';
    try {
      const r = await this.client.send(new (sdk().GetObjectRetentionCommand)({ Bucket: this.bucket, Key: this.key(type, name) }));
      if (r.Retention?.RetainUntilDate) until = ` until ${r.Retention.RetainUntilDate.toISOString()}`;
    } catch {
      // The date is a courtesy; the refusal is the message.
    }
    return new ObjectLockedError(
      `${this.location}: removing ${relativeKey(type, name)}: object is protected by Object Lock${until} (403 AccessDenied): it can be removed only after its retention has passed`,
      { cause: err },
    );
  }

  /** Turn an SDK or network failure into one line: what, where, what to do. */
  private translate(err: unknown, doing: string, type?: ObjectType, name?: string, notFoundAs: 'reading' | 'error' = doing === 'reading' ? 'reading' : 'error'): Error {
    if (err instanceof StorageError || err instanceof NotFoundError || err instanceof TruncatedObjectError) return err;
    const status = httpStatus(err);
    const code = errorCode(err) ?? 'Unknown';
    if (type !== undefined && name !== undefined && notFoundAs === 'reading' && (code === 'NoSuchKey' || (status === 404 && code !== 'NoSuchBucket'))) {
      return new NotFoundError(type, name, this.location);
    }
    const what = type === undefined ? '' : name === undefined ? ` ${objectFolder(type)}/` : ` ${relativeKey(type, name)}`;
    const where = `${this.location}: ${doing}${what}`;
    const tag = status ? `${status} ${code}` : code;
    let detail: string;
    switch (code) {
      case 'SignatureDoesNotMatch':
      case 'InvalidAccessKeyId':
      case 'InvalidToken':
      case 'ExpiredToken':
        detail = `access denied (${tag}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY`;
        break;
      case 'Forbidden':
      case 'Unknown':
        if (status === 403) {
          // A HEAD refusal has no body to say why: either cause is possible.
          detail = `access denied (403): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the permissions on bucket '${this.bucket}'`;
          break;
        }
        detail = status && status >= 500 ? `server error (${tag}): run the command again later` : tag;
        break;
      case 'AccessDenied':
        detail = `access denied (${tag}): the credentials are valid but lack permission on bucket '${this.bucket}'`;
        break;
      case 'NoSuchBucket':
        detail = `bucket '${this.bucket}' does not exist (${tag}): create it first (with Object Lock enabled if you want locked backups)`;
        break;
      case 'CredentialsProviderError':
        detail = 'no S3 credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE';
        break;
      case 'InvalidRequest':
      case 'InvalidArgument':
        detail = this.options.objectLockDays !== undefined
          ? `the server refused the request (${tag}): is Object Lock enabled on bucket '${this.bucket}'? It must be set when the bucket is created`
          : `the server refused the request (${tag})`;
        break;
      case 'SlowDown':
      case 'Throttling':
      case 'ThrottlingException':
      case 'TooManyRequests':
        detail = `the server asks to slow down (${tag}): run again later or lower the upload rate`;
        break;
      case 'TimeoutError':
      case 'ETIMEDOUT':
        detail = `no answer for ${Math.round(this.idleTimeoutMs / 1000)} s (timeout): check the network and the server`;
        break;
      case 'ECONNREFUSED':
        detail = `connection refused (ECONNREFUSED): is the S3 server running at that address?`;
        break;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        detail = `host not found (${code}): check the endpoint name and DNS`;
        break;
      case 'ECONNRESET':
      case 'EPIPE':
      case 'ECONNABORTED':
        detail = `connection dropped (${code}): run the command again`;
        break;
      default:
        if (/region/i.test(messageOf(err)) && !status) {
          detail = `no AWS region configured: set AWS_REGION`;
        } else if (status && status >= 500) {
          detail = `server error (${tag}): run the command again later`;
        } else {
          const msg = messageOf(err);
          detail = `${tag}${msg && msg !== 'UnknownError' && msg !== code ? `: ${msg}` : ''}`;
        }
    }
    return new StorageRequestError(`${where}: ${detail}`.replace(/\s*\n\s*/g, ' '), status, code, { cause: err });
  }
}

/**
 * Written without a retention: a lock must be removable when its holder ends, and the sync
 * record is replaced by every sync. Object Lock protects the history, not these.
 */
const UNLOCKED_TYPES: ReadonlySet<ObjectType> = new Set<ObjectType>(['locks', 'syncs']);

/** How servers answer GetObjectRetention for an object without one (AWS, Ceph RGW). */
const NO_RETENTION_CODES = new Set(['NoSuchObjectLockConfiguration', 'ObjectLockConfigurationNotFoundError']);

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

function httpStatus(err: unknown): number | undefined {
  const s = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

/** S3 error code (the SDK puts it in `name`), else the Node error code, else the error's name. */
function errorCode(err: unknown): string | undefined {
  if (!err || typeof err !== 'object') return undefined;
  const e = err as { name?: unknown; code?: unknown; Code?: unknown; $metadata?: unknown };
  if (typeof e.Code === 'string') return e.Code;
  if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return e.code;
  if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
  if (typeof e.code === 'string') return e.code;
  return undefined;
}

function isNotFound(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'NotFound' || code === 'NoSuchKey' || (httpStatus(err) === 404 && code !== 'NoSuchBucket');
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
