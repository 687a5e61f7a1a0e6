// qemu-live with a qcow2 guest disk, whose dirty bitmaps QEMU stores in the
// image: tracking survives a clean QEMU restart and is refused after a crash.
// Also: all disks of a guest in one transaction, and two guests side by side.
// Real TCG guests (tests/support/qemuGuest.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { QemuDriver } from '../../src/hypervisor/qemu/qemuDriver';
import { queryNodes } from '../../src/hypervisor/qemu/qmpBlock';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import type { Snapshot } from '../../src/snapshot/provider';
import { QEMU_TRACKING_KIND, QemuLiveProvider } from '../../src/snapshot/qemuLive';
import { buildGuestFiles, checkExt4Image, startGuest, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';
import { mustRun, runCommand } from '../support/system';

const scratch = useScratch('qemu-live-qcow2');
const workDir = scratch.mkdir('work');
const guestDir = scratch.mkdir('guests');
const rootDisk = path.join(guestDir, 'gamma.qcow2');
const dataDisk = path.join(guestDir, 'gamma-data.img');

let gamma: TestGuest;
let delta: TestGuest;
let disks: GuestDisk[];

const bitmaps = async (socket: string, node = 'disk0') =>
  (await QmpClient.with(socket, (c) => queryNodes(c))).find((n) => n['node-name'] === node)!['dirty-bitmaps'] ?? [];

async function listDisks(socket: string): Promise<GuestDisk[]> {
  const [g] = await new QemuDriver({ sockets: [socket] }).listGuests();
  return g!.disks;
}

async function restartGamma(how: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (how === 'SIGKILL') process.kill(gamma.pid, 'SIGKILL');
  await gamma.stop(); // SIGTERM: QEMU closes its images cleanly and stores persistent bitmaps
  gamma = await startGuest(scratch, 'gamma', { disks: [rootDisk, dataDisk] });
}

beforeAll(async () => {
  await buildGuestFiles(guestDir);
  await mustRun('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', path.join(guestDir, 'disk.img'), rootDisk]);
  await mustRun('cp', ['--sparse=always', path.join(guestDir, 'disk.img'), dataDisk]);
  [gamma, delta] = await Promise.all([
    startGuest(scratch, 'gamma', { disks: [rootDisk, dataDisk] }),
    startGuest(scratch, 'delta'),
  ]);
  await gamma.waitForMoreWrites(3);
  disks = await listDisks(gamma.qmpSocket);
});

afterAll(async () => {
  await gamma?.stop();
  await delta?.stop();
});

