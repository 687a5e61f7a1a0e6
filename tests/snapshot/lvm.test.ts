// The LVM snapshot provider, tested at the command boundary against output
// recorded from real lvm2 2.03.16 (see tests/fixtures/lvm/README.md). The
// recorded volume groups: vg0 (4 GiB; web01-disk 1 GiB, db01-disk 512 MiB,
// thin pool pool0 with thin app01-disk, two ferry leftovers, an admin's
// snapshot db01-before-upgrade, a plain LV named ferry-tools; 1371537408 B
// free) and vg-data (mail-store, 8 MiB free). Extents are 4 MiB.
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { LvmSnapshotProvider } from '../../src/snapshot/lvm';
import { newRunId } from '../../src/snapshot/provider';
import { LVS_ARGS, VGS_ARGS } from '../../src/snapshot/lvmReport';
import { InsufficientSnapshotSpaceError } from '../../src/snapshot/errors';
import { RecordedCommandRunner, recordedOutput, type RecordedReply } from '../support/recordedRunner';
import type { GuestDisk } from '../../src/hypervisor/driver';
import { HypervisorError, UsageError } from '../../src/errors';

const FIXTURES = join(__dirname, '..', 'fixtures', 'lvm');
const recorded = (cmd: string, args: readonly string[], output: string, extra: Partial<RecordedReply> = {}): RecordedReply => ({
  cmd, args, ...recordedOutput(FIXTURES, output), ...extra,
});
const lvs = (output = 'lvs-fleet') => recorded('lvs', LVS_ARGS, output);
const vgs = () => recorded('vgs', VGS_ARGS, 'vgs-fleet');
const ok = (cmd: string, args: string[]): RecordedReply => ({ cmd, args });

const disk = (device: string, path: string): GuestDisk => ({ device, path, format: 'raw', readOnly: false });
const web01 = disk('xvda', '/dev/vg0/web01-disk');
const db01 = disk('xvda', '/dev/mapper/vg0-db01--disk');
const app01 = disk('xvda', '/dev/vg0/app01-disk');
const mail01 = disk('xvda', '/dev/mapper/vg--data-mail--store');

const LVS = `lvs ${LVS_ARGS.join(' ')}`;
const VGS = `vgs ${VGS_ARGS.join(' ')}`;

