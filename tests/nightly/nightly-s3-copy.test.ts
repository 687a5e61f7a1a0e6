// Offsite copies on S3 (Ceph RGW) as a scheduled night runs them, `nightly
// --config F` and nothing more, so what they need is in [nightly]:
// - Object Lock (offsite_object_lock_days, or --object-lock-days): the copy keeps to
//   [retention] as the repository does, but a restore point whose retention
//   has not passed cannot be removed. The night goes on: the point stays, the
//   report counts it, and the copy checks clean. The repository is a local
//   directory, written without a lock.
// - A bandwidth cap (limit_upload) for the uplink the copy goes through.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch, writeRandomishImage } from '../support';
import { EXIT, ferry, expectSuccess, FAST_KDF } from '../support/ferry';
import { useS3Server } from '../support/s3server';
import type { NightlyReport } from '../../src/nightly/report';

const MiB = 1024 * 1024;
const scratch = useScratch('nightly-s3-copy');
const s3 = useS3Server();
const env = { FERRY_PASSWORD: 'locked copy' };
let repo: string;
let copy: string;
let image: string;
let conf: string;

const ids = async (location: string) =>
  (JSON.parse(expectSuccess(await ferry(['list', '--repo', location, '--json'], { env }))) as { id: string }[]).map((p) => p.id).sort();

async function night(n: number): Promise<{ code: number | null; stderr: string; report: NightlyReport }> {
  const r = await ferry(['nightly', '--config', conf, '--json'], {
    env: { ...env, FERRY_RUN_DIR: scratch.mkdir(`run-${n}`), FERRY_STATE_DIR: scratch.path('state') },
    timeoutMs: 300_000,
  });
  return { code: r.code, stderr: r.stderr, report: JSON.parse(r.stdout) as NightlyReport };
}

beforeAll(async () => {
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, '--pack-size', '1M', ...FAST_KDF], { env }), 'init');
  copy = s3.server.location(await s3.server.createBucket({ objectLock: true }), 'copy');
  expectSuccess(await ferry(['init', '--from', repo, '--repo', copy, '--object-lock-days', '1'], { env }), 'init --from');
  image = scratch.path('app01.img');
  writeRandomishImage(image, 4 * MiB, 31, { holes: 0, text: 0 });
  conf = scratch.path('ferry.conf');
  fs.writeFileSync(conf, [
    `repository = ${JSON.stringify(repo)}`,
    `[[static.guest]]\nname = "app01"\ndisks = [${JSON.stringify(image)}]\n`,
    '[retention]\nkeep_last = 1\n',
    '[nightly]',
    `work_dir = ${JSON.stringify(scratch.mkdir('work'))}`,
    'prune_on = "daily"',
    `offsite = [${JSON.stringify(copy)}]`,
    'offsite_object_lock_days = 1', // as a scheduled night runs: `nightly --config F` and nothing more
  ].join('\n'));
}, 120_000);

