// Progress of backup (one guest and --all), restore, check --read-data and
// sync, through the real CLI. On a terminal (a pseudo-terminal from
// script(1)): a row redrawn in place with bytes done/total, rate, ETA and,
// for a backup, the dedupe ratio. Without one (pipes, as under cron): plain
// lines starting with a timestamp, at most one per --progress-interval, the
// final one always. --json and --no-progress: none. Only the structure is
// asserted, never figures that depend on the machine's speed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, FERRY_BIN, TestRepo, describeResult, expectCleanFailure, expectSuccess, ferry, ferryEnv, runCommand, useScratch, writeRandomishImage } from '../support';

const scratch = useScratch('progress');
const MiB = 1024 * 1024;
let repo: TestRepo;
let image: string;
let secondImage: string;
let copy: string;
let fleetConfig: string;
/** The host run lock of backup --all, away from any other run on this machine. */
const runDir = scratch.mkdir('run');

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  image = scratch.path('web.img');
  secondImage = scratch.path('db.img');
  // Three regions (32 MiB each, the last 8): progress is reported after each, so a row is drawn before its final state.
  writeRandomishImage(image, 72 * MiB, 801);
  writeRandomishImage(secondImage, 24 * MiB, 802);
  await repo.backup('web', [image]);
  copy = scratch.path('copy');
  expectSuccess(await ferry(['init', '--from', repo.path, '--repo', copy], { env: { FERRY_PASSWORD_FILE: repo.passwordFile } }));
  fleetConfig = scratch.path('ferry.conf');
  const guest = (name: string, disk: string) => `[[static.guest]]\nname = "${name}"\ndisks = [${JSON.stringify(disk)}]\n`;
  fs.writeFileSync(fleetConfig, [`repository = ${JSON.stringify(repo.path)}`, guest('fleet-web', image), guest('fleet-db', secondImage)].join('\n'));
});

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * `ferry ARGS` with stderr on a pseudo-terminal 160 columns wide (script(1)),
 * stdout into a file: returns what the terminal showed and what stdout got.
 */
async function onTerminal(args: string[]): Promise<{ code: number | null; terminal: string; stdout: string }> {
  const out = scratch.path(`stdout-${Math.random().toString(16).slice(2)}`);
  const command = `stty cols 160 rows 40; exec ${[process.execPath, FERRY_BIN, ...args].map(shellQuote).join(' ')} >${shellQuote(out)}`;
  const r = await runCommand('script', ['-qfec', command, '/dev/null'], {
    env: ferryEnv({ FERRY_PASSWORD_FILE: repo.passwordFile, FERRY_RUN_DIR: runDir }),
    timeoutMs: 240_000,
  });
  // The terminal turns each \n into \r\n; what ferry wrote is the rest.
  return { code: r.code, terminal: r.stdout.replace(/\r\n/g, '\n'), stdout: fs.readFileSync(out, 'utf8') };
}

/** The rows a terminal was sent: each redraw starts with \r and clear-to-end-of-line. */
function redrawnRows(terminal: string): string[] {
  return terminal.split('\r\x1b[K').slice(1).map((row) => row.replace(/\n[^]*$/, ''));
}

/** `ferry ARGS` with stdout and stderr on pipes (as under cron), timed by the test. */
async function withoutTerminal(args: string[]) {
  const started = Date.now();
  const r = await ferry(args, { env: { FERRY_PASSWORD_FILE: repo.passwordFile, FERRY_RUN_DIR: runDir } });
  return { ...r, elapsedMs: Date.now() - started };
}

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ /;

/**
 * The plain progress lines of `label` in stderr: each starts with a
 * timestamp, consecutive ones (but the final) are at least `intervalS`
 * apart, there are no more than the run's length allows, and the last says
 * done. Returns them.
 */
