// The QEMU driver's fsfreeze quiesce through a real QEMU guest agent: the
// test guest runs Debian's qemu-ga (FERRY_GUEST_AGENT=1 in guest.sh) on a
// virtio-serial port, so the driver freezes its ext4 file system instead of
// stopping it. The guest keeps running (QMP status stays "running") but its
// writer blocks until the thaw.
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QemuDriver, agentSocketIn, qmpCommandScript, type QemuQuiesceHandle } from '../../src/hypervisor/qemu/qemuDriver';
import { QgaClient } from '../../src/hypervisor/qemu/qgaClient';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import { startGuest, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';

const run = promisify(execFile);
const scratch = useScratch('qemu-agent');
let guest: TestGuest;
let agentSocket: string;

const qmpStatus = () => QmpClient.with(guest.qmpSocket, (c) => c.execute<{ status: string }>('query-status')).then((s) => s.status);
const freezeStatus = () => QgaClient.with(agentSocket, 5000, (c) => c.execute<string>('guest-fsfreeze-status', undefined, 5000));

beforeAll(async () => {
  if (!fs.existsSync(qmpCommandScript())) throw new Error(`${qmpCommandScript()} is missing: build first (npm run build)`);
  guest = await startGuest(scratch, 'epsilon', { env: { FERRY_GUEST_AGENT: '1' } });
  agentSocket = path.join(guest.dir, 'epsilon.qga');
  await guest.waitForConsole(/^FERRY-GUEST-AGENT started/);
  await guest.waitForMoreWrites(3);
});

afterAll(async () => {
  await guest?.stop();
});

describe('QEMU guest agent quiesce', () => {
  it('finds the agent socket in the QEMU command line', async () => {
    const [g] = await new QemuDriver({ sockets: [guest.qmpSocket] }).listGuests();
    expect(agentSocketIn(JSON.parse(g!.config!.text) as string[])).toBe(agentSocket);
    expect(agentSocketIn(['qemu-system-x86_64', '-chardev', 'socket,id=qga0,path=/run/a.qga,server=on', '-device', 'virtserialport,chardev=other,name=org.qemu.guest_agent.0'])).toBeUndefined();
  });

  it('freezes the file systems instead of stopping the guest; release thaws and writing resumes', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket] });
    const [g] = await driver.listGuests();
    const t0 = process.hrtime.bigint();
    const handle = (await driver.quiesce(g!)) as QemuQuiesceHandle;
    const frozenMs = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(handle.mode).toBe('fsfreeze');
    expect(await qmpStatus()).toBe('running');
    expect(await freezeStatus()).toBe('frozen');
    const written = guest.wroteFiles().length;
    // The writer is blocked on the frozen file system (a negative: it needs a time window).
    await new Promise((r) => setTimeout(r, 2000));
    expect(guest.wroteFiles().length).toBeLessThanOrEqual(written + 1); // one write may have passed the freeze's sync
    const t1 = process.hrtime.bigint();
    await handle.release();
    const thawMs = Number(process.hrtime.bigint() - t1) / 1e6;
    expect(await freezeStatus()).toBe('thawed');
    await guest.waitForMoreWrites(3);
    console.log(`qemu agent quiesce: freeze ${frozenMs.toFixed(0)} ms, thaw ${thawMs.toFixed(0)} ms`);
  });

  it('stops the guest instead when told not to use the agent', async () => {
    const driver = new QemuDriver({ sockets: [guest.qmpSocket], useGuestAgent: false });
    const [g] = await driver.listGuests();
    const handle = (await driver.quiesce(g!)) as QemuQuiesceHandle;
    try {
      expect(handle.mode).toBe('pause');
      expect(await qmpStatus()).toBe('paused');
    } finally {
      await handle.release();
    }
    expect(await qmpStatus()).toBe('running');
  });

  it('releaseArgv thaws a guest whose ferry was SIGKILLed while it was frozen', async () => {
    const driverJs = path.resolve(__dirname, '..', '..', 'dist', 'hypervisor', 'qemu', 'qemuDriver.js');
    const script = `
      const { QemuDriver } = require(${JSON.stringify(driverJs)});
      (async () => {
        const driver = new QemuDriver({ sockets: [${JSON.stringify(guest.qmpSocket)}] });
        const [g] = await driver.listGuests();
        const handle = await driver.quiesce(g);
        process.stdout.write(JSON.stringify({ mode: handle.mode, releaseArgv: handle.releaseArgv }) + '\\n');
        setInterval(() => {}, 1000);
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    scratch.defer(() => child.kill('SIGKILL'));
    const held = await new Promise<{ mode: string; releaseArgv: string[] }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { mode: string; releaseArgv: string[] });
      });
      child.on('exit', (code) => reject(new Error(`stand-in ferry exited (${code}) before freezing the guest`)));
    });
    expect(held.mode).toBe('fsfreeze');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(await freezeStatus()).toBe('frozen'); // nobody thawed it yet

    expect(held.releaseArgv.slice(1)).toEqual([qmpCommandScript(), '--agent', agentSocket, 'guest-fsfreeze-thaw']);
    const { stdout } = await run(held.releaseArgv[0]!, held.releaseArgv.slice(1));
    expect(stdout.trim()).toBe('1'); // one file system thawed
    expect(await freezeStatus()).toBe('thawed');
    await guest.waitForMoreWrites(2);
  });
});
