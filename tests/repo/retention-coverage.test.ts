// S3 Object Lock over time (repo/retentionCoverage.ts), on a real Ceph RGW:
// a restore point deduplicates against packs written earlier, whose lock
// ends sooner than its own; backup and sync raise those packs' (and their
// index files' and the config's) retention before writing the point, so
// every restore point stays immutable until its own retention passes. The
// retention each object was given is remembered in the cache
// (storage/retentionMemo.ts), so a night's backup asks S3 about nothing it
// already knows.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectRetentionCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { EXIT, expectCleanFailure, expectSuccess, FAST_KDF, ferry, parseJson, TestRepo, useScratch, writeRandomishImage } from '../support';
import { useS3Server } from '../support/s3server';
import { FaultProxy } from '../support/faultproxy';

const MiB = 1024 * 1024;
const DAY = 86_400_000;
const scratch = useScratch('retention-coverage');
const s3 = useS3Server();
let proxy: FaultProxy;
let bigImage: string;
let smallImage: string;

beforeAll(async () => {
  proxy = await FaultProxy.start(s3.server.endpoint);
  // Incompressible, no holes: 112 MiB in 1 MiB packs is about 100 packs.
  bigImage = scratch.path('big.img');
  writeRandomishImage(bigImage, 112 * MiB, 11, { holes: 0, text: 0 });
  smallImage = scratch.path('small.img');
  writeRandomishImage(smallImage, 6 * MiB, 12, { holes: 0, text: 0 });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
});

interface Retained {
  key: string;
  mode?: string;
  until: number;
}

/** Every object under `prefix` but locks, with its retention as the server reports it. */
async function retentions(bucket: string, prefix: string): Promise<Retained[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key && !o.Key.startsWith(`${prefix}/locks/`)) keys.push(o.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return Promise.all(
    keys.map(async (key) => {
      const r = await s3.server.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
      return { key, mode: r?.Retention?.Mode, until: r?.Retention?.RetainUntilDate?.getTime() ?? 0 };
    }),
  );
}

/** Retention requests the proxy passed since `from`: GetObjectRetention and PutObjectRetention. */
function retentionRequests(from: number): { get: number; put: number } {
  const seen = proxy.requests.slice(from).filter((r) => /[?&]retention(=|&|$)/.test(r.path));
  return { get: seen.filter((r) => r.method === 'GET').length, put: seen.filter((r) => r.method === 'PUT').length };
}

/** A repository in a new Object Lock bucket, reached through the counting proxy; each with its own cache. */
async function lockedRepo(name: string): Promise<{ repo: TestRepo; bucket: string; env: Record<string, string> }> {
  const bucket = await s3.server.createBucket({ objectLock: true });
  const dir = s3.server.location(bucket, 'ferry', proxy.endpoint);
  const passwordFile = scratch.path(`${name}.password`);
  fs.writeFileSync(passwordFile, `pass ${name}\n`, { mode: 0o600 });
  const env = { FERRY_PASSWORD_FILE: passwordFile, XDG_CACHE_HOME: scratch.mkdir(`${name}-cache`) };
  expectSuccess(await ferry(['init', '--repo', dir, '--pack-size', '1M', '--object-lock-days', '1', ...FAST_KDF], { env }), 'init');
  return { repo: new TestRepo(dir, passwordFile), bucket, env };
}

