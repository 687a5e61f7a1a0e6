// Locks that cannot be stolen: a lock is this host's only by its random host
// id (not by a hostname two machines can share), it is stale only when the
// storage has not seen it rewritten for the stale age (never by comparing the
// writer's stamp with the reader's clock), a holder that loses its lock stops
// with exit 5 instead of going on unprotected, and sync locks both ends.
//
// Each simulated host has its own XDG_STATE_HOME, where ferry keeps its host id.
// Locks of "other hosts" are written here with the repository key, as ferry does.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EXIT,
  expectCleanFailure,
  expectSuccess,
  ferry,
  listFiles,
  spawnFerry,
  TestRepo,
  useScratch,
  writeRandomishImage,
  type RunningFerry,
} from '../support';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { sealObject } from '../../src/crypto/objectCodec';
import { readSecretFile } from '../../src/cli/password';
import type { LockInfo } from '../../src/repo/lock';
import { openBackend } from '../../src/storage/open';
import { useS3Server } from '../support/s3server';

const scratch = useScratch('locks');
const s3 = useS3Server();
const MiB = 1024 * 1024;
const MINUTE = 60 * 1000;

let repo: TestRepo;
let pointId: string;
let bigImage: string;

/** The environment of a simulated host: its own state directory, hence its own host id. */
function host(name: string): Record<string, string> {
  return { XDG_STATE_HOME: scratch.mkdir('hosts', name) };
}
const hostA = () => host('a');

function hostIdOf(env: Record<string, string>): string {
  return fs.readFileSync(path.join(env.XDG_STATE_HOME, 'ferry', 'host-id'), 'utf8').trim();
}

/** Lock files proper (not `NAME.tmp-RANDOM` files still being written). */
function locksOf(dir: string): string[] {
  return listFiles(path.join(dir, 'locks')).filter((f) => !f.includes('.tmp-'));
}

/** A pid no process has now: one of a process that has exited. */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

/** Write a lock as another ferry would; `mtimeAgoMs` backdates the file (the storage's last-modified time). */
async function plantLock(dir: string, info: Partial<LockInfo>, opts: { mtimeAgoMs?: number } = {}): Promise<string> {
  const opened = await Repository.open(new LocalBackend(dir), readSecretFile(repo.passwordFile, 'test'));
  const full: LockInfo = {
    host: 'dom0-b',
    hostId: 'b'.repeat(32),
    pid: process.pid,
    time: new Date().toISOString(),
    exclusive: false,
    command: 'backup',
    ...info,
  };
  const name = `${Date.now().toString(16).padStart(16, '0')}${'0'.repeat(16)}`;
  const file = path.join(dir, 'locks', name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, sealObject(opened.keys.dataKey, 'lock', Buffer.from(JSON.stringify(full))));
  if (opts.mtimeAgoMs) {
    const then = new Date(Date.now() - opts.mtimeAgoMs);
    fs.utimesSync(file, then, then);
  }
  return name;
}

/** Start a long backup, wait until its lock file exists, and stop it there (SIGSTOP). */
async function stoppedBackup(env: Record<string, string>): Promise<RunningFerry & { resume: () => void; exited: () => boolean }> {
  const before = new Set(locksOf(repo.path));
  const running = repo.spawn(['backup', '--guest', 'big', bigImage], { env });
  let exited = false;
  void running.done.then(() => (exited = true));
  // Polls every 2 ms for as long as the backup runs (it reads 256 MiB: many seconds on any machine);
  // the bound only turns a hang into a failure.
  const deadline = Date.now() + 120_000;
  while (!locksOf(repo.path).some((f) => !before.has(f)) && !exited && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2));
  }
  expect(exited, 'the backup finished before its lock file appeared in locks/').toBe(false);
  process.kill(running.child.pid!, 'SIGSTOP');
  return { ...running, resume: () => process.kill(running.child.pid!, 'SIGCONT'), exited: () => exited };
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  const image = scratch.path('small.img');
  writeRandomishImage(image, 4 * MiB, 1);
  pointId = (await repo.backup('small', [image])).id;
  bigImage = scratch.path('big.img');
  writeRandomishImage(bigImage, 256 * MiB, 5, { holes: 0, text: 0 });
});

