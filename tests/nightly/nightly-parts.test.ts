// The parts of `ferry nightly` that need no repository: coverage, the human
// and Prometheus forms of the report, the [nightly] table, the rotating
// read-data subset, offsite targets that are not mounted, notifications.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { computeCoverage } from '../../src/nightly/coverage';
import { type NightlyReport, formatHumanReport, problemsOf } from '../../src/nightly/report';
import { renderPromTextfile, writeTextfileAtomically } from '../../src/nightly/promTextfile';
import { copyPruneDue, parseNightlyConfig, pruneTonight } from '../../src/nightly/nightlyConfig';
import { ReadDataCursor, packInSubset, parseSubsetSpec } from '../../src/check/readDataSubset';
import { offsiteSkipReason } from '../../src/nightly/offsite';
import { postWebhook, runNotifyCommand } from '../../src/nightly/notify';
import { ConfigError } from '../../src/config/configError';
import { useScratch } from '../support';

const scratch = useScratch('nightly-parts');
const NOW = new Date('2026-12-01T03:00:00Z');
const H = 3_600_000;
const at = (hoursAgo: number) => new Date(NOW.getTime() - hoursAgo * H).toISOString();

describe('coverage', () => {
  const known = [
    { name: 'web01', driver: 'qemu', selected: true },
    { name: 'db01', driver: 'xen', selected: true },
    { name: 'new01', driver: 'xen', selected: true },
    { name: 'test01', driver: 'xen', selected: false },
  ];
  const points = [
    { id: 'a'.repeat(64), guest: 'web01', time: at(30) },
    { id: 'b'.repeat(64), guest: 'web01', time: at(1) },
    { id: 'c'.repeat(64), guest: 'db01', time: at(50) },
    { id: 'd'.repeat(64), guest: 'test01', time: at(400) },
    { id: 'e'.repeat(64), guest: 'old01', time: at(900) },
  ];

  it('gives every known guest its newest restore point and calls out stale, none, excluded and gone', () => {
    const c = computeCoverage(known, points, NOW, 26 * H);
    expect(c.guests.map((g) => [g.guest, g.state, g.lastGood?.id[0]])).toEqual([
      ['db01', 'stale', 'c'],
      ['new01', 'none', undefined],
      ['old01', 'gone', 'e'],
      ['test01', 'excluded', 'd'],
      ['web01', 'ok', 'b'],
    ]);
    expect(c.guests.find((g) => g.guest === 'web01')!.lastGood!.ageMs).toBe(H);
  });

  it('without the hypervisors\' list, judges the repository\'s guests by age only', () => {
    const c = computeCoverage(undefined, points, NOW, 26 * H);
    expect(c.hypervisorsListed).toBe(false);
    expect(c.guests.map((g) => g.state)).toEqual(['stale', 'stale', 'stale', 'ok']);
  });

  it('stale and none are failures; excluded and gone are only called out', () => {
    const c = computeCoverage(known, points, NOW, 26 * H);
    expect(problemsOf(c, [], [])).toEqual([
      "coverage: db01's newest restore point is 50 h old (max_age 26 h)",
      'coverage: new01 has no restore point',
    ]);
  });
});

