// How a repository location string becomes a backend, and which failures
// count as transient. No server needed.
import { describe, expect, it } from 'vitest';
import { isLoopbackHost, parseS3Location, requireSecureTransport, S3Backend } from '../../src/storage/s3';
import { openBackend, wrapBackend } from '../../src/storage/open';
import { LocalBackend } from '../../src/storage/local';
import { RetryBackend } from '../../src/storage/retry';
import { CachedBackend } from '../../src/storage/cache';
import { StorageRequestError, isTransientError } from '../../src/storage/errors';
import { StorageError, UsageError } from '../../src/errors';

describe('parseS3Location', () => {
  it.each([
    ['s3://backups', { endpoint: undefined, bucket: 'backups', prefix: '', display: 's3://backups' }],
    ['s3://backups/site-a/ferry/', { endpoint: undefined, bucket: 'backups', prefix: 'site-a/ferry', display: 's3://backups/site-a/ferry' }],
    ['s3:http://127.0.0.1:7480/bkt/repo', { endpoint: 'http://127.0.0.1:7480', bucket: 'bkt', prefix: 'repo', display: 's3:http://127.0.0.1:7480/bkt/repo' }],
    ['s3:https://minio.lan:9000/bkt', { endpoint: 'https://minio.lan:9000', bucket: 'bkt', prefix: '', display: 's3:https://minio.lan:9000/bkt' }],
    ['s3:rgw.example.org/bkt//a//b', { endpoint: 'https://rgw.example.org', bucket: 'bkt', prefix: 'a/b', display: 's3:https://rgw.example.org/bkt/a/b' }],
  ])('%s', (input, expected) => {
    expect(parseS3Location(input)).toEqual(expected);
  });

  it.each([
    ['s3://', /no bucket name/],
    ['s3:http://host:9000', /no bucket after the host/],
    ['s3://a', /'a' is not a valid bucket name/],
    ['s3://bkt/../x', /'\.' and '\.\.' are not allowed/],
    ['s3:http://host:99999/bkt', /is not a host\[:port\]/],
  ])('refuses %s with a UsageError showing both forms', (input, why) => {
    const err = (() => {
      try {
        parseS3Location(input);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).toContain('expected s3://bucket/prefix (AWS) or s3:https://host:port/bucket/prefix');
  });
});

describe('plain http only to this machine', () => {
  it.each([
    ['localhost', true], ['LOCALHOST', true], ['127.0.0.1', true], ['127.1.2.3', true], ['[::1]', true], ['::1', true],
    ['rgw.localhost', true], ['[::ffff:127.0.0.1]', true],
    ['192.0.2.2', false], ['10.0.0.1', false], ['128.0.0.1', false], ['localhost.example.org', false], ['127.0.0.1.nip.io', false],
    ['[::2]', false], ['[fe80::1]', false],
  ])('%s is loopback: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  const refusal = (location: string, allow = false): unknown => {
    try {
      requireSecureTransport(parseS3Location(location), allow);
    } catch (e) {
      return e;
    }
    return undefined;
  };

  it.each(['s3:http://127.0.0.1:7480/bkt', 's3:http://localhost:9000/bkt/p', 's3:http://[::1]:7480/bkt', 's3:https://rgw.lan/bkt', 's3://bkt/p'])(
    'allows %s', (location) => {
      expect(refusal(location)).toBeUndefined();
    },
  );

  it('refuses s3:http:// to another host with one line naming --insecure-http, and allows it with the flag', () => {
    const err = refusal('s3:http://rgw.lan:7480/bkt/ferry');
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe(
      's3:http://rgw.lan:7480/bkt/ferry: plain http to another host lets anyone on the network read, replay or alter the requests; ' +
        'use s3:https://… (for a private CA set NODE_EXTRA_CA_CERTS=/path/ca.pem), or pass --insecure-http to allow it',
    );
    expect(refusal('s3:http://rgw.lan:7480/bkt/ferry', true)).toBeUndefined();
  });

  it('openBackend applies the rule', async () => {
    expect(() => openBackend('s3:http://192.0.2.9:7480/bkt/p')).toThrow(/--insecure-http/);
    const allowed = openBackend('s3:http://192.0.2.9:7480/bkt/p', { insecureHttp: true });
    expect(allowed).toBeInstanceOf(S3Backend);
    await allowed.close();
  });
});

describe('openBackend', () => {
  it('gives LocalBackend for paths, S3Backend for s3: locations, and refuses other schemes', async () => {
    expect(openBackend('/mnt/usb/ferry')).toBeInstanceOf(LocalBackend);
    expect(openBackend('relative/dir')).toBeInstanceOf(LocalBackend);
    const s3 = openBackend('s3:http://127.0.0.1:7480/bkt/p', { s3: { region: 'eu-west-1' } });
    expect(s3).toBeInstanceOf(S3Backend);
    expect(s3.location).toBe('s3:http://127.0.0.1:7480/bkt/p');
    await s3.close();
    expect(() => openBackend('sftp://host/path')).toThrow(UsageError);
  });

  it('wrapBackend stacks cache → retry → (rate limit) → S3, and leaves a local directory bare', async () => {
    const s3 = openBackend('s3:http://127.0.0.1:7480/bkt/p');
    const stack = wrapBackend(s3, { cacheDir: '/tmp/x', rateLimit: { uploadBytesPerSec: 1000 } });
    expect(stack).toBeInstanceOf(CachedBackend);
    expect(wrapBackend(s3)).toBeInstanceOf(RetryBackend);
    const local = openBackend('/tmp/y');
    expect(wrapBackend(local, { cacheDir: '/tmp/x' })).toBe(local);
    await s3.close();
  });
});

describe('isTransientError', () => {
  const e = (status: number | undefined, code: string): StorageRequestError => new StorageRequestError('x', status, code);
  it.each([
    [e(503, 'SlowDown'), true],
    [e(500, 'InternalError'), true],
    [e(429, 'TooManyRequests'), true],
    [e(408, 'RequestTimeout'), true],
    [e(undefined, 'ECONNRESET'), true],
    [e(undefined, 'TimeoutError'), true],
    [e(undefined, 'TruncatedResponse'), true],
    [e(403, 'SignatureDoesNotMatch'), false],
    [e(403, 'AccessDenied'), false],
    [e(404, 'NoSuchBucket'), false],
    [e(400, 'InvalidRequest'), false],
    [e(416, 'ShortObject'), false],
    [new StorageError('disk full'), false],
    [Object.assign(new Error('raw'), { code: 'ECONNRESET' }), true],
  ])('%#: %s → %s', (err, transient) => {
    expect(isTransientError(err)).toBe(transient);
  });
});