describe('backup into a repository under S3 Object Lock', () => {
  it('a backup that deduplicates against old packs raises their retention past its own; the remembered retentions keep the next nights free of retention requests', async () => {
    const { repo, bucket, env } = await lockedRepo('dedupe');
    let from = proxy.requests.length;
    const first = parseJson<{ id: string }>(await repo.run(['backup', '--guest', 'web', bigImage, '--object-lock-days', '1', '--json'], { env }));
    // What this backup wrote outlasts its restore point by the margin already; only init's config is raised.
    expect(retentionRequests(from)).toEqual({ get: 0, put: 1 });
    const afterFirst = await retentions(bucket, 'ferry');
    const packs = afterFirst.filter((o) => o.key.startsWith('ferry/data/'));
    expect(packs.length, 'about 100 packs').toBeGreaterThanOrEqual(90);
    // One day and a day's margin.
    for (const o of packs) expect(o.until).toBeLessThan(Date.now() + 2.1 * DAY);

    // Night 2, with a longer lock: everything is deduplicated; the point's lock ends about 2 days out.
    from = proxy.requests.length;
    const second = parseJson<{ id: string; objectLock: { objects: number; extended: number } }>(await repo.run(['backup', '--guest', 'web', bigImage, '--object-lock-days', '2', '--json'], { env }));
    const night2 = retentionRequests(from);
    const after = await retentions(bucket, 'ferry');
    const point = after.find((o) => o.key === `ferry/snapshots/${second.id}`)!;
    expect(point.until).toBeGreaterThan(Date.now() + 1.9 * DAY);
    const needed = after.filter((o) => /^ferry\/(data|index)\//.test(o.key) || o.key === 'ferry/config');
    for (const o of needed) {
      expect(o.until, `${o.key} outlasts the restore point that needs it`).toBeGreaterThanOrEqual(point.until);
      expect(o.mode, o.key).toBe('COMPLIANCE');
    }
    // The first point's own object keeps its own, shorter lock: nothing newer needs it.
    expect(after.find((o) => o.key === `ferry/snapshots/${first.id}`)!.until).toBeLessThan(point.until);
    // This host wrote every one of them: no GetObjectRetention, one PutObjectRetention each.
    expect(night2.get).toBe(0);
    expect(night2.put).toBe(needed.length);
    expect(second.objectLock).toMatchObject({ objects: needed.length, extended: needed.length });
    const requestsNight2 = proxy.requests.length - from;

    // Night 3: extended by a margin past the lock, nothing to raise and nothing to ask.
    from = proxy.requests.length;
    parseJson(await repo.run(['backup', '--guest', 'web', bigImage, '--object-lock-days', '2', '--json'], { env }));
    expect(retentionRequests(from)).toEqual({ get: 0, put: 0 });
    const requestsNight3 = proxy.requests.length - from;

    // Without the cache, each needed object costs one GetObjectRetention, and none needs raising.
    from = proxy.requests.length;
    parseJson(await repo.run(['backup', '--guest', 'web', bigImage, '--object-lock-days', '2', '--no-cache', '--json'], { env }));
    const noCache = retentionRequests(from);
    expect(noCache).toEqual({ get: needed.length, put: 0 });
    console.log(
      `retention coverage, ${packs.length} packs, ${needed.length} objects needed: night 2 (raise all) ${requestsNight2} requests, ` +
        `${night2.put} of them PutObjectRetention; night 3 ${requestsNight3} requests, 0 for retention; --no-cache ${proxy.requests.length - from} requests, ${noCache.get} GetObjectRetention`,
    );
  });

  it('--object-lock-mode GOVERNANCE is what new objects get; COMPLIANCE is the default; a raised retention keeps its object\'s mode', async () => {
    const { repo, bucket, env } = await lockedRepo('modes');
    const governed = parseJson<{ id: string }>(await repo.run(['backup', '--guest', 'g', smallImage, '--object-lock-days', '1', '--object-lock-mode', 'GOVERNANCE', '--json'], { env }));
    const before = await retentions(bucket, 'ferry');
    const packs = before.filter((o) => o.key.startsWith('ferry/data/'));
    expect(packs.length).toBeGreaterThan(0);
    for (const o of packs) expect(o.mode, o.key).toBe('GOVERNANCE');
    expect(before.find((o) => o.key === `ferry/snapshots/${governed.id}`)!.mode).toBe('GOVERNANCE');

    const compliant = parseJson<{ id: string }>(await repo.run(['backup', '--guest', 'g', smallImage, '--object-lock-days', '2', '--json'], { env }));
    const after = await retentions(bucket, 'ferry');
    const point = after.find((o) => o.key === `ferry/snapshots/${compliant.id}`)!;
    expect(point.mode).toBe('COMPLIANCE');
    for (const o of after.filter((x) => x.key.startsWith('ferry/data/'))) {
      expect(o.mode, `${o.key}: raised, not turned into another mode`).toBe('GOVERNANCE');
      expect(o.until).toBeGreaterThanOrEqual(point.until);
    }
  });

  it('a bad --object-lock-mode is refused in one line, before anything is written', async () => {
    const bucket = await s3.server.createBucket({ objectLock: true });
    const dir = s3.server.location(bucket, 'ferry');
    const env = { FERRY_PASSWORD: 'x', XDG_CACHE_HOME: scratch.mkdir('bad-mode-cache') };
    expectCleanFailure(await ferry(['init', '--repo', dir, '--object-lock-days', '1', '--object-lock-mode', 'STRICT', ...FAST_KDF], { env }), {
      code: EXIT.usage,
      message: /^ferry: --object-lock-mode: 'STRICT' is not an Object Lock mode; use COMPLIANCE \(the default.*\) or GOVERNANCE/,
    });
    expectCleanFailure(await ferry(['init', '--repo', dir, '--object-lock-mode', 'GOVERNANCE', ...FAST_KDF], { env }), {
      code: EXIT.usage,
      message: /--object-lock-mode: give --object-lock-days N too/,
    });
    const listed = await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(listed.KeyCount ?? 0).toBe(0);

    // A repository that exists: a backup with a bad mode stores nothing.
    expectSuccess(await ferry(['init', '--repo', dir, ...FAST_KDF], { env }));
    const objects = (await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket }))).KeyCount;
    expectCleanFailure(await ferry(['backup', '--repo', dir, '--guest', 'g', smallImage, '--object-lock-days', '1', '--object-lock-mode', 'legal-hold'], { env }), {
      code: EXIT.usage,
      message: /'legal-hold' is not an Object Lock mode/,
    });
    expect((await s3.server.client.send(new ListObjectsV2Command({ Bucket: bucket }))).KeyCount).toBe(objects);
  });
});

