// What every config rewrite of a site restore shares (xl cfg, libvirt domain
// XML, QEMU launch definition): where each restored disk now lives, how
// bridges map on the new host, whether MACs are kept, and which disk of the
// restore point a disk of the config is.
import { createHash } from 'node:crypto';
import { InputError } from '../errors';
import type { GuestSpec, GuestSpecDisk } from '../repo/restorePoint';

/** Where one restored disk was written on the new host. */
export interface DiskTarget {
  /** Absolute path on the new host: `/dev/vg1/web01-disk`, `/srv/pool/web01/xvda.img`. */
  path: string;
  format: 'raw' | 'qcow2';
  /** A block device (an LV) or a file in a directory pool. */
  storage: 'block' | 'file';
}

/** MAC addresses: kept as backed up, or fresh ones derived from `seed` (the same seed gives the same MACs). */
export type MacPolicy = { kind: 'keep' } | { kind: 'new'; seed: string };

export interface GuestRewriteOptions {
  /** The new storage of each restore point disk, by disk name (`GuestSpecDisk.name`). */
  disks: ReadonlyMap<string, DiskTarget>;
  /** Old bridge → new bridge; a bridge not named is kept. `network:NAME` keys map a libvirt network. */
  bridges?: Readonly<Record<string, string>>;
  macs?: MacPolicy;
  /** A new guest name; the original's otherwise. */
  name?: string;
}

/** A rewritten config, with what the caller should tell the user about it. */
export interface RewrittenConfig {
  text: string;
  /** One line each: things the rewrite changed beyond paths and bridges (an ejected CD, a bridge made explicit). */
  notes: string[];
}

/** The target of `disk`, or a clear refusal naming the disk. */
export function diskTarget(options: GuestRewriteOptions, disk: GuestSpecDisk, where: string): DiskTarget {
  const target = options.disks.get(disk.name);
  if (!target) throw new InputError(`${where}: no new storage was given for disk ${disk.name} (${disk.device ?? disk.origin}); place every disk of the restore point before rewriting its config`);
  if (!target.path.startsWith('/') || /[\s,]/.test(target.path)) {
    throw new InputError(`${where}: new path ${JSON.stringify(target.path)} of disk ${disk.name} must be absolute, without commas or white space (hypervisor option syntax cannot carry them)`);
  }
  return target;
}

/**
 * The restore point disk a disk of the config is: same guest device, else
 * same origin path (an image-mode backup records no device for images its
 * config does not name).
 */
export function specDiskFor(spec: GuestSpec, device: string, path: string): GuestSpecDisk | undefined {
  return spec.disks.find((d) => d.device !== undefined && d.device === device) ?? spec.disks.find((d) => d.origin === path);
}

/** The bridge on the new host: mapped, or kept. */
export function mapBridge(options: GuestRewriteOptions, bridge: string): string {
  return options.bridges?.[bridge] ?? bridge;
}

/** A libvirt network on the new host: `network:NAME` in the bridge map, else the same name. */
export function mapNetwork(options: GuestRewriteOptions, network: string): string {
  return options.bridges?.[`network:${network}`] ?? network;
}

/**
 * The MAC of NIC `index` of guest `guest`: the old one when kept (or when it
 * had none: undefined, the hypervisor picks), else derived from the seed in
 * the given OUI (Xen 00:16:3e, QEMU/libvirt 52:54:00), distinct within the guest.
 */
export function macFor(options: GuestRewriteOptions, oui: '00:16:3e' | '52:54:00', guest: string, index: number, old: string | undefined, taken: Set<string>): string | undefined {
  const policy = options.macs ?? { kind: 'keep' };
  if (policy.kind === 'keep') return old;
  for (let attempt = 0; ; attempt++) {
    const digest = createHash('sha256').update(`ferry-mac\0${policy.seed}\0${guest}\0${index}\0${attempt}`).digest();
    const mac = `${oui}:${[...digest.subarray(0, 3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
    if (!taken.has(mac)) {
      taken.add(mac);
      return mac;
    }
  }
}
