// `--wait-lock DURATION`: a command that meets a conflicting lock waits for it
// to go instead of failing at once, and after the wait fails with exit 5 naming
// the holder and how long it waited. Here a backup meets a prune's exclusive
// lock; the prune is stopped (SIGSTOP) while it holds it, so the test decides
// when it ends, not the machine's speed. sync, which locks both ends itself,
// waits for another host's lock the test removes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT, TestRepo, expectCleanFailure, expectSuccess, ferry, listFiles, spawnFerry, useScratch, writeRandomishImage, type RunningFerry } from '../support';
import { LocalBackend } from '../../src/storage/local';
import { Repository } from '../../src/repo/repository';
import { sealObject } from '../../src/crypto/objectCodec';
import { readSecretFile } from '../../src/cli/password';
import type { LockInfo } from '../../src/repo/lock';

const MiB = 1024 * 1024;
const scratch = useScratch('wait-lock');

let fixture: TestRepo;
let image: string;
let copies = 0;

/** Two nights of one guest, the first forgotten: a prune has work to do. */
beforeAll(async () => {
  fixture = await TestRepo.init(scratch, 'fixture');
  image = scratch.path('g.img');
  writeRandomishImage(image, 4 * MiB, 1, { holes: 0, text: 0 });
  const first = await fixture.backup('g', [image]);
  writeRandomishImage(image, 4 * MiB, 2, { holes: 0, text: 0 });
  await fixture.backup('g', [image]);
  expectSuccess(await fixture.run(['forget', first.id]));
});

function locksOf(repo: TestRepo): string[] {
  return listFiles(path.join(repo.path, 'locks')).filter((f) => !f.includes('.tmp-'));
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * A prune stopped while it holds its exclusive lock. It gets --wait-lock too:
 * stopped right after writing its lock, it may not have looked at the others
 * yet, and a backup's try in that moment would otherwise make it give up.
 */
async function heldPrune(repo: TestRepo): Promise<RunningFerry> {
  const prune = repo.spawn(['prune', '--wait-lock', '60s']);
  let exited = false;
  void prune.done.then(() => (exited = true));
  await until(() => exited || locksOf(repo).length > 0, "prune's lock file");
  prune.child.kill('SIGSTOP');
  expect(exited, 'prune finished before its lock was seen').toBe(false);
  expect(locksOf(repo)).toHaveLength(1);
  return prune;
}

/** A lock as another host's ferry writes it, sealed with the repository's data key; returns its file. */
async function plantLock(keys: TestRepo, dir: string, info: LockInfo): Promise<string> {
  const opened = await Repository.open(new LocalBackend(dir), readSecretFile(keys.passwordFile, 'test'));
  const file = path.join(dir, 'locks', 'e'.repeat(32));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, sealObject(opened.keys.dataKey, 'lock', Buffer.from(JSON.stringify(info))));
  return file;
}

function stderrOf(run: RunningFerry): () => string {
  let text = '';
  run.child.stderr!.on('data', (b: Buffer) => (text += b.toString()));
  return () => text;
}

