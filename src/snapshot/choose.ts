// Picks the snapshot provider for each disk of a guest: the first in order
// (lvm, btrfs, reflink) that can handle the disk; `none` (read the disk in
// place) only when the guest is shut off. A per-guest `snapshot = "<kind>"`
// setting overrides the order. Shut-off guests still prefer a real snapshot
// when one is possible: btrfs then tracks changes, and a guest started during
// the backup cannot tear the image. `pause` and `shutdown` (read the disks in
// place with the guest held) are never chosen automatically: when nothing
// else can copy a running guest's disk, the error names them and their cost.
import { HypervisorError, UsageError } from '../errors';
import type { CommandRunner } from '../hypervisor/commandRunner';
import type { GuestDisk, GuestInfo } from '../hypervisor/driver';
import { BtrfsSnapshotProvider } from './btrfs';
import { LvmSnapshotProvider } from './lvm';
import { NoSnapshotProvider } from './none';
import type { SnapshotProvider } from './provider';
import { ReflinkSnapshotProvider } from './reflink';
import { InPlaceReadProvider } from './inPlace';
import * as fs from 'node:fs';

/** Every provider kind a config file may name; qemu-live and libvirt-backup come with their drivers. */
export const SNAPSHOT_KINDS = ['lvm', 'btrfs', 'reflink', 'qemu-live', 'libvirt-backup', 'none', 'pause', 'shutdown'] as const;
export type SnapshotKind = (typeof SNAPSHOT_KINDS)[number];

/** The disks of one guest that one provider snapshots together. */
export interface SnapshotPlanEntry {
  provider: SnapshotProvider;
  disks: GuestDisk[];
}

/** No provider can take a point-in-time copy of a running guest's disk. */
export class NoSnapshotProviderError extends HypervisorError {
  constructor(readonly guest: string, readonly disk: GuestDisk, message: string) {
    super(message);
  }
}

/** lvm, btrfs, reflink, none: the automatic order; then pause and shutdown, only ever chosen by name. */
export function defaultSnapshotProviders(runner: CommandRunner): SnapshotProvider[] {
  return [
    new LvmSnapshotProvider({ runner }),
    new BtrfsSnapshotProvider({ runner }),
    new ReflinkSnapshotProvider(),
    new NoSnapshotProvider(),
    new InPlaceReadProvider('paused'),
    new InPlaceReadProvider('shut down'),
  ];
}

/** What the two in-place modes would cost this guest, for the error that names them. */
function inPlaceAdvice(guest: GuestInfo): string {
  const bytes = guest.disks.filter((d) => !d.cdrom).reduce((sum, d) => sum + sizeOf(d.path), 0);
  const size = bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.ceil(bytes / 2 ** 20)} MiB`;
  const read = bytes > 0 ? ` (${size} to read)` : '';
  return `or set [guest."${guest.name}"] snapshot = "pause" in ferry.conf (the guest stays paused while all its disks are read${read}: ` +
    'no service meanwhile, crash-consistent) or snapshot = "shutdown" (clean shutdown, read, start again with its config: ' +
    'down for a shutdown, the read and a boot, consistent)';
}

function sizeOf(path: string): number {
  try {
    return fs.statSync(path).size;
  } catch {
    return 0; // the advice only loses its size figure
  }
}

/**
 * One entry per provider used, in the order of the guest's first disk each
 * provider takes; disks keep their order within an entry.
 */
export async function chooseSnapshotProviders(
  guest: GuestInfo,
  providers: readonly SnapshotProvider[],
  override?: string,
): Promise<SnapshotPlanEntry[]> {
  const live = guest.state !== 'shutoff'; // a paused guest may be resumed by someone else mid-read
  const plan: SnapshotPlanEntry[] = [];
  const add = (provider: SnapshotProvider, disk: GuestDisk) => {
    const entry = plan.find((e) => e.provider === provider);
    if (entry) entry.disks.push(disk);
    else plan.push({ provider, disks: [disk] });
  };

  if (override !== undefined) {
    const provider = providers.find((p) => p.kind === override);
    if (!provider) {
      throw new UsageError(
        `snapshot = "${override}" for guest ${guest.name}: no such snapshot provider here; available: ${providers.map((p) => p.kind).join(', ')}`,
      );
    }
    if (provider.kind === 'none' && live) {
      throw new UsageError(
        `snapshot = "none" for guest ${guest.name}, but the guest is ${guest.state}: its disks would be read while it writes to them; ` +
          'choose a snapshot provider (lvm, btrfs, reflink), or snapshot = "pause" or "shutdown" to read it with the guest held',
      );
    }
    for (const disk of guest.disks) {
      const why = await refusal(provider, disk);
      if (why !== undefined) {
        throw new NoSnapshotProviderError(guest.name, disk,
          `guest ${guest.name}: snapshot = "${override}" cannot snapshot disk ${disk.device} (${disk.path})${why ? `: ${why}` : ''}; ` +
            'remove the snapshot setting to choose automatically, or move the disk to storage that provider supports');
      }
      add(provider, disk);
    }
    return plan;
  }

  for (const disk of guest.disks) {
    const tried: string[] = [];
    let chosen: SnapshotProvider | undefined;
    for (const provider of providers) {
      if (provider.kind === 'none' && live) continue;
      if (provider.readsInPlace) continue; // costs the guest its service: only by name
      const why = await refusal(provider, disk);
      if (why === undefined) {
        chosen = provider;
        break;
      }
      tried.push(why ? `${provider.kind} (${why})` : provider.kind);
    }
    if (!chosen) {
      throw new NoSnapshotProviderError(guest.name, disk,
        `guest ${guest.name} is ${guest.state} and no snapshot provider can take a point-in-time copy of disk ${disk.device} (${disk.path}); ` +
          `tried ${tried.join(', ') || 'nothing'}; put the disk on LVM, btrfs or xfs with reflink=1, shut the guest down before the backup, ${inPlaceAdvice(guest)}`);
    }
    add(chosen, disk);
  }
  return plan;
}

/** undefined if the provider takes the disk; otherwise why not ('' when it simply does not apply). */
async function refusal(provider: SnapshotProvider, disk: GuestDisk): Promise<string | undefined> {
  try {
    return (await provider.canHandle(disk)) ? undefined : '';
  } catch (err) {
    // A missing tool (no lvs on this host) means "not this provider", not "stop the backup".
    return (err as Error).message;
  }
}
