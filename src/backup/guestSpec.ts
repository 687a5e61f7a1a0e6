// The guest spec a restore point records (repo/restorePoint.ts GuestSpec):
// what the driver knows of the machine, the disks as the guest saw them, and
// the boot order from ferry.conf. An image-mode backup records what its
// --config file says, when ferry can read it as an xl cfg or libvirt XML.
import type { GuestSpec, GuestSpecDisk } from '../repo/restorePoint';
import type { GuestDisk, GuestInfo } from '../hypervisor/driver';
import { parseDomainXml } from '../hypervisor/libvirt/domainXml';
import { parseXlConfig } from '../hypervisor/xen/xlConfig';
import { guestFromConfig } from '../hypervisor/xen/guestConfig';

export interface BootOrder {
  group: number;
  priority: number;
}

export const DEFAULT_BOOT_ORDER: BootOrder = { group: 0, priority: 0 };

const SPEC_HYPERVISORS: ReadonlySet<string> = new Set(['xen', 'libvirt', 'qemu', 'static']);

/**
 * What held a disk. An LV when the lvm provider copied it or its path is
 * /dev/mapper/NAME or /dev/VG/LV (udev's own /dev subfolders excepted);
 * another block device for other /dev paths; else a file.
 */
export function diskStorage(path: string, providerKind?: string): GuestSpecDisk['storage'] {
  if (providerKind === 'lvm') return 'lv';
  if (!path.startsWith('/dev/')) return 'file';
  if (/^\/dev\/mapper\/[^/]+$/.test(path)) return 'lv';
  if (/^\/dev\/(?!(disk|md|block|bus|char|cpu|dri|fd|input|net|pts|shm|snd|usb|vfio|hugepages|mqueue)\/)[^/]+\/[^/]+$/.test(path)) return 'lv';
  return 'block';
}

/** The spec of a guest backed up through its driver; `disks` pairs each backed-up disk with its restore point name. */
export function driverGuestSpec(
  driverKind: string,
  guest: GuestInfo,
  disks: readonly { name: string; disk: GuestDisk; providerKind?: string }[],
  boot: BootOrder = DEFAULT_BOOT_ORDER,
): GuestSpec {
  return {
    ...(SPEC_HYPERVISORS.has(driverKind) ? { hypervisor: driverKind as GuestSpec['hypervisor'] } : {}),
    ...machine(guest),
    disks: disks.map(({ name, disk, providerKind }) => specDisk(name, disk, providerKind)),
    bootGroup: boot.group,
    bootPriority: boot.priority,
  };
}

/**
 * The spec of an image-mode backup (`backup --guest X IMAGE… [--config F]`):
 * the images, and what the config says when it is libvirt XML or an xl cfg
 * (a disk of the config whose path is the image's gives its device and format).
 */
export function imageGuestSpec(images: readonly { name: string; path: string }[], config?: { fileName: string; text: string }, boot: BootOrder = DEFAULT_BOOT_ORDER): GuestSpec {
  const described = config ? describeConfig(config) : undefined;
  return {
    ...(described ? { hypervisor: described.hypervisor, ...machine(described.guest) } : { nics: [] }),
    disks: images.map(({ name, path }) => {
      const known = described?.guest.disks.find((d) => d.path === path);
      return known ? specDisk(name, known) : { name, origin: path, format: 'raw', storage: diskStorage(path), readOnly: false };
    }),
    bootGroup: boot.group,
    bootPriority: boot.priority,
  };
}

function machine(g: Pick<GuestInfo, 'vcpus' | 'memoryMiB' | 'maxMemoryMiB' | 'nics'>): Pick<GuestSpec, 'vcpus' | 'memoryMiB' | 'maxMemoryMiB' | 'nics'> {
  return {
    ...(g.vcpus !== undefined ? { vcpus: g.vcpus } : {}),
    ...(g.memoryMiB !== undefined ? { memoryMiB: g.memoryMiB } : {}),
    ...(g.maxMemoryMiB !== undefined ? { maxMemoryMiB: g.maxMemoryMiB } : {}),
    nics: g.nics.map((n) => ({ ...n })),
  };
}

function specDisk(name: string, disk: GuestDisk, providerKind?: string): GuestSpecDisk {
  return { name, device: disk.device, origin: disk.path, format: disk.format, storage: diskStorage(disk.path, providerKind), readOnly: disk.readOnly };
}

/** The config read as libvirt XML or an xl cfg; undefined when it is neither (it is still kept as text). */
function describeConfig(config: { fileName: string; text: string }): { hypervisor: 'libvirt' | 'xen'; guest: Pick<GuestInfo, 'vcpus' | 'memoryMiB' | 'maxMemoryMiB' | 'nics' | 'disks'> } | undefined {
  try {
    if (config.text.trimStart().startsWith('<')) return { hypervisor: 'libvirt', guest: parseDomainXml(config.text, config.fileName) };
    return { hypervisor: 'xen', guest: guestFromConfig(parseXlConfig(config.text, config.fileName)) };
  } catch {
    return undefined; // not a config ferry reads: the spec records only the images
  }
}
