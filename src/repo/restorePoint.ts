// A restore point: one guest at one moment, its disks as lists of region maps,
// its hypervisor config, and what the backup cost. Stored sealed as JSON under
// snapshots/<content name>. See docs/FORMAT.md, "Restore points".

export interface DiskRecord {
  /** File name the disk is restored as, e.g. `web01-disk0.img`. */
  name: string;
  /** Where it was read from at backup time. */
  sourcePath: string;
  size: number;
  regionSize: number;
  /** Region map blob id (hex) per region; null for an all-zero region. */
  regions: (string | null)[];
  /** Bytes in chunks (non-zero data), the rest is holes or zero runs. */
  dataBytes: number;
  /** Changed-block tracking state of the snapshot provider, for the next backup. */
  tracking?: { kind: string; token: string };
  /** Bytes read from the source for this disk (less than its data when tracking worked). */
  readBytes?: number;
  /** Why this disk was read in full although tracking was asked for. */
  fullReadReason?: string;
}

export interface AttachedConfig {
  fileName: string;
  /** base64 of the file's bytes. */
  content: string;
}

export interface BackupStats {
  logicalBytes: number;
  /** Bytes read from the image (holes are not read). */
  readBytes: number;
  newBlobs: number;
  /** Bytes newly written to packs for this restore point (after compression and encryption). */
  newBytes: number;
  durationMs: number;
}

export interface RestorePoint {
  version: 1;
  guest: string;
  hostname: string;
  time: string;
  tags: string[];
  disks: DiskRecord[];
  config?: AttachedConfig;
  stats: BackupStats;
}

/** A restore point with the name it is stored under. */
export interface StoredRestorePoint extends RestorePoint {
  id: string;
}