function expectPlainLines(r: { stderr: string; elapsedMs: number }, label: string, intervalS: number): string[] {
  expect(r.stderr, 'no terminal control codes').not.toMatch(/\r|\x1b/);
  const lines = r.stderr.split('\n').filter((l) => l.includes(` ${label}: `));
  for (const l of lines) expect(l).toMatch(TIMESTAMP);
  const last = lines.at(-1);
  expect(last, r.stderr).toMatch(new RegExp(`^\\S+ ${label}: done, \\S+ \\S+ of \\S+ \\S+ in .*/s`));
  const times = lines.map((l) => Date.parse(l.slice(0, 20)) / 1000);
  for (let i = 1; i < times.length - 1; i++) expect(times[i] - times[i - 1], r.stderr).toBeGreaterThanOrEqual(intervalS);
  // One line per interval at most, plus the final one.
  expect(lines.length, r.stderr).toBeLessThanOrEqual(Math.floor(r.elapsedMs / 1000 / intervalS) + 1);
  for (const l of lines.slice(0, -1)) expect(l).toMatch(/: \d+%, .* of .*, .*\/s, ETA (\d+:\d\d|--:--)/);
  return lines;
}

describe('on a terminal', () => {
  it('backup redraws one row in place: bar, bytes done/total, rate, ETA, new bytes and dedupe ratio; stdout keeps only the id', async () => {
    const r = await onTerminal(['backup', '--repo', repo.path, '--guest', 'web', image, secondImage]);
    expect(r.code, r.terminal).toBe(0);
    const rows = redrawnRows(r.terminal);
    expect(rows.length, r.terminal).toBeGreaterThanOrEqual(2);
    for (const row of rows.slice(0, -1)) {
      expect(row).toMatch(/^backup web \[[#.]+\] +\d+% \S+ \S+\/\S+ \S+ \S+ \S+\/s ETA \d+:\d\d new \S+ \S+ (dedupe (\d+\.\dx|-)|all deduplicated)$/);
    }
    // The final state stays, with the time taken instead of an ETA, and the cursor moves below it.
    expect(rows.at(-1)).toMatch(/^backup web \[#+\] 100% (\S+ \S+)\/\1 \S+ \S+\/s in .* new \S+ \S+ dedupe \d+\.\dx$/);
    expect(r.terminal).toMatch(/dedupe \d+\.\dx\n/);
    expect(r.stdout).toMatch(/^[0-9a-f]{64}\n$/);
  });

  it('restore, check --read-data and sync redraw their rows the same way', async () => {
    const restored = scratch.path('restored');
    const runs: Array<[string, string[]]> = [
      ['restore web', ['restore', 'latest', '--guest', 'web', '--repo', repo.path, '--to', restored]],
      ['check --read-data', ['check', '--read-data', '--repo', repo.path]],
      ['sync', ['sync', repo.path, copy]],
    ];
    for (const [label, args] of runs) {
      const r = await onTerminal(args);
      expect(r.code, `${label}: ${r.terminal}`).toBe(0);
      const rows = redrawnRows(r.terminal);
      expect(rows.length, r.terminal).toBeGreaterThanOrEqual(1);
      for (const row of rows.slice(0, -1)) expect(row).toMatch(new RegExp(`^${label} \\[[#.]+\\] +\\d+% \\S+ \\S+/\\S+ \\S+ \\S+ \\S+/s ETA \\d+:\\d\\d`));
      expect(rows.at(-1)).toMatch(new RegExp(`^${label} \\[#+\\] 100% (\\S+ \\S+)/\\1 \\S+ \\S+/s in `));
      expect(r.stdout, label).not.toMatch(/\r|\x1b|ETA/);
    }
    expect(fs.readdirSync(restored).sort()).toEqual(['db.img', 'web.img']);
  });

  it('backup --all draws one row for the fleet, guests done among its fields, log lines never inside it', async () => {
    const r = await onTerminal(['backup', '--all', '--config', fleetConfig, '--work-dir', scratch.mkdir('work-tty')]);
    expect(r.code, r.terminal).toBe(0);
    const rows = redrawnRows(r.terminal);
    expect(rows.length, r.terminal).toBeGreaterThanOrEqual(2);
    for (const row of rows.slice(0, -1)) expect(row).toMatch(/^backup --all \[[#.]+\] +\d+% .* ETA \d+:\d\d [012]\/2 guests new \S+ \S+ /);
    expect(rows.at(-1)).toMatch(/^backup --all \[#+\] 100% .* in .* 2\/2 guests new \S+ \S+ /);
    // A guest's log line is printed after the row is cleared (\r, clear to the end of the screen), on its own line.
    expect(r.terminal).toMatch(/\r\x1b\[Jfleet-(web|db): restore point [0-9a-f]{8}, /);
    expect(r.stdout).toMatch(/^ok +fleet-db .*\nok +fleet-web /);
  });

  it('--json and --no-progress show no progress', async () => {
    const json = await onTerminal(['backup', '--repo', repo.path, '--guest', 'web', image, '--json']);
    expect(json.code, json.terminal).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ guest: 'web' });
    const quiet = await onTerminal(['restore', 'latest', '--guest', 'web', '--repo', repo.path, '--to', scratch.path('restored-quiet'), '--no-progress']);
    expect(quiet.code, quiet.terminal).toBe(0);
    for (const r of [json, quiet]) {
      expect(r.terminal).not.toMatch(/\x1b\[K|ETA|%/);
    }
  });
});

describe('without a terminal (cron)', () => {
  it('backup, restore, check --read-data and sync write timestamped lines, one per interval at most, the final one always', async () => {
    const runs: Array<[string, string[]]> = [
      ['backup web', ['backup', '--repo', repo.path, '--guest', 'web', image, secondImage]],
      ['restore web', ['restore', 'latest', '--guest', 'web', '--repo', repo.path, '--to', scratch.path('restored-plain')]],
      ['check --read-data', ['check', '--read-data', '--repo', repo.path]],
      ['sync', ['sync', repo.path, copy]],
    ];
    for (const [label, args] of runs) {
      const r = await withoutTerminal([...args, '--progress-interval', '1s']);
      expect(r.code, describeResult(r)).toBe(0);
      const lines = expectPlainLines(r, label, 1);
      if (label === 'backup web') expect(lines.at(-1)).toMatch(/, new \S+ \S+, (dedupe \d+\.\dx|all deduplicated)$/);
      // stdout carries the command's own output only.
      expect(r.stdout).not.toMatch(/ETA|\/s, /);
    }
  });

  it('by default, one line a minute at most: a short run writes only its final line', async () => {
    const r = await withoutTerminal(['restore', 'latest', '--guest', 'web', '--repo', repo.path, '--to', scratch.path('restored-default')]);
    expect(r.code, describeResult(r)).toBe(0);
    const lines = expectPlainLines(r, 'restore web', 60);
    if (r.elapsedMs < 60_000) expect(lines).toHaveLength(1);
  });

  it('backup --all writes the fleet\'s lines, guests done among their fields', async () => {
    const r = await withoutTerminal(['backup', '--all', '--config', fleetConfig, '--work-dir', scratch.mkdir('work-plain'), '--progress-interval', '1s']);
    expect(r.code, describeResult(r)).toBe(0);
    const lines = expectPlainLines(r, 'backup --all', 1);
    expect(lines.at(-1)).toMatch(/, 2\/2 guests, new /);
  });

  it('a check that finds damage ends in its one error line: no progress line before it', async () => {
    const damaged = await repo.copyTo(scratch.path('damaged'));
    const pack = fs.readdirSync(path.join(damaged.path, 'data'), { recursive: true, withFileTypes: true }).find((e) => e.isFile())!;
    const file = path.join(pack.parentPath, pack.name);
    const bytes = fs.readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    fs.writeFileSync(file, bytes);
    const r = await damaged.run(['check', '--read-data']);
    expectCleanFailure(r, { code: EXIT.damageFound });
  });

  it('--json keeps stdout JSON and stderr free of progress; a bad --progress-interval is refused before anything runs', async () => {
    const r = await withoutTerminal(['check', '--read-data', '--repo', repo.path, '--json', '--progress-interval', '1s']);
    expect(JSON.parse(r.stdout)).toMatchObject({ damage: [] });
    expect(r.stderr).not.toMatch(/check --read-data: /);
    const bad = await withoutTerminal(['restore', 'latest', '--guest', 'web', '--repo', repo.path, '--to', scratch.path('never'), '--progress-interval', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("ferry: --progress-interval: 'soon' is not a duration of at least 1 s; use e.g. 30s or 5m\n");
    expect(fs.existsSync(scratch.path('never'))).toBe(false);
  });
});
