// S3 failures as they happen on real networks, injected by a TCP proxy in
// front of a real Ceph RGW: overload (503 SlowDown), internal errors, dropped
// connections, responses cut short, stalls. S3Backend alone turns each into one
// clear StorageError; RetryBackend(S3Backend) rides them out. Permanent errors
// (wrong secret, NotFound) are never retried.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { NotFoundError, ObjectInfo } from '../../src/storage/backend';
import { S3Backend, S3Options } from '../../src/storage/s3';
import { RetryBackend, RetryEvent } from '../../src/storage/retry';
import { StorageRequestError } from '../../src/storage/errors';
import { StorageError } from '../../src/errors';
import { useS3Server } from '../support/s3server';
import { FaultProxy } from '../support/faultproxy';

const MiB = 1024 * 1024;
const hexName = (): string => randomBytes(32).toString('hex');

const s3 = useS3Server();
let proxy: FaultProxy;
let bucket: string;
let retries: RetryEvent[];

beforeAll(async () => {
  proxy = await FaultProxy.start(s3.server.endpoint);
});
afterAll(async () => {
  await proxy?.close();
});
beforeEach(async () => {
  bucket = await s3.server.createBucket();
  proxy.reset();
  retries = [];
});

/** S3Backend talking through the proxy; a short idle timeout so stalls are quick to test. */
function direct(options: S3Options = {}): S3Backend {
  return new S3Backend(s3.server.location(bucket, 'repo', proxy.endpoint), { idleTimeoutMs: 1500, ...options });
}

function retrying(inner: S3Backend = direct(), maxAttempts = 5): RetryBackend {
  return new RetryBackend(inner, { baseDelayMs: 20, maxDelayMs: 200, maxAttempts, onRetry: (e) => retries.push(e) });
}

async function failure(p: Promise<unknown>): Promise<StorageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the operation to fail').toBeInstanceOf(StorageError);
  const message = (err as Error).message;
  expect(message, 'one line').not.toContain('\n');
  expect(message.startsWith(`s3:${proxy.endpoint}/${bucket}/repo: `), message).toBe(true);
  return err as StorageError;
}

/** Put an object straight to the server (not through the proxy). */
async function seed(name: string, data: Buffer): Promise<void> {
  const be = new S3Backend(s3.server.location(bucket, 'repo'));
  await be.write('data', name, data);
  await be.close();
}

describe('503 SlowDown', () => {
  it('S3Backend alone: a StorageError that says the server asks to slow down', async () => {
    proxy.inject({ method: 'PUT', fault: { kind: 'status', status: 503, code: 'SlowDown' } });
    const be = direct();
    const err = await failure(be.write('index', hexName(), Buffer.from('x')));
    expect(err.message).toMatch(/writing index\/[0-9a-f]{64}: the server asks to slow down \(503 SlowDown\)/);
    expect(err).toMatchObject({ status: 503, code: 'SlowDown' });
    await be.close();
  });

  it('RetryBackend: retries with backoff, logs each retry, and the object is stored', async () => {
    proxy.inject({ method: 'PUT', times: 2, fault: { kind: 'status', status: 503, code: 'SlowDown' } });
    const be = retrying();
    const name = hexName();
    await be.write('index', name, Buffer.from('payload'));
    expect(retries.map((r) => [r.operation, r.attempt, (r.error as StorageRequestError).code])).toEqual([
      ['write', 1, 'SlowDown'],
      ['write', 2, 'SlowDown'],
    ]);
    expect(retries[1].delayMs).toBeGreaterThanOrEqual(20); // second backoff step: 20..40 ms
    expect((await be.read('index', name)).toString()).toBe('payload');
    expect(proxy.requests.filter((r) => r.method === 'PUT').length).toBe(3);
    await be.close();
  });

  it('RetryBackend: 500 on HEAD (stat) and on a listing page in the middle of pagination', async () => {
    const names = Array.from({ length: 9 }, hexName).sort();
    const plain = direct({ listPageSize: 3 });
    for (const n of names) await plain.write('restorepoints', n, Buffer.from(n));
    proxy.reset();
    proxy.inject({ method: 'HEAD', fault: { kind: 'status', status: 500, code: 'InternalError' } });
    // The second page request fails after the first page was already handed out.
    proxy.inject({ method: 'GET', path: /[?&]continuation-token=/, fault: { kind: 'status', status: 503, code: 'SlowDown' } });
    const be = retrying(plain);
    expect(await be.stat('restorepoints', names[0])).toMatchObject({ name: names[0], size: 64 });
    const listed: ObjectInfo[] = [];
    for await (const x of be.list('restorepoints')) listed.push(x);
    expect(listed.map((x) => x.name)).toEqual(names); // each exactly once, despite the restart
    expect(retries.map((r) => r.operation)).toEqual(['stat', 'list']);
    await be.close();
  });

  it('RetryBackend gives up after maxAttempts and says so', async () => {
    proxy.inject({ method: 'GET', times: 10, fault: { kind: 'status', status: 503, code: 'SlowDown' } });
    const name = hexName();
    await seed(name, Buffer.from('x'));
    const be = retrying(direct(), 3);
    const err = await failure(be.read('data', name));
    expect(err.message).toMatch(/\(503 SlowDown\).*\(gave up after 3 attempts\)$/);
    expect(proxy.requests.length).toBe(3);
    await be.close();
  });
});

