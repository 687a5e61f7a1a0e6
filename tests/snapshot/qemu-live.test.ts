// The qemu-live snapshot provider against a real running guest (QEMU TCG; its
// /init writes and fsyncs a numbered file and a random 4 KiB block of db.bin
// every tick). Proof of correctness for incrementals is by rebuilding: the
// previous full copy plus the `changed` ranges read from the incremental's
// readPath must equal, byte for byte, the disk at the incremental's instant
// (the guest is stopped around that incremental, so its disk file is that state).
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HypervisorError } from '../../src/errors';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { QemuDriver } from '../../src/hypervisor/qemu/qemuDriver';
import { queryNodes } from '../../src/hypervisor/qemu/qmpBlock';
import { QmpClient } from '../../src/hypervisor/qemu/qmpClient';
import { newRunId, type Snapshot } from '../../src/snapshot/provider';
import { QEMU_TRACKING_KIND, QemuLiveProvider } from '../../src/snapshot/qemuLive';
import { checkExt4Image, startGuest, type TestGuest } from '../support/qemuGuest';
import { useScratch } from '../support/scratch';
import { mountTmpfs } from '../support/mounts';
import { mustRun, runCommand } from '../support/system';

const scratch = useScratch('qemu-live');
const MiB = 1024 * 1024;
// A 64 KiB stretch near the end of the 256 MiB disk that ext4 leaves free in
// these short runs: the tests write it from the host through QEMU (tracked
// like any guest write) to check exact ranges and zero writes.
const PROBE = 255 * MiB;
const PROBE_LEN = 64 * 1024;

let guest: TestGuest;
let disk: GuestDisk;
let provider: QemuLiveProvider;
const workDir = scratch.mkdir('work');

const qmp = <T>(command: string, args?: object) => QmpClient.with(guest.qmpSocket, (c) => c.execute<T>(command, args));
const bitmapNames = async () =>
  (await QmpClient.with(guest.qmpSocket, (c) => queryNodes(c)))
    .find((n) => n['node-name'] === 'disk0')!['dirty-bitmaps']!.map((b) => b.name).sort();
/** Writes through QEMU's block layer, as the guest would (qemu-io via HMP). */
const hostWrite = (ioCommand: string) =>
  qmp<string>('human-monitor-command', { 'command-line': `qemu-io -d vda/virtio-backend "${ioCommand}"` }).then((out) => {
    if (out.trim() !== '') throw new Error(`qemu-io ${ioCommand}: ${out}`);
  });

/** Runs `body` with the guest stopped, so the disk file holds exactly the state of that instant. */
async function whileStopped<T>(body: () => Promise<T>): Promise<T> {
  await qmp('stop');
  try {
    return await body();
  } finally {
    await qmp('cont');
  }
}

