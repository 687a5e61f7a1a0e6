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
  /**
   * Keyed fingerprint (hex) of each region's bytes, beside `regions`; null where
   * none was taken. Absent in restore points written before December 2026.
   */
  fingerprints?: (string | null)[];
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
  /** How long the guest was paused or frozen for this restore point (fleet backups; absent in older points and image mode). */
  pauseMs?: number;
  /** How long the guest was shut down for it (snapshot = "shutdown"). */
  downMs?: number;
  /** Regions whose fingerprint matched the previous restore point's, so its map was reused (absent in older points). */
  reusedRegions?: number;
}

/** A disk as the guest saw it, for rebuilding the guest elsewhere. */
export interface GuestSpecDisk {
  /** The disk's name in this restore point (`DiskRecord.name`). */
  name: string;
  /** Device name inside the guest (`xvda`, `vda`, `hda`), where known. */
  device?: string;
  /** Its path on the source host: the origin, never a snapshot's path. */
  origin: string;
  /** Image format as the hypervisor named it: `raw`, `qcow2`, … */
  format: string;
  /** What held it: an LVM logical volume, another block device, or a file. */
  storage: 'lv' | 'block' | 'file';
  readOnly: boolean;
}

/**
 * What a rebuild on a fresh host needs besides the disks' bytes: the machine
 * as the hypervisor described it at backup time, and its boot order from
 * ferry.conf. Absent in restore points made before it existed.
 */
export interface GuestSpec {
  /** The driver that backed the guest up; absent for an image-mode backup whose config ferry could not read. */
  hypervisor?: 'xen' | 'libvirt' | 'qemu' | 'static';
  vcpus?: number;
  memoryMiB?: number;
  maxMemoryMiB?: number;
  nics: { mac?: string; bridge?: string; network?: string; model?: string }[];
  disks: GuestSpecDisk[];
  bootGroup: number;
  bootPriority: number;
}

export interface RestorePoint {
  version: 1;
  guest: string;
  hostname: string;
  time: string;
  tags: string[];
  disks: DiskRecord[];
  config?: AttachedConfig;
  /** The machine, for a rebuild (see GuestSpec); absent in older restore points. */
  spec?: GuestSpec;
  stats: BackupStats;
}

/** A restore point with the name it is stored under. */
export interface StoredRestorePoint extends RestorePoint {
  id: string;
}

/**
 * A disk as a listing gives it: everything but its per-region arrays. Those
 * grow with the disk (a 1 TiB disk has 32768 regions, ~5.5 MiB of strings
 * in memory per restore point), and a command that lists every point of a
 * long-kept fleet holding them all at once would outgrow its memory budget.
 * A full restore point is also a summary.
 */
export type DiskSummary = Omit<DiskRecord, 'regions' | 'fingerprints'>;

/** A restore point as a listing gives it: its disks without their region maps (load it by id for those). */
export type RestorePointSummary = Omit<StoredRestorePoint, 'disks'> & { disks: DiskSummary[] };

/** The summary of a full restore point: the same object minus what a listing does not keep. */
export function summarizeRestorePoint(rp: StoredRestorePoint): RestorePointSummary {
  return {
    ...rp,
    disks: rp.disks.map(({ regions: _regions, fingerprints: _fingerprints, ...rest }) => rest),
  };
}