function sampleReport(): NightlyReport {
  const coverage = computeCoverage(
    [{ name: 'web01', driver: 'qemu', selected: true }, { name: 'broken01', driver: 'static', selected: true }, { name: 'lab"x', driver: 'static', selected: false }],
    [{ id: 'b'.repeat(64), guest: 'web01', time: at(0.5) }, { id: 'e'.repeat(64), guest: 'old01', time: at(900) }],
    NOW,
    26 * H,
  );
  const guests = [
    { guest: 'web01', driver: 'qemu', ok: true, id: 'b'.repeat(64), time: at(0.5), durationMs: 12_500, pauseMs: 0, downMs: 90_000, logicalBytes: 64 << 20, readBytes: 10 << 20, storedBytes: 2 << 20 },
    { guest: 'broken01', driver: 'static', ok: false, error: 'disk /srv/no.img: no such file', durationMs: 3, pauseMs: 0, downMs: 0, logicalBytes: 0, readBytes: 0, storedBytes: 0 },
  ];
  const steps = [
    { step: 'backup' as const, status: 'ok' as const, summary: '1 of 2 guest(s) backed up', durationMs: 13_000 },
    { step: 'forget' as const, status: 'skipped' as const, reason: 'no [retention] policy in ferry.conf', durationMs: 0 },
    { step: 'prune' as const, status: 'skipped' as const, reason: 'prune_on = "sunday"', durationMs: 0 },
    { step: 'check' as const, status: 'ok' as const, summary: 'no damage', durationMs: 900 },
    { step: 'sync' as const, target: '/mnt/usb/ferry', status: 'skipped' as const, reason: '/mnt/usb/ferry does not exist (drive not mounted?)', durationMs: 0 },
    { step: 'sync' as const, target: 's3:http://127.0.0.1:1/b/p', status: 'failed' as const, reason: 'connection refused', durationMs: 40 },
  ];
  const problems = problemsOf(coverage, guests, steps);
  return {
    version: 1, host: 'vmhost1', repository: '/srv/ferry', startedAt: at(1), finishedAt: NOW.toISOString(), durationMs: H, ok: false, problems, coverage, guests, steps,
    repositories: [{ location: '/srv/ferry', role: 'primary', sizeBytes: 5 << 20, packs: 3, lastCheck: NOW.toISOString() }],
  };
}