describe('sync into a bucket under S3 Object Lock', () => {
  it('raises the retention of the packs an earlier sync copied that the new restore points need, with or without the passphrase', async () => {
    const source = await TestRepo.init(scratch, 'sync-source');
    const env = { XDG_CACHE_HOME: scratch.mkdir('sync-cache'), FERRY_PASSWORD_FILE: source.passwordFile };
    expectSuccess(await source.run(['backup', '--guest', 'web', smallImage], { env }));
    const bucket = await s3.server.createBucket({ objectLock: true });
    const target = s3.server.location(bucket, 'copy');
    expectSuccess(await ferry(['init', '--from', source.path, '--repo', target], { env }));
    expectSuccess(await ferry(['sync', source.path, target, '--object-lock-days', '1'], { env }));
    const firstPacks = (await retentions(bucket, 'copy')).filter((o) => o.key.startsWith('copy/data/'));
    expect(firstPacks.length).toBeGreaterThan(0);

    // A new restore point of the same data at the source: the sync copies it alone, with a 2-day lock.
    const second = parseJson<{ id: string }>(await source.run(['backup', '--guest', 'web', smallImage, '--json'], { env }));
    const summary = parseJson<{ retention?: { extended: number } }>(await ferry(['sync', source.path, target, '--object-lock-days', '2', '--json'], { env }));
    expect(summary.retention?.extended).toBeGreaterThanOrEqual(firstPacks.length);
    let after = await retentions(bucket, 'copy');
    let point = after.find((o) => o.key === `copy/snapshots/${second.id}`)!;
    expect(point.until).toBeGreaterThan(Date.now() + 1.9 * DAY);
    for (const o of after.filter((x) => /^copy\/(data|index)\//.test(x.key) || x.key === 'copy/config')) {
      expect(o.until, `${o.key} outlasts the copied restore point`).toBeGreaterThanOrEqual(point.until);
    }

    // Without the passphrase a sync cannot read which packs a point needs: it raises all the target holds.
    const third = parseJson<{ id: string }>(await source.run(['backup', '--guest', 'web', smallImage, '--json'], { env }));
    expectSuccess(await ferry(['sync', source.path, target, '--object-lock-days', '4'], { env: { ...env, FERRY_PASSWORD_FILE: undefined } }));
    after = await retentions(bucket, 'copy');
    point = after.find((o) => o.key === `copy/snapshots/${third.id}`)!;
    expect(point.until).toBeGreaterThan(Date.now() + 3.9 * DAY);
    for (const o of after.filter((x) => /^copy\/(data|index)\//.test(x.key) || x.key === 'copy/config')) {
      expect(o.until, o.key).toBeGreaterThanOrEqual(point.until);
    }
  });
});
