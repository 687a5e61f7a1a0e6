// `ferry backup --all` against a real QEMU guest (TCG) that never stops
// writing to its ext4 disk: the backup is live, the guest keeps running, the
// restored image is a clean file system with every file written before the
// backup, and it boots. A nightly run reads only what changed. A ferry killed
// while it holds a guest paused leaves the guest running again (watchdog).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import { startGuest, checkExt4Image, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';
import { ferry, spawnFerry, expectSuccess, describeResult, FAST_KDF } from '../support/ferry';
import { mountLoopFileSystem } from '../support/loopFileSystems';

const scratch = useScratch('fleet-qemu');
const env = { FERRY_PASSWORD: 'fleet-test' };
let repo: string;
let guest: TestGuest;

const status = (socket: string) => QmpClient.with(socket, (c) => c.execute<{ status: string; running: boolean }>('query-status'));

beforeAll(async () => {
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }));
  guest = await startGuest(scratch, 'web01');
  await guest.waitForMoreWrites(5);
});

interface FleetJson {
  guests: { guest: string; ok: boolean; id: string; pauseMs: number; readBytes: number; logicalBytes: number; newBytes: number; fullReads: string[]; snapshotKinds: string[] }[];
  failed: number;
}

async function backupAll(extra: string[] = []): Promise<FleetJson> {
  const workDir = scratch.mkdir('work');
  const out = expectSuccess(
    await ferry(['backup', '--all', '--repo', repo, '--qmp-socket', guest.qmpSocket, '--work-dir', workDir, '--json', ...extra], { env, timeoutMs: 600_000 }),
    'backup --all',
  );
  return JSON.parse(out) as FleetJson;
}

describe('backup --all of a running QEMU guest', () => {
  // The first backup, watched from outside: the guest's run states while it ran.
  let first: FleetJson;
  let firstId: string;
  let writtenBefore: string[];
  const seenStates = new Set<string>();

  beforeAll(async () => {
    writtenBefore = guest.wroteFiles();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        seenStates.add((await status(guest.qmpSocket)).status);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      first = await backupAll();
    } finally {
      polling = false;
      await poller;
    }
    firstId = first.guests[0]?.id;
  });

  it('backs up live: the guest keeps running and writing throughout', async () => {
    expect(first.failed).toBe(0);
    const [g] = first.guests;
    expect(g.guest).toBe('web01');
    expect(g.snapshotKinds).toEqual(['qemu-live']);
    expect(g.pauseMs).toBe(0);
    expect([...seenStates]).toEqual(['running']);
    await guest.waitForMoreWrites(2); // still writing after the backup
  });

  it('restores a clean file system holding every file written before the backup, and it boots', async () => {
    const out = scratch.mkdir('restore-1');
    expectSuccess(await ferry(['restore', '--repo', repo, firstId, '--to', out], { env }), 'restore');
    const image = path.join(out, fs.readdirSync(out).find((f) => f.endsWith('.img'))!);
    const { dataFiles } = await checkExt4Image(image, scratch.mkdir('fsck'));
    for (const f of writtenBefore) expect(dataFiles).toContain(f);
    const booted = await startGuest(scratch, 'restored', { disks: [image] });
    await booted.waitForMoreWrites(1);
    expect(booted.isAlive()).toBe(true);
    // Its boot counter lives on the restored file system: this is the second boot of that disk.
    expect(booted.wroteFiles()[0]).toMatch(/^data\/b2-/);
    await booted.stop();
  });

  it('a nightly run reads only what changed since the last one', async () => {
    await guest.waitForMoreWrites(10);
    const writtenBefore2 = guest.wroteFiles();
    const result = await backupAll();
    const [g] = result.guests;
    expect(g.ok).toBe(true);
    expect(g.fullReads).toEqual([]);
    expect(g.readBytes).toBeGreaterThan(0);
    expect(g.readBytes).toBeLessThan(g.logicalBytes / 10);
    const out = scratch.mkdir('restore-2');
    expectSuccess(await ferry(['restore', '--repo', repo, g.id, '--to', out], { env }), 'restore');
    const image = path.join(out, fs.readdirSync(out).find((f) => f.endsWith('.img'))!);
    const { dataFiles } = await checkExt4Image(image, scratch.mkdir('fsck2'));
    for (const f of writtenBefore2) expect(dataFiles).toContain(f);
  });
});

describe('a ferry killed while it holds a guest paused', () => {
  it('leaves the guest running again (watchdog)', async () => {
    // A disk on xfs is copied by reflink, which needs the guest paused around the copy.
    const mount = await mountLoopFileSystem(scratch, 'xfs', { mkfs: ['mkfs.xfs', '-q', '-m', 'reflink=1'], sizeMiB: 600 });
    const disk = path.join(mount, 'db01.img');
    fs.copyFileSync(guest.diskPath, disk);
    const db = await startGuest(scratch, 'db01', { disks: [disk] });
    await db.waitForMoreWrites(2);
    const conf = scratch.path('ferry.conf');
    fs.writeFileSync(conf, `[qemu]\nqmp_sockets = [${JSON.stringify(db.qmpSocket)}]\n\n[guest."db01"]\nsnapshot = "reflink"\n`);
    const running = spawnFerry(['backup', '--all', '--repo', repo, '--config', conf, '--work-dir', scratch.mkdir('work-kill')], {
      env: { ...env, FERRY_HOLD_QUIESCE_MS: '60000' },
    });
    const deadline = Date.now() + 120_000;
    let exited = false;
    void running.done.then(() => (exited = true));
    while ((await status(db.qmpSocket)).status !== 'paused') {
      if (exited || Date.now() > deadline) {
        running.child.kill('SIGKILL');
        throw new Error(`ferry never paused the guest: ${describeResult(await running.done)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    running.child.kill('SIGKILL');
    await running.done;
    const resumeDeadline = Date.now() + 15_000;
    // Polled like a monitor would: QMP serves one client at a time, so this competes with the watchdog's `cont`.
    while ((await status(db.qmpSocket)).status !== 'running') {
      if (Date.now() > resumeDeadline) throw new Error('the guest is still paused 15 s after ferry was killed');
      await new Promise((r) => setTimeout(r, 100));
    }
    await db.waitForMoreWrites(1);
    await db.stop();
  });
});
