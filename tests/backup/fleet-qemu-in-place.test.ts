// A real QEMU (TCG) guest with a guest agent, writing to its raw disk all the
// time: the driver's quiesce = pause | fsfreeze | none as ferry.conf asks
// (not the driver's own choice), and `snapshot = "pause"` through the CLI —
// the guest stays paused while ferry reads its disk in place, and the
// restore is bit-exact to a copy the test takes while it is paused.
// `snapshot = "shutdown"` is refused for QMP guests (QEMU exits with its
// guest and ferry has no config to start it again).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QemuDriver, qmpCommandScript, type QemuQuiesceHandle } from '../../src/hypervisor/qemu/qemuDriver';
import { QgaClient } from '../../src/hypervisor/qemu/qgaClient';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import { checkExt4Image, startGuest, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';
import { sha256File } from '../support/files';
import { ferry, spawnFerry, expectSuccess, describeResult, FAST_KDF } from '../support/ferry';

const scratch = useScratch('fleet-qemu-in-place');
const env = { FERRY_PASSWORD: 'fleet-qemu-in-place' };
let guest: TestGuest;
let agentSocket: string;
let repo: string;

const qmpStatus = () => QmpClient.with(guest.qmpSocket, (c) => c.execute<{ status: string }>('query-status')).then((s) => s.status);
const freezeStatus = () => QgaClient.with(agentSocket, 5000, (c) => c.execute<string>('guest-fsfreeze-status', undefined, 5000));

beforeAll(async () => {
  if (!fs.existsSync(qmpCommandScript())) throw new Error(`${qmpCommandScript()} is missing: build first (npm run build)`);
  guest = await startGuest(scratch, 'eta', { env: { FERRY_GUEST_AGENT: '1' } });
  agentSocket = path.join(guest.dir, 'eta.qga');
  await guest.waitForConsole(/^FERRY-GUEST-AGENT started/);
  await guest.waitForMoreWrites(3);
  repo = scratch.path('repo');
  expectSuccess(await ferry(['init', '--repo', repo, ...FAST_KDF], { env }), 'init');
}, 300_000);

afterAll(async () => {
  await guest?.stop();
});

describe('QEMU quiesce as ferry.conf asks, with an agent that answers', () => {
  it('quiesce = "pause": stops the vCPUs although the agent could freeze', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const handle = (await driver.quiesce(g!, {}, undefined, { how: 'pause' })) as QemuQuiesceHandle;
    try {
      expect(handle.mode).toBe('pause');
      expect(await qmpStatus()).toBe('paused'); // (its agent cannot answer now: the vCPUs are stopped)
    } finally {
      await handle.release();
    }
    expect(await qmpStatus()).toBe('running');
    expect(await freezeStatus()).toBe('thawed');
  });

  it('quiesce = "fsfreeze": freezes through the agent, the guest keeps running', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const handle = (await driver.quiesce(g!, {}, undefined, { how: 'fsfreeze' })) as QemuQuiesceHandle;
    try {
      expect(handle.mode).toBe('fsfreeze');
      expect(await qmpStatus()).toBe('running');
      expect(await freezeStatus()).toBe('frozen');
    } finally {
      await handle.release();
    }
    expect(await freezeStatus()).toBe('thawed');
  });

  it('quiesce = "none": neither stops nor freezes; the guest goes on writing', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const handle = await driver.quiesce(g!, {}, undefined, { how: 'none' });
    expect(handle.quiesced).toBe(false);
    expect(await qmpStatus()).toBe('running');
    expect(await freezeStatus()).toBe('thawed');
    await guest.waitForMoreWrites(2);
    await handle.release();
  });
});

describe('backup --all of a QEMU guest with snapshot = "pause" in ferry.conf', () => {
  const conf = (body: string) => {
    const file = scratch.path(`ferry-${Math.random().toString(16).slice(2)}.conf`);
    fs.writeFileSync(file, `repository = ${JSON.stringify(repo)}\n[qemu]\nqmp_sockets = [${JSON.stringify(guest.qmpSocket)}]\n\n[guest."eta"]\n${body}`);
    return file;
  };
  const args = (file: string, extra: string[] = []) => ['backup', '--all', '--config', file, '--work-dir', scratch.mkdir('work'), ...extra];
  const runEnv = (extra: Record<string, string> = {}) => ({ ...env, FERRY_RUN_DIR: scratch.mkdir('run'), ...extra });

  it('keeps the guest paused while its disk is read in place; the restore is bit-exact to the disk as it was paused, and a clean ext4', async () => {
    // The rehearsal hold keeps the guest paused before the read starts, so the test can copy the disk meanwhile.
    const running = spawnFerry(args(conf('snapshot = "pause"\n'), ['--json']), { env: runEnv({ FERRY_HOLD_QUIESCE_MS: '8000' }) });
    const deadline = Date.now() + 120_000;
    while ((await qmpStatus()) !== 'paused') {
      if (Date.now() > deadline) throw new Error(`the guest was never paused: ${describeResult(await running.done)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const atPause = scratch.path('eta-at-pause.img');
    fs.copyFileSync(guest.diskPath, atPause);
    // Still paused after the copy: the copy lies wholly inside the one pause that also covers ferry's read.
    expect(await qmpStatus()).toBe('paused');
    const result = await running.done;
    const out = JSON.parse(expectSuccess(result, 'backup --all')) as { guests: { guest: string; id: string; pauseMs: number; snapshotKinds: string[] }[] };
    expect(out.guests[0]).toMatchObject({ guest: 'eta', snapshotKinds: ['pause'] });
    expect(out.guests[0]!.pauseMs).toBeGreaterThanOrEqual(8000);
    expect(await qmpStatus()).toBe('running');
    await guest.waitForMoreWrites(2);
    const to = scratch.mkdir('restored');
    expectSuccess(await ferry(['restore', '--repo', repo, out.guests[0]!.id, '--to', to], { env }), 'restore');
    const restored = path.join(to, 'vda.img');
    expect(await sha256File(restored)).toBe(await sha256File(atPause));
    await checkExt4Image(restored, scratch.mkdir('fsck'));
  }, 240_000);

  it('snapshot = "shutdown" is refused for a QMP guest in one line, and the guest keeps running', async () => {
    const r = await ferry(args(conf('snapshot = "shutdown"\n')), { env: runEnv() });
    expect(r.code, describeResult(r)).toBe(11);
    expect(r.stdout).toContain('FAILED eta (qemu): guest eta: snapshot = "shutdown" is not supported for QEMU guests reached by QMP: QEMU exits when its guest shuts down');
    expect(r.stdout).toContain('use snapshot = "pause"');
    expect(await qmpStatus()).toBe('running');
  }, 120_000);
});