describe('LvmSnapshotProvider.create', () => {
  it('snapshots a thick LV with 10% of its size, rounded up to whole extents', async () => {
    const runner = new RecordedCommandRunner([lvs(), vgs(), ok('lvcreate', ['-s', '-pr', '-n', 'ferry-r1-web01-disk', '-L', '109051904b', 'vg0/web01-disk'])]);
    const snapshots = await new LvmSnapshotProvider({ runner }).create([web01], 'r1');
    expect(runner.commandLines()).toEqual([LVS, VGS, 'lvcreate -s -pr -n ferry-r1-web01-disk -L 109051904b vg0/web01-disk']);
    expect(snapshots).toEqual([{ disk: web01, readPath: '/dev/vg0/ferry-r1-web01-disk', ownedName: 'vg0/ferry-r1-web01-disk' }]);
  });

  it('snapshots a thin LV in its pool without a size, activated (-kn), and asks no free space', async () => {
    const runner = new RecordedCommandRunner([lvs(), ok('lvcreate', ['-s', '-kn', '-pr', '-n', 'ferry-r1-app01-disk', 'vg0/app01-disk'])]);
    const [snapshot] = await new LvmSnapshotProvider({ runner }).create([app01], 'r1');
    expect(runner.commandLines()).toEqual([LVS, 'lvcreate -s -kn -pr -n ferry-r1-app01-disk vg0/app01-disk']);
    expect(snapshot!.readPath).toBe('/dev/vg0/ferry-r1-app01-disk');
  });

  it('resolves /dev/mapper names with doubled dashes and uses the configured percentage', async () => {
    const runner = new RecordedCommandRunner([lvs(), vgs(), ok('lvcreate', ['-s', '-pr', '-n', 'ferry-r2-db01-disk', '-L', '268435456b', 'vg0/db01-disk'])]);
    await new LvmSnapshotProvider({ runner, snapshotPercent: 50 }).create([db01], 'r2');
    expect(runner.commandLines().at(-1)).toBe('lvcreate -s -pr -n ferry-r2-db01-disk -L 268435456b vg0/db01-disk');
  });

  it('snapshots all disks of a guest, one after the other, after a single space check', async () => {
    const runner = new RecordedCommandRunner([
      lvs(), vgs(),
      ok('lvcreate', ['-s', '-pr', '-n', 'ferry-r1-web01-disk', '-L', '109051904b', 'vg0/web01-disk']),
      ok('lvcreate', ['-s', '-kn', '-pr', '-n', 'ferry-r1-app01-disk', 'vg0/app01-disk']),
    ]);
    const snapshots = await new LvmSnapshotProvider({ runner }).create([web01, { ...app01, device: 'xvdb' }], 'r1');
    expect(snapshots.map((s) => [s.disk.device, s.ownedName])).toEqual([['xvda', 'vg0/ferry-r1-web01-disk'], ['xvdb', 'vg0/ferry-r1-app01-disk']]);
    expect(runner.commandLines().filter((l) => l.startsWith('vgs'))).toHaveLength(1);
  });

  it('refuses before creating anything when the VG has too little free space, naming VG, needed and free bytes', async () => {
    const runner = new RecordedCommandRunner([lvs(), vgs()]);
    const attempt = new LvmSnapshotProvider({ runner }).create([mail01], 'r1');
    await expect(attempt).rejects.toThrow(InsufficientSnapshotSpaceError);
    await expect(attempt).rejects.toThrow('volume group vg-data has 8388608 bytes free but the snapshots of vg-data/mail-store need 12582912 bytes');
    await expect(attempt).rejects.toMatchObject({ volumeGroup: 'vg-data', neededBytes: 12582912, freeBytes: 8388608, exitCode: 9 });
    expect(runner.commandLines()).toEqual([LVS, VGS]);
  });

  it('adds up the snapshots of one guest in the same VG before comparing with free space', async () => {
    // 100% of 1 GiB + 512 MiB = 1610612736 B > 1371537408 B free, though each alone would fit.
    const runner = new RecordedCommandRunner([lvs(), vgs()]);
    await expect(new LvmSnapshotProvider({ runner, snapshotPercent: 100 }).create([web01, db01], 'r1'))
      .rejects.toMatchObject({ volumeGroup: 'vg0', neededBytes: 1610612736, freeBytes: 1371537408 });
    expect(runner.commandLines().some((l) => l.startsWith('lvcreate'))).toBe(false);
  });

  it('removes the snapshots already made when a later one fails, and reports lvcreate\'s real error', async () => {
    const runner = new RecordedCommandRunner([
      lvs(), vgs(),
      ok('lvcreate', ['-s', '-pr', '-n', 'ferry-r1-web01-disk', '-L', '109051904b', 'vg0/web01-disk']),
      recorded('lvcreate', ['-s', '-pr', '-n', 'ferry-r1-db01-disk', '-L', '54525952b', 'vg0/db01-disk'], 'lvcreate-no-dm', { code: 3 }),
      recorded('lvremove', ['-f', 'vg0/ferry-r1-web01-disk'], 'lvremove-ok'),
    ]);
    await expect(new LvmSnapshotProvider({ runner }).create([web01, db01], 'r1')).rejects.toThrow(
      new HypervisorError('lvcreate -s -pr -n ferry-r1-db01-disk -L 54525952b vg0/db01-disk failed (exit 3): snapshot: Required device-mapper target(s) not detected in your kernel.'),
    );
    expect(runner.commandLines().at(-1)).toBe('lvremove -f vg0/ferry-r1-web01-disk');
  });

  it('refuses a disk that is not a logical volume, before running lvcreate', async () => {
    const runner = new RecordedCommandRunner([lvs()]);
    await expect(new LvmSnapshotProvider({ runner }).create([web01, disk('xvdb', '/var/lib/xen/images/db01-swap.img')], 'r1'))
      .rejects.toThrow('disk xvdb (/var/lib/xen/images/db01-swap.img) is not an LVM logical volume');
    expect(runner.commandLines()).toEqual([LVS]);
  });

  it('refuses a snapshot name that already exists (a leftover of the same run id)', async () => {
    const runner = new RecordedCommandRunner([lvs()]);
    await expect(new LvmSnapshotProvider({ runner }).create([db01], '20260101T020000Z'))
      .rejects.toThrow('vg0/ferry-20260101T020000Z-db01-disk already exists');
  });

  it('refuses a run id that cannot be part of an LV name, running nothing', async () => {
    const runner = new RecordedCommandRunner([]);
    await expect(new LvmSnapshotProvider({ runner }).create([web01], 'run 1/2')).rejects.toThrow(UsageError);
    expect(runner.calls).toEqual([]);
  });

  it('refuses a snapshot size outside 0-100%', () => {
    expect(() => new LvmSnapshotProvider({ runner: new RecordedCommandRunner(), snapshotPercent: 0 })).toThrow(UsageError);
  });
});

describe('LvmSnapshotProvider.canHandle', () => {
  it('answers from lvs: LVs by /dev/VG/LV or /dev/mapper path yes; snapshots, pools and other devices no', async () => {
    const runner = new RecordedCommandRunner([{ ...lvs(), repeat: true }]);
    const provider = new LvmSnapshotProvider({ runner });
    expect(await provider.canHandle(web01)).toBe(true);
    expect(await provider.canHandle(mail01)).toBe(true);
    expect(await provider.canHandle(app01)).toBe(true);
    expect(await provider.canHandle(disk('xvdb', '/dev/vg0/ferry-20260101T020000Z-db01-disk'))).toBe(false);
    expect(await provider.canHandle(disk('xvdb', '/dev/sdb'))).toBe(false);
    expect(await provider.canHandle(disk('xvdb', '/dev/vg0/missing'))).toBe(false);
  });

  it('does not ask LVM about image files', async () => {
    const runner = new RecordedCommandRunner([]);
    expect(await new LvmSnapshotProvider({ runner }).canHandle(disk('xvda', '/var/lib/xen/images/web02.img'))).toBe(false);
    expect(runner.calls).toEqual([]);
  });

  it('says no on a host without volume groups (real empty report)', async () => {
    const runner = new RecordedCommandRunner([lvs('lvs-none')]);
    expect(await new LvmSnapshotProvider({ runner }).canHandle(web01)).toBe(false);
  });
});

