// The libvirt driver against a real libvirtd with a real running guest (TCG,
// scripts/testbed/guest.sh) and a defined but shut-off one.
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { LibvirtDriver } from '../../src/hypervisor/libvirt/libvirtDriver';
import { parseDomainXml } from '../../src/hypervisor/libvirt/domainXml';
import type { ReleaseCommand } from '../../src/hypervisor/driver';
import { useScratch } from '../support/scratch';
import {
  type DomainSpec, copyDisk, defineDomain, domstate, startDomain, useLibvirtGuestFiles, virsh, waitForWrites,
  writtenFiles,
} from '../support/libvirtGuest';

const scratch = useScratch('libvirt-driver');
const RUNNING = `ferry-test-drv-${process.pid}`;
const STOPPED = `ferry-test-off-${process.pid}`;
let running: DomainSpec;
let stopped: DomainSpec;
const driver = new LibvirtDriver({ runner: new ExecFileCommandRunner(), agentTimeoutSeconds: 2 });

beforeAll(async () => {
  const files = await useLibvirtGuestFiles(scratch);
  running = {
    name: RUNNING,
    files,
    disks: [{ path: await copyDisk(files, scratch.path('running.img'), 'raw'), format: 'raw' }],
    consoleLog: scratch.path('running.console'),
    memoryMiB: 160,
    // A guest-agent channel with no agent behind it: the driver must fall back to suspend.
    agentChannel: true,
    mac: '52:54:00:fe:00:0a',
  };
  stopped = {
    name: STOPPED,
    files,
    disks: [
      { path: await copyDisk(files, scratch.path('stopped-a.qcow2'), 'qcow2'), format: 'qcow2' },
      { path: await copyDisk(files, scratch.path('stopped-b.img'), 'raw'), format: 'raw' },
    ],
    consoleLog: scratch.path('stopped.console'),
    memoryMiB: 128,
    mac: '52:54:00:fe:00:0b',
  };
  await defineDomain(scratch, running);
  await defineDomain(scratch, stopped);
  await startDomain(running);
}, 300_000);

describe('LibvirtDriver.listGuests (real libvirtd)', () => {
  it('lists the running guest with its disk, vcpus, memory, NIC, and keeps its definition', async () => {
    const guests = await driver.listGuests();
    const g = guests.find((x) => x.name === RUNNING);
    expect(g).toBeDefined();
    expect(g!.state).toBe('running');
    expect(typeof g!.id).toBe('number');
    expect(g!.vcpus).toBe(1);
    expect(g!.memoryMiB).toBe(160);
    expect(g!.maxMemoryMiB).toBe(160);
    expect(g!.disks).toEqual([{ device: 'vda', path: running.disks[0]!.path, format: 'raw', readOnly: false }]);
    expect(g!.nics).toEqual([{ mac: '52:54:00:fe:00:0a', model: 'virtio' }]);
    expect(g!.config!.fileName).toBe(`${RUNNING}.xml`);
    // The persistent definition, as `virsh define` would take it back: no run-time domain id.
    const kept = parseDomainXml(g!.config!.text, 'kept config');
    expect(kept.name).toBe(RUNNING);
    expect(kept.id).toBeUndefined();
    expect(g!.config!.text).toContain(running.disks[0]!.path);
    expect(g!.config!.text).toBe(await virsh('dumpxml', '--inactive', RUNNING));
  });

  it('lists a defined but shut-off guest with both its disks and formats', async () => {
    const g = (await driver.listGuests()).find((x) => x.name === STOPPED);
    expect(g).toMatchObject({ name: STOPPED, state: 'shutoff', memoryMiB: 128 });
    expect(g!.id).toBeUndefined();
    expect(g!.disks.map((d) => [d.device, d.format, d.path])).toEqual([
      ['vda', 'qcow2', stopped.disks[0]!.path],
      ['vdb', 'raw', stopped.disks[1]!.path],
    ]);
  });
});