describe('whose lock it is', () => {
  it('a lock of another host with the same hostname and a pid not running here is not taken as this host\'s', async () => {
    const env = hostA();
    const name = await plantLock(repo.path, { host: os.hostname(), hostId: 'b'.repeat(32), pid: deadPid() });
    const r = await repo.run(['forget', pointId, '--dry-run'], { env });
    expectCleanFailure(r, { code: EXIT.locked, message: /locked \(shared\) by 'backup'/ });
    expect(locksOf(repo.path)).toEqual([name]);
    fs.rmSync(path.join(repo.path, 'locks', name));
  });

  it('a lock with this host\'s id whose process is gone is this host\'s crashed run: removed', async () => {
    const env = hostA();
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env })); // makes sure host a's id file exists
    await plantLock(repo.path, { host: 'renamed-since', hostId: hostIdOf(env), pid: deadPid() });
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env }));
    expect(locksOf(repo.path)).toEqual([]);
  });

  it('keeps the host id in the state directory, the same on every run', async () => {
    const env = host('c');
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env }));
    const id = hostIdOf(env);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env }));
    expect(hostIdOf(env)).toBe(id);
    const other = host('d');
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env: other }));
    expect(hostIdOf(other), 'another host (state directory) gets another id').not.toBe(id);
  });

  it('a state directory that cannot hold the host id does not stop a backup: one warning, and the run goes on', async () => {
    const notADirectory = scratch.path('state-is-a-file');
    fs.writeFileSync(notADirectory, 'x');
    const r = await repo.run(['forget', pointId, '--dry-run'], { env: { XDG_STATE_HOME: notADirectory } });
    expectSuccess(r);
    expect(r.stderr).toMatch(/^ferry: warning: host id file .*state-is-a-file\/ferry\/host-id: cannot read it: .*host id of its own/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a host id file that is not an id is named in the warning, not silently replaced', async () => {
    const env = host('garbled');
    fs.mkdirSync(path.join(env.XDG_STATE_HOME, 'ferry'), { recursive: true });
    fs.writeFileSync(path.join(env.XDG_STATE_HOME, 'ferry', 'host-id'), 'not an id\n');
    const r = await repo.run(['forget', pointId, '--dry-run'], { env });
    expectSuccess(r);
    expect(r.stderr).toMatch(/host-id: is not 32 hex digits; delete it/);
    expect(fs.readFileSync(path.join(env.XDG_STATE_HOME, 'ferry', 'host-id'), 'utf8')).toBe('not an id\n');
  });
});

describe('when a lock is stale', () => {
  it('a lock stamped 31 minutes ago by its writer\'s clock but rewritten just now is not removed', async () => {
    const name = await plantLock(repo.path, { time: new Date(Date.now() - 31 * MINUTE).toISOString() });
    const r = await repo.run(['forget', pointId, '--dry-run'], { env: hostA() });
    expectCleanFailure(r, { code: EXIT.locked, message: /locked/ });
    expectSuccess(await repo.run(['unlock'], { env: hostA() }));
    expect(locksOf(repo.path)).toEqual([name]);
    fs.rmSync(path.join(repo.path, 'locks', name));
  });

  it('a lock the storage has not seen rewritten for 31 minutes is removed, even when its stamp says now', async () => {
    await plantLock(repo.path, { exclusive: true, command: 'forget' }, { mtimeAgoMs: 31 * MINUTE });
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env: hostA() }));
    expect(locksOf(repo.path)).toEqual([]);

    await plantLock(repo.path, {}, { mtimeAgoMs: 31 * MINUTE });
    expect(expectSuccess(await repo.run(['unlock'], { env: hostA() }))).toMatch(/removed 1 lock/);
    expect(locksOf(repo.path)).toEqual([]);
  });

  it('a stale age given for tests applies too (the timing is an option, not a constant)', async () => {
    const name = await plantLock(repo.path, {}, { mtimeAgoMs: 10_000 });
    const r = await repo.run(['forget', pointId, '--dry-run'], { env: hostA() });
    expectCleanFailure(r, { code: EXIT.locked });
    expect(locksOf(repo.path)).toEqual([name]);
    expectSuccess(await repo.run(['forget', pointId, '--dry-run'], { env: { ...hostA(), FERRY_TEST_LOCK_STALE_MS: '5000', FERRY_TEST_LOCK_REFRESH_MS: '1000' } }));
    expect(locksOf(repo.path)).toEqual([]);
  });
});

