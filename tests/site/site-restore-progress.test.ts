// Site restore's progress. The library sends each host's state (guests done,
// data bytes done of the plan's) through `onProgress` and writes nothing to a
// terminal itself; `ferry site restore` draws one live row per host on a
// terminal (cursor-up redraws, log lines above the rows) and writes
// timestamped lines otherwise. Two hosts on this machine ("address = local"),
// each with its own dir pool; only structure is asserted, never speed.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadIndexForReading } from '../../src/cli/session';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { Repository } from '../../src/repo/repository';
import { loadSiteHosts } from '../../src/site/hostsFile';
import { HostProgress, type SiteHostProgress } from '../../src/site/siteProgress';
import type { SitePlan } from '../../src/site/sitePlan';
import { restoreSite } from '../../src/site/siteRestore';
import { LocalBackend } from '../../src/storage/local';
import { PipelinePool } from '../../src/workers/pipelinePool';
import { FERRY_BIN, TestRepo, describeResult, expectSuccess, ferryEnv, runCommand, sha256File, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('site-restore-progress');
const MiB = 1024 * 1024;
let repo: TestRepo;
const shas: Record<string, string> = {};
/** Guest → host: two on one host, one on the other. */
const PLACED: Record<string, string> = { 'prog-web01': 'left', 'prog-web02': 'left', 'prog-db01': 'right' };

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  for (const [i, guest] of Object.keys(PLACED).entries()) {
    const image = scratch.path(`${guest}.img`);
    writeRandomishImage(image, (40 + 8 * i) * MiB, 900 + i); // two regions or more each
    shas[guest] = await sha256File(image);
    await repo.backup(guest, [image]);
  }
});

/** A hosts file whose two local hosts have fresh pools and config directories named after `run`. */
function hostsFile(run: string): string {
  const file = scratch.path(`${run}-hosts.toml`);
  const host = (name: string) =>
    `[[host]]\nname = "${name}"\naddress = "local"\nhypervisor = "qemu"\naccel = "tcg"\nmemory = "4G"\ncpus = 4\nconfig_dir = "${scratch.mkdir(`${run}-${name}-etc`)}"\n` +
    `[[host.pool]]\nname = "images"\ntype = "dir"\npath = "${scratch.mkdir(`${run}-${name}-pool`)}"\n`;
  const pins = Object.entries(PLACED).map(([guest, h]) => `[guest."${guest}"]\npin = "${h}"\n`);
  fs.writeFileSync(file, [host('left'), host('right'), ...pins].join('\n'));
  return file;
}

