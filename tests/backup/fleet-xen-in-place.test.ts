// A running Xen DomU whose disk is a plain file on ext4 (no LVM, btrfs or
// reflink): `snapshot = "pause"` reads the disk while the guest is paused,
// `snapshot = "shutdown"` shuts it down cleanly, reads, and starts it again
// with its cfg. Xen cannot run here, so xl stands at the command boundary:
// recorded output (tests/fixtures/xen/README.md) through a runner that also
// plays the guest: it writes into the disk image whenever the guest runs
// (before the pause or shutdown, and again after unpause or create). A restore
// equal, bit for bit, to the image as it was when the guest stopped proves the
// read happened entirely between the two commands. Everything else is real:
// the repository, the workers, the watchdog process, `ferry restore`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useScratch } from '../support/scratch';
import { sha256File, overwriteRandomPages, writeRandomishImage } from '../support/files';
import { expectSuccess, REPO_ROOT, TestRepo } from '../support/ferry';
import { openInProcess } from '../support/repositoryScenarios';
import { RecordedCommandRunner, recordedOutput, type RecordedReply } from '../support/recordedRunner';
import type { CommandResult, RunOptions } from '../../src/hypervisor/commandRunner';
import { XenDriver } from '../../src/hypervisor/xen/xenDriver';
import { chooseSnapshotProviders, defaultSnapshotProviders } from '../../src/snapshot/choose';
import { NoSnapshotProvider } from '../../src/snapshot/none';
import { backupFleet, type FleetGuest, type GuestOutcome } from '../../src/backup/fleetBackup';
import type { Repository } from '../../src/repo/repository';
import type { PipelinePool } from '../../src/workers/pipelinePool';

const scratch = useScratch('fleet-xen-in-place');
const FIXTURES = path.join(REPO_ROOT, 'tests', 'fixtures', 'xen');
const MiB = 1024 * 1024;

let testRepo: TestRepo;
let repo: Repository;
let pool: PipelinePool;

beforeAll(async () => {
  testRepo = await TestRepo.init(scratch, 'repo');
  ({ repo, pool } = await openInProcess(scratch, testRepo));
}, 60_000);

/** A fresh web01: its disk image (sparse, 24 MiB with data), its cfg naming that file, the recorded xl answers for it. */
function web01(label: string) {
  const dir = scratch.mkdir(label);
  const disk = path.join(dir, 'web01.img');
  writeRandomishImage(disk, 24 * MiB, 4100 + label.length);
  const configDir = scratch.mkdir(label, 'etc-xen');
  const cfg = path.join(configDir, 'web01.cfg');
  // The seed's own setup: a plain file on ext4.
  fs.writeFileSync(cfg, fs.readFileSync(path.join(FIXTURES, 'fleet', 'web01.cfg'), 'utf8').replace(/^disk = .*$/m, `disk = [ 'file:${disk},xvda,w' ]`));
  const list = fs.readFileSync(path.join(FIXTURES, 'xl-list.stdout'), 'utf8').split('\n');
  const onlyWeb01 = [list[0], ...list.filter((l) => /^(Domain-0|web01)\s/.test(l))].join('\n') + '\n';
  const details = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'xl-list-l.stdout'), 'utf8')) as { config: { c_info: { name: string }; disks: unknown[] } }[])
    .filter((d) => d.config.c_info.name === 'web01');
  details[0]!.config.disks = [{ pdev_path: disk, vdev: 'xvda', format: 'raw', readwrite: 1 }];
  const listing: RecordedReply[] = [
    { cmd: 'xl', args: ['list'], stdout: onlyWeb01 },
    { cmd: 'xl', args: ['list', '-l'], stdout: `${JSON.stringify(details, null, 4)}\n` },
    { cmd: 'xl', args: ['list', 'web01'], ...recordedOutput(FIXTURES, 'xl-list-web01') },
  ];
  const created = (fixture: string) => ({ stdout: '', stderr: recordedOutput(FIXTURES, fixture).stderr.replace('/etc/xen/web01.cfg', cfg) });
  return { dir, disk, cfg, configDir, listing, created };
}

