// The "provider" for guests that are shut off: nothing writes to their disks,
// so the disk itself is already a point-in-time copy. choose.ts only picks it
// for shut-off guests; reading a running guest's disk in place would give an
// image that is torn across the time the read takes.
import * as fs from 'node:fs';
import { HypervisorError, describeSystemError } from '../errors';
import type { GuestDisk } from '../hypervisor/driver';
import type { Snapshot, SnapshotProvider } from './provider';

/**
 * The disks themselves as their "snapshots" (for `none`, and for `pause` /
 * `shutdown`, where the backup holds the guest): each must be readable;
 * `<kind>:` in the owned name marks that nothing was created to remove.
 */
function disksThemselves(kind: string, disks: GuestDisk[]): Snapshot[] {
  return disks.map((disk) => {
    try {
      fs.accessSync(disk.path, fs.constants.R_OK);
    } catch (err) {
      throw new HypervisorError(`disk ${disk.device} (${disk.path}) cannot be read: ${describeSystemError(err)}`);
    }
    return { disk, readPath: disk.path, ownedName: `${kind}:${disk.path}` };
  });
}

/** A provider that creates nothing: the backup reads each disk where it is. What makes that safe is the subclass's to say. */
export abstract class DisksInPlaceProvider implements SnapshotProvider {
  abstract readonly kind: string;

  /** Any disk that exists can be read in place. */
  async canHandle(disk: GuestDisk): Promise<boolean> {
    return fs.existsSync(disk.path);
  }

  async create(disks: GuestDisk[]): Promise<Snapshot[]> {
    return disksThemselves(this.kind, disks);
  }

  async remove(): Promise<void> {
    // Nothing was created.
  }

  async removeLeftovers(): Promise<string[]> {
    return [];
  }
}

/** Shut-off guests: nothing writes to their disks. */
export class NoSnapshotProvider extends DisksInPlaceProvider {
  readonly kind = 'none';
}