describe('a connection dropped in the middle of a response', () => {
  const data = randomBytes(256 * 1024);

  it('S3Backend alone: a StorageError saying the connection dropped', async () => {
    const name = hexName();
    await seed(name, data);
    proxy.inject({ method: 'GET', fault: { kind: 'drop', afterBytes: 4096 } });
    const be = direct();
    const err = await failure(be.read('data', name));
    expect(err.message).toMatch(/reading data\/[0-9a-f]{2}\/[0-9a-f]{64}: connection dropped \(ECONNRESET\): run the command again$/);
    await be.close();
  });

  it('RetryBackend: reads the whole object on the next attempt', async () => {
    const name = hexName();
    await seed(name, data);
    proxy.inject({ method: 'GET', fault: { kind: 'drop', afterBytes: 4096 } });
    const be = retrying();
    expect((await be.read('data', name)).equals(data)).toBe(true);
    expect(retries).toHaveLength(1);
    await be.close();
  });

  it('RetryBackend: a PUT whose connection drops before the answer is sent again', async () => {
    proxy.inject({ method: 'PUT', fault: { kind: 'drop', afterBytes: 0 } });
    const be = retrying();
    const name = hexName();
    await be.write('data', name, data);
    expect((await be.read('data', name)).equals(data)).toBe(true);
    expect(retries.map((r) => r.operation)).toEqual(['write']);
    await be.close();
  });
});

describe('a response cut short (clean close before Content-Length bytes)', () => {
  const data = randomBytes(256 * 1024);

  it('S3Backend alone: a StorageError, never a short buffer', async () => {
    const name = hexName();
    await seed(name, data);
    proxy.inject({ method: 'GET', fault: { kind: 'truncate', afterBytes: 100_000 } });
    const be = direct();
    const err = await failure(be.readRange('data', name, 1000, 200_000));
    expect(err.message).toMatch(/connection dropped|cut short/);
    expect(err).toBeInstanceOf(StorageRequestError);
    await be.close();
  });

  it('RetryBackend: the range is read again in full', async () => {
    const name = hexName();
    await seed(name, data);
    proxy.inject({ method: 'GET', fault: { kind: 'truncate', afterBytes: 100_000 } });
    const be = retrying();
    expect((await be.readRange('data', name, 1000, 200_000)).equals(data.subarray(1000, 201_000))).toBe(true);
    expect(retries).toHaveLength(1);
    await be.close();
  });
});

describe('a stall longer than the idle timeout', () => {
  it('S3Backend alone: a timeout StorageError after about the idle timeout', async () => {
    const name = hexName();
    await seed(name, Buffer.from('late'));
    proxy.inject({ method: 'GET', fault: { kind: 'stall', ms: 5000 } });
    const be = direct({ idleTimeoutMs: 1000 });
    const t0 = performance.now();
    const err = await failure(be.read('data', name));
    const took = performance.now() - t0;
    expect(err.message).toMatch(/no answer for 1 s \(timeout\)/);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(4000);
    await be.close();
  });

  it('RetryBackend: the next attempt gets through', async () => {
    const name = hexName();
    await seed(name, Buffer.from('late'));
    proxy.inject({ method: 'GET', fault: { kind: 'stall', ms: 5000 } });
    const be = retrying(direct({ idleTimeoutMs: 1000 }));
    expect((await be.read('data', name)).toString()).toBe('late');
    expect(retries.map((r) => (r.error as StorageRequestError).code)).toEqual(['TimeoutError']);
    await be.close();
  });
});