describe('nightly with an offsite copy under S3 Object Lock', () => {
  it('leaves a copy\'s restore point that is still locked, says so, and keeps the night green', async () => {
    const first = await night(1);
    expect(first.code, first.stderr).toBe(0);
    const [firstPoint] = await ids(repo);
    expect(await ids(copy)).toEqual([firstPoint]);

    writeRandomishImage(image, 4 * MiB, 32, { holes: 0, text: 0 });
    const second = await night(2);
    expect(second.code, second.stderr).toBe(0);
    const [secondPoint] = await ids(repo);
    expect(secondPoint).not.toBe(firstPoint); // the repository forgot the first night
    expect((await ids(copy)).sort()).toEqual([firstPoint, secondPoint].sort()); // the copy could not
    const sync = second.report.steps.find((s) => s.step === 'sync');
    expect(sync).toMatchObject({ status: 'ok', figures: { removed: 0, locked: 1 } });
    expect(sync!.summary).toMatch(/forgot 0 by \[retention\] \(1 more under S3 Object Lock until their retention passes\)/);
    expectSuccess(await ferry(['check', '--repo', copy, '--read-data'], { env }), 'check the copy');
    // What the night wrote to the copy is locked: its newest restore point cannot be removed either.
    const remove = await ferry(['forget', '--repo', copy, '--object-lock-days', '1', secondPoint], { env });
    expect(remove.stderr).toMatch(/protected by Object Lock until/);
    expect(await ids(copy)).toContain(secondPoint);
  });

  it('refuses Object Lock with nothing on S3 to lock, and bad storage flags, before any backup: nothing done, one line', async () => {
    const local = scratch.path('local-only.conf');
    fs.writeFileSync(local, fs.readFileSync(conf, 'utf8').replace(/^offsite = .*$/m, `offsite = [${JSON.stringify(scratch.path('usb-copy'))}]`));
    const withoutKey = scratch.path('local-only-no-key.conf');
    fs.writeFileSync(withoutKey, fs.readFileSync(local, 'utf8').replace(/^offsite_object_lock_days = .*$/m, ''));
    const before = await ids(repo);
    const cases: [string, string[], string][] = [
      [local, [], 'ferry: nothing done: [nightly] offsite_object_lock_days: no offsite copy is on S3; Object Lock applies to S3 locations only'],
      [withoutKey, ['--object-lock-days', '1'], 'ferry: nothing done: --object-lock-days: neither the repository nor an offsite copy is on S3; Object Lock applies to S3 locations only'],
      // With only a local repository and drive, a bad cap would otherwise be ignored; with an S3 copy it failed the sync after the backups.
      [conf, ['--limit-upload', '10MB/sec'], "ferry: nothing done: --limit-upload: '10MB/sec' is not a rate; use bytes per second with K, M or G, e.g. 10M"],
      [conf, ['--object-lock-mode', 'strict'], "ferry: nothing done: --object-lock-mode: 'strict' is not an Object Lock mode; use COMPLIANCE (the default: nobody can shorten or lift the lock) or GOVERNANCE (users allowed to bypass it can)"],
    ];
    for (const [k, [file, flags, line]] of cases.entries()) {
      const r = await ferry(['nightly', '--config', file, ...flags], { env: { ...env, FERRY_RUN_DIR: scratch.mkdir(`run-refused-${k}`) } });
      expect(r.code, r.stderr).toBe(EXIT.usage);
      expect(r.stderr.trim().split('\n')).toEqual([line]);
    }
    expect(await ids(repo)).toEqual(before); // no backup ran
  });

  it('caps the upload to an S3 copy at [nightly] limit_upload', async () => {
    const capped = s3.server.location(await s3.server.createBucket(), 'capped');
    expectSuccess(await ferry(['init', '--from', repo, '--repo', capped], { env }), 'init --from');
    const file = scratch.path('capped.conf');
    fs.writeFileSync(file, fs.readFileSync(conf, 'utf8').replace(/^offsite = .*$/m, `offsite = [${JSON.stringify(capped)}]`).replace(/^offsite_object_lock_days = .*$/m, 'limit_upload = "1M"'));
    const r = await ferry(['nightly', '--config', file, '--json'], { env: { ...env, FERRY_RUN_DIR: scratch.mkdir('run-capped'), FERRY_STATE_DIR: scratch.path('state') }, timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    const sync = (JSON.parse(r.stdout) as NightlyReport).steps.find((s) => s.step === 'sync')!;
    const copied = sync.figures!.copiedBytes!;
    expect(copied).toBeGreaterThan(3.5 * MiB); // the app01 point's incompressible 4 MiB
    // At 1 MiB/s (a burst of 0.1 s) the copy cannot take less than this; a slower machine only adds.
    expect(sync.durationMs / 1000).toBeGreaterThan(copied / MiB - 0.5);
  });
});
