// The snapshot seam: a point-in-time, readable copy of every disk of one
// guest, taken while the guest is quiesced and kept only until the backup
// has read it. Providers: LVM (here), btrfs, reflink, QEMU live backup.
import { processAlive } from '../host/processAlive';
import { processStartTime } from '../host/processStart';
import { UsageError } from '../errors';
import type { GuestDisk } from '../hypervisor/driver';

/** Bytes [start, end) of a disk. The same shape as dedupe's Span, which reads these ranges. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface Snapshot {
  /** The disk this is a copy of. */
  disk: GuestDisk;
  /** Path the backup reads instead of `disk.path` (a block device or file). */
  readPath: string;
  /**
   * The provider's name for the snapshot (e.g. `vg0/ferry-<runId>-web01-disk`),
   * always one that marks it as created by ferry, so leftovers can be found.
   */
  ownedName: string;
  /**
   * Changed-block tracking, when the provider has it: what to remember in the
   * restore point so the next run can ask "what changed since then?".
   */
  tracking?: ChangeTracking;
  /**
   * Byte ranges of the disk that may differ from the state `since` named
   * (a superset is fine, a subset never is), ascending. Undefined means
   * "unknown: read everything" (first run, or tracking lost).
   * When set, only these ranges of `readPath` are read; the rest comes from
   * the previous restore point.
   */
  changed?: ByteRange[];
  /**
   * `readPath` holds every byte of the disk, outside `changed` too (a btrfs
   * snapshot; a QEMU incremental copy holds only what changed). The backup
   * then reads the unchanged bytes around a change from it rather than from
   * the previous restore point.
   */
  wholeDisk?: boolean;
  /** Why a full read happens although tracking was asked for (bitmap missing, guest restarted, …). */
  fullReadReason?: string;
}

/** What a run id may hold: it becomes part of snapshot, checkpoint and file names. */
export const RUN_ID = /^[A-Za-z0-9_.+-]+$/;

/** Refuses a run id RUN_ID does not allow, before anything is made; `partOf` says where it goes, e.g. `an LVM name`. */
export function checkRunId(runId: string, partOf: string): void {
  if (!RUN_ID.test(runId)) {
    throw new UsageError(`run id ${JSON.stringify(runId)} cannot be part of ${partOf}: use letters, digits and _ . + -`);
  }
}

/** The run id of a run this process starts at `now`: its time and the process id, in hex. */
export function newRunId(now = new Date(), pid = process.pid): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${pid.toString(16)}`;
}

/** What newRunId put in a run id: when the run started (to the second) and its process; undefined for other ids. */
export function parseRunId(runId: string): { started: Date; pid: number } | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})-([0-9a-f]{1,8})$/.exec(runId);
  return m ? { started: new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`), pid: parseInt(m[7], 16) } : undefined;
}

/**
 * Whether the ferry-owned name `<prefix><runId>-…` (a snapshot, volume, work
 * file) belongs to a run that still runs on this host. A leftover sweep must
 * pass these over: a run needs no host lock to make them (a single-guest
 * backup, or `backup --all` with another run directory), and losing them
 * mid-read fails its backup.
 */
export function ownedByLiveRun(name: string, prefix: string): boolean {
  if (!name.startsWith(prefix)) return false;
  // The run id is the 2 dash-separated fields after the prefix (what follows is the provider's).
  const run = parseRunId(name.slice(prefix.length).split('-', 2).join('-'));
  if (!run || !processAlive(run.pid)) return false;
  // A process that started after the run did is another one with a reused pid (after a reboot, most
  // likely): the run's leftovers are leftovers. (An LVM snapshot kept for ever costs its origin.)
  const started = processStartTime(run.pid);
  return started === undefined || started.getTime() <= run.started.getTime() + 2000;
}

/** Opaque provider state kept per disk in the restore point (e.g. a bitmap or snapshot name). */
export interface ChangeTracking {
  kind: string;
  token: string;
}

/** How a guest is kept from writing while its disks are read in place. */
export type InPlaceHold = 'paused' | 'shut down';

export interface SnapshotProvider {
  /** Short name used in logs and config, e.g. `lvm`. */
  readonly kind: string;
  /**
   * True for hypervisor backup jobs (QEMU blockdev-backup, libvirt
   * backup-begin) that fix the point in time themselves while the guest runs:
   * the backup then does not pause the guest around create().
   */
  readonly pointInTimeByItself?: boolean;
  /**
   * Set for `pause` and `shutdown`: no copy is made, the disks are read in
   * place while the guest stays paused, or shut down, for the whole read.
   * The backup holds the guest that way around create() and the read.
   */
  readonly readsInPlace?: InPlaceHold;
  /** Whether this provider can snapshot the disk (e.g. its path is an LVM volume). */
  canHandle(disk: GuestDisk): Promise<boolean>;
  /**
   * Snapshots all disks of one guest together, while the guest is quiesced.
   * All or nothing: if one fails, those already made are removed before the error is thrown.
   * `since[i]` is disk i's tracking state from the previous restore point, if any.
   */
  create(disks: GuestDisk[], runId: string, since?: (ChangeTracking | undefined)[]): Promise<Snapshot[]>;
  /**
   * Optional, for providers whose comparison with the last run takes longer
   * than the snapshot itself (btrfs send walks the changed metadata): fills
   * `changed` / `fullReadReason` of snapshots create() made. An orchestrator
   * that keeps pauses short calls create() without `since`, releases the
   * guest, then calls this. Passing `since` to create() instead does both
   * while the guest is held, as for providers without this method.
   */
  findChanges?(snapshots: Snapshot[], since: (ChangeTracking | undefined)[]): Promise<void>;
  /**
   * Optional, for providers whose tracking token is a snapshot kept between
   * runs (btrfs): call after the restore point that records these snapshots'
   * `tracking` tokens is saved, and before remove(). It makes them the
   * baseline the next run compares against (remove() then keeps them) and
   * deletes the baseline they replace. Not calling it (the backup failed)
   * leaves the previous baseline in place, and remove() deletes the new ones.
   */
  commit?(snapshots: Snapshot[]): Promise<void>;
  /** Removes one snapshot. Removing one that is already gone is not an error. */
  remove(snapshot: Snapshot): Promise<void>;
  /** Removes snapshots an earlier, interrupted run left behind (only ferry's own); returns their names. */
  removeLeftovers(): Promise<string[]>;
}