describe('on S3, the age is the storage\'s LastModified', () => {
  it('a lock stamped an hour ahead is removed once S3 has not seen it rewritten for the stale age', async () => {
    const s3repo = await TestRepo.init(scratch, 's3repo', { dir: await s3.server.newLocation('ferry') });
    const backend = openBackend(s3repo.path);
    const opened = await Repository.open(backend, readSecretFile(s3repo.passwordFile, 'test'));
    const info: LockInfo = { host: 'dom0-b', hostId: 'b'.repeat(32), pid: 1, time: new Date(Date.now() + 60 * MINUTE).toISOString(), exclusive: false, command: 'backup' };
    await backend.write('locks', 'c'.repeat(32), sealObject(opened.keys.dataKey, 'lock', Buffer.from(JSON.stringify(info))));
    const names = async () => {
      const out: string[] = [];
      for await (const o of backend.list('locks')) out.push(o.name);
      return out;
    };
    // Just written: fresh by S3's clock, with a stale age (60 s) far longer than this step takes.
    const staleMinute = { ...hostA(), FERRY_TEST_LOCK_STALE_MS: '60000', FERRY_TEST_LOCK_REFRESH_MS: '10000' };
    expectCleanFailure(await s3repo.run(['forget', 'ffffffff', '--dry-run'], { env: staleMinute }), { code: EXIT.locked });
    expect(await names()).toEqual(['c'.repeat(32)]);
    // LastModified has whole seconds: after 3 s, S3's clock has moved on by more than a 1 s stale age.
    // The wait is a lower bound; a slower machine only makes the lock older.
    await new Promise((r) => setTimeout(r, 3000));
    const staleSecond = { ...hostA(), FERRY_TEST_LOCK_STALE_MS: '1000', FERRY_TEST_LOCK_REFRESH_MS: '500' };
    const r = await s3repo.run(['forget', 'ffffffff', '--dry-run'], { env: staleSecond });
    expect(r.stderr, 'the stale lock is removed, then forget looks for the (unknown) id').toMatch(/ffffffff/);
    expect(await names()).toEqual([]);
    await backend.close();
  });
});

describe('a holder that loses its lock', () => {
  it('stops with exit 5 when a refresh finds its lock removed, and does not recreate it', async () => {
    // Refresh often, so the first refresh after the resume comes at once.
    const run = await stoppedBackup({ ...hostA(), FERRY_TEST_LOCK_REFRESH_MS: '100' });
    const [lock] = locksOf(repo.path);
    fs.rmSync(path.join(repo.path, 'locks', lock));
    run.resume();
    const r = await run.done;
    expectCleanFailure(r, { code: EXIT.locked, message: /lost its shared lock .*another process removed it/ });
    expect(locksOf(repo.path), 'the removed lock must not come back').toEqual([]);
    await repo.expectCheckPasses(false);
  });

  it('stops with exit 5 when it was suspended longer than the stale age', async () => {
    const staleMs = 2000;
    const run = await stoppedBackup({ ...hostA(), FERRY_TEST_LOCK_STALE_MS: String(staleMs), FERRY_TEST_LOCK_REFRESH_MS: '500' });
    // Suspended for longer than the stale age: by then anyone may have removed the lock. The wait
    // is a lower bound only (a slow machine just waits longer); the holder must notice by itself.
    await new Promise((r) => setTimeout(r, staleMs + 1500));
    run.resume();
    const r = await run.done;
    expectCleanFailure(r, { code: EXIT.locked, message: /lost its shared lock .*more than the stale age/ });
    // Its lock is left to go stale (it may be someone else's business by now); unlock clears it.
    expectSuccess(await repo.run(['unlock', '--all'], { env: hostA() }));
    await repo.expectCheckPasses(false);
  });
});