async function expectRestored(run: string): Promise<void> {
  for (const [guest, h] of Object.entries(PLACED)) {
    expect(await sha256File(scratch.path(`${run}-${h}-pool`, guest, `${guest}.img`)), guest).toBe(shas[guest]);
  }
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `ferry ARGS` with stderr on a pseudo-terminal 160 columns wide (script(1)), stdout into a file. */
async function onTerminal(args: string[]): Promise<{ code: number | null; terminal: string; stdout: string }> {
  const out = scratch.path(`stdout-${Math.random().toString(16).slice(2)}`);
  const command = `stty cols 160 rows 40; exec ${[process.execPath, FERRY_BIN, ...repo.argv(args)].map(shellQuote).join(' ')} >${shellQuote(out)}`;
  const r = await runCommand('script', ['-qfec', command, '/dev/null'], { env: ferryEnv({ FERRY_PASSWORD_FILE: repo.passwordFile }), timeoutMs: 240_000 });
  return { code: r.code, terminal: r.stdout.replace(/\r\n/g, '\n'), stdout: fs.readFileSync(out, 'utf8') };
}

describe('HostProgress', () => {
  it("counts a disk's bytes up only, a complete disk in full, and takes a failed guest's unwritten bytes out of the total", () => {
    const events: SiteHostProgress[] = [];
    const progress = new HostProgress('new01', [
      { guest: 'a', disks: [{ name: 'a.img', dataBytes: 100 }] },
      { guest: 'b', disks: [{ name: 'b0.img', dataBytes: 50 }, { name: 'b1.img', dataBytes: 50 }] },
    ], (p) => events.push(p));
    progress.disk('a', 'a.img', 60);
    progress.disk('a', 'a.img', 40); // an estimate at a checkpoint below what was written: the count stays
    expect(events.at(-1)).toMatchObject({ doneBytes: 60, totalBytes: 200 });
    progress.diskComplete('a', 'a.img');
    progress.guestFinished('a', 'ok');
    progress.disk('b', 'b0.img', 20);
    progress.guestFinished('b', 'failed');
    progress.hostFinished();
    expect(events.at(-2)).toEqual({ host: 'new01', guestsDone: 2, guests: 2, failedGuests: 1, doneBytes: 120, totalBytes: 120, state: 'restoring' });
    expect(events.at(-1)).toMatchObject({ doneBytes: 120, totalBytes: 120, state: 'done' });
  });
});

describe('the progress events of restoreSite', () => {
  it("sends each host's state as it changes: guests and bytes done only grow, the last says done with everything counted; a failed guest leaves the total", async () => {
    const hosts = loadSiteHosts(hostsFile('events'));
    const planFile = scratch.path('events-plan.json');
    expectSuccess(await repo.run(['site', 'plan', '--hosts', hosts.file, '--out', planFile]));
    const plan = JSON.parse(fs.readFileSync(planFile, 'utf8')) as SitePlan;
    // One guest of "left" names a restore point the repository does not have: it fails, the others go on.
    const broken = plan.guests.find((g) => g.guest === 'prog-web02')!;
    broken.restorePoint = 'f'.repeat(64);
    const brokenBytes = broken.disks.reduce((n, d) => n + d.dataBytes, 0);
    const planned = (host: string) => plan.guests.filter((g) => g.host === host).reduce((n, g) => n + g.disks.reduce((m, d) => m + d.dataBytes, 0), 0);

    const passphrase = fs.readFileSync(repo.passwordFile, 'utf8').replace(/\r?\n$/, '');
    const opened = await Repository.open(new LocalBackend(repo.path), Buffer.from(passphrase));
    const events: SiteHostProgress[] = [];
    const pool = new PipelinePool(opened.keys, opened.settings, 1);
    try {
      await loadIndexForReading(opened);
      const reports = await restoreSite(opened, pool, plan, hosts, {
        dryRun: false, existing: 'refuse', local: new ExecFileCommandRunner(), scratchDir: scratch.mkdir('events-tmp'),
        journalDir: scratch.mkdir('events-journal'), macs: { kind: 'keep' }, start: 'no-start', log: () => {},
        onProgress: (p) => events.push({ ...p }),
      });
      expect(reports.map((r) => [r.guest, r.ok])).toEqual(plan.guests.map((g) => [g.guest, g.guest !== 'prog-web02']));
    } finally {
      await pool.close();
      await opened.backend.close();
    }

    for (const host of ['left', 'right']) {
      const mine = events.filter((e) => e.host === host);
      const guests = plan.guests.filter((g) => g.host === host).length;
      // The first: nothing done yet, the whole plan for the host ahead.
      expect(mine[0]).toEqual({ host, guestsDone: 0, guests, failedGuests: 0, doneBytes: 0, totalBytes: planned(host), state: 'restoring' });
      for (let i = 1; i < mine.length; i++) {
        expect(mine[i].doneBytes).toBeGreaterThanOrEqual(mine[i - 1].doneBytes);
        expect(mine[i].guestsDone).toBeGreaterThanOrEqual(mine[i - 1].guestsDone);
        expect(mine[i].doneBytes).toBeLessThanOrEqual(mine[i].totalBytes);
      }
      // Byte progress came between the first and the last event, not only at the ends.
      expect(mine.some((e) => e.doneBytes > 0 && e.doneBytes < e.totalBytes)).toBe(true);
      const failed = host === 'left' ? 1 : 0;
      expect(mine.at(-1)).toEqual({
        host, guestsDone: guests, guests, failedGuests: failed,
        doneBytes: planned(host) - failed * brokenBytes, totalBytes: planned(host) - failed * brokenBytes, state: 'done',
      });
      expect(mine.filter((e) => e.state === 'done')).toHaveLength(1);
    }
  });
});

describe('ferry site restore', () => {
  it('on a terminal: one live row per host, redrawn together with cursor-up, with guests done, bytes, rate and ETA; log lines above the rows', async () => {
    const r = await onTerminal(['site', 'restore', '--no-start', '--hosts', hostsFile('tty')]);
    expect(r.code, r.terminal).toBe(0);
    await expectRestored('tty');
    // Two rows: each redraw after the first goes up one line to the start of the first row, then draws both.
    expect(r.terminal).toContain('\x1b[1A\r\x1b[Kleft ');
    const frames = [...r.terminal.matchAll(/\x1b\[K(left [^\n\r\x1b]*)\n\x1b\[K(right [^\n\r\x1b]*)/g)].map((m) => [m[1], m[2]]);
    expect(frames.length, r.terminal).toBeGreaterThanOrEqual(2);
    for (const [left, right] of frames.slice(0, -1)) {
      expect(left).toMatch(/^left \[[#.]+\] +\d+% \S+ \S+\/\S+ \S+ \S+ \S+\/s (ETA (\d+:\d\d|--:--)|in .*) [0-2]\/2 guests$/);
      expect(right).toMatch(/^right \[[#.]+\] +\d+% \S+ \S+\/\S+ \S+ \S+ \S+\/s (ETA (\d+:\d\d|--:--)|in .*) [01]\/1 guests$/);
    }
    expect(frames.some(([left, right]) => /ETA/.test(left + right)), r.terminal).toBe(true);
    // The last redraw: both hosts done, every guest counted.
    const [left, right] = frames.at(-1)!;
    expect(left).toMatch(/^left \[#+\] 100% .* in .* 2\/2 guests$/);
    expect(right).toMatch(/^right \[#+\] 100% .* in .* 1\/1 guests$/);
    // A log line: the rows cleared to the end of the screen, the line, then the rows again.
    expect(r.terminal).toMatch(/\x1b\[J\d{4}-\d\d-\d\dT[\d:.]+Z (left|right): prog-\w+ prog-\w+\.img → .*\n\r?\x1b\[K(left|right) /);
    expect(r.stdout).toMatch(/^guest +host/);
    expect(r.stdout).not.toMatch(/\x1b|ETA/);
  });

  it('without a terminal: timestamped lines per host, one per interval at most, and each host\'s final line', async () => {
    const started = Date.now();
    const r = await repo.run(['site', 'restore', '--no-start', '--hosts', hostsFile('plain'), '--progress-interval', '1s']);
    const elapsedS = (Date.now() - started) / 1000;
    expect(r.code, describeResult(r)).toBe(0);
    await expectRestored('plain');
    expect(r.stderr).not.toMatch(/\r|\x1b/);
    for (const [host, guests] of [['left', 2], ['right', 1]] as const) {
      const lines = r.stderr.split('\n').filter((l) => l.includes(` ${host}: `) && /\d+%|done,/.test(l));
      for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /);
      expect(lines.at(-1), r.stderr).toMatch(new RegExp(`Z ${host}: done, (\\S+ \\S+) of \\1 in .*/s, ${guests}/${guests} guests$`));
      for (const l of lines.slice(0, -1)) expect(l).toMatch(new RegExp(`Z ${host}: \\d+%, .* of .*, .*/s, ETA (\\d+:\\d\\d|--:--), \\d/${guests} guests$`));
      expect(lines.length, r.stderr).toBeLessThanOrEqual(Math.floor(elapsedS) + 1);
    }
  });

  it('--json: the report alone on stdout, no progress on stderr', async () => {
    const r = await repo.run(['site', 'restore', '--no-start', '--hosts', hostsFile('json'), '--json', '--progress-interval', '1s']);
    const report = JSON.parse(r.stdout) as Array<{ guest: string; ok: boolean }>;
    expect(report.map((g) => g.ok)).toEqual([true, true, true]);
    expect(r.stderr).not.toMatch(/\d+%|done,|ETA/);
    await expectRestored('json');
  });
});
