// `ferry drill` with real parts: bootable test guests (scripts/testbed/bootdisk.sh,
// they print their name and the checksum of their data on the serial console)
// backed up into a real repository, restored into scratch storage, booted in
// QEMU (KVM when a vCPU really runs under it, TCG here) and watched for that
// line. A guest whose pack was damaged after the backup fails at its restore;
// a Xen PV guest boots with the kernel found in its image, as pygrub would; one
// with no kernel anywhere gets its file systems checked, reported as fsck-only.
import * as fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DrillResult } from '../../src/drill/restoreDrill';
import { EXIT, TestRepo, expectCleanFailure, flipByte, listFiles, mustRun, useScratch } from '../support';
import { type BootableGuestDisk, buildBootableGuest } from '../support/bootableGuest';

const scratch = useScratch('drill');
let repo: TestRepo;
let good: BootableGuestDisk;
let pv: BootableGuestDisk;
let configFile: string;
let drillDir: string;
const IDENTITY = '/^FERRY-GUEST name=\\\\S+ sum=[0-9a-f]{64}$/m';

/** An xl cfg for a PV guest on `image` (image-mode backups read its disk's device from it). */
function pvConfig(name: string, image: string, extra: string): string {
  return `name = "${name}"\nmemory = 256\nvcpus = 1\n${extra}\ndisk = [ 'format=raw, vdev=xvda, access=rw, target=${image}' ]\n`;
}

beforeAll(async () => {
  repo = await TestRepo.init(scratch, 'repo');
  configFile = scratch.path('ferry.conf');
  fs.writeFileSync(configFile, `[guest."*"]\nhealth = { serial = "${IDENTITY}" }\nhealth_timeout = "4m"\n`);
  drillDir = scratch.mkdir('drill-scratch');

  good = await buildBootableGuest(scratch.path('good01.img'), 'good01');
  await repo.backup('good01', [good.path]);

  pv = await buildBootableGuest(scratch.path('pv01.img'), 'pv01');
  fs.writeFileSync(scratch.path('pv01.cfg'), pvConfig('pv01', pv.path, 'bootloader = "pygrub"'));
  await repo.backup('pv01', [pv.path], ['--config', scratch.path('pv01.cfg')]);

  // No kernel in its cfg that exists here, and none in its image: one ext4 file system of plain files.
  const fsckImage = scratch.path('fsck01.img');
  fs.mkdirSync(scratch.path('fsck01-root', 'srv'), { recursive: true });
  fs.writeFileSync(scratch.path('fsck01-root', 'srv', 'data'), 'payload\n'.repeat(1000));
  fs.closeSync(fs.openSync(fsckImage, 'w'));
  fs.truncateSync(fsckImage, 16 * 1024 * 1024);
  await mustRun('mkfs.ext4', ['-q', '-F', '-d', scratch.path('fsck01-root'), fsckImage]);
  fs.writeFileSync(scratch.path('fsck01.cfg'), pvConfig('fsck01', fsckImage, 'kernel = "/nonexistent/vmlinuz-xen"\nroot = "/dev/xvda ro"'));
  await repo.backup('fsck01', [fsckImage], ['--config', scratch.path('fsck01.cfg')]);

  // Backed up last: the packs this backup adds hold only bad01's own chunks. One byte flipped in the middle of the largest.
  const packsBefore = new Set(listFiles(`${repo.path}/data`));
  const bad = await buildBootableGuest(scratch.path('bad01.img'), 'bad01');
  await repo.backup('bad01', [bad.path]);
  const added = listFiles(`${repo.path}/data`).filter((f) => !packsBefore.has(f)).map((f) => `${repo.path}/data/${f}`);
  const largest = added.sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
  flipByte(largest, Math.floor(fs.statSync(largest).size / 2));
}, 600_000);

function drill(args: string[]) {
  return repo.run(['drill', ...args, '--config', configFile, '--scratch', drillDir, '--json'], { timeoutMs: 600_000 });
}