describe('QemuLiveProvider with a qcow2 disk and several guests', () => {
  let first: Snapshot[];

  it('copies all disks of a guest at one instant, with persistent bitmaps on qcow2', async () => {
    expect(disks.map((d) => [d.device, d.path, d.format])).toEqual([
      ['vda', rootDisk, 'qcow2'],
      ['vdb', dataDisk, 'raw'],
    ]);
    const provider = new QemuLiveProvider({ sockets: [gamma.qmpSocket, delta.qmpSocket], workDir });
    const before = gamma.wroteFiles();
    first = await provider.create(disks, 'q1');
    expect(first.map((s) => s.tracking)).toEqual([
      { kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-q1' },
      { kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-q1' },
    ]);
    const root = await checkExt4Image(first[0]!.readPath, scratch.dir);
    expect(root.dataFiles).toEqual(expect.arrayContaining(before));
    expect((await checkExt4Image(first[1]!.readPath, scratch.dir)).dataFiles).toEqual([]);
    expect((await bitmaps(gamma.qmpSocket, 'disk0')).map((b) => [b.name, b.persistent])).toEqual([['ferry-cbt-q1', true]]);
    expect((await bitmaps(gamma.qmpSocket, 'disk1')).map((b) => [b.name, b.persistent])).toEqual([['ferry-cbt-q1', false]]);
  });

  it('copies another guest while the first guest\'s QMP socket is held (parallel backups)', async () => {
    const provider = new QemuLiveProvider({ sockets: [gamma.qmpSocket, delta.qmpSocket], workDir });
    const [deltaDisk] = await listDisks(delta.qmpSocket);
    // As if gamma's copy job were running: this process holds gamma's only QMP connection.
    const held = await QmpClient.connect(gamma.qmpSocket);
    try {
      const t0 = Date.now();
      const [s] = await provider.create([deltaDisk!], 'd1');
      expect(Date.now() - t0).toBeLessThan(2500); // not stuck waiting for gamma's socket
      expect(s!.readPath).toMatch(/ferry-d1-0-vda\.raw$/);
      await provider.remove(s!);
    } finally {
      held.close();
    }
  });

  it('keeps tracking across a clean QEMU restart: the incremental rebuilds the disk exactly', async () => {
    await restartGamma('SIGTERM');
    await gamma.waitForConsole(/^FERRY-GUEST-READY boot=2/);
    await gamma.waitForMoreWrites(5);
    const root = await bitmaps(gamma.qmpSocket, 'disk0');
    expect(root.map((b) => [b.name, b.persistent, b.inconsistent ?? false])).toEqual([['ferry-cbt-q1', true, false]]);
    expect(await bitmaps(gamma.qmpSocket, 'disk1')).toEqual([]); // raw: the bitmap died with the process

    const provider = new QemuLiveProvider({ sockets: [gamma.qmpSocket], workDir });
    const reference = scratch.path('gamma-reference.raw');
    await QmpClient.with(gamma.qmpSocket, (c) => c.execute('stop'));
    let second: Snapshot[];
    try {
      second = await provider.create(disks, 'q2', first.map((s) => s.tracking));
      // QEMU holds the image's write lock: -U reads it anyway; stopped, it is flushed and still.
      await mustRun('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', rootDisk, reference]);
    } finally {
      await QmpClient.with(gamma.qmpSocket, (c) => c.execute('cont'));
    }
    const [rootCopy, dataCopy] = second;
    expect(rootCopy!.fullReadReason).toBeUndefined();
    expect(rootCopy!.changed!.length).toBeGreaterThan(0);
    expect(dataCopy!.fullReadReason).toMatch(/ferry-cbt-q1 is gone from vdb .*QEMU restarted/);
    expect(dataCopy!.changed).toBeUndefined();

    const rebuilt = scratch.path('gamma-rebuilt.raw');
    await mustRun('cp', ['--sparse=always', first[0]!.readPath, rebuilt]);
    const src = fs.openSync(rootCopy!.readPath, 'r');
    const dst = fs.openSync(rebuilt, 'r+');
    const buf = Buffer.alloc(1024 * 1024);
    for (const r of rootCopy!.changed!) {
      for (let off = r.start; off < r.end; off += buf.length) {
        const n = fs.readSync(src, buf, 0, Math.min(buf.length, r.end - off), off);
        fs.writeSync(dst, buf, 0, n, off);
      }
    }
    fs.closeSync(src);
    fs.closeSync(dst);
    const cmp = await runCommand('cmp', [rebuilt, reference]);
    expect(cmp.stdout + cmp.stderr).toBe('');
    expect(cmp.code).toBe(0);
    first = second;
  });

  it('refuses a bitmap QEMU could not store (killed): full read, reason given, bitmap replaced', async () => {
    await restartGamma('SIGKILL');
    await gamma.waitForConsole(/^FERRY-GUEST-READY boot=3/);
    // q1 was in the image (stored at the clean restart) and marked in use: now inconsistent.
    // q2 was made after that restart: a killed QEMU never wrote it, it is simply gone.
    const after = await bitmaps(gamma.qmpSocket, 'disk0');
    expect(after.map((b) => [b.name, b.inconsistent ?? false])).toEqual([['ferry-cbt-q1', true]]);

    const provider = new QemuLiveProvider({ sockets: [gamma.qmpSocket], workDir });
    const [fromQ1] = await provider.create(disks.slice(0, 1), 'q3', [{ kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-q1' }]);
    expect(fromQ1!.changed).toBeUndefined();
    expect(fromQ1!.fullReadReason).toMatch(/ferry-cbt-q1 of vda is inconsistent/);
    expect((await checkExt4Image(fromQ1!.readPath, scratch.dir)).dataFiles.length).toBeGreaterThan(0);
    // The inconsistent bitmap is dropped; only this run's bitmap tracks from now on.
    expect((await bitmaps(gamma.qmpSocket, 'disk0')).map((b) => b.name)).toEqual(['ferry-cbt-q3']);

    const [fromQ2] = await provider.create(disks.slice(0, 1), 'q4', [first[0]!.tracking]);
    expect(fromQ2!.fullReadReason).toMatch(/ferry-cbt-q2 is gone from vda/);
  });
});