describe('multipart upload under faults', () => {
  it('a failed part fails the write, leaves no object and no upload behind; with retries it succeeds', async () => {
    const data = randomBytes(20 * MiB); // above the 16 MiB threshold: 3 parts of 8 MiB
    const name = hexName();
    proxy.inject({ method: 'PUT', path: /partNumber=2/, fault: { kind: 'status', status: 500, code: 'InternalError' } });
    const plain = direct();
    const err = await failure(plain.write('data', name, data));
    expect(err.message).toMatch(/server error \(500 InternalError\)/);
    const listed = await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(listed.Contents ?? []).toEqual([]);
    const uploads = await s3.server.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);

    proxy.inject({ method: 'PUT', path: /partNumber=3/, fault: { kind: 'drop', afterBytes: 0 } });
    const be = retrying(plain);
    await be.write('data', name, data);
    expect((await be.read('data', name)).equals(data)).toBe(true);
    await be.close();
  });
});

describe('permanent errors are not retried', () => {
  it('a wrong secret: one request, one line naming the fix', async () => {
    const be = retrying(
      direct({ credentials: { accessKeyId: s3.server.accessKeyId, secretAccessKey: 'not-the-secret' } }),
      8,
    );
    const err = await failure(be.write('config', 'config', Buffer.from('x')));
    expect(err.message).toBe(
      `s3:${proxy.endpoint}/${bucket}/repo: writing config: access denied (403 SignatureDoesNotMatch): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY`,
    );
    expect(proxy.requests).toHaveLength(1);
    expect(retries).toEqual([]);
    await be.close();
  });

  it('an unknown access key: same advice, no retry', async () => {
    const be = retrying(direct({ credentials: { accessKeyId: 'NOSUCHKEY', secretAccessKey: 'x' } }));
    const err = await failure(be.read('config', 'config'));
    expect(err.message).toMatch(/access denied \(403 InvalidAccessKeyId\): check AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY$/);
    expect(proxy.requests).toHaveLength(1);
    await be.close();
  });

  it('NotFound: one request, NotFoundError', async () => {
    const be = retrying();
    await expect(be.read('index', hexName())).rejects.toBeInstanceOf(NotFoundError);
    expect(proxy.requests).toHaveLength(1);
    expect(retries).toEqual([]);
    await be.close();
  });

  it('a server that is not there: ECONNREFUSED is retried (it may be restarting), then a clear error', async () => {
    const be = new RetryBackend(new S3Backend(`s3:http://127.0.0.1:1/${bucket}/repo`), {
      baseDelayMs: 10,
      maxAttempts: 2,
      onRetry: (e) => retries.push(e),
    });
    const err = await be.stat('config', 'config').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(/connection refused \(ECONNREFUSED\): is the S3 server running at that address\? \(gave up after 2 attempts\)$/);
    expect(retries).toHaveLength(1);
    await be.close();
  });
});

describe('request counts (what each operation costs on a billed S3)', () => {
  it('one request per small write/read/stat/remove; multipart = create + parts + complete; list = one per page', async () => {
    const be = direct({ listPageSize: 4 });
    const count = async (fn: () => Promise<unknown>): Promise<string[]> => {
      proxy.reset();
      await fn();
      return proxy.requests.map((r) => r.method);
    };
    const name = hexName();
    expect(await count(() => be.write('index', name, Buffer.from('x')))).toEqual(['PUT']);
    expect(await count(() => be.read('index', name))).toEqual(['GET']);
    expect(await count(() => be.readRange('index', name, 0, 1))).toEqual(['GET']);
    expect(await count(() => be.stat('index', name))).toEqual(['HEAD']);
    expect(await count(() => be.remove('index', name))).toEqual(['DELETE']);
    // 20 MiB in 8 MiB parts: 3 parts.
    expect((await count(() => be.write('data', name, randomBytes(20 * MiB)))).sort()).toEqual(['POST', 'POST', 'PUT', 'PUT', 'PUT']);
    for (let i = 0; i < 9; i++) await be.write('keys', hexName(), Buffer.from('k'));
    expect(await count(async () => {
      for await (const _ of be.list('keys')) void _;
    })).toEqual(['GET', 'GET', 'GET']);
    await be.close();
  });
});

describe('messages for errors without a body (HEAD)', () => {
  it('stat with a wrong secret says access denied and what to check', async () => {
    const be = direct({ credentials: { accessKeyId: s3.server.accessKeyId, secretAccessKey: 'not-the-secret' } });
    const err = await failure(be.stat('config', 'config'));
    expect(err.message).toMatch(/reading config: access denied \(403\): check AWS_ACCESS_KEY_ID\/AWS_SECRET_ACCESS_KEY and the permissions on bucket/);
    await be.close();
  });

  it('stat in a missing bucket is an error, not "no such object"', async () => {
    const be = new S3Backend(s3.server.location('no-such-bucket', 'repo'));
    const err = await be.stat('config', 'config').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as Error).message).toMatch(/no-such-bucket\/repo: reading: bucket 'no-such-bucket' does not exist \(404 NoSuchBucket\): create it first/);
    await be.close();
  });
});