/**
 * Recorded xl, plus the guest: it writes 16 pages into its disk right before
 * it is paused or shut down and 16 more once it runs again; the image as it
 * was at the stop is copied to `atStop`.
 */
class GuestPlayingRunner extends RecordedCommandRunner {
  atStop?: string;
  private seed = 1;

  constructor(replies: RecordedReply[], private readonly disk: string, private readonly stopCopy: string) {
    super(replies);
  }

  override async run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    const line = [cmd, ...args].join(' ');
    const stops = line === 'xl pause web01' || line.startsWith('xl shutdown -w web01');
    if (stops) {
      overwriteRandomPages(this.disk, 16, this.seed++);
      fs.copyFileSync(this.disk, this.stopCopy);
      this.atStop = this.stopCopy;
    }
    const result = await super.run(cmd, args, opts);
    const runsAgain = line === 'xl unpause web01' || line.startsWith('xl create ');
    if (runsAgain && result.code === 0 && fs.existsSync(this.disk)) overwriteRandomPages(this.disk, 16, 1000 + this.seed++);
    return result;
  }
}

async function backUp(runner: RecordedCommandRunner, configDir: string, snapshot: 'pause' | 'shutdown', xl?: string): Promise<{ outcome: GuestOutcome; log: string[] }> {
  const driver = new XenDriver({ runner, configDir, ...(xl ? { xl } : {}) });
  const guests = await driver.listGuests();
  expect(guests.map((g) => [g.name, g.state])).toEqual([['web01', 'running']]);
  const guest = guests[0]!;
  const plan = chooseSnapshotProviders(guest, defaultSnapshotProviders(runner), snapshot);
  const fleet: FleetGuest = {
    driver, guest,
    providerFor: async (disk) => (await plan).find((e) => e.disks.includes(disk))!.provider,
  };
  const log: string[] = [];
  const [outcome] = await backupFleet(repo, pool, [fleet], { concurrency: 1, tags: [], runId: `r-${snapshot}`, log: (l) => log.push(l) });
  return { outcome: outcome!, log };
}

async function restoredSha(id: string): Promise<string> {
  const out = scratch.mkdir(`restore-${id.slice(0, 8)}`);
  expectSuccess(await testRepo.run(['restore', id, '--to', out]), 'restore');
  return sha256File(path.join(out, 'xvda.img'));
}

describe('snapshot = "pause" for a running Xen guest on a plain file', () => {
  it('runs xl pause, reads the disk, xl unpause; the restore is bit-exact to the image at the pause; the pause is in the outcome and the restore point', async () => {
    const g = web01('pause');
    const runner = new GuestPlayingRunner([
      ...g.listing, { cmd: 'xl', args: ['pause', 'web01'] }, { cmd: 'xl', args: ['unpause', 'web01'] },
    ], g.disk, path.join(g.dir, 'at-pause.img'));
    const { outcome } = await backUp(runner, g.configDir, 'pause');
    expect(outcome, outcome.error).toMatchObject({ guest: 'web01', driver: 'xen', ok: true, snapshotKinds: ['pause'], downMs: 0 });
    expect(runner.commandLines()).toEqual(['xl list', 'xl list -l', 'xl list web01', 'xl pause web01', 'xl unpause web01']);
    expect(runner.unused()).toEqual([]);
    expect(await restoredSha(outcome.id!)).toBe(await sha256File(runner.atStop!));
    // The guest wrote after the unpause: the backup did not read then.
    expect(await sha256File(g.disk)).not.toBe(await sha256File(runner.atStop!));
    const point = await repo.loadRestorePointByName(outcome.id!);
    expect(point.stats.pauseMs).toBe(outcome.pauseMs);
    expect(point.stats.downMs).toBeUndefined();
    expect(point.disks.map((d) => d.sourcePath)).toEqual([g.disk]);
  }, 60_000);

  it('resumes the guest when the read fails, and says why the backup failed', async () => {
    const g = web01('pause-fails');
    const runner = new GuestPlayingRunner([
      ...g.listing, { cmd: 'xl', args: ['pause', 'web01'] }, { cmd: 'xl', args: ['unpause', 'web01'] },
    ], g.disk, path.join(g.dir, 'at-pause.img'));
    // The disk goes away while the guest is paused: create() cannot open it.
    const realRun = runner.run.bind(runner);
    runner.run = async (cmd, args, opts) => {
      const r = await realRun(cmd, args, opts);
      if (args.join(' ') === 'pause web01') fs.renameSync(g.disk, `${g.disk}.gone`);
      return r;
    };
    const { outcome } = await backUp(runner, g.configDir, 'pause');
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toContain(`disk xvda (${g.disk}) cannot be read`);
    expect(runner.commandLines()).toEqual(['xl list', 'xl list -l', 'xl list web01', 'xl pause web01', 'xl unpause web01']);
  }, 60_000);
});

