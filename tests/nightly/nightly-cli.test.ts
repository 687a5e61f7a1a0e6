// `ferry nightly` end to end, through the CLI, over a fleet of a real QEMU
// guest (live copy) and static guests, one of them broken, with a local
// copy, an RGW copy and a USB copy whose drive is not there: the report
// (--json and the human summary), the Prometheus textfile read with a
// Prometheus text-format parser, and the webhook received by a local HTTP
// server that fails twice first. A bad [nightly] key does nothing (exit 2).
import * as fs from 'node:fs';
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { useScratch, writeRandomishImage } from '../support';
import { ferry, expectSuccess, FAST_KDF, EXIT } from '../support/ferry';
import { useS3Server } from '../support/s3server';
import { startGuest, type TestGuest } from '../support/qemuGuest';
import type { NightlyReport } from '../../src/nightly/report';

const MiB = 1024 * 1024;
const scratch = useScratch('nightly-cli');
const s3 = useS3Server();
const env = { FERRY_PASSWORD: 'nightly-test', FERRY_TEST_WEBHOOK_DELAY_MS: '20' };
let repo: string;
let localCopy: string;
let s3Copy: string;
let absentUsb: string;
let guest: TestGuest;
let statics: string;

/** The webhook receiver: answers 503 to the first `failFirst` POSTs, then 204. */
const hook = { bodies: [] as string[], calls: 0, failFirst: 2, url: '' };
const hookServer = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    hook.calls++;
    if (hook.calls <= hook.failFirst) {
      res.statusCode = 503;
    } else {
      hook.bodies.push(body);
      res.statusCode = 204;
    }
    res.end();
  });
});
afterAll(() => new Promise((r) => hookServer.close(r)));

const ids = async (location: string) =>
  (JSON.parse(expectSuccess(await ferry(['list', '--repo', location, '--json'], { env }))) as { id: string }[]).map((p) => p.id).sort();

function conf(name: string, nightly: string[], exclude = ['lab*']): string {
  const file = scratch.path(name);
  const staticGuest = (g: string, disk: string) => `[[static.guest]]\nname = "${g}"\ndisks = [${JSON.stringify(disk)}]\n`;
  fs.writeFileSync(file, [
    `repository = ${JSON.stringify(repo)}`,
    `exclude = ${JSON.stringify(exclude)}`,
    `[qemu]\nqmp_sockets = [${JSON.stringify(guest.qmpSocket)}]\n`,
    staticGuest('app01', `${statics}/app01.img`),
    staticGuest('broken01', `${statics}/broken01.img`),
    staticGuest('lab01', `${statics}/app01.img`),
    '[retention]\nkeep_last = 1\n',
    '[nightly]',
    `work_dir = ${JSON.stringify(scratch.mkdir('work'))}`,
    ...nightly,
  ].join('\n'));
  return file;
}

beforeAll(async () => {
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  hook.url = `http://127.0.0.1:${(hookServer.address() as { port: number }).port}/ferry`;
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, '--pack-size', '1M', ...FAST_KDF], { env }), 'init');
  localCopy = scratch.path('copy');
  expectSuccess(await ferry(['init', '--from', repo, '--repo', localCopy], { env }), 'init --from local');
  s3Copy = await s3.server.newLocation('nightly');
  expectSuccess(await ferry(['init', '--from', repo, '--repo', s3Copy], { env }), 'init --from s3');
  absentUsb = `/mnt/ferry-nightly-test-${process.pid}-absent/ferry`;
  statics = scratch.mkdir('static');
  writeRandomishImage(`${statics}/app01.img`, 12 * MiB, 7);
  // A guest that no hypervisor lists any more, backed up long ago.
  const old = scratch.path('old01.img');
  writeRandomishImage(old, 4 * MiB, 8);
  expectSuccess(await ferry(['backup', '--repo', repo, '--guest', 'old01', old], { env }), 'backup old01');
  guest = await startGuest(scratch, 'web01');
  await guest.waitForMoreWrites(3);
}, 600_000);