describe('LibvirtDriver.quiesce (real libvirtd)', () => {
  it('suspends the guest when no agent answers, and release resumes it; the guest writes again', async () => {
    const guest = (await driver.listGuests()).find((x) => x.name === RUNNING)!;
    const t0 = process.hrtime.bigint();
    const handle = await driver.quiesce(guest);
    expect(handle.mode).toBe('suspend');
    expect(handle.quiesced).toBe(true);
    expect(await domstate(RUNNING)).toBe('paused');
    await handle.release();
    const pauseMs = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`libvirt quiesce (agent probe + suspend + domstate + resume): ${pauseMs.toFixed(0)} ms`);
    expect(await domstate(RUNNING)).toBe('running');
    await handle.release(); // idempotent
    await waitForWrites(running.consoleLog, writtenFiles(running.consoleLog).length, 2);
  });

  it('measures the pause without the agent probe: suspend → resume', async () => {
    const quick = new LibvirtDriver({ runner: new ExecFileCommandRunner(), useGuestAgent: false });
    const guest = (await quick.listGuests()).find((x) => x.name === RUNNING)!;
    const t0 = process.hrtime.bigint();
    const handle = await quick.quiesce(guest);
    await handle.release();
    const pauseMs = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`libvirt suspend → resume: ${pauseMs.toFixed(0)} ms`);
    expect(handle.mode).toBe('suspend');
    expect(await domstate(RUNNING)).toBe('running');
  });

  it('gives a watchdog an argv that resumes the guest without ferry; release afterwards is not an error', async () => {
    const guest = (await driver.listGuests()).find((x) => x.name === RUNNING)!;
    const handle = await driver.quiesce(guest);
    expect(handle.releaseArgv).toEqual(['virsh', '-c', 'qemu:///system', 'resume', RUNNING]);
    const [cmd, ...args] = handle.releaseArgv!;
    await promisify(execFile)(cmd!, args);
    expect(await domstate(RUNNING)).toBe('running');
    await handle.release();
    expect(await domstate(RUNNING)).toBe('running');
  });

  it('arms the watchdog before suspending; the watchdog run on a running guest stops at "already running"', async () => {
    const guest = (await driver.listGuests()).find((x) => x.name === RUNNING)!;
    const told: { release: ReleaseCommand; state: string }[] = [];
    const stateNow = () => execFileSync('virsh', ['-c', 'qemu:///system', 'domstate', RUNNING]).toString().trim();
    const handle = await driver.quiesce(guest, {}, { holding: (release) => told.push({ release, state: stateNow() }) });
    expect(await domstate(RUNNING)).toBe('paused');
    await handle.release();
    expect(told.map((t) => t.state)).toEqual(['running']);
    const { argv, alreadyReleased } = told[0]!.release;
    expect(argv).toEqual(['virsh', '-c', 'qemu:///system', 'resume', RUNNING]);

    // The real watchdog, its ferry gone before the suspend: one attempt, no 2-minute retry loop.
    const watchdogMain = path.resolve(__dirname, '..', '..', 'dist', 'hypervisor', 'watchdogMain.js');
    const child = spawn(process.execPath, [watchdogMain, '60000', '--already-released', alreadyReleased!.source, '--', ...argv], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.end(); // ferry died
    const code = await exited;
    expect(code).toBe(0);
    expect(stderr).toMatch(/the guest was not held .*already running/);
    expect(await domstate(RUNNING)).toBe('running');
  });

  it('leaves a guest someone else paused paused, and a shut-off guest alone', async () => {
    await virsh('suspend', RUNNING);
    try {
      const guest = (await driver.listGuests()).find((x) => x.name === RUNNING)!;
      expect(guest.state).toBe('paused');
      const handle = await driver.quiesce({ ...guest, state: 'running' }); // stale listing: asks again
      expect(handle.quiesced).toBe(false);
      await handle.release();
      expect(await domstate(RUNNING)).toBe('paused');
    } finally {
      await virsh('resume', RUNNING);
    }
    const off = (await driver.listGuests()).find((x) => x.name === STOPPED)!;
    const handle = await driver.quiesce(off);
    expect(handle.quiesced).toBe(false);
    expect(await domstate(STOPPED)).toBe('shut off');
  });
});
