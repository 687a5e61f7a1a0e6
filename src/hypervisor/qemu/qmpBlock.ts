// What QMP says about a guest's block devices, shared by the QEMU driver
// (listing disks) and the qemu-live snapshot provider (backing them up).
import { basename } from 'node:path';
import type { GuestDisk } from '../driver';
import type { QmpClient } from './qmpClient';

/** One entry of `query-block` (only the fields ferry reads). */
export interface QmpBlockInfo {
  /** BlockBackend name; "" for devices attached with -blockdev. */
  device: string;
  /** QOM path of the device, e.g. `/machine/peripheral/vda/virtio-backend`. */
  qdev?: string;
  removable: boolean;
  inserted?: {
    file: string;
    'node-name': string;
    drv: string;
    ro: boolean;
    image?: { filename: string; 'virtual-size': number; format: string };
  };
}

export interface QmpDirtyBitmap {
  name: string;
  recording: boolean;
  persistent: boolean;
  busy: boolean;
  granularity: number;
  /** Dirty bytes (dirty bits times granularity). */
  count: number;
  /** True when a persistent bitmap was not saved cleanly (QEMU crashed): its content cannot be trusted. */
  inconsistent?: boolean;
}

/** One entry of `query-named-block-nodes` (only the fields ferry reads). */
export interface QmpBlockNode {
  'node-name': string;
  drv: string;
  file: string;
  ro: boolean;
  image: { filename: string; 'virtual-size': number; format: string; 'actual-size'?: number };
  'dirty-bitmaps'?: QmpDirtyBitmap[];
}

/** A guest disk together with the QEMU names needed to act on it. */
export interface QemuDisk {
  disk: GuestDisk;
  /** The format node the guest device reads (where bitmaps and backups attach). */
  nodeName: string;
  virtualSize: number;
  /** QOM path of the guest device (`/machine/peripheral/vda/virtio-backend`), where QEMU reports one. */
  qdev?: string;
}

/**
 * The name a guest device goes by: the BlockBackend name for `-drive`
 * (`drive-virtio-disk0`), else the qdev id from the QOM path (`vda` in
 * `/machine/peripheral/vda/virtio-backend`), else the node name, because
 * `-blockdev` devices have an empty `device`.
 */
export function deviceName(info: QmpBlockInfo): string {
  if (info.device) return info.device;
  const peripheral = /^\/machine\/peripheral\/([^/]+)/.exec(info.qdev ?? '');
  if (peripheral?.[1]) return peripheral[1];
  return info.inserted?.['node-name'] ?? basename(info.qdev ?? 'disk');
}

/** Disks with a medium inserted (empty CD drives and floppies are left out). */
export async function queryDisks(client: QmpClient): Promise<QemuDisk[]> {
  const blocks = await client.execute<QmpBlockInfo[]>('query-block');
  const disks: QemuDisk[] = [];
  for (const b of blocks) {
    const inserted = b.inserted;
    if (!inserted) continue;
    const path = inserted.image?.filename ?? inserted.file;
    disks.push({
      disk: {
        device: deviceName(b),
        path,
        format: inserted.drv,
        readOnly: inserted.ro,
        // QEMU's query-block has no media type: removable media (CD-ROM, floppy) are what `cdrom` is for.
        ...(b.removable ? { cdrom: true } : {}),
      },
      nodeName: inserted['node-name'],
      virtualSize: inserted.image?.['virtual-size'] ?? 0,
      ...(b.qdev ? { qdev: b.qdev } : {}),
    });
  }
  return disks;
}

export async function queryNodes(client: QmpClient): Promise<QmpBlockNode[]> {
  return client.execute<QmpBlockNode[]>('query-named-block-nodes', { flat: true });
}

/** The named bitmaps of the node `nodeName` among `nodes` (none if the node is gone). */
export function bitmapsOf(nodes: QmpBlockNode[], nodeName: string): QmpDirtyBitmap[] {
  const node = nodes.find((n) => n['node-name'] === nodeName);
  return node ? namedBitmaps(node) : [];
}

/** A node's bitmaps that have a name: block jobs and filters keep unnamed ones of their own. */
export function namedBitmaps(node: QmpBlockNode): QmpDirtyBitmap[] {
  return (node['dirty-bitmaps'] ?? []).filter((b) => typeof b.name === 'string');
}

/** virtio-blk reports its backend object; its drive is swapped on the proxy device above it (on the backend QEMU 7.2 crashes). */
export function deviceProxyPath(qdev: string): string {
  return qdev.replace(/\/virtio-backend$/, '');
}
