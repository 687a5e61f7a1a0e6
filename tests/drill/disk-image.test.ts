// Finding a Xen PV guest's kernel in its restored image as pygrub would, on
// real ext4 images made with mkfs.ext4 -d (read with debugfs at the
// partition's offset: no loop device, no mount).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findKernelInImage, imagePartitions } from '../../src/drill/diskImage';
import { ExecFileCommandRunner } from '../../src/hypervisor/commandRunner';
import { mustRun, useScratch } from '../support';

const scratch = useScratch('drill-disk-image');
const runner = new ExecFileCommandRunner();

/** An ext4 image of `files` (path → content); with `partitioned`, inside partition 1 of a DOS table at 1 MiB. */
async function ext4Image(name: string, files: Record<string, string>, partitioned: 'whole-disk' | 'partition-1' = 'whole-disk'): Promise<string> {
  const root = scratch.mkdir(`${name}-root`);
  for (const [p, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), content);
  }
  const fsImage = scratch.path(`${name}.fs`);
  fs.closeSync(fs.openSync(fsImage, 'w'));
  fs.truncateSync(fsImage, 16 * 1024 * 1024);
  await mustRun('mkfs.ext4', ['-q', '-F', '-d', root, fsImage]);
  if (partitioned === 'whole-disk') return fsImage;
  const disk = scratch.path(`${name}.img`);
  fs.closeSync(fs.openSync(disk, 'w'));
  fs.truncateSync(disk, 18 * 1024 * 1024);
  await mustRun('sh', ['-c', `echo 'start=2048, size=32768, type=83' | sfdisk -q ${disk}`]);
  await mustRun('dd', [`if=${fsImage}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc,sparse', 'status=none']);
  return disk;
}

describe('the kernel in a PV guest\'s image', () => {
  it('is the first entry of its grub.cfg, with that entry\'s arguments and initrd', async () => {
    const image = await ext4Image('grub', {
      'boot/grub/grub.cfg': "set default=0\nmenuentry 'Debian' {\n  linux (hd0,msdos1)/boot/vmlinuz-6.1.0-10-amd64 root=UUID=1234 ro quiet\n  initrd /boot/initrd.img-6.1.0-10-amd64\n}\nmenuentry 'old' {\n  linux /boot/vmlinuz-6.1.0-9-amd64 root=/dev/xvda1\n}\n",
      'boot/vmlinuz-6.1.0-10-amd64': 'kernel 10',
      'boot/initrd.img-6.1.0-10-amd64': 'initrd 10',
      'boot/vmlinuz-6.1.0-9-amd64': 'kernel 9',
      'etc/fstab': '', 'sbin/init': '',
    }, 'partition-1');
    expect(await imagePartitions(runner, image)).toEqual([{ number: 1, offsetBytes: 1024 * 1024, sizeBytes: 16 * 1024 * 1024 }]);
    const out = scratch.mkdir('grub-out');
    const found = await findKernelInImage(runner, image, 'xvda.img', out);
    expect(found).toEqual({ kernel: path.join(out, 'vmlinuz'), initrd: path.join(out, 'initrd'), args: 'root=UUID=1234 ro quiet', source: 'xvda.img partition 1: /boot/grub/grub.cfg', rootPartition: 1 });
    expect(fs.readFileSync(found!.kernel, 'utf8')).toBe('kernel 10');
    expect(fs.readFileSync(found!.initrd!, 'utf8')).toBe('initrd 10');
  });

  it('without a boot loader config, is the newest /boot/vmlinuz-* (by version, not by name) with its initrd', async () => {
    const image = await ext4Image('newest', {
      'boot/vmlinuz-6.1.0-9-amd64': 'kernel 9',
      'boot/vmlinuz-6.1.0-10-amd64': 'kernel 10',
      'boot/initrd.img-6.1.0-10-amd64': 'initrd 10',
      'etc/hostname': 'db01\n', 'sbin/init': '',
    });
    const out = scratch.mkdir('newest-out');
    const found = await findKernelInImage(runner, image, 'disk0.img', out);
    expect(found).toMatchObject({ source: 'disk0.img partition 0: /boot', rootPartition: 0 });
    expect(found!.args).toBeUndefined();
    expect(fs.readFileSync(found!.kernel, 'utf8')).toBe('kernel 10');
    expect(fs.readFileSync(found!.initrd!, 'utf8')).toBe('initrd 10');
  });

  it('is not there in an image of plain data', async () => {
    const image = await ext4Image('plain', { 'srv/data': 'payload\n' });
    expect(await findKernelInImage(runner, image, 'disk0.img', scratch.mkdir('plain-out'))).toBeUndefined();
  });
});
