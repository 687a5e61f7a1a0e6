// A repository on S3 behaves exactly like one on a local directory: the same
// scenarios run over both (tests/support/repositoryScenarios.ts), against a
// real Ceph RADOS Gateway. Then what only S3 has: the local cache that spares
// a nightly run from downloading index files and restore points again, retries
// through injected faults, Object Lock, bandwidth limits.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectRetentionCommand } from '@aws-sdk/client-s3';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  FAST_KDF,
  ferry,
  overwriteRandomPages,
  sha256File,
  TestRepo,
  useScratch,
  writeRandomishImage,
} from '../support';
import { useS3Server } from '../support/s3server';
import { FaultProxy, SeenRequest } from '../support/faultproxy';
import { repositoryScenarios } from '../support/repositoryScenarios';

const MiB = 1024 * 1024;
const scratch = useScratch('s3-repository');
const s3 = useS3Server();
// Each test run has its own cache, never the user's ~/.cache.
process.env.XDG_CACHE_HOME = scratch.path('cache');

let localRepositories = 0;
repositoryScenarios('a local directory', scratch, { newLocation: async () => scratch.path(`local-${++localRepositories}`) });
repositoryScenarios('S3 (Ceph RGW)', scratch, { newLocation: () => s3.server.newLocation('ferry') });

describe('S3 specifics', () => {
  let proxy: FaultProxy;
  let image: string;

  beforeAll(async () => {
    proxy = await FaultProxy.start(s3.server.endpoint);
    image = scratch.path('nightly.img');
    writeRandomishImage(image, 24 * MiB, 99);
  });
  afterAll(async () => {
    await proxy?.close();
  });

  /** A repository reached through the fault proxy, so every request is seen. */
  async function proxiedRepo(name: string): Promise<TestRepo> {
    const location = await s3.server.newLocation('ferry', proxy.endpoint);
    return TestRepo.init(scratch, name, { dir: location });
  }

  const gets = (reqs: SeenRequest[], folder: string): SeenRequest[] =>
    reqs.filter((r) => r.method === 'GET' && new RegExp(`/${folder}/[0-9a-f]{16}`).test(r.path));

  it('a nightly run downloads no index file or restore point it has seen before (local cache)', async () => {
    const repo = await proxiedRepo('cached');
    await repo.backup('web', [image]);
    overwriteRandomPages(image, 4, 5);
    proxy.reset();
    const second = await repo.backup('web', [image]);
    const nightly = [...proxy.requests];
    expect(gets(nightly, 'index'), 'index files read from the cache').toEqual([]);
    expect(gets(nightly, 'snapshots'), 'restore points read from the cache').toEqual([]);
    expect(gets(nightly, 'keys'), 'key slots read from the cache').toEqual([]);

    // `list` and `restore` the next morning: still no downloads of what the cache holds.
    proxy.reset();
    expect((await repo.list()).map((p) => p.id)).toContain(second.id);
    expect(gets(proxy.requests, 'snapshots')).toEqual([]);
    const out = scratch.path('cached-restore');
    expectSuccess(await repo.run(['restore', second.id, '--to', out]));
    expect(await sha256File(`${out}/nightly.img`)).toBe(await sha256File(image));
    console.log(`nightly backup on S3: ${nightly.length} requests (${nightly.filter((r) => r.method === 'PUT').length} PUT, ${nightly.filter((r) => r.method === 'GET').length} GET)`);

    // With --no-cache the same command must fetch them: the counts above mean something.
    proxy.reset();
    expectSuccess(await repo.run(['list', '--no-cache']));
    expect(gets(proxy.requests, 'snapshots').length).toBeGreaterThan(0);
  });

  it('a backup survives injected 503 SlowDown, 500s and dropped connections, and restores bit-exact', async () => {
    const repo = await proxiedRepo('faulty');
    proxy.reset();
    proxy.inject({ fault: { kind: 'status', status: 503, code: 'SlowDown' }, method: 'PUT', path: /\/data\//, times: 2 });
    proxy.inject({ fault: { kind: 'drop', afterBytes: 0 }, method: 'PUT', path: /\/index\//, times: 1 });
    proxy.inject({ fault: { kind: 'status', status: 500, code: 'InternalError' }, method: 'GET', path: /list-type=2/, times: 1 });
    proxy.inject({ fault: { kind: 'drop', afterBytes: 100 }, method: 'GET', path: /\/keys\//, times: 1 });
    const r = await repo.run(['backup', '--guest', 'web', image, '--no-cache']);
    expectSuccess(r);
    expect(proxy.pending, 'every injected fault was hit').toBe(0);
    expect(r.stderr, 'retries are logged for the cron mail').toMatch(/retry/);
    const out = scratch.path('faulty-restore');
    expectSuccess(await repo.run(['restore', r.stdout.trim(), '--to', out]));
    expect(await sha256File(`${out}/nightly.img`)).toBe(await sha256File(image));
    await repo.expectCheckPasses(true);
  });

  it('--object-lock-days writes every object with an Object Lock retention', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const repo = await TestRepo.init(scratch, 'locked', { dir: s3.server.location(bucket, 'ferry') });
    const r = await repo.run(['backup', '--guest', 'web', '--object-lock-days', '2', image, '--json']);
    expectSuccess(r);
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    const retention = await s3.server.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: `ferry/snapshots/${id}` }));
    const until = retention.Retention?.RetainUntilDate?.getTime() ?? 0;
    expect(until).toBeGreaterThan(Date.now() + 1.5 * 86_400_000);
    expect(until).toBeLessThan(Date.now() + 2.5 * 86_400_000);
  });

  it('refuses --object-lock-days on a local directory with a clear error', async () => {
    const dir = scratch.path('local-locked');
    const r = await ferry(['init', '--repo', dir, '--object-lock-days', '3', ...FAST_KDF], { env: { FERRY_PASSWORD: 'x' } });
    expectCleanFailure(r, { code: EXIT.usage, message: /object-lock-days.*S3/ });
    expect(fs.existsSync(`${dir}/config`)).toBe(false);
  });

  it('--limit-upload caps the upload rate of a backup', async () => {
    const repo = await TestRepo.init(scratch, 'limited', { dir: await s3.server.newLocation('ferry') });
    const small = scratch.path('limited.img');
    writeRandomishImage(small, 8 * MiB, 7, { holes: 0, text: 0 });
    const t0 = performance.now();
    const summary = await repo.backup('web', [small], ['--limit-upload', '2M']);
    const seconds = (performance.now() - t0) / 1000;
    // ~8 MiB of incompressible data at 2 MiB/s (burst 0.1 s) takes at least ~3.5 s.
    expect(summary.newBytes).toBeGreaterThan(7 * MiB);
    expect(seconds).toBeGreaterThan(((summary.newBytes / (2 * MiB)) - 0.5));
  });

  it('rejects a malformed rate with a clear error', async () => {
    const r = await ferry(['list', '--repo', scratch.path('x'), '--limit-download', 'fast'], { env: { FERRY_PASSWORD: 'x' } });
    expectCleanFailure(r, { code: EXIT.usage, message: /--limit-download: 'fast' is not a rate/ });
  });
});
