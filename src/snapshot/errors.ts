// Errors specific to taking snapshots.
import { HypervisorError } from '../errors';

/**
 * A volume group has too little free space for the snapshots a guest needs.
 * Nothing was created. Carries the numbers so a caller can fall back (e.g.
 * back up with the guest paused throughout) or tell the admin what to free.
 */
export class InsufficientSnapshotSpaceError extends HypervisorError {
  constructor(
    readonly volumeGroup: string,
    readonly neededBytes: number,
    readonly freeBytes: number,
    detail: string,
  ) {
    super(
      `volume group ${volumeGroup} has ${freeBytes} bytes free but the snapshots of ${detail} need ${neededBytes} bytes: ` +
        `free space in ${volumeGroup} or lower the snapshot size`,
    );
  }
}