describe('snapshot = "shutdown" for a running Xen guest on a plain file', () => {
  it('runs xl shutdown -w, reads the disk, xl create CFG; the restore is bit-exact to the image at the shutdown; the downtime is recorded', async () => {
    const g = web01('shutdown');
    const runner = new GuestPlayingRunner([
      ...g.listing,
      { cmd: 'xl', args: ['shutdown', '-w', 'web01'], ...recordedOutput(FIXTURES, 'xl-shutdown-w-web01') },
      { cmd: 'xl', args: ['create', g.cfg], ...g.created('xl-create-web01') },
    ], g.disk, path.join(g.dir, 'at-shutdown.img'));
    const { outcome } = await backUp(runner, g.configDir, 'shutdown');
    expect(outcome, outcome.error).toMatchObject({ ok: true, snapshotKinds: ['shutdown'], pauseMs: 0 });
    expect(runner.commandLines()).toEqual(['xl list', 'xl list -l', 'xl list web01', 'xl shutdown -w web01', `xl create ${g.cfg}`]);
    expect(runner.unused()).toEqual([]);
    expect(await restoredSha(outcome.id!)).toBe(await sha256File(runner.atStop!));
    expect(await sha256File(g.disk)).not.toBe(await sha256File(runner.atStop!));
    const point = await repo.loadRestorePointByName(outcome.id!);
    expect(point.stats.downMs).toBe(outcome.downMs);
    expect(point.stats.downMs).toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('starts the guest again when the read fails', async () => {
    const g = web01('shutdown-read-fails');
    const runner = new GuestPlayingRunner([
      ...g.listing,
      { cmd: 'xl', args: ['shutdown', '-w', 'web01'], ...recordedOutput(FIXTURES, 'xl-shutdown-w-web01') },
      { cmd: 'xl', args: ['create', g.cfg], ...g.created('xl-create-web01') },
    ], g.disk, path.join(g.dir, 'at-shutdown.img'));
    const realRun = runner.run.bind(runner);
    runner.run = async (cmd, args, opts) => {
      const r = await realRun(cmd, args, opts);
      if (args[0] === 'shutdown') fs.renameSync(g.disk, `${g.disk}.gone`);
      return r;
    };
    const { outcome } = await backUp(runner, g.configDir, 'shutdown');
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toContain('cannot be read');
    expect(runner.commandLines()).toEqual(['xl list', 'xl list -l', 'xl list web01', 'xl shutdown -w web01', `xl create ${g.cfg}`]);
  }, 60_000);

  it('a guest that cannot be started again fails its backup loudly, naming it and the command to start it by hand; the watchdog keeps trying', async () => {
    const g = web01('shutdown-no-start');
    // The watchdog runs the start command itself (a real process): a stand-in xl that records the call.
    const watchdogXl = path.join(g.dir, 'xl');
    const watchdogCalls = path.join(g.dir, 'watchdog-calls');
    // It first asks `xl list web01` until the domain is gone (xl_utils.c find_domain's message), then creates it.
    fs.writeFileSync(watchdogXl, `#!/bin/sh\necho "$*" >> '${watchdogCalls}'\n[ "$1" = list ] && { echo "web01 is an invalid domain identifier (rc=-6)" >&2; exit 1; }\nexit 0\n`, { mode: 0o755 });
    const replies = [...g.listing, { cmd: watchdogXl, args: ['shutdown', '-w', 'web01'], ...recordedOutput(FIXTURES, 'xl-shutdown-w-web01') }]
      .map((r) => ({ ...r, cmd: watchdogXl }));
    const runner = new RecordedCommandRunner([
      ...replies,
      { cmd: watchdogXl, args: ['create', g.cfg], ...g.created('xl-create-web01-nomem'), code: 1, repeat: true },
    ]);
    const { outcome, log } = await backUp(runner, g.configDir, 'shutdown', watchdogXl);
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toBe(
      `guest web01 was shut down for its backup and could not be started again: ${watchdogXl} create ${g.cfg} failed (exit 1): failed to free memory for the domain; ` +
        `start it by hand: ${watchdogXl} create ${g.cfg}`,
    );
    expect(log.some((l) => l.startsWith('web01: NOT STARTED AGAIN after its shutdown for the backup:'))).toBe(true);
    // Tried twice by ferry: once after the read, once more in the cleanup.
    expect(runner.commandLines().filter((l) => l === `${watchdogXl} create ${g.cfg}`)).toHaveLength(2);
    // And then by the watchdog, from outside.
    const watchdogSaid = () => (fs.existsSync(watchdogCalls) ? fs.readFileSync(watchdogCalls, 'utf8') : '');
    for (let i = 0; i < 400 && !watchdogSaid().includes('create'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(watchdogSaid()).toBe(`list web01\ncreate ${g.cfg}\n`);
  }, 60_000);
});

describe('quiesce = from ferry.conf reaches the Xen driver in a fleet backup', () => {
  // The fleet holds a running guest around create() of any provider that does
  // not fix the point in time itself; `none` stands in for lvm/btrfs/reflink
  // here (no such storage on this machine), the quiesce path is the same.
  async function withQuiesce(label: string, how: 'pause' | 'none' | 'fsfreeze', replies: RecordedReply[]) {
    const g = web01(label);
    const runner = new RecordedCommandRunner([...g.listing, ...replies]);
    const driver = new XenDriver({ runner, configDir: g.configDir });
    const [guest] = await driver.listGuests();
    const none = new NoSnapshotProvider();
    const [outcome] = await backupFleet(repo, pool, [{ driver, guest: guest!, quiesce: how, providerFor: async () => none }], {
      concurrency: 1, tags: [], runId: `q-${how}`, log: () => undefined,
    });
    return { outcome: outcome!, lines: runner.commandLines() };
  }

  it('quiesce = "pause": xl pause and xl unpause around the snapshot', async () => {
    const { outcome, lines } = await withQuiesce('q-pause', 'pause', [{ cmd: 'xl', args: ['pause', 'web01'] }, { cmd: 'xl', args: ['unpause', 'web01'] }]);
    expect(outcome.ok, outcome.error).toBe(true);
    expect(lines).toEqual(['xl list', 'xl list -l', 'xl list web01', 'xl pause web01', 'xl unpause web01']);
  }, 60_000);

  it('quiesce = "none": no xl command holds the guest, and no pause is reported', async () => {
    const { outcome, lines } = await withQuiesce('q-none', 'none', []);
    expect(outcome.ok, outcome.error).toBe(true);
    expect(outcome.pauseMs).toBe(0);
    expect(lines).toEqual(['xl list', 'xl list -l']);
  }, 60_000);

  it('quiesce = "fsfreeze": the guest\'s backup fails with the driver\'s one line, nothing held', async () => {
    const { outcome, lines } = await withQuiesce('q-fsfreeze', 'fsfreeze', []);
    expect(outcome.ok).toBe(false);
    expect(outcome.error).toMatch(/^quiesce = "fsfreeze" for Xen guest web01: xl has no guest agent channel/);
    expect(lines).toEqual(['xl list', 'xl list -l']);
  }, 60_000);
});
