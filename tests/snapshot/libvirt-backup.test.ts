// The libvirt backup provider against a real libvirtd and a real guest that
// keeps writing to its ext4 disk (TCG, scripts/testbed/guest.sh): live full
// copies, exact incremental copies through checkpoints, tracking lost, and
// leftovers. The tests run in order and build on each other (r1 → r2 → r3 →
// r4), like nightly runs.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { LibvirtBackupProvider } from '../../src/snapshot/libvirtBackup';
import type { Snapshot } from '../../src/snapshot/provider';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { useScratch } from '../support/scratch';
import { mustRun, runCommand } from '../support/system';
import { mountTmpfs } from '../support/mounts';
import {
  type DomainSpec, copyDisk, domstate, expectedFileContent, fsckReadOnly, readFromExt4, startNewDomain,
  useLibvirtGuestFiles, virsh, waitForWrites, writtenFiles,
} from '../support/libvirtGuest';

const scratch = useScratch('libvirt-backup');
const NAME = `ferry-test-backup-${process.pid}`;
const workDir = scratch.path('work');
let spec: DomainSpec;
let provider: LibvirtBackupProvider;
let vda: GuestDisk;
let vdb: GuestDisk;
const timings: Record<string, number> = {};

beforeAll(async () => {
  const files = await useLibvirtGuestFiles(scratch);
  spec = {
    name: NAME,
    files,
    // vda: the guest's busy ext4 disk, qcow2 so libvirt can keep a dirty bitmap in it;
    // vdb: an idle raw disk, which libvirt can copy but not track.
    disks: [
      { path: await copyDisk(files, scratch.path('vda.qcow2'), 'qcow2'), format: 'qcow2' },
      { path: await copyDisk(files, scratch.path('vdb.img'), 'raw'), format: 'raw' },
    ],
    consoleLog: scratch.path('console.log'),
    emptyCdrom: true, // must be named in libvirt's backup and checkpoint XML, and left alone
  };
  vda = { device: 'vda', path: spec.disks[0]!.path, format: 'qcow2', readOnly: false };
  vdb = { device: 'vdb', path: spec.disks[1]!.path, format: 'raw', readOnly: false };
  await startNewDomain(scratch, spec);
  provider = new LibvirtBackupProvider({ runner: new ExecFileCommandRunner(), workDir });
}, 300_000);

afterAll(() => {
  console.log(`libvirt backup timings (ms): ${JSON.stringify(timings)}`);
});

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings[label] = Date.now() - t0;
  }
}

async function checkpoints(): Promise<string[]> {
  return (await virsh('checkpoint-list', NAME, '--name')).split('\n').map((l) => l.trim()).filter(Boolean).sort();
}

/**
 * Every file in `names` (reported by the guest as fsynced) is in the image with
 * the content it wrote. The newest updates may still sit in the ext4 journal
 * (that is what fsync made durable), and debugfs does not replay it: read a
 * copy on which e2fsck has replayed the journal, as a mount would.
 */
