// A real S3 server for a test file: a throw-away Ceph RGW started by
// scripts/testbed/ceph-rgw.sh in a scratch dir (once per file, ~2 s), a fresh
// bucket per test. Call useS3Server() at the top of a describe/file.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { useScratch } from './scratch';

const run = promisify(execFile);
const SCRIPT = path.resolve(__dirname, '../../scripts/testbed/ceph-rgw.sh');

export interface S3TestServer {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** A raw SDK client with admin-ish rights (the test user) for setup and inspection. */
  client: S3Client;
  /** Seconds the cluster took to answer S3. */
  startSeconds: number;
  /** Create a bucket with a unique name; `objectLock` also turns on versioning. */
  createBucket(options?: { objectLock?: boolean }): Promise<string>;
  /** `s3:http://127.0.0.1:PORT/bucket/prefix` through `endpoint` (or another, e.g. a proxy). */
  location(bucket: string, prefix?: string, endpoint?: string): string;
  /** A repository location in a bucket of its own: `location(await createBucket(), prefix, endpoint)`. */
  newLocation(prefix?: string, endpoint?: string): Promise<string>;
  stop(): Promise<void>;
}

/** Start a cluster whose files live in `dir` (a fresh directory; `stop()` removes it). */
export async function startS3Server(dir: string): Promise<S3TestServer> {
  const t0 = performance.now();
  let stdout: string;
  try {
    ({ stdout } = await run(SCRIPT, ['start', dir], {
      timeout: 120_000,
      // The cluster stops itself if this test process dies before afterAll.
      env: { ...process.env, FERRY_RGW_WATCH_PID: String(process.pid) },
    }));
  } catch (err) {
    await run(SCRIPT, ['stop', dir]).catch(() => undefined);
    throw err;
  }
  const startSeconds = (performance.now() - t0) / 1000;
  const env = Object.fromEntries(
    stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const endpoint = env.FERRY_TEST_S3_ENDPOINT;
  // The backend under test uses the default AWS credential chain, exactly as in production.
  process.env.AWS_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY;
  process.env.AWS_REGION = env.AWS_REGION;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: env.AWS_REGION,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let n = 0;
  const createBucket = async (options: { objectLock?: boolean } = {}): Promise<string> => {
    const bucket = `ferry-test-${++n}-${randomBytes(3).toString('hex')}`;
    await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: options.objectLock || undefined }));
    return bucket;
  };
  const location = (bucket: string, prefix = '', via = endpoint): string => `s3:${via}/${bucket}${prefix ? `/${prefix}` : ''}`;
  return {
    endpoint,
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    region: env.AWS_REGION,
    client,
    startSeconds,
    createBucket,
    location,
    async newLocation(prefix = 'ferry', via = endpoint) {
      return location(await createBucket(), prefix, via);
    },
    async stop() {
      client.destroy();
      await run(SCRIPT, ['stop', dir]);
    },
  };
}

/** Start the server in beforeAll and stop it in afterAll; the getter is valid inside tests. */
export function useS3Server(): { readonly server: S3TestServer } {
  const scratch = useScratch('rgw');
  let server: S3TestServer | undefined;
  beforeAll(async () => {
    server = await startS3Server(scratch.mkdir('cluster'));
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get server(): S3TestServer {
      if (!server) throw new Error('S3 test server not started (use inside a test)');
      return server;
    },
  };
}