describe('ferry nightly', () => {
  let first: { code: number | null; stdout: string; stderr: string };
  let report: NightlyReport;
  let textfile: string;

  beforeAll(async () => {
    textfile = scratch.path('ferry.prom');
    const file = conf('nightly.conf', [
      'prune_on = "daily"',
      'check_read_data = "50%"',
      `offsite = [${JSON.stringify(localCopy)}, ${JSON.stringify(absentUsb)}, ${JSON.stringify(s3Copy)}]`,
      `textfile = ${JSON.stringify(textfile)}`,
      `notify_webhook = ${JSON.stringify(hook.url)}`,
    ]);
    first = await ferry(['nightly', '--config', file, '--json'], { env: { ...env, FERRY_RUN_DIR: scratch.mkdir('run') }, timeoutMs: 600_000 });
    report = JSON.parse(first.stdout) as NightlyReport;
  }, 600_000);

  it('a failing guest makes exit 1 and is named, while the others are backed up', () => {
    expect(first.code, first.stderr).toBe(1);
    expect(first.stderr.trim().split('\n').pop()).toMatch(/^ferry: nightly: 2 problem\(s\); first: /);
    expect(report.ok).toBe(false);
    expect(report.guests.map((g) => [g.guest, g.ok])).toEqual([['app01', true], ['broken01', false], ['web01', true]]);
    expect(report.guests.find((g) => g.guest === 'broken01')!.error).toMatch(/broken01\.img/);
    const web = report.guests.find((g) => g.guest === 'web01')!;
    expect(web.readBytes).toBeGreaterThan(0);
    expect(web.storedBytes).toBeGreaterThan(0);
    expect(web.durationMs).toBeGreaterThan(0);
    expect(report.problems).toEqual([
      'coverage: broken01 has no restore point',
      expect.stringMatching(/^backup broken01: .*broken01\.img/),
    ]);
  });

  it('coverage lists every guest the hypervisors know, and calls out the excluded and the gone', () => {
    expect(report.coverage.guests.map((g) => [g.guest, g.state])).toEqual([
      ['app01', 'ok'], ['broken01', 'none'], ['lab01', 'excluded'], ['old01', 'gone'], ['web01', 'ok'],
    ]);
    const web = report.coverage.guests.find((g) => g.guest === 'web01')!;
    expect(web.lastGood!.id).toBe(report.guests.find((g) => g.guest === 'web01')!.id);
    expect(web.driver).toBe('qemu');
  });

  it('runs every later step although a guest failed: forget, prune, check with a read subset, and each offsite sync', () => {
    const steps = report.steps.map((s) => [s.step, s.target ?? '', s.status]);
    expect(steps).toEqual([
      ['backup', '', 'ok'], ['forget', '', 'ok'], ['prune', '', 'ok'], ['check', '', 'ok'],
      ['sync', localCopy, 'ok'], ['sync', absentUsb, 'skipped'], ['sync', s3Copy, 'ok'],
    ]);
    expect(report.steps.find((s) => s.target === absentUsb)!.reason).toMatch(/does not exist \(drive not mounted\?\)/);
    const check = report.steps.find((s) => s.step === 'check')!;
    expect(check.figures).toMatchObject({ subset: 1, subsets: 2 });
    expect(check.figures!.packsRead).toBeGreaterThan(0);
    expect(check.figures!.packsRead).toBeLessThan(check.figures!.packs);
  });

  it('the offsite copies hold every restore point of the repository', async () => {
    const primary = await ids(repo);
    expect(primary).toHaveLength(3);
    expect(await ids(localCopy)).toEqual(primary);
    expect(await ids(s3Copy)).toEqual(primary);
  });

  it('writes the textfile, which a Prometheus text-format parser reads', () => {
    const families = parsePrometheusTextFormat(fs.readFileSync(textfile, 'utf8'));
    const sample = (name: string, labels: Record<string, string>) =>
      families.find((f) => f.name === name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
    const web = report.guests.find((g) => g.guest === 'web01')!;
    expect(Number(sample('ferry_guest_last_success_timestamp_seconds', { guest: 'web01' })?.value)).toBe(Date.parse(web.time!) / 1000);
    expect(Number(sample('ferry_guest_read_bytes', { guest: 'web01' })?.value)).toBe(web.readBytes);
    expect(Number(sample('ferry_guest_stored_bytes', { guest: 'web01' })?.value)).toBe(web.storedBytes);
    expect(Number(sample('ferry_guest_backup_duration_seconds', { guest: 'web01' })?.value)).toBe(web.durationMs / 1000);
    expect(Number(sample('ferry_guest_pause_seconds', { guest: 'web01' })?.value)).toBe(web.pauseMs / 1000);
    expect(Number(sample('ferry_guest_backup_error', { guest: 'broken01' })?.value)).toBe(1);
    expect(Number(sample('ferry_nightly_success', {})?.value)).toBe(0);
    const size = Number(sample('ferry_repository_size_bytes', { repository: repo, role: 'primary' })?.value);
    expect(size).toBe(report.repositories[0].sizeBytes);
    expect(size).toBeGreaterThan(0);
    expect(sample('ferry_repository_size_bytes', { repository: s3Copy, role: 'offsite' })).toBeDefined();
    // The copies follow [retention] and were pruned tonight (prune_on = "daily"): their last prune is reported too.
    const copyPruned = report.repositories.find((x) => x.location === s3Copy)!.lastPrune!;
    expect(Date.parse(copyPruned)).toBeGreaterThanOrEqual(Date.parse(report.startedAt));
    expect(Number(sample('ferry_repository_last_prune_timestamp_seconds', { repository: s3Copy })?.value)).toBe(Date.parse(copyPruned) / 1000);
    expect(Number(sample('ferry_repository_last_prune_timestamp_seconds', { repository: repo })?.value)).toBe(Date.parse(report.repositories[0].lastPrune!) / 1000);
    expect(sample('ferry_repository_last_check_timestamp_seconds', { repository: repo })).toBeDefined();
    expect(fs.readdirSync(scratch.path('.')).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('POSTs the JSON report to the webhook, retrying after failures', () => {
    expect(hook.calls).toBe(3);
    expect(hook.bodies).toHaveLength(1);
    const posted = JSON.parse(hook.bodies[0]) as NightlyReport;
    const { notifications, ...rest } = report;
    expect(posted).toEqual(rest);
    expect(notifications).toEqual([{ kind: 'webhook', target: `${new URL(hook.url).origin}/…`, ok: true, attempts: 3 }]);
  });

  it('the next night: all done is exit 0, forget keeps the last point, the check reads the next subset, and no webhook on success', async () => {
    const file = conf('night2.conf', [
      'prune_on = "daily"',
      'check_read_data = "50%"',
      `offsite = [${JSON.stringify(localCopy)}]`,
      `notify_webhook = ${JSON.stringify(hook.url)}`,
      `notify_command = ["sh", "-c", ${JSON.stringify(`cat > ${scratch.path('mail.txt')}`)}]`,
    ], ['lab*', 'broken*']);
    const callsBefore = hook.calls;
    const r = await ferry(['nightly', '--config', file], { env: { ...env, FERRY_RUN_DIR: scratch.mkdir('run2') }, timeoutMs: 600_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ferry nightly on .*: OK \(/);
    expect(lines[1]).toMatch(/^coverage: 4 guest\(s\) known, 2 with a restore point within 26 h, 2 excluded, 1 GONE from the hypervisors$/);
    expect(r.stdout).toMatch(/^forget: removed 2 restore point\(s\), kept 3, in 3 group\(s\)/m);
    expect(r.stdout).toMatch(/^check: no damage in \d+ pack\(s\), 3 restore point\(s\), read \d+ pack\(s\) in full \(subset 2\/2\)/m);
    expect(r.stdout).toMatch(/^prune: freed /m);
    // The copy keeps to the same policy: it drops the 2 points the repository forgot, and is pruned tonight too.
    expect(r.stdout).toMatch(/^sync .*: copied .*; forgot 2 by \[retention\]; prune freed /m);
    expect(await ids(localCopy)).toEqual(await ids(repo));
    expect(lines.length).toBeLessThanOrEqual(25);
    expect(hook.calls).toBe(callsBefore); // notify_on = "failure" (the default)
    expect(fs.existsSync(scratch.path('mail.txt'))).toBe(false);
  });
});

describe('ferry nightly notifying on success', () => {
  it('notify_on = "always": the command gets the summary; a dead webhook is reported and changes neither the work nor the exit code', async () => {
    const mail = scratch.path('mail-always.txt');
    const file = conf('always.conf', [
      'prune_on = "never"',
      'check_read_data = "0%"',
      'notify_on = "always"',
      `offsite = [${JSON.stringify(localCopy)}]`,
      'offsite_retention = "keep-all"',
      'notify_webhook = "http://127.0.0.1:1/dead"',
      `notify_command = ["sh", "-c", ${JSON.stringify(`cat > ${mail}`)}]`,
    ], ['lab*', 'broken*']);
    const r = await ferry(['nightly', '--config', file], { env: { ...env, FERRY_RUN_DIR: scratch.mkdir('run3') }, timeoutMs: 600_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^prune: skipped: prune_on = "never"$/m);
    expect(r.stdout).toMatch(/^check: no damage in \d+ pack\(s\), 3 restore point\(s\) \(/m);
    // offsite_retention = "keep-all": the copy keeps the 2 points the repository forgot tonight.
    const primary = await ids(repo);
    const copy = await ids(localCopy);
    expect(copy).toEqual(expect.arrayContaining(primary));
    expect(copy).toHaveLength(primary.length + 2);
    expect(r.stdout).toMatch(/^notify webhook http:\/\/127\.0\.0\.1:1\/…: FAILED: .*\(after 4 attempts\)$/m);
    expect(r.stdout).toMatch(/^notify command sh -c cat > .*: sent$/m);
    expect(r.stderr).toMatch(/^ferry: warning: notify webhook http:\/\/127\.0\.0\.1:1\/… failed: /m);
    expect(r.stdout + r.stderr).not.toContain('/dead'); // the path may hold a token
    const mailed = fs.readFileSync(mail, 'utf8');
    expect(mailed).toMatch(/^ferry nightly on .*: OK \(/);
    expect(mailed).toContain('coverage: 4 guest(s) known, 2 with a restore point within 26 h');
  });
});

describe('ferry nightly with nothing to do', () => {
  it('a bad [nightly] key: exit 2, one line naming file, line and key, and nothing touched', async () => {
    const file = scratch.path('typo.conf');
    fs.writeFileSync(file, `repository = ${JSON.stringify(repo)}\n[nightly]\nprune_on = "sundays"\n`);
    const before = fs.readdirSync(`${repo}/snapshots`).length;
    const r = await ferry(['nightly', '--config', file], { env });
    expect(r.code).toBe(EXIT.usage);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^ferry: nothing done: .*typo\.conf:3: key 'nightly\.prune_on': expected one of "sunday", /);
    expect(fs.readdirSync(`${repo}/snapshots`).length).toBe(before);
  });

  it('a bad --wait-lock: exit 2 (nothing could be done), not a failure of every step', async () => {
    const file = scratch.path('waitlock.conf');
    fs.writeFileSync(file, `repository = ${JSON.stringify(repo)}\n[nightly]\n`);
    const before = fs.readdirSync(`${repo}/snapshots`).length;
    const r = await ferry(['--wait-lock', '10x', 'nightly', '--config', file], { env });
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^ferry: nothing done: --wait-lock: '10x' is not a duration/)]);
    expect(fs.readdirSync(`${repo}/snapshots`).length).toBe(before);
  });

  it('no repository: exit 2 with one line, and the webhook and the textfile hear of it', async () => {
    const file = scratch.path('norepo.conf');
    const prom = scratch.path('norepo.prom');
    fs.writeFileSync(file, `[nightly]\nnotify_webhook = ${JSON.stringify(hook.url)}\ntextfile = ${JSON.stringify(prom)}\n`);
    const posted = hook.bodies.length;
    const r = await ferry(['nightly', '--config', file], { env });
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^ferry: .*norepo\.conf: no repository; set repository = /)]);
    expect(r.stdout).toMatch(/^ferry nightly on .*: NOTHING DONE \(/);
    expect(hook.bodies).toHaveLength(posted + 1);
    expect(JSON.parse(hook.bodies[posted])).toMatchObject({ ok: false, steps: [], problems: [expect.stringMatching(/no repository/)] });
    const success = parsePrometheusTextFormat(fs.readFileSync(prom, 'utf8')).find((f) => f.name === 'ferry_nightly_success');
    expect(success?.metrics.map((m) => m.value)).toEqual(['0']);
  });
});
