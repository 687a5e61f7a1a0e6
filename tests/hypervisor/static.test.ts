// The static driver (guests described in ferry.conf) and how snapshot
// providers are chosen for its guests' disks. Hooks run through a recorded
// command runner, so the exact commands and their order are asserted.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HypervisorError, InputError, UsageError } from '../../src/errors';
import type { GuestDisk, GuestInfo } from '../../src/hypervisor/driver';
import { RecordedCommandRunner } from '../support/recordedRunner';
import { StaticDriver } from '../../src/hypervisor/static/staticDriver';
import { NoSnapshotProviderError, chooseSnapshotProviders } from '../../src/snapshot/choose';
import { NoSnapshotProvider } from '../../src/snapshot/none';
import type { Snapshot, SnapshotProvider } from '../../src/snapshot/provider';
import { useScratch } from '../support';

const scratch = useScratch('static-driver');

describe('StaticDriver.listGuests', () => {
  it('lists a guest without hooks as shut off, with its disks named by position or as given, and its config file', async () => {
    const cfg = scratch.path('legacy01.cfg');
    fs.writeFileSync(cfg, 'name = "legacy01"\nmemory = 512\n');
    const driver = new StaticDriver({
      runner: new RecordedCommandRunner(),
      guests: [{ name: 'legacy01', disks: ['/srv/legacy01.img', { path: '/srv/legacy01-data.qcow2', device: 'xvdb' }], config: cfg }],
    });
    expect(await driver.listGuests()).toEqual([{
      name: 'legacy01',
      state: 'shutoff',
      nics: [],
      disks: [
        { device: 'disk0', path: '/srv/legacy01.img', format: 'raw', readOnly: false },
        { device: 'xvdb', path: '/srv/legacy01-data.qcow2', format: 'qcow2', readOnly: false },
      ],
      config: { fileName: 'legacy01.cfg', text: 'name = "legacy01"\nmemory = 512\n' },
    }]);
  });

  it('lists a guest with a hook as running: the hooks hold it, so its disks need snapshots', async () => {
    const driver = new StaticDriver({
      runner: new RecordedCommandRunner(),
      guests: [{ name: 'appliance', disks: ['/srv/a.img'], hooks: { pre: ['ssh', '{name}', 'fsfreeze', '-f', '/'] } }],
    });
    expect((await driver.listGuests())[0]!.state).toBe('running');
  });

  it('refuses an unreadable config file, naming guest, path and what to do', async () => {
    const driver = new StaticDriver({ runner: new RecordedCommandRunner(), guests: [{ name: 'old', disks: ['/a.img'], config: '/nonexistent/old.cfg' }] });
    const attempt = driver.listGuests();
    await expect(attempt).rejects.toThrow(InputError);
    await expect(attempt).rejects.toThrow('static guest old: cannot read its config file /nonexistent/old.cfg: no such file or directory (ENOENT); fix config = in [[static.guest]] or remove it');
  });

  it('refuses two guests with the same name', () => {
    expect(() => new StaticDriver({ runner: new RecordedCommandRunner(), guests: [{ name: 'a', disks: ['/a'] }, { name: 'a', disks: ['/b'] }] }))
      .toThrow('static guest a is defined twice');
  });
});

describe('StaticDriver.quiesce', () => {
  const hooked = { name: 'db01', disks: ['/srv/db01.img'], hooks: { pre: ['ssh', '{name}', 'fsfreeze', '-f', '/'], post: ['ssh', '{name}', 'fsfreeze', '-u', '/'] } };

  it('does nothing for a guest without hooks', async () => {
    const runner = new RecordedCommandRunner();
    const driver = new StaticDriver({ runner, guests: [{ name: 'old', disks: ['/a.img'] }] });
    const [guest] = await driver.listGuests();
    const handle = await driver.quiesce(guest!);
    await handle.release();
    expect(handle.quiesced).toBe(false);
    expect(runner.calls).toEqual([]);
  });

  it('runs the pre hook to hold the guest and the post hook once on release; the watchdog gets the post hook', async () => {
    const runner = new RecordedCommandRunner([
      { cmd: 'ssh', args: ['db01', 'fsfreeze', '-f', '/'] },
      { cmd: 'ssh', args: ['db01', 'fsfreeze', '-u', '/'] },
    ]);
    const driver = new StaticDriver({ runner, guests: [hooked] });
    const [guest] = await driver.listGuests();
    const handle = await driver.quiesce(guest!);
    expect(handle).toMatchObject({ guest: 'db01', quiesced: true, releaseArgv: ['ssh', 'db01', 'fsfreeze', '-u', '/'] });
    expect(runner.commandLines()).toEqual(['ssh db01 fsfreeze -f /']);
    await handle.release();
    await handle.release();
    expect(runner.commandLines()).toEqual(['ssh db01 fsfreeze -f /', 'ssh db01 fsfreeze -u /']);
  });

  it('uses the hooks of the per-guest settings over the guest definition\'s own', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'sync', args: [] }]);
    const driver = new StaticDriver({ runner, guests: [hooked] });
    const [guest] = await driver.listGuests();
    const handle = await driver.quiesce(guest!, { pre: ['sync'] });
    await handle.release();
    expect(runner.commandLines()).toEqual(['sync']);
    expect(handle.releaseArgv).toBeUndefined();
  });

  it('a failing pre hook aborts the quiesce, says which hook of which guest, and runs no post hook', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'ssh', args: ['db01', 'fsfreeze', '-f', '/'], code: 255, stderr: 'ssh: connect to host db01 port 22: Connection refused\n' }]);
    const driver = new StaticDriver({ runner, guests: [hooked] });
    const [guest] = await driver.listGuests();
    await expect(driver.quiesce(guest!)).rejects.toThrow(
      new HypervisorError('pre hook for guest db01: ssh db01 fsfreeze -f / failed (exit 255): ssh: connect to host db01 port 22: Connection refused'),
    );
    expect(runner.calls).toHaveLength(1);
  });
});

