// A live copy must never harm the guest. Here the guest writes as hard as it
// can while the work directory runs full in the middle of the copy (another
// program fills it): the copy fails, the guest never leaves the running state,
// goes on writing, and nothing of ferry's stays behind.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HypervisorError } from '../../src/errors';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { QemuDriver } from '../../src/hypervisor/qemu/qemuDriver';
import { queryDisks, queryNodes } from '../../src/hypervisor/qemu/qmpBlock';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import { QemuLiveProvider } from '../../src/snapshot/qemuLive';
import { startGuest, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';
import { mountTmpfs } from '../support/mounts';
import { mustRun } from '../support/system';

const scratch = useScratch('qemu-live-fills');
const MiB = 1024 * 1024;
let guest: TestGuest;
let disk: GuestDisk;

const qmp = <T>(command: string, args?: object) => QmpClient.with(guest.qmpSocket, (c) => c.execute<T>(command, args));

beforeAll(async () => {
  // ferry.churn: besides its small files, the guest rewrites a 32 MiB file with random data nonstop.
  guest = await startGuest(scratch, 'churn', { env: { FERRY_GUEST_APPEND: 'ferry.churn=32' } });
  await guest.waitForMoreWrites(3);
  [disk] = (await new QemuDriver({ sockets: [guest.qmpSocket] }).listGuests())[0]!.disks;
});

afterAll(async () => {
  await guest?.stop();
});

/** Fills `dir` until the file system says ENOSPC. */
function fill(dir: string): void {
  const fd = fs.openSync(path.join(dir, 'someone-elses-file'), 'w');
  const block = Buffer.alloc(MiB, 0xaa);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
}

describe('a live copy whose work directory fills up while the guest writes hard', () => {
  it('fails the backup, never the guest: running and writing throughout, nothing left behind', async () => {
    // Room for the copy when it starts (the provider checks), none soon after.
    const allocated = fs.statSync(guest.diskPath).blocks * 512;
    const work = await mountTmpfs(scratch, 'work', Math.ceil((2 * allocated) / MiB) + 16);
    // Throttled, so the copy is still running when the directory fills up.
    const provider = new QemuLiveProvider({ sockets: [guest.qmpSocket], workDir: work, copyBytesPerSecond: 1 * MiB });

    // ferry holds the QMP socket while the job runs, so the copy's progress is
    // watched where it lands: the job's target file in the work directory.
    const target = path.join(work, 'ferry-fills-0-vda.qcow2');
    const writesBefore = guest.wroteFiles().length;
    let copyDone = false;
    const copying = provider.create([disk], 'fills').catch((e: unknown) => e).finally(() => (copyDone = true));
    let filled = false;
    while (!copyDone && !filled) {
      if ((fs.statSync(target, { throwIfNoEntry: false })?.blocks ?? 0) * 512 > 1 * MiB) {
        fill(work);
        filled = true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const err = await copying;
    // A guest stopped by a write error (werror) stays stopped: status afterwards tells.
    const status = (await qmp<{ status: string }>('query-status')).status;
    const writesDuring = guest.wroteFiles().length - writesBefore;

    expect(filled, `the work directory was filled while the copy job ran; create said: ${String(err)}`).toBe(true);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toMatch(/QEMU live backup failed: disk vda: copy job ferry-job-[0-9a-f]+ .*failed/);
    expect(status).toBe('running');
    expect(writesDuring, 'the guest wrote files while the copy ran').toBeGreaterThan(0);
    await guest.waitForMoreWrites(3);

    // The guest's device reads its own disk again; no ferry node, job or file stays.
    const [vda] = await QmpClient.with(guest.qmpSocket, (c) => queryDisks(c));
    expect(vda!.nodeName).toBe('disk0');
    const nodes = (await QmpClient.with(guest.qmpSocket, (c) => queryNodes(c))).map((n) => n['node-name']);
    expect(nodes.filter((n) => n.startsWith('ferry-'))).toEqual([]);
    expect(await qmp<unknown[]>('query-block-jobs')).toEqual([]);
    expect(fs.readdirSync(work)).toEqual(['someone-elses-file']);
  });

  it('a killed run\'s filter is taken out of the guest\'s path by the next run\'s leftover sweep', async () => {
    // What a ferry killed mid-copy leaves: the guest device reading through ferry's filter.
    const work = scratch.mkdir('killed-work');
    const tmpFile = path.join(work, 'ferry-k1-0-vda-cbw.qcow2');
    await mustRun('qemu-img', ['create', '-q', '-f', 'qcow2', tmpFile, String(256 * MiB)]);
    await qmp('blockdev-add', { driver: 'qcow2', 'node-name': 'ferry-t-0123456789ab', file: { driver: 'file', filename: tmpFile } });
    await qmp('blockdev-add', { driver: 'copy-before-write', 'node-name': 'ferry-c-0123456789ab', file: 'disk0', target: 'ferry-t-0123456789ab', 'on-cbw-error': 'break-snapshot' });
    await qmp('qom-set', { path: '/machine/peripheral/vda', property: 'drive', value: 'ferry-c-0123456789ab' });
    await qmp('blockdev-add', { driver: 'snapshot-access', 'node-name': 'ferry-a-0123456789ab', file: 'ferry-c-0123456789ab' });

    const removed = await new QemuLiveProvider({ sockets: [guest.qmpSocket], workDir: work }).removeLeftovers();
    expect(removed).toEqual(expect.arrayContaining([
      `${guest.qmpSocket}:filter:ferry-c-0123456789ab`,
      `${guest.qmpSocket}:node:ferry-a-0123456789ab`,
      `${guest.qmpSocket}:node:ferry-c-0123456789ab`,
      `${guest.qmpSocket}:node:ferry-t-0123456789ab`,
      tmpFile,
    ]));
    const [vda] = await QmpClient.with(guest.qmpSocket, (c) => queryDisks(c));
    expect(vda!.nodeName).toBe('disk0');
    expect((await qmp<{ status: string }>('query-status')).status).toBe('running');
    await guest.waitForMoreWrites(2);
  });
});
