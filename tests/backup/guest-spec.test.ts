// Restore points describe the machine, not only its disks (issue 7 §1): what
// the driver knows, the disks as the guest saw them (origins, never snapshot
// paths) and the boot order, so a site restore can rebuild the guest.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { diskStorage, driverGuestSpec, imageGuestSpec } from '../../src/backup/guestSpec';
import { XenDriver } from '../../src/hypervisor/xen/xenDriver';
import { RecordedCommandRunner, type RecordedReply, recordedOutput } from '../support/recordedRunner';
import { Repository } from '../../src/repo/repository';
import { LocalBackend } from '../../src/storage/local';
import { TestRepo, expectSuccess, parseJson, useScratch, writeRandomishImage } from '../support';

const XEN = join(__dirname, '..', 'fixtures', 'xen');
const xl = (args: string[], output: string): RecordedReply => ({ cmd: 'xl', args, ...recordedOutput(XEN, output) });
const scratch = useScratch('guest-spec');

describe('the guest spec of a guest backed up through its driver', () => {
  it('records vCPUs, memory, NICs, and each disk by device with its origin, format and storage (recorded xl output)', async () => {
    const runner = new RecordedCommandRunner([xl(['list'], 'xl-list'), xl(['list', '-l'], 'xl-list-l')]);
    const guests = await new XenDriver({ runner, configDir: join(XEN, 'fleet') }).listGuests();
    const db01 = guests.find((g) => g.name === 'db01')!;
    const spec = driverGuestSpec('xen', db01, db01.disks.map((disk, i) => ({ name: `${disk.device}.img`, disk, providerKind: i === 0 ? 'lvm' : 'reflink' })), { group: 1, priority: 5 });
    expect(spec).toEqual({
      hypervisor: 'xen',
      vcpus: db01.vcpus,
      memoryMiB: db01.memoryMiB,
      maxMemoryMiB: db01.maxMemoryMiB,
      nics: [{ mac: '00:16:3e:1a:2b:02', bridge: 'xenbr0' }, { mac: '00:16:3e:1a:2b:12', bridge: 'xenbr1' }],
      disks: [
        { name: 'xvda.img', device: 'xvda', origin: '/dev/vg0/db01-disk', format: 'raw', storage: 'lv', readOnly: false },
        { name: 'xvdb.img', device: 'xvdb', origin: '/var/lib/xen/images/db01-swap.img', format: 'raw', storage: 'file', readOnly: false },
      ],
      bootGroup: 1,
      bootPriority: 5,
    });
    expect(spec.vcpus).toBeGreaterThan(0);
  });

  it('tells LVs, other block devices and files apart by path when no lvm provider copied the disk', () => {
    expect(diskStorage('/dev/vg0/web01-disk')).toBe('lv');
    expect(diskStorage('/dev/mapper/vg--data-mail--store')).toBe('lv');
    expect(diskStorage('/dev/sdb')).toBe('block');
    expect(diskStorage('/dev/disk/by-id/wwn-0x5000c500a1b2c3d4')).toBe('block');
    expect(diskStorage('/dev/md/raid1')).toBe('block');
    expect(diskStorage('/var/lib/xen/images/web01.img')).toBe('file');
    expect(diskStorage('/dev/sdb', 'lvm')).toBe('lv');
  });
});

describe('the guest spec of an image-mode backup', () => {
  it('takes the machine from an xl cfg given with --config, and the device and format of the disk whose path is the image', () => {
    const cfg = fs.readFileSync(join(XEN, 'fleet', 'win01.cfg'), 'utf8');
    const spec = imageGuestSpec([{ name: 'win01.qcow2', path: '/var/lib/xen/images/win01.qcow2' }, { name: 'extra.img', path: '/srv/extra.img' }], { fileName: 'win01.cfg', text: cfg });
    expect(spec).toEqual({
      hypervisor: 'xen', vcpus: 2, memoryMiB: 4096, maxMemoryMiB: 4096,
      nics: [{ mac: '00:16:3e:1a:2b:05', bridge: 'xenbr0', model: 'e1000' }],
      disks: [
        { name: 'win01.qcow2', device: 'hda', origin: '/var/lib/xen/images/win01.qcow2', format: 'qcow2', storage: 'file', readOnly: false },
        { name: 'extra.img', origin: '/srv/extra.img', format: 'raw', storage: 'file', readOnly: false },
      ],
      bootGroup: 0, bootPriority: 0,
    });
  });

  it('reads libvirt domain XML too, and records only the images when the config is neither', () => {
    const xml = `<domain type='kvm'><name>k1</name><memory unit='MiB'>512</memory><vcpu>1</vcpu><devices>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/srv/k1.img'/><target dev='vda'/></disk>
      <interface type='network'><mac address='52:54:00:00:00:09'/><source network='default'/><model type='virtio'/></interface></devices></domain>`;
    expect(imageGuestSpec([{ name: 'k1.img', path: '/srv/k1.img' }], { fileName: 'k1.xml', text: xml })).toMatchObject({
      hypervisor: 'libvirt', vcpus: 1, memoryMiB: 512,
      nics: [{ mac: '52:54:00:00:00:09', network: 'default', model: 'virtio' }],
      disks: [{ name: 'k1.img', device: 'vda', origin: '/srv/k1.img', format: 'raw', storage: 'file' }],
    });
    const unknown = imageGuestSpec([{ name: 'a.img', path: '/srv/a.img' }], { fileName: 'a.vmx', text: 'displayName = "a"\n' });
    expect(unknown).toEqual({ nics: [], disks: [{ name: 'a.img', origin: '/srv/a.img', format: 'raw', storage: 'file', readOnly: false }], bootGroup: 0, bootPriority: 0 });
  });
});