describe('sync', () => {
  // A source of its own, 12 MiB: at 4 MiB/s its copy lasts a few seconds (the shared repository holds what the
  // backups above stored, and copying that at the cap took ~14 s a test).
  let source: TestRepo;
  let sourcePoint: string;
  beforeAll(async () => {
    source = await TestRepo.init(scratch, 'sync-source');
    const image = scratch.path('sync-source.img');
    writeRandomishImage(image, 12 * MiB, 9, { holes: 0, text: 0 });
    sourcePoint = (await source.backup('small', [image])).id;
  });

  for (const keyed of [true, false]) {
    it(`holds shared locks on both ends ${keyed ? 'with' : 'without'} the passphrase: forget is refused on the source and on the target while it runs`, async () => {
      const dst = scratch.path(`dst-${keyed ? 'keyed' : 'keyless'}`);
      expectSuccess(await ferry(['init', '--from', source.path, '--repo', dst]), 'init --from');
      const env = { ...hostA(), ...(keyed ? { FERRY_PASSWORD_FILE: source.passwordFile } : {}) };
      // A bandwidth cap makes the copy take seconds, so the sync is still running when it is stopped.
      const run = spawnFerry(['sync', source.path, dst, '--limit-upload', '4M'], { env });
      let exited = false;
      void run.done.then(() => (exited = true));
      try {
        // Locks come before any copying (source, then target); stop the sync as soon as both exist.
        const deadline = Date.now() + 120_000;
        while (locksOf(dst).length === 0 && !exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
        expect(exited, 'the sync finished before its lock on the target appeared').toBe(false);
        process.kill(run.child.pid!, 'SIGSTOP');
        expect(locksOf(source.path)).toHaveLength(1);
        if (!keyed) {
          // Without the key the lock is plaintext: it must not name the host.
          const bytes = fs.readFileSync(path.join(dst, 'locks', locksOf(dst)[0]));
          expect(bytes.subarray(0, 8).toString()).toBe('FERRYLCK');
          expect(bytes.toString()).not.toContain(os.hostname());
        }

        expectCleanFailure(await source.at(dst).run(['forget', sourcePoint], { env: hostA() }), { code: EXIT.locked, message: /'sync \(target\)'/ });
        expectCleanFailure(await source.run(['forget', sourcePoint], { env: hostA() }), { code: EXIT.locked, message: /'sync \(source\)'/ });
        // Shared: a reader (check) may run beside it.
        await source.at(dst).expectCheckPasses(false);
      } finally {
        process.kill(run.child.pid!, 'SIGCONT');
      }
      expectSuccess(await run.done, 'sync');
      expect(locksOf(dst)).toEqual([]);
      expect(locksOf(source.path)).toEqual([]);
      expect((await source.at(dst).list()).map((p) => p.id)).toContain(sourcePoint);
    });
  }

  it('without the passphrase, a live lock at the target it cannot read stops it; with the passphrase it is a shared lock and sync runs', async () => {
    const dst = scratch.path('dst-unreadable');
    expectSuccess(await ferry(['init', '--from', repo.path, '--repo', dst]), 'init --from');
    const name = await plantLock(dst, { exclusive: false, command: 'backup' });
    const keyless = await ferry(['sync', repo.path, dst], { env: hostA() });
    expectCleanFailure(keyless, { code: EXIT.locked, message: /cannot read without the passphrase/ });
    expect(locksOf(repo.path), 'the source lock is released').toEqual([]);
    expectSuccess(await ferry(['sync', repo.path, dst], { env: { ...hostA(), FERRY_PASSWORD_FILE: repo.passwordFile } }), 'sync');
    expect(locksOf(dst)).toEqual([name]);
  });
});