describe('the human report', () => {
  it('starts with the verdict and coverage, names every failure, and fits on a screen', () => {
    const text = formatHumanReport(sampleReport());
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ferry nightly on vmhost1: 3 PROBLEM\(S\) \(/);
    expect(lines[1]).toBe('coverage: 3 guest(s) known, 1 with a restore point within 26 h, 1 with NONE, 1 excluded, 1 GONE from the hypervisors');
    expect(text).toMatch(/^ {2}NONE {5}broken01 +no restore point$/m);
    expect(text).toMatch(/^ {2}GONE {5}old01 +last eeeeeeee .* \(38 d ago\), no hypervisor lists it$/m);
    expect(text).toMatch(/^ {2}excluded lab"x +no restore point, excluded by ferry.conf$/m);
    expect(text).toMatch(/^ {2}FAILED broken01 \(static\): disk \/srv\/no.img: no such file$/m);
    expect(text).toMatch(/^sync \/mnt\/usb\/ferry: skipped: .*not mounted/m);
    expect(text).toMatch(/^sync s3:http:\/\/127.0.0.1:1\/b\/p: FAILED: connection refused$/m);
    expect(text).toMatch(/^repository \/srv\/ferry: 5.00 MiB in 3 pack\(s\); last prune never, last check /m);
    expect(lines.slice(-4)).toEqual([
      'problems:',
      '  - coverage: broken01 has no restore point',
      '  - backup broken01: disk /srv/no.img: no such file',
      '  - sync s3:http://127.0.0.1:1/b/p: connection refused',
    ]);
    expect(lines.length).toBeLessThanOrEqual(25);
  });

  it('counts the guests that are fine instead of listing them when there are many', () => {
    const known = Array.from({ length: 60 }, (_, i) => ({ name: `vm${String(i).padStart(2, '0')}`, driver: 'xen', selected: true }));
    const points = known.filter((_, i) => i !== 7).map((k, i) => ({ id: String(i).padStart(64, '0'), guest: k.name, time: at(2) }));
    const r = { ...sampleReport(), coverage: computeCoverage(known, points, NOW, 26 * H), guests: [], steps: [{ step: 'backup' as const, status: 'ok' as const, summary: '59 of 60', durationMs: 1 }] };
    r.problems = problemsOf(r.coverage, [], []);
    const text = formatHumanReport(r);
    expect(text).toContain('coverage: 60 guest(s) known, 59 with a restore point within 26 h, 1 with NONE');
    expect(text).toMatch(/^ {2}NONE {5}vm07 /m);
    expect(text).not.toMatch(/^ {2}ok /m);
    expect(text.split('\n').length).toBeLessThan(15);
  });
});

describe('the Prometheus textfile', () => {
  it('parses with a Prometheus text-format parser and holds the per-guest and per-repository figures', () => {
    const families = parsePrometheusTextFormat(renderPromTextfile(sampleReport()));
    const value = (name: string, labels: Record<string, string>) => {
      const f = families.find((x) => x.name === name);
      const m = f?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
      return m === undefined ? undefined : Number(m.value);
    };
    expect(value('ferry_nightly_success', { repository: '/srv/ferry' })).toBe(0);
    expect(value('ferry_nightly_problems', {})).toBe(3);
    expect(value('ferry_guest_last_success_timestamp_seconds', { guest: 'web01' })).toBe(Date.parse(at(0.5)) / 1000);
    expect(value('ferry_guest_backup_duration_seconds', { guest: 'web01' })).toBe(12.5);
    expect(value('ferry_guest_read_bytes', { guest: 'web01' })).toBe(10 << 20);
    expect(value('ferry_guest_stored_bytes', { guest: 'web01' })).toBe(2 << 20);
    expect(value('ferry_guest_pause_seconds', { guest: 'web01' })).toBe(0);
    expect(value('ferry_guest_down_seconds', { guest: 'web01' })).toBe(90);
    expect(value('ferry_guest_backup_error', { guest: 'broken01' })).toBe(1);
    expect(value('ferry_guest_covered', { guest: 'lab"x', state: 'excluded' })).toBe(0);
    expect(value('ferry_repository_size_bytes', { repository: '/srv/ferry', role: 'primary' })).toBe(5 << 20);
    expect(value('ferry_repository_last_check_timestamp_seconds', { repository: '/srv/ferry' })).toBe(NOW.getTime() / 1000);
    expect(families.find((f) => f.name === 'ferry_repository_last_prune_timestamp_seconds')).toBeUndefined();
    expect(families.every((f) => f.type === 'GAUGE' && f.help.length > 0)).toBe(true);
  });

  it('is replaced atomically: no temporary file is left, and a folder that is missing is one clear error', () => {
    const dir = scratch.mkdir('textfile');
    const file = path.join(dir, 'ferry.prom');
    writeTextfileAtomically(file, 'old 1\n');
    writeTextfileAtomically(file, 'new 2\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('new 2\n');
    expect(fs.readdirSync(dir)).toEqual(['ferry.prom']);
    expect(() => writeTextfileAtomically(path.join(dir, 'no', 'ferry.prom'), 'x')).toThrow(/textfile .*no\/ferry\.prom: cannot be written: no such file or directory/);
  });
});

describe('[nightly] in ferry.conf', () => {
  const parse = (body: string) => parseNightlyConfig(`repository = "/srv/ferry"\n[nightly]\n${body}`, '/etc/ferry/ferry.conf');

  it('has defaults, and reads every key', () => {
    expect(parseNightlyConfig('repository = "/r"\n', 'f.conf')).toMatchObject({ present: false, maxAgeMs: 26 * H, pruneOn: 'sunday', checkReadDataPercent: 5, offsite: [], offsiteRetention: 'follow', notifyOn: 'failure' });
    const c = parse([
      'max_age = "2d"', 'prune_on = "daily"', 'check_read_data = "10%"', 'offsite = ["/mnt/usb/ferry", "s3:https://rgw/b/p"]',
      'textfile = "/var/lib/node_exporter/ferry.prom"', 'notify_webhook = "https://hooks.example/x"', 'notify_command = ["mail", "-s", "ferry", "root"]',
      'notify_on = "always"', 'tags = ["nightly"]', 'offsite_retention = "keep-all"', 'offsite_object_lock_days = 30', 'offsite_object_lock_mode = "governance"', 'limit_upload = "20M"', 'limit_download = "1.5M/s"',
    ].join('\n'));
    expect(c).toMatchObject({
      maxAgeMs: 48 * H, pruneOn: 'daily', checkReadDataPercent: 10, offsite: ['/mnt/usb/ferry', 's3:https://rgw/b/p'],
      textfile: '/var/lib/node_exporter/ferry.prom', notifyWebhook: 'https://hooks.example/x', notifyCommand: ['mail', '-s', 'ferry', 'root'], notifyOn: 'always', tags: ['nightly'],
      offsiteRetention: 'keep-all', offsiteObjectLockDays: 30, offsiteObjectLockMode: 'GOVERNANCE', limitUpload: '20M', limitDownload: '1.5M/s',
    });
    expect(parse('check_read_data = "0%"').checkReadDataPercent).toBe(0);
  });

  it.each([
    ['max_agee = "26h"', /ferry\.conf:3: key 'nightly\.max_agee': unknown key; .*did you mean 'max_age'/],
    ['max_age = "26 hours"', /ferry\.conf:3: key 'nightly\.max_age': expected a duration such as "26h"/],
    ['prune_on = "sundays"', /ferry\.conf:3: key 'nightly\.prune_on': expected one of "sunday", .*"never", got "sundays"/],
    ['check_read_data = "1/20"', /ferry\.conf:3: key 'nightly\.check_read_data': expected a percentage/],
    ['check_read_data = "150%"', /ferry\.conf:3: key 'nightly\.check_read_data': expected a percentage/],
    ['notify_webhook = "hooks.example"', /ferry\.conf:3: key 'nightly\.notify_webhook': expected an http:\/\/ or https:\/\/ URL/],
    ['notify_on = "never"', /ferry\.conf:3: key 'nightly\.notify_on': expected one of "failure", "always"/],
    ['offsite = "/mnt/usb"', /ferry\.conf:3: key 'nightly\.offsite': expected an array of strings/],
    ['offsite_retention = "mirror"', /ferry\.conf:3: key 'nightly\.offsite_retention': expected one of "follow", "keep-all", got "mirror"/],
    ['limit_upload = "fast"', /ferry\.conf:3: key 'nightly\.limit_upload': expected bytes per second such as "20M" or "500K", got "fast"/],
    ['limit_download = 0', /ferry\.conf:3: key 'nightly\.limit_download': expected a string/],
    ['offsite_object_lock_days = 0', /ferry\.conf:3: key 'nightly\.offsite_object_lock_days': expected an integer from 1 to 36500, got 0/],
    ['offsite_object_lock_days = "30"', /ferry\.conf:3: key 'nightly\.offsite_object_lock_days': expected an integer from 1 to 36500, got a string/],
    ['offsite_object_lock_mode = "COMPLIANCE"', /ferry\.conf:3: key 'nightly\.offsite_object_lock_mode': set offsite_object_lock_days too/],
    ['offsite_object_lock_days = 7\noffsite_object_lock_mode = "strict"', /ferry\.conf:4: key 'nightly\.offsite_object_lock_mode': expected one of "COMPLIANCE", "GOVERNANCE", got "strict"/],
  ])('%s is one line naming file, line and key', (body, message) => {
    let err: unknown;
    try {
      parse(body);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
  });

  it('prunes on its weekday in local time, daily, or never', () => {
    const sunday = new Date(2026, 10, 29, 2, 0);
    const monday = new Date(2026, 10, 30, 2, 0);
    expect([pruneTonight('sunday', sunday), pruneTonight('sunday', monday), pruneTonight('daily', monday), pruneTonight('never', sunday)]).toEqual([true, false, true, false]);
  });

  it('prunes an offsite copy on prune nights, and on any night once its last prune is over a week old or unknown (a drive not mounted on Sundays)', () => {
    const monday = new Date(2026, 10, 30, 2, 0);
    const daysAgo = (d: number) => new Date(monday.getTime() - d * 86_400_000).toISOString();
    expect(copyPruneDue(true, 'sunday', daysAgo(1), monday)).toBe(true);
    expect(copyPruneDue(false, 'sunday', daysAgo(6), monday)).toBe(false);
    expect(copyPruneDue(false, 'sunday', daysAgo(8), monday)).toBe(true);
    expect(copyPruneDue(false, 'sunday', undefined, monday)).toBe(true);
    expect(copyPruneDue(false, 'never', undefined, monday)).toBe(false);
  });
});

describe('the rotating read-data subset', () => {
  it('reads every pack exactly once in ceil(100/P) runs', () => {
    const spec = parseSubsetSpec('5%');
    expect(spec).toEqual({ kind: 'rotating', percent: 5, of: 20 });
    expect(parseSubsetSpec('30%')).toMatchObject({ of: 4 });
    const cursor = ReadDataCursor.at(scratch.mkdir('state'), Buffer.alloc(16, 7));
    const packs = Array.from({ length: 500 }, (_, i) => (i * 2654435761 % 2 ** 32).toString(16).padStart(8, '0') + 'ab'.repeat(28));
    const readCount = new Map<string, number>();
    const perRun: number[] = [];
    for (let night = 0; night < 20; night++) {
      const subset = cursor.next(20);
      const read = packs.filter((p) => packInSubset(p, subset));
      perRun.push(read.length);
      for (const p of read) readCount.set(p, (readCount.get(p) ?? 0) + 1);
      cursor.advance(subset);
    }
    expect(readCount.size).toBe(500);
    expect([...readCount.values()].every((n) => n === 1)).toBe(true);
    expect(Math.max(...perRun)).toBeLessThan(500 / 20 * 2);
    expect(cursor.next(20).bucket).toBe(0); // the 21st night starts the next round
  });

  it('a fixed n/t reads bucket n of t; a changed share restarts the rotation; bad specs are refused', () => {
    expect(parseSubsetSpec('2/7')).toEqual({ kind: 'fixed', bucket: 1, of: 7 });
    const cursor = ReadDataCursor.at(scratch.mkdir('state2'), Buffer.alloc(16, 8));
    cursor.advance({ bucket: 4, of: 20 });
    expect(cursor.next(20).bucket).toBe(5);
    expect(cursor.next(10).bucket).toBe(0);
    for (const bad of ['0%', '101%', '8/7', '0/7', 'five', '5']) expect(parseSubsetSpec(bad)).toBeUndefined();
  });

  it('a cursor that cannot be written is a warning, not an error: what the check found still counts, and the next run reads the same subset', () => {
    const notADir = path.join(scratch.mkdir('state3'), 'file');
    fs.writeFileSync(notADir, '');
    const cursor = ReadDataCursor.at(notADir, Buffer.alloc(16, 9));
    expect(cursor.advance({ bucket: 3, of: 20 })).toMatch(/check cursor .*: cannot be written .*; the next run reads the same subset again/);
    expect(cursor.next(20).bucket).toBe(0);
  });
});

describe('offsite targets', () => {
  it('a USB path that does not exist, or lies on the root file system below /mnt, is skipped with the reason', () => {
    expect(offsiteSkipReason('/mnt/ferry-test-no-such-drive/ferry')).toMatch(/does not exist \(drive not mounted\?\)/);
    const onRoot = fs.mkdtempSync('/mnt/ferry-test-');
    scratch.defer(() => fs.rmSync(onRoot, { recursive: true, force: true }));
    const rootDevice = fs.statSync('/').dev;
    if (fs.statSync(onRoot).dev === rootDevice) expect(offsiteSkipReason(onRoot)).toMatch(/not on a mounted drive/);
    expect(offsiteSkipReason(scratch.mkdir('usb'))).toBeUndefined();
    expect(offsiteSkipReason('s3:https://rgw.example/b/p')).toBeUndefined();
  });
});

describe('notifications', () => {
  it('the webhook is retried with backoff until it answers 2xx; a dead one is reported after the last attempt', async () => {
    const bodies: string[] = [];
    let calls = 0;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        calls++;
        bodies.push(body);
        res.statusCode = calls <= 2 ? 503 : 204;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
    // A token in the path must not reach the report (cron mail, journald): only scheme and host are named.
    const url = `http://${host}/hook/T0KEN-SECRET`;
    try {
      expect(await postWebhook(url, '{"ok":false}', { firstDelayMs: 10 })).toEqual({ kind: 'webhook', target: `http://${host}/…`, ok: true, attempts: 3 });
      expect(bodies).toEqual(['{"ok":false}', '{"ok":false}', '{"ok":false}']);
    } finally {
      await new Promise((r) => server.close(r));
    }
    const dead = await postWebhook(url, '{}', { attempts: 2, firstDelayMs: 10 });
    expect(dead).toMatchObject({ ok: false, attempts: 2 });
    expect(dead.error).toMatch(/ECONNREFUSED.*\(after 2 attempts\)/);
  });

  it('the command gets the report on stdin and no secrets in its environment; its failure is reported', async () => {
    const out = scratch.path('mail.txt');
    process.env.FERRY_PASSWORD = 'not-for-the-mailer';
    try {
      const ok = await runNotifyCommand(['sh', '-c', `cat > ${out}; echo "pw=\${FERRY_PASSWORD:-none}" >> ${out}`], 'the report\n');
      expect(ok).toMatchObject({ kind: 'command', ok: true });
    } finally {
      delete process.env.FERRY_PASSWORD;
    }
    expect(fs.readFileSync(out, 'utf8')).toBe('the report\npw=none\n');
    expect(await runNotifyCommand(['sh', '-c', 'echo no mail server >&2; exit 3'], 'x')).toMatchObject({ ok: false, error: 'exit status 3: no mail server' });
    expect(await runNotifyCommand(['/no/such/mailer'], 'x')).toMatchObject({ ok: false, error: expect.stringMatching(/ENOENT/) });
  });
});

describe('docs/ferry.conf.example', () => {
  it('its [nightly] table parses into what it documents', () => {
    const file = path.join(__dirname, '..', '..', 'docs', 'ferry.conf.example');
    expect(parseNightlyConfig(fs.readFileSync(file, 'utf8'), file)).toMatchObject({
      present: true, maxAgeMs: 26 * H, pruneOn: 'sunday', checkReadDataPercent: 5,
      offsite: ['/mnt/usb/ferry', 's3:https://rgw.example.net:7480/backups/ferry'], textfile: '/var/lib/node_exporter/ferry.prom',
      notifyCommand: ['mail', '-s', 'ferry nightly', 'root'], notifyOn: 'failure', tags: ['nightly'],
    });
  });
});

describe('the order of the steps', () => {
  it('a backup step that fails as a whole stops nothing after it; coverage then judges the repository alone', async () => {
    const { runNightly } = await import('../../src/nightly/nightlyRun');
    const done: string[] = [];
    const step = (name: string) => async () => {
      done.push(name);
      return { summary: `${name} done` };
    };
    let saved: object | undefined;
    const report = await runNightly(
      { ...parseNightlyConfig('', 'f.conf'), pruneOn: 'daily', offsite: ['/mnt/ferry-test-absent/ferry', 's3:http://127.0.0.1:1/b/p'] },
      '/srv/ferry',
      {
        backup: async () => {
          done.push('backup');
          throw new Error('QMP socket /run/qemu/web01.qmp: connection refused');
        },
        forget: step('forget'),
        prune: step('prune'),
        check: async (percent) => {
          done.push(`check ${percent}%`);
          return { summary: 'no damage' };
        },
        sync: async (target, tidy) => {
          done.push(`sync ${target}${tidy.prune ? ' and prune' : ''}`);
          return { summary: 'copied' };
        },
        offsiteSkipReason,
        restorePoints: async () => [{ id: 'a'.repeat(64), guest: 'web01', time: at(2) }],
        size: async () => ({ bytes: 10, packs: 1 }),
        times: { read: () => ({}), write: (t) => (saved = t) },
        log: () => undefined,
      },
      () => NOW,
    );
    expect(done).toEqual(['backup', 'forget', 'prune', 'check 5%', 'sync s3:http://127.0.0.1:1/b/p and prune']);
    expect(report.steps.map((s) => [s.step, s.status])).toEqual([['backup', 'failed'], ['forget', 'ok'], ['prune', 'ok'], ['check', 'ok'], ['sync', 'skipped'], ['sync', 'ok']]);
    expect(report.problems).toEqual(['backup: QMP socket /run/qemu/web01.qmp: connection refused']);
    expect(report.coverage).toMatchObject({ hypervisorsListed: false, guests: [{ guest: 'web01', state: 'ok' }] });
    expect(saved).toEqual({ lastPrune: NOW.toISOString(), lastCheck: NOW.toISOString() });
    expect(report.repositories.map((r) => [r.role, r.sizeBytes])).toEqual([['primary', 10], ['offsite', undefined], ['offsite', 10]]);
  });
});