describe('ferry show', () => {
  let repo: TestRepo;
  beforeAll(async () => {
    repo = await TestRepo.init(scratch, 'repo');
  });

  it('prints the spec of an image-mode backup with an xl cfg, and --json carries it', async () => {
    const image = scratch.path('win01.img');
    writeRandomishImage(image, 2 * 1024 * 1024, 3);
    const cfg = scratch.path('win01.cfg');
    fs.writeFileSync(cfg, fs.readFileSync(join(XEN, 'fleet', 'win01.cfg'), 'utf8').replace('/var/lib/xen/images/win01.qcow2', image));
    await repo.backup('win01', [image], ['--config', cfg]);
    const shown = parseJson<{ spec: unknown }>(await repo.run(['show', 'latest', '--json']));
    expect(shown.spec).toMatchObject({ hypervisor: 'xen', vcpus: 2, memoryMiB: 4096, disks: [{ name: 'win01.img', device: 'hda', origin: image, format: 'qcow2' }] });
    const text = expectSuccess(await repo.run(['show', 'latest']));
    expect(text).toMatch(/^machine: xen, 2 vCPU\(s\), 4096 MiB; boot group 0, priority 0$/m);
    expect(text).toMatch(/^nic: +00:16:3e:1a:2b:05, bridge xenbr0, e1000$/m);
    expect(text).toMatch(/^0 +win01\.img +2\.00 MiB +\S+ \S+ +hda +\S+win01\.img +qcow2 +file +/m);
  });

  it('records the boot order of ferry.conf and the static driver for backup --all', async () => {
    const image = scratch.path('app01.img');
    writeRandomishImage(image, 2 * 1024 * 1024, 4);
    const conf = scratch.path('ferry.conf');
    fs.writeFileSync(conf, `[[static.guest]]\nname = "app01"\ndisks = [${JSON.stringify(image)}]\n\n[guest."app*"]\nboot_group = 2\nboot_priority = -3\n`);
    expectSuccess(await repo.run(['backup', '--all', '--config', conf, '--work-dir', scratch.mkdir('work')]));
    const shown = parseJson<{ spec: unknown }>(await repo.run(['show', 'latest', '--guest', 'app01', '--json']));
    expect(shown.spec).toEqual({
      hypervisor: 'static', nics: [], bootGroup: 2, bootPriority: -3,
      disks: [{ name: 'disk0.img', device: 'disk0', origin: image, format: 'raw', storage: 'file', readOnly: false }],
    });
  });

  it('shows a restore point made before specs existed, without a machine line', async () => {
    // Saved through the library without `spec`, as every restore point before this change.
    const library = await Repository.open(new LocalBackend(repo.path), Buffer.from(fs.readFileSync(repo.passwordFile, 'utf8').replace(/\n$/, '')));
    const { id: _id, spec: _spec, ...old } = await library.findRestorePoint('latest', 'win01');
    await library.saveRestorePoint({ ...old, guest: 'old01' });
    await library.backend.close();
    const out = expectSuccess(await repo.run(['show', 'latest', '--guest', 'old01']));
    expect(out).not.toMatch(/^machine:/m);
    expect(out).toMatch(/^0 +win01\.img +2\.00 MiB +\S+ \S+ +- +- +- +- +/m);
    expect(parseJson<{ spec?: unknown }>(await repo.run(['show', 'latest', '--guest', 'old01', '--json'])).spec).toBeUndefined();
  });
});