/** A sparse copy of `base` with `ranges` overwritten from `from`. */
async function rebuild(base: string, from: string, ranges: { start: number; end: number }[], out: string): Promise<string> {
  await mustRun('cp', ['--sparse=always', base, out]);
  const src = fs.openSync(from, 'r');
  const dst = fs.openSync(out, 'r+');
  const buf = Buffer.alloc(MiB);
  try {
    for (const r of ranges) {
      for (let off = r.start; off < r.end; ) {
        const n = fs.readSync(src, buf, 0, Math.min(buf.length, r.end - off), off);
        expect(n).toBeGreaterThan(0);
        fs.writeSync(dst, buf, 0, n, off);
        off += n;
      }
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
  return out;
}

async function sameBytes(a: string, b: string): Promise<void> {
  const r = await runCommand('cmp', [a, b]);
  expect(r.stdout + r.stderr, `${a} and ${b} differ`).toBe('');
  expect(r.code).toBe(0);
}

const covers = (ranges: { start: number; end: number }[], start: number, end: number) =>
  ranges.some((r) => r.start <= start && r.end >= end);
const total = (ranges: { start: number; end: number }[]) => ranges.reduce((s, r) => s + r.end - r.start, 0);
const allocatedBytes = (file: string) => fs.statSync(file).blocks * 512;

beforeAll(async () => {
  guest = await startGuest(scratch, 'beta');
  await guest.waitForMoreWrites(5);
  provider = new QemuLiveProvider({ sockets: [guest.qmpSocket], workDir });
  const [g] = await new QemuDriver({ sockets: [guest.qmpSocket] }).listGuests();
  disk = g!.disks[0]!;
});

afterAll(async () => {
  await guest?.stop();
});

describe('QemuLiveProvider', () => {
  let full: Snapshot;
  let rebuilt2: string;
  let incr2: Snapshot;

  it('handles the disks of its guests and nothing else', async () => {
    expect(provider.pointInTimeByItself).toBe(true);
    expect(await provider.canHandle(disk)).toBe(true);
    const stranger: GuestDisk = { device: 'xvda', path: scratch.path('not-attached.img'), format: 'raw', readOnly: false };
    expect(await provider.canHandle(stranger)).toBe(false);
    await expect(provider.create([stranger], 'r0')).rejects.toThrow(/not-attached\.img.*not attached to any QEMU guest/);
  });

  it('copies a disk live: fsck-clean, every file fsynced before the copy is in it, the guest keeps running', async () => {
    const before = guest.wroteFiles();
    const [s] = await provider.create([disk], 'r1');
    full = s!;
    expect((await qmp<{ status: string }>('query-status')).status).toBe('running');
    await guest.waitForMoreWrites(3);

    expect(full.readPath).toBe(`${workDir}/ferry-r1-0-vda.raw`);
    expect(full.ownedName).toBe(full.readPath);
    expect(full.changed).toBeUndefined();
    expect(full.fullReadReason).toBeUndefined();
    expect(full.tracking).toEqual({ kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-r1' });
    expect(fs.statSync(full.readPath).size).toBe(256 * MiB);
    expect(allocatedBytes(full.readPath)).toBeLessThan(128 * MiB); // sparse: an almost empty file system

    const last = before[before.length - 1]!;
    const { dataFiles, contents } = await checkExt4Image(full.readPath, scratch.dir, [last]);
    expect(dataFiles).toEqual(expect.arrayContaining(before));
    expect(contents.get(last)).toBe(`${last}\n`.repeat(300).slice(0, 4096));
    // The copy job is gone; only the tracking bitmap stays.
    expect(await qmp<unknown[]>('query-block-jobs')).toEqual([]);
    expect(await bitmapNames()).toEqual(['ferry-cbt-r1']);
  });

  it('copies only what changed since: the last full copy plus the changed ranges is the disk at that instant', async () => {
    await hostWrite(`write -P 0xab ${PROBE} ${PROBE_LEN}`);
    await guest.waitForMoreWrites(15);
    const reference = scratch.path('reference-2.img');
    let written: string[] = [];
    incr2 = await whileStopped(async () => {
      written = guest.wroteFiles();
      const [s] = await provider.create([disk], 'r2', [full.tracking]);
      await mustRun('cp', ['--sparse=always', guest.diskPath, reference]);
      return s!;
    });
    expect(incr2.fullReadReason).toBeUndefined();
    expect(incr2.tracking).toEqual({ kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-r2' });
    const changed = incr2.changed!;
    expect(changed.length).toBeGreaterThan(0);
    changed.forEach((r, i) => {
      expect(r.start % (64 * 1024)).toBe(0);
      expect(r.end).toBeGreaterThan(r.start);
      if (i > 0) expect(r.start).toBeGreaterThan(changed[i - 1]!.end); // ascending and merged
    });
    expect(covers(changed, PROBE, PROBE + PROBE_LEN)).toBe(true);

    rebuilt2 = await rebuild(full.readPath, incr2.readPath, changed, scratch.path('rebuilt-2.img'));
    await sameBytes(rebuilt2, reference);
    const { dataFiles } = await checkExt4Image(rebuilt2, scratch.dir);
    expect(dataFiles).toEqual(expect.arrayContaining(written));

    const ratioData = total(changed) / allocatedBytes(reference);
    console.log(
      `qemu-live incremental: ${total(changed)} bytes in ${changed.length} ranges changed after ~15 guest ticks; ` +
        `disk data ${allocatedBytes(reference)} bytes (${(ratioData * 100).toFixed(1)}%), disk size ${256 * MiB} bytes ` +
        `(${((total(changed) / (256 * MiB)) * 100).toFixed(2)}%)`,
    );
    // At least the new 4 KiB files; far from the whole disk (each 4 KiB write dirties one 64 KiB cluster).
    expect(total(changed)).toBeGreaterThanOrEqual(15 * 4096);
    expect(total(changed)).toBeLessThan(0.05 * 256 * MiB);
    // The frozen copy is gone; the previous bitmap stays until the restore point is committed.
    expect(await bitmapNames()).toEqual(['ferry-cbt-r1', 'ferry-cbt-r2']);
  });

  it('counts a dirty range that now reads as zeros as changed', async () => {
    await hostWrite(`write -z ${PROBE} ${PROBE_LEN}`);
    await guest.waitForMoreWrites(3);
    const reference = scratch.path('reference-3.img');
    const incr3 = await whileStopped(async () => {
      const [s] = await provider.create([disk], 'r3', [incr2.tracking]);
      await mustRun('cp', ['--sparse=always', guest.diskPath, reference]);
      return s!;
    });
    expect(covers(incr3.changed!, PROBE, PROBE + PROBE_LEN)).toBe(true);
    const probe = Buffer.alloc(PROBE_LEN, 1);
    const fd = fs.openSync(incr3.readPath, 'r');
    fs.readSync(fd, probe, 0, PROBE_LEN, PROBE);
    fs.closeSync(fd);
    expect(probe.equals(Buffer.alloc(PROBE_LEN))).toBe(true);
    await sameBytes(await rebuild(rebuilt2, incr3.readPath, incr3.changed!, scratch.path('rebuilt-3.img')), reference);
    await provider.remove(incr3);
    expect(fs.existsSync(incr3.readPath)).toBe(false);
  });

  it('a run that never became a restore point does not break the chain: the next run continues from the last saved one', async () => {
    // r3 above was "never saved": the next run continues from r2 again.
    await guest.waitForMoreWrites(5);
    const reference = scratch.path('reference-4.img');
    const incr4 = await whileStopped(async () => {
      const [s] = await provider.create([disk], 'r4', [incr2.tracking]);
      await mustRun('cp', ['--sparse=always', guest.diskPath, reference]);
      return s!;
    });
    expect(incr4.fullReadReason).toBeUndefined();
    // r4's ranges include r3's changes (the zeroed probe) since they are measured from r2.
    expect(covers(incr4.changed!, PROBE, PROBE + PROBE_LEN)).toBe(true);
    await sameBytes(await rebuild(rebuilt2, incr4.readPath, incr4.changed!, scratch.path('rebuilt-4.img')), reference);
    expect(await bitmapNames()).toEqual(['ferry-cbt-r2', 'ferry-cbt-r4']);
    // Saving r4's restore point leaves r4's bitmap as the only baseline.
    await provider.commit([incr4]);
    expect(await bitmapNames()).toEqual(['ferry-cbt-r4']);
    incr2 = incr4;
  });

  it('refuses a work directory without room for the copy, before touching the guest: tracking intact', async () => {
    const tiny = await mountTmpfs(scratch, 'tiny-work', 1);
    const cramped = new QemuLiveProvider({ sockets: [guest.qmpSocket], workDir: tiny });
    const err = await cramped.create([disk], 'r-full').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toMatch(new RegExp(`^work directory ${tiny} has 1 MiB free, but the live copy of vda needs about \\d+ MiB: free space there or choose another work directory`));
    expect(fs.readdirSync(tiny)).toEqual([]);
    expect(await qmp<unknown[]>('query-block-jobs')).toEqual([]);
    const nodes = (await QmpClient.with(guest.qmpSocket, (c) => queryNodes(c))).map((n) => n['node-name']);
    expect(nodes.filter((n) => n.startsWith('ferry-'))).toEqual([]);
    expect(await bitmapNames()).toEqual(['ferry-cbt-r4']);
    expect((await qmp<{ status: string }>('query-status')).status).toBe('running');
    // The failed run changed nothing: the next one continues the chain.
    const [next] = await provider.create([disk], 'r4b', [incr2.tracking]);
    expect(next!.fullReadReason).toBeUndefined();
    expect(next!.changed).toBeDefined();
    await provider.remove(next!);
    expect(await bitmapNames()).toEqual(['ferry-cbt-r4', 'ferry-cbt-r4b']);
  });

  it('reads the whole disk, saying why, when the tracking state is not usable', async () => {
    const otherKind = (await provider.create([disk], 'r5', [{ kind: 'btrfs-send', token: 'x' }]))[0]!;
    expect(otherKind.changed).toBeUndefined();
    expect(otherKind.fullReadReason).toMatch(/tracked by btrfs-send/);
    expect(otherKind.tracking?.token).toBe('ferry-cbt-r5');

    const vanished = (await provider.create([disk], 'r6', [{ kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-never-made' }]))[0]!;
    expect(vanished.changed).toBeUndefined();
    expect(vanished.fullReadReason).toMatch(/ferry-cbt-never-made is gone/);
    expect(await bitmapNames()).toEqual(['ferry-cbt-r6']);
    for (const s of [otherKind, vanished]) await provider.remove(s);
  });

  it('reads the whole disk after the guest restarted (bitmaps of a raw disk live in the QEMU process)', async () => {
    const tracking = { kind: QEMU_TRACKING_KIND, token: 'ferry-cbt-r6' };
    await guest.stop();
    guest = await startGuest(scratch, 'beta', { disks: [guest.diskPath] });
    await guest.waitForConsole(/^FERRY-GUEST-READY boot=2/);
    await guest.waitForMoreWrites(2);
    const beforeCopy = guest.wroteFiles();
    const [s] = await provider.create([disk], 'r7', [tracking]);
    expect(s!.changed).toBeUndefined();
    expect(s!.fullReadReason).toMatch(/ferry-cbt-r6 is gone .*QEMU restarted/);
    const { dataFiles } = await checkExt4Image(s!.readPath, scratch.dir);
    expect(dataFiles).toEqual(expect.arrayContaining(beforeCopy));
    expect(dataFiles.some((f) => f.startsWith('data/b1-'))).toBe(true); // files from before the restart are still there
  });

  it('removes only its own leftovers: target nodes, frozen bitmaps and copy files named ferry-*', async () => {
    // What a killed run leaves: an attached target node, a frozen bitmap, copy files.
    const leftoverFile = `${workDir}/ferry-r9-0-vda.raw`;
    fs.writeFileSync(leftoverFile, '');
    await qmp('blockdev-add', { driver: 'raw', 'node-name': 'ferry-0123456789ab', file: { driver: 'file', filename: leftoverFile } });
    await qmp('block-dirty-bitmap-add', { node: 'disk0', name: 'ferry-tmp-r9', disabled: true });
    // Things that are not ferry's, or are ferry's tracking state, stay.
    fs.writeFileSync(`${workDir}/admin-notes.raw`, 'mine');
    await qmp('block-dirty-bitmap-add', { node: 'disk0', name: 'admin-bitmap' });
    // A run that still runs on this host (a single-guest backup beside this one) may be reading its copy now.
    const liveFile = `${workDir}/ferry-${newRunId(new Date(), process.pid)}-0-vda.raw`;
    fs.writeFileSync(liveFile, '');

    const removed = await provider.removeLeftovers();
    expect(removed).toEqual(expect.arrayContaining([
      `${guest.qmpSocket}:bitmap:disk0/ferry-tmp-r9`,
      `${guest.qmpSocket}:node:ferry-0123456789ab`,
      leftoverFile,
    ]));
    expect(fs.existsSync(leftoverFile)).toBe(false);
    expect(fs.readFileSync(`${workDir}/admin-notes.raw`, 'utf8')).toBe('mine');
    expect(fs.existsSync(liveFile)).toBe(true);
    expect(await bitmapNames()).toEqual(['admin-bitmap', 'ferry-cbt-r7']);
    const nodes = (await QmpClient.with(guest.qmpSocket, (c) => queryNodes(c))).map((n) => n['node-name']);
    expect(nodes.filter((n) => n.startsWith('ferry-'))).toEqual([]);
    expect(await provider.removeLeftovers()).toEqual([]);
  });

  it('refuses a run id that cannot be a QEMU name, before touching anything', async () => {
    await expect(provider.create([disk], 'bad id/..')).rejects.toThrow(/run id "bad id\/\.\." cannot be part/);
    await expect(provider.create([disk], 'r7')).rejects.toBeInstanceOf(HypervisorError); // its bitmap exists: an id is used once
  });
});