function report(stdout: string): DrillResult[] {
  return JSON.parse(stdout) as DrillResult[];
}

describe('ferry drill', () => {
  it('passes on a good guest: restored, booted from its own disk, its identity and checksum seen on the console; nothing left behind', async () => {
    const r = await drill(['--guest', 'good01']);
    expect(r.code, r.stderr).toBe(0);
    const [result] = report(r.stdout);
    expect(result).toMatchObject({ guest: 'good01', outcome: 'passed', boot: { method: 'disk', health: { status: 'passed' } } });
    expect(['kvm', 'tcg']).toContain(result!.boot!.accel);
    expect(result!.boot!.health.status === 'passed' && result!.boot!.health.detail).toContain(`FERRY-GUEST name=good01 sum=${good.sum}`);
    expect(result!.boot!.bootMs).toBeGreaterThan(0);
    expect(result!.restoredBytes).toBeGreaterThan(0);
    expect(fs.readdirSync(drillDir)).toEqual([]);
    expect((await mustRun('ps', ['-eo', 'args'])).split('\n').filter((l) => l.includes('qemu') && l.includes('-name good01'))).toEqual([]);
  });

  it('fails on a guest whose repository was damaged after its backup: the restore fails, named with its reason', async () => {
    const r = await drill(['--guest', 'bad01']);
    expectCleanFailure(r, { code: EXIT.someGuestsFailed, message: /^ferry: drill: 1 of 1 guest\(s\) failed: bad01 \(restore\)$/ });
    const [result] = report(r.stdout);
    expect(result).toMatchObject({ guest: 'bad01', outcome: 'failed', stage: 'restore' });
    expect(result!.reason).toMatch(/\/data\/[0-9a-f]{2}\/[0-9a-f]{64}: chunk [0-9a-f]+ at offset \d+ fails verification \(damaged\)/);
    expect(result!.boot).toBeUndefined();
    expect(fs.readdirSync(drillDir)).toEqual([]);
  });

  it('boots a Xen PV guest with the kernel and initrd its image holds (its boot loader config, as pygrub reads it)', async () => {
    const r = await drill(['--guest', 'pv*']);
    expect(r.code, r.stderr).toBe(0);
    const [result] = report(r.stdout);
    expect(result).toMatchObject({ guest: 'pv01', outcome: 'passed', boot: { method: 'kernel-from-image', kernelSource: 'pv01.img partition 1: /syslinux.cfg' } });
    expect(result!.boot!.health.status === 'passed' && result!.boot!.health.detail).toContain(`FERRY-GUEST name=pv01 sum=${pv.sum}`);
  });

  it('checks every file system of a PV guest it cannot boot, reported as fsck-only and never as a pass', async () => {
    const r = await drill(['--guest', 'fsck01']);
    expectCleanFailure(r, { code: 13, message: /^ferry: drill: 1 of 1 guest\(s\) could not be booted here, only their file systems checked \(fsck-only\): fsck01$/ });
    const [result] = report(r.stdout);
    expect(result).toMatchObject({ guest: 'fsck01', outcome: 'fsck-only', fsck: [{ disk: 'fsck01.img', partition: 0, fileSystem: 'ext4', result: 'clean' }] });
    expect(result!.boot).toBeUndefined();
    expect(result!.notes).toContain('the kernel its cfg names, /nonexistent/vmlinuz-xen, is not on this host: looking in its image');
  });

  it('refuses a run that names no guests, or a pattern no guest matches, in one line', async () => {
    expectCleanFailure(await repo.run(['drill']), { code: EXIT.usage, message: /--guest PATTERN.*--all/ });
    expectCleanFailure(await drill(['--guest', 'nosuch*']), { code: EXIT.usage, message: /^ferry: --guest nosuch\*: no guest in the repository matches/ });
  });
});