describe('LvmSnapshotProvider.remove', () => {
  const snapshot = { disk: web01, readPath: '/dev/vg0/ferry-r1-web01-disk', ownedName: 'vg0/ferry-r1-web01-disk' };

  it('runs lvremove -f VG/NAME', async () => {
    const runner = new RecordedCommandRunner([recorded('lvremove', ['-f', 'vg0/ferry-r1-web01-disk'], 'lvremove-ok')]);
    await new LvmSnapshotProvider({ runner }).remove(snapshot);
    expect(runner.commandLines()).toEqual(['lvremove -f vg0/ferry-r1-web01-disk']);
  });

  it('treats a snapshot that is already gone as removed (real lvm message)', async () => {
    const runner = new RecordedCommandRunner([recorded('lvremove', ['-f', 'vg0/ferry-r1-web01-disk'], 'lvremove-missing', { code: 5 })]);
    await expect(new LvmSnapshotProvider({ runner }).remove(snapshot)).resolves.toBeUndefined();
  });

  it('reports any other lvremove failure', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'lvremove', args: ['-f', 'vg0/ferry-r1-web01-disk'], code: 5, stderr: '  test stub: Logical volume vg0/ferry-r1-web01-disk in use.\n' }]);
    await expect(new LvmSnapshotProvider({ runner }).remove(snapshot)).rejects.toThrow(/lvremove -f vg0\/ferry-r1-web01-disk failed \(exit 5\): test stub/);
  });

  it('never removes a volume whose name is not ferry\'s', async () => {
    const runner = new RecordedCommandRunner([]);
    await expect(new LvmSnapshotProvider({ runner }).remove({ ...snapshot, ownedName: 'vg0/web01-disk' })).rejects.toThrow(UsageError);
    expect(runner.calls).toEqual([]);
  });
});

describe('LvmSnapshotProvider.removeLeftovers', () => {
  it('removes only snapshots named ferry-*: not the admin\'s snapshot, not a plain LV called ferry-tools', async () => {
    const runner = new RecordedCommandRunner([
      lvs(),
      recorded('lvremove', ['-f', 'vg0/ferry-20260101T020000Z-app01-disk'], 'lvremove-ok'),
      recorded('lvremove', ['-f', 'vg0/ferry-20260101T020000Z-db01-disk'], 'lvremove-ok'),
    ]);
    const removed = await new LvmSnapshotProvider({ runner }).removeLeftovers();
    expect(removed).toEqual(['vg0/ferry-20260101T020000Z-app01-disk', 'vg0/ferry-20260101T020000Z-db01-disk']);
    expect(runner.commandLines()).toEqual([
      LVS, 'lvremove -f vg0/ferry-20260101T020000Z-app01-disk', 'lvremove -f vg0/ferry-20260101T020000Z-db01-disk',
    ]);
  });

  it('keeps the snapshot of a run that still runs on this host: it may be reading it now', async () => {
    const live = `ferry-${newRunId(new Date(), process.pid)}-db01-disk`;
    const fleet = lvs();
    const runner = new RecordedCommandRunner([
      { ...fleet, stdout: fleet.stdout!.replace('ferry-20260101T020000Z-db01-disk', live) },
      recorded('lvremove', ['-f', 'vg0/ferry-20260101T020000Z-app01-disk'], 'lvremove-ok'),
    ]);
    expect(await new LvmSnapshotProvider({ runner }).removeLeftovers()).toEqual(['vg0/ferry-20260101T020000Z-app01-disk']);
    expect(runner.commandLines()).toEqual([LVS, 'lvremove -f vg0/ferry-20260101T020000Z-app01-disk']);
  });

  it('tries every leftover and then reports those it could not remove', async () => {
    const runner = new RecordedCommandRunner([
      lvs(),
      { cmd: 'lvremove', args: ['-f', 'vg0/ferry-20260101T020000Z-app01-disk'], code: 5, stderr: '  test stub: in use\n' },
      recorded('lvremove', ['-f', 'vg0/ferry-20260101T020000Z-db01-disk'], 'lvremove-ok'),
    ]);
    await expect(new LvmSnapshotProvider({ runner }).removeLeftovers()).rejects.toThrow(/could not remove 1 leftover snapshot\(s\): .*app01-disk.*test stub: in use/);
    expect(runner.commandLines()).toHaveLength(3);
  });

  it('finds nothing to do on a host without volume groups', async () => {
    const runner = new RecordedCommandRunner([lvs('lvs-none')]);
    expect(await new LvmSnapshotProvider({ runner }).removeLeftovers()).toEqual([]);
  });
});