async function expectFilesIn(snapshotImage: string, names: string[]): Promise<void> {
  const image = scratch.path('replayed.raw');
  await mustRun('cp', ['--sparse=always', snapshotImage, image]);
  const replay = await runCommand('e2fsck', ['-fy', image]);
  expect(replay.code, replay.stdout + replay.stderr).toBeLessThanOrEqual(1); // 1: journal replayed
  // Spot-check a spread of them, first and last included: debugfs is slow per call.
  const picks = [...new Set([0, 1, Math.floor(names.length / 2), names.length - 2, names.length - 1].filter((i) => i >= 0).map((i) => names[i]!))];
  for (const name of picks) expect(await readFromExt4(image, name), name).toEqual(expectedFileContent(name));
  const listing = await mustRun('debugfs', ['-R', 'ls -p /data', image]);
  const present = new Set([...listing.matchAll(/\/\d+\/\d+\/\d+\/\d+\/([^/]+)\//g)].map((m) => `data/${m[1]}`));
  const missing = names.filter((n) => !present.has(n));
  expect(missing, 'files the guest had fsynced before the backup began').toEqual([]);
  fs.rmSync(image);
}

/** A full copy of the paused guest's disk by libvirt itself, as the reference image. */
async function referenceCopy(to: string): Promise<void> {
  const target = scratch.path('reference.qcow2');
  const xml = scratch.path('reference-backup.xml');
  fs.writeFileSync(xml, `<domainbackup mode='push'><disks><disk name='vda' backup='yes' type='file'><target file='${target}'/><driver type='qcow2'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>`);
  await virsh('backup-begin', NAME, xml);
  for (;;) {
    const info = await virsh('domjobinfo', NAME);
    if (!/Job type:\s+(Unbounded|Bounded)/.test(info)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(await virsh('domjobinfo', NAME, '--completed')).toMatch(/Job type:\s+Completed/);
  await mustRun('qemu-img', ['convert', '-q', '-O', 'raw', `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: target } })}`, to]);
  fs.rmSync(target);
}

/** `base` with the `changed` ranges of `snapshot` copied in from its readPath: what ferry's engine rebuilds. */
function rebuild(base: string, snapshot: Snapshot, to: string): void {
  fs.copyFileSync(base, to);
  const src = fs.openSync(snapshot.readPath, 'r');
  const dst = fs.openSync(to, 'r+');
  try {
    for (const r of snapshot.changed!) {
      const buf = Buffer.alloc(r.end - r.start);
      expect(fs.readSync(src, buf, 0, buf.length, r.start)).toBe(buf.length);
      fs.writeSync(dst, buf, 0, buf.length, r.start);
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}

function changedBytes(s: Snapshot): number {
  return s.changed!.reduce((n, r) => n + r.end - r.start, 0);
}

/** 64 KiB blocks where two images differ. */
function differingBlocks(a: string, b: string): number[] {
  const A = fs.readFileSync(a);
  const B = fs.readFileSync(b);
  expect(A.length).toBe(B.length);
  const blocks: number[] = [];
  for (let off = 0; off < A.length; off += 65536) {
    if (!A.subarray(off, off + 65536).equals(B.subarray(off, off + 65536))) blocks.push(off);
  }
  return blocks;
}

describe('LibvirtBackupProvider on a real, writing guest', () => {
  let r1: Snapshot[];
  let r2: Snapshot[];
  let r3: Snapshot[];

  it('takes disks of running domains, and nothing else', async () => {
    expect(await provider.canHandle(vda)).toBe(true);
    expect(await provider.canHandle(vdb)).toBe(true);
    expect(await provider.canHandle({ ...vda, path: scratch.path('not-a-disk.qcow2') })).toBe(false);
    expect(provider.pointInTimeByItself).toBe(true);
  });

  it('refuses a full copy the work directory has no room for, before libvirt starts a job', async () => {
    // QEMU's plain backup job under libvirt fails the guest's own write when its target is full.
    const tiny = await mountTmpfs(scratch, 'tiny-work', 1);
    const cramped = new LibvirtBackupProvider({ runner: new ExecFileCommandRunner(), workDir: tiny });
    await expect(cramped.create([vda, vdb], 'r-tiny')).rejects.toThrow(
      new RegExp(`^work directory ${tiny} has 1 MiB free, but the copy of vda, vdb of ${NAME} needs about \\d+ MiB`),
    );
    expect(await checkpoints()).toEqual([]);
    expect(fs.readdirSync(tiny)).toEqual([]);
    expect(await domstate(NAME)).toBe('running');
  });

  it('copies both disks live while the guest keeps writing: vda passes fsck and holds every file written before', async () => {
    const before = await waitForWrites(spec.consoleLog, 0, 10);
    r1 = await timed('full r1', () => provider.create([vda, vdb], 'r1'));
    // The guest ran throughout and keeps writing after the copy.
    expect(await domstate(NAME)).toBe('running');
    await waitForWrites(spec.consoleLog, writtenFiles(spec.consoleLog).length, 3);

    expect(r1.map((s) => s.disk.device)).toEqual(['vda', 'vdb']);
    const [a, b] = r1 as [Snapshot, Snapshot];
    expect(a.changed).toBeUndefined();
    expect(a.fullReadReason).toBeUndefined(); // first run: no tracking was asked for
    expect(a.tracking?.kind).toBe('libvirt-checkpoint');
    expect(b.tracking).toBeUndefined(); // raw: no bitmap possible
    expect(a.ownedName).toMatch(/\/ferry-r1-/);
    expect(fs.statSync(a.readPath).size).toBe(fs.statSync(spec.disks[1]!.path).size);
    // Sparse: an empty 256 MiB disk must not become 256 MiB of allocated zeros.
    expect(fs.statSync(b.readPath).blocks * 512).toBeLessThan(64 * 1024 * 1024);

    const fsck = await fsckReadOnly(a.readPath, scratch.path('fsck.raw'));
    expect(fsck.code, fsck.output).toBe(0);
    await expectFilesIn(a.readPath, before);
    expect(await checkpoints()).toEqual(['ferry-r1']);
  });

  it('copies only what changed since r1, exactly: r1 + changed ranges equals a copy of the paused guest', async () => {
    await waitForWrites(spec.consoleLog, writtenFiles(spec.consoleLog).length, 20);
    // Paused, so a second copy taken right after shows the same point in time.
    await virsh('suspend', NAME);
    try {
      r2 = await timed('incremental r2 (paused)', () => provider.create([vda, vdb], 'r2', [r1[0]!.tracking, undefined]));
      await referenceCopy(scratch.path('reference.raw'));
    } finally {
      await virsh('resume', NAME);
    }
    const [a, b] = r2 as [Snapshot, Snapshot];
    expect(a.fullReadReason).toBeUndefined();
    expect(a.changed).toBeDefined();
    expect(b.changed).toBeUndefined();
    expect(b.fullReadReason).toMatch(/vdb is raw: libvirt tracks changes only on qcow2 disks/);

    const rebuilt = scratch.path('rebuilt-r2.raw');
    rebuild(r1[0]!.readPath, a, rebuilt);
    const reference = scratch.path('reference.raw');
    expect(differingBlocks(rebuilt, reference), 'blocks where r1 + changed differs from the paused copy').toEqual([]);
    // Every block that really changed lies inside `changed`, and `changed` is not "everything".
    const dirty = differingBlocks(r1[0]!.readPath, reference);
    expect(dirty.length).toBeGreaterThan(0);
    for (const off of dirty) expect(a.changed!.some((r) => r.start <= off && off + 65536 <= r.end), `block at ${off}`).toBe(true);
    const diskBytes = fs.statSync(reference).size;
    console.log(`incremental r2: changed ${changedBytes(a)} bytes in ${a.changed!.length} ranges; ${dirty.length * 65536} bytes in blocks that differ; disk ${diskBytes} bytes`);
    expect(changedBytes(a)).toBeLessThan(diskBytes / 4);
    // r1 stays as the base of the restore point not yet written; both checkpoints exist.
    expect(await checkpoints()).toEqual(['ferry-r1', 'ferry-r2']);
  });

  it('copies changes live too: r2 + r3 changes passes fsck and holds the files written before r3; r1 is pruned', async () => {
    await waitForWrites(spec.consoleLog, writtenFiles(spec.consoleLog).length, 10);
    const before = writtenFiles(spec.consoleLog);
    r3 = await timed('incremental r3 (live)', () => provider.create([vda], 'r3', [r2[0]!.tracking]));
    expect(await domstate(NAME)).toBe('running');
    const [a] = r3 as [Snapshot];
    expect(a.changed!.length).toBeGreaterThan(0);
    const rebuilt2 = scratch.path('rebuilt-r2.raw');
    const rebuilt3 = scratch.path('rebuilt-r3.raw');
    rebuild(rebuilt2, a, rebuilt3);
    const fsck = await fsckReadOnly(rebuilt3, scratch.path('fsck.raw'));
    expect(fsck.code, fsck.output).toBe(0);
    await expectFilesIn(rebuilt3, before);
    expect(await checkpoints()).toEqual(['ferry-r2', 'ferry-r3']);
    // Once r3's restore point is saved, r2 is no longer a base anyone needs.
    await provider.commit(r3);
    expect(await checkpoints()).toEqual(['ferry-r3']);
  });

  it('reads everything, and says why, when the checkpoint of the last backup is gone', async () => {
    await virsh('checkpoint-delete', NAME, 'ferry-r3'); // e.g. an admin cleaning up
    const before = writtenFiles(spec.consoleLog);
    const [a] = await timed('full r4 (tracking lost)', () => provider.create([vda], 'r4', [r3[0]!.tracking]));
    expect(a!.changed).toBeUndefined();
    expect(a!.fullReadReason).toMatch(/checkpoint ferry-r3 of the last backup no longer exists on domain/);
    expect(a!.tracking?.token).toContain('"checkpoint":"ferry-r4"');
    const fsck = await fsckReadOnly(a!.readPath, scratch.path('fsck.raw'));
    expect(fsck.code, fsck.output).toBe(0);
    await expectFilesIn(a!.readPath, before);
  });

  it('removes its snapshots and its leftover files, and nothing that is not ferry\'s', async () => {
    const own = [...r1, ...r2, ...r3];
    for (const s of own) await provider.remove(s);
    for (const s of own) expect(fs.existsSync(s.readPath)).toBe(false);
    await provider.remove(r1[0]!); // already gone: not an error
    fs.writeFileSync(`${workDir}/ferry-dead-${NAME}-vda.qcow2`, 'left by a killed run');
    fs.writeFileSync(`${workDir}/admin-notes.txt`, 'not ferry\'s');
    const removed = await provider.removeLeftovers();
    expect(removed).toContain(`${workDir}/ferry-dead-${NAME}-vda.qcow2`);
    expect(removed).toContain(`${workDir}/ferry-r4-${NAME}-vda.raw`);
    expect(fs.readdirSync(workDir)).toEqual(['admin-notes.txt']);
    expect(await domstate(NAME)).toBe('running');
  });
});