describe('--wait-lock', () => {
  it('a backup that starts while prune holds the exclusive lock waits, and runs once prune is done', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const pointsBefore = (await repo.list()).length;
    const prune = await heldPrune(repo);
    const backup = repo.spawn(['backup', '--guest', 'g', '--wait-lock', '60s', image]);
    const stderr = stderrOf(backup);
    let backupExited = false;
    void backup.done.then(() => (backupExited = true));
    await until(() => backupExited || /waiting up to/.test(stderr()), 'the backup to start waiting');
    expect(stderr()).toMatch(/^ferry: .* is locked \(exclusive\) by 'prune', pid \d+ on .*; waiting up to 1 min 0 s for it to go \(--wait-lock\)$/m);
    prune.child.kill('SIGCONT');
    expectSuccess(await prune.done, 'prune');
    const result = await backup.done;
    expectSuccess(result, 'backup');
    expect(result.stderr).toMatch(/^ferry: got the lock after waiting .*s$/m);
    expect(await repo.list()).toHaveLength(pointsBefore + 1);
    expect(locksOf(repo)).toEqual([]);
    await repo.expectCheckPasses(true);
  });

  it('after a short wait the backup fails with exit 5, naming the holder and how long it waited, having stored nothing', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const snapshotsBefore = fs.readdirSync(path.join(repo.path, 'snapshots')).sort();
    const prune = await heldPrune(repo);
    try {
      const r = await repo.run(['backup', '--guest', 'g', '--wait-lock', '2s', image]);
      expect(r.code).toBe(EXIT.locked);
      const lines = r.stderr.trim().split('\n');
      // The waiting line, then the one error line.
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/waiting up to 2\.0 s for it to go/);
      expect(lines[1]).toMatch(/^ferry: .* is locked \(exclusive\) by 'prune', pid \d+ on .* since \S+, still after waiting 2\.\d s; wait for it to finish/);
      expect(fs.readdirSync(path.join(repo.path, 'snapshots')).sort()).toEqual(snapshotsBefore);
      expect(locksOf(repo), "only the prune's lock is left").toHaveLength(1);
    } finally {
      prune.child.kill('SIGCONT');
    }
    expectSuccess(await prune.done, 'prune');
    await repo.expectCheckPasses(false);
  });

  it("sync waits too: for another host's prune at the target, and copies once that lock is gone", async () => {
    const source = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    const target = scratch.path(`target-${copies}`);
    const env = { FERRY_PASSWORD_FILE: source.passwordFile };
    expectSuccess(await ferry(['init', '--from', source.path, '--repo', target], { env }));
    const planted = await plantLock(source, target, { host: 'dom0-b', hostId: 'b'.repeat(32), pid: 4242, time: new Date().toISOString(), exclusive: true, command: 'prune' });
    const sync = spawnFerry(['sync', source.path, target, '--wait-lock', '60s'], { env });
    const stderr = stderrOf(sync);
    let exited = false;
    void sync.done.then(() => (exited = true));
    await until(() => exited || /waiting up to/.test(stderr()), 'the sync to start waiting');
    expect(stderr()).toMatch(new RegExp(`^ferry: ${target} is locked \\(exclusive\\) by 'prune', pid 4242 on dom0-b since .*; waiting up to 1 min 0 s`, 'm'));
    fs.rmSync(planted);
    const result = await sync.done;
    expectSuccess(result, 'sync');
    expect(result.stderr).toMatch(/^ferry: got the lock after waiting/m);
    expect(fs.readdirSync(path.join(target, 'snapshots')).sort()).toEqual(fs.readdirSync(path.join(source.path, 'snapshots')).sort());
  });

  it('while it waits for an exclusive lock it only looks: no try-locks that would make other commands fail', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    // Another host's backup holds a shared lock; the prune waits for it.
    const planted = await plantLock(repo, repo.path, { host: 'dom0-b', hostId: 'b'.repeat(32), pid: 4242, time: new Date().toISOString(), exclusive: false, command: 'backup' });
    const prune = repo.spawn(['prune', '--wait-lock', '60s']);
    const stderr = stderrOf(prune);
    let exited = false;
    void prune.done.then(() => (exited = true));
    await until(() => exited || /waiting up to/.test(stderr()), 'the prune to start waiting');
    // Over 8 s the old loop wrote (and removed) a lock of its own 3 or 4 times; now none after its first try.
    const seen = new Set<string>();
    const watchUntil = Date.now() + 8000;
    while (Date.now() < watchUntil && !exited) {
      for (const f of locksOf(repo)) seen.add(f);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect([...seen].filter((f) => !planted.endsWith(f))).toEqual([]);
    fs.rmSync(planted);
    expectSuccess(await prune.done, 'prune');
  });

  it('refuses a duration it cannot read, on any command', async () => {
    const repo = await fixture.copyTo(scratch.path(`copy-${++copies}`));
    expectCleanFailure(await repo.run(['backup', '--guest', 'g', '--wait-lock', 'a while', image]), { code: EXIT.usage, message: /--wait-lock: 'a while' is not a duration; .*e\.g\. 60s/ });
    expectCleanFailure(await repo.run(['list', '--wait-lock', '-1s']), { code: EXIT.usage, message: /--wait-lock: '-1s' is not a duration/ });
  });
});
