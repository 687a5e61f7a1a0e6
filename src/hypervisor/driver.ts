// The hypervisor seam: what ferry needs to know about a guest (its disks,
// its config) and how to hold it still while its disks are snapshotted.
// Drivers (Xen xl, libvirt, QEMU) implement HypervisorDriver; the backup
// engine only talks to this interface.
import type { CommandRunner } from './commandRunner';

/** One block device of a guest as the host sees it. */
export interface GuestDisk {
  /** Virtual device name inside the guest, e.g. `xvda`, `hdc`. */
  device: string;
  /** Host path backing the disk, e.g. `/dev/vg0/web01-disk` or `/var/lib/xen/web01.img`. */
  path: string;
  /** Image format as the hypervisor names it: `raw`, `qcow2`, `vhd`, ... */
  format: 'raw' | 'qcow2' | string;
  readOnly: boolean;
  /** True for CD-ROM drives: removable media, usually not worth backing up. */
  cdrom?: boolean;
}

export interface GuestNic {
  mac?: string;
  /** The host bridge the NIC is plugged into. */
  bridge?: string;
  /** A libvirt virtual network, where the NIC is on one instead of a bridge. */
  network?: string;
  /** The emulated device, as the hypervisor names it: `virtio`, `e1000`, `rtl8139`, … */
  model?: string;
}

export type GuestState = 'running' | 'paused' | 'shutoff';

export interface GuestInfo {
  name: string;
  /** Hypervisor's id for a running guest (Xen domid); absent when shut off. */
  id?: string | number;
  state: GuestState;
  vcpus?: number;
  memoryMiB?: number;
  maxMemoryMiB?: number;
  nics: GuestNic[];
  disks: GuestDisk[];
  /** The guest's config file exactly as found, so a restore can recreate it. */
  config?: { fileName: string; text: string };
}

/**
 * Commands run on the host around the pause of one guest, as argv arrays
 * (no shell). `{name}` in any argument is replaced by the guest's name.
 * Typical use: flush a database inside the guest over ssh before the pause.
 */
export interface GuestHooks {
  /** Runs before the guest is paused; a failure aborts the quiesce. */
  pre?: readonly string[];
  /** Runs after the guest is resumed; a failure is reported after the resume. */
  post?: readonly string[];
}

/** A guest held still. Release it as soon as its snapshots exist. */
export interface QuiesceHandle {
  readonly guest: string;
  /** False when nothing had to be done (guest shut off, or already paused by someone else). */
  readonly quiesced: boolean;
  /**
   * argv that undoes the quiesce (e.g. `['xl', 'unpause', 'web01']`), for an
   * out-of-process watchdog that must resume the guest if ferry is killed.
   */
  readonly releaseArgv?: readonly string[];
  /**
   * Resumes the guest. Idempotent: after one successful call, further calls do
   * nothing; after a failed call, the next call tries again.
   */
  release(): Promise<void>;
}

/** How to undo a hold from outside ferry: what the watchdog runs when ferry dies holding a guest. */
export interface ReleaseCommand {
  readonly argv: readonly string[];
  /**
   * A failing release whose stderr matches this has reached its goal anyway
   * (e.g. libvirt's "domain is already running"): the watchdog may run before
   * the hold took effect, so releasing a guest that is not held must count as done.
   */
  readonly alreadyReleased?: RegExp;
  /**
   * Run (repeatedly) before the release until its output (stdout and stderr)
   * matches: a guest shut down for its backup must be off before it can be
   * started again, and its shutdown may outlast ferry or ferry's patience.
   */
  readonly waitUntil?: { readonly argv: readonly string[]; readonly output: RegExp };
}

/**
 * Told by a driver right before it pauses or freezes a guest. The watchdog
 * must exist before the guest stops: a ferry killed between the pause and the
 * arming would otherwise leave the guest paused for good.
 */
export interface HoldGuard {
  /** About to hold the guest; `release` undoes it. A later call replaces an earlier one (a failed freeze falling back to a pause). */
  holding(release: ReleaseCommand): void;
}

/**
 * How a hypervisor copies a running guest's disks itself, at one point in
 * time (QEMU blockdev-backup over QMP, libvirt backup-begin): what snapshot/
 * needs to build the live snapshot provider for this driver's guests.
 */
export type LiveCopyAccess =
  | { readonly via: 'qmp'; readonly sockets: readonly string[] }
  | { readonly via: 'libvirt'; readonly runner: CommandRunner; readonly uri: string; readonly virsh: string };

/** How to hold a guest still (ferry.conf `quiesce =`); undefined lets the driver choose. */
export type QuiesceMethod = 'pause' | 'fsfreeze' | 'none';

export interface QuiesceOptions {
  /**
   * `pause`: stop the vCPUs (xl pause, virsh suspend, QMP stop), never a freeze.
   * `fsfreeze`: freeze the guest's file systems through its agent; fails when no agent answers.
   * `none`: hold nothing (hooks still run). Undefined: the driver's default.
   */
  how?: QuiesceMethod;
}

/** A guest shut down cleanly for a backup that reads its disks in place. */
export interface ShutdownHandle {
  readonly guest: string;
  /** argv that starts it again with its config (e.g. `['xl', 'create', '/etc/xen/web01.cfg']`), also run by the watchdog. */
  readonly startArgv: readonly string[];
  /** Starts the guest again. Idempotent after a success; after a failure the next call tries again. */
  start(): Promise<void>;
}

export interface HypervisorDriver {
  /** Short name used in logs and config, e.g. `xen`. */
  readonly kind: string;
  /** Running, paused and defined-but-shut-off guests, with their disks. */
  listGuests(): Promise<GuestInfo[]>;
  /**
   * Hold the guest still (pause, fsfreeze, ...) until the handle is released.
   * `guard.holding` is called before every command that may hold the guest.
   */
  quiesce(guest: GuestInfo, hooks?: GuestHooks, guard?: HoldGuard, options?: QuiesceOptions): Promise<QuiesceHandle>;
  /**
   * Shuts a running guest down cleanly and waits until it is off; the handle
   * starts it again with its config. `guard.holding` gets the start command
   * before the shutdown begins. Absent when the driver cannot start a guest again.
   */
  shutDown?(guest: GuestInfo, guard?: HoldGuard): Promise<ShutdownHandle>;
  /** How this hypervisor copies its running guests' disks itself, or undefined when it cannot. */
  liveCopy(): LiveCopyAccess | undefined;
}
