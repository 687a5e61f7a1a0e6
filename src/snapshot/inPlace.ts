// `snapshot = "pause"` and `snapshot = "shutdown"`: for a running guest whose
// disks no provider can copy at a point in time (a plain file on ext4), the
// backup reads the disks themselves while the guest cannot write to them:
// paused for the whole read, or shut down cleanly and started again after
// it. Holding and restarting the guest is the backup's job (fleetBackup.ts);
// these providers only hand over the disks' own paths. Never chosen
// automatically: each costs the guest its service for the length of the read.
import type { InPlaceHold } from './provider';
import { DisksInPlaceProvider } from './none';

export class InPlaceReadProvider extends DisksInPlaceProvider {
  readonly kind: 'pause' | 'shutdown';
  readonly readsInPlace: InPlaceHold;

  constructor(hold: InPlaceHold) {
    super();
    this.readsInPlace = hold;
    this.kind = hold === 'paused' ? 'pause' : 'shutdown';
  }
}
