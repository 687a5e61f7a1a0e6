// Each hypervisor driver brings its own live snapshot provider: the driver
// says how its hypervisor copies running guests (liveCopy), and
// liveSnapshotProvider builds the provider that drives that copy.
import { describe, expect, it } from 'vitest';
import { LibvirtDriver } from '../../src/hypervisor/libvirt/libvirtDriver';
import { QemuDriver } from '../../src/hypervisor/qemu/qemuDriver';
import { StaticDriver } from '../../src/hypervisor/static/staticDriver';
import { XenDriver } from '../../src/hypervisor/xen/xenDriver';
import { LibvirtBackupProvider } from '../../src/snapshot/libvirtBackup';
import { liveSnapshotProvider } from '../../src/snapshot/live';
import { QemuLiveProvider } from '../../src/snapshot/qemuLive';
import { RecordedCommandRunner } from '../support/recordedRunner';
import { useScratch } from '../support';

const scratch = useScratch('live-provider');

describe('liveSnapshotProvider', () => {
  it('gives a QEMU driver the qemu-live provider on its QMP sockets', async () => {
    const driver = new QemuDriver({ sockets: [scratch.path('web01.qmp')], runner: new RecordedCommandRunner() });
    expect(driver.liveCopy()).toEqual({ via: 'qmp', sockets: [scratch.path('web01.qmp')] });
    const live = liveSnapshotProvider(driver, { workDir: scratch.path('work') });
    expect(live).toBeInstanceOf(QemuLiveProvider);
    expect(live!.kind).toBe('qemu-live');
    // No guest answers on the socket: the provider asked it and found nothing to copy.
    expect(await live!.canHandle({ device: 'vda', path: '/srv/web01.img', format: 'raw', readOnly: false })).toBe(false);
  });

  it('gives a libvirt driver the libvirt-backup provider on the driver\'s own connection', async () => {
    const runner = new RecordedCommandRunner([{ cmd: 'virsh', args: ['-c', 'qemu+ssh://kvm1/system', 'list', '--name'], stdout: '\n' }]);
    const driver = new LibvirtDriver({ runner, uri: 'qemu+ssh://kvm1/system' });
    const live = liveSnapshotProvider(driver, { workDir: scratch.path('work') });
    expect(live).toBeInstanceOf(LibvirtBackupProvider);
    expect(await live!.canHandle({ device: 'vda', path: '/srv/db01.qcow2', format: 'qcow2', readOnly: false })).toBe(false);
    expect(runner.commandLines()).toEqual(['virsh -c qemu+ssh://kvm1/system list --name']);
  });

  it('gives Xen and static guests none: their disks go to the generic providers', () => {
    const runner = new RecordedCommandRunner();
    expect(liveSnapshotProvider(new XenDriver({ runner }), { workDir: scratch.path('work') })).toBeUndefined();
    expect(liveSnapshotProvider(new StaticDriver({ runner, guests: [] }), { workDir: scratch.path('work') })).toBeUndefined();
  });
});