/** A provider that takes disks whose path starts with `prefix`, for choosing without real storage. */
function fakeProvider(kind: string, prefix: string): SnapshotProvider {
  return {
    kind,
    canHandle: async (d: GuestDisk) => d.path.startsWith(prefix),
    create: async (disks: GuestDisk[]): Promise<Snapshot[]> => disks.map((disk) => ({ disk, readPath: disk.path, ownedName: `ferry-${disk.device}` })),
    remove: async () => undefined,
    removeLeftovers: async () => [],
  };
}

describe('choosing snapshot providers for a guest', () => {
  const lvm = fakeProvider('lvm', '/dev/');
  const btrfs = fakeProvider('btrfs', '/btrfs/');
  const reflink = fakeProvider('reflink', '/xfs/');
  const failing: SnapshotProvider = { ...fakeProvider('lvm', ''), canHandle: async () => { throw new HypervisorError('cannot run lvs: no such file or directory (ENOENT)'); } };
  const none = new NoSnapshotProvider();
  const disk = (device: string, path: string): GuestDisk => ({ device, path, format: 'raw', readOnly: false });
  const guest = (state: GuestInfo['state'], disks: GuestDisk[]): GuestInfo => ({ name: 'web01', state, nics: [], disks });

  it('takes the first provider in order that can handle each disk, and groups the disks per provider', async () => {
    const g = guest('running', [disk('xvda', '/xfs/a.img'), disk('xvdb', '/dev/vg0/b'), disk('xvdc', '/xfs/c.img')]);
    const plan = await chooseSnapshotProviders(g, [lvm, btrfs, reflink, none]);
    expect(plan.map((e) => [e.provider.kind, e.disks.map((d) => d.device)])).toEqual([['reflink', ['xvda', 'xvdc']], ['lvm', ['xvdb']]]);
  });

  it('reads a shut-off static guest\'s disk in place when nothing can snapshot it', async () => {
    const image = scratch.path('plain.img');
    fs.writeFileSync(image, 'x');
    const [g] = await new StaticDriver({ runner: new RecordedCommandRunner(), guests: [{ name: 'old', disks: [image] }] }).listGuests();
    const plan = await chooseSnapshotProviders(g!, [lvm, btrfs, reflink, none]);
    expect(plan.map((e) => e.provider.kind)).toEqual(['none']);
    expect(await plan[0]!.provider.create(plan[0]!.disks, 'r1')).toEqual([{ disk: g!.disks[0], readPath: image, ownedName: `none:${image}` }]);
  });

  it('refuses a running guest whose disk nothing can snapshot, naming guest, disk, what was tried and what to do', async () => {
    const g = guest('running', [disk('xvda', '/xfs/a.img'), disk('xvdb', '/srv/ext4/b.img')]);
    const attempt = chooseSnapshotProviders(g, [failing, btrfs, reflink, none]);
    await expect(attempt).rejects.toThrow(NoSnapshotProviderError);
    await expect(attempt).rejects.toThrow(
      'guest web01 is running and no snapshot provider can take a point-in-time copy of disk xvdb (/srv/ext4/b.img); ' +
        'tried lvm (cannot run lvs: no such file or directory (ENOENT)), btrfs, reflink; ' +
        'put the disk on LVM, btrfs or xfs with reflink=1, shut the guest down before the backup, or set [guest."web01"] snapshot = "pause" in ferry.conf ' +
        '(the guest stays paused while all its disks are read: no service meanwhile, crash-consistent) or snapshot = "shutdown" ' +
        '(clean shutdown, read, start again with its config: down for a shutdown, the read and a boot, consistent)',
    );
  });

  it('follows a snapshot = override, and refuses it for a disk that provider cannot take', async () => {
    const g = guest('running', [disk('xvda', '/xfs/a.img')]);
    expect((await chooseSnapshotProviders(g, [lvm, btrfs, reflink, none], 'reflink'))[0]!.provider).toBe(reflink);
    await expect(chooseSnapshotProviders(g, [lvm, btrfs, reflink, none], 'lvm')).rejects.toThrow(
      'guest web01: snapshot = "lvm" cannot snapshot disk xvda (/xfs/a.img); remove the snapshot setting to choose automatically',
    );
  });

  it('refuses snapshot = "none" for a running guest, and an unknown provider name', async () => {
    const g = guest('running', [disk('xvda', '/xfs/a.img')]);
    await expect(chooseSnapshotProviders(g, [lvm, none], 'none')).rejects.toThrow(UsageError);
    await expect(chooseSnapshotProviders(g, [lvm, none], 'none')).rejects.toThrow('snapshot = "none" for guest web01, but the guest is running');
    await expect(chooseSnapshotProviders(g, [lvm, none], 'zfs')).rejects.toThrow('snapshot = "zfs" for guest web01: no such snapshot provider here; available: lvm, none');
  });
});
