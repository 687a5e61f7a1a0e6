// Turns `backup --all` flags and /etc/ferry/ferry.conf into the list of
// guests to back up: which drivers, which guests (include/exclude, --guest),
// and for every disk the snapshot provider that copies it.
import { WatchdogGuard } from '../hypervisor/watchdog';
import { WORK_DIRECTORY, preparePrivateWorkDirectory } from '../snapshot/workDirectory';
import { withFlagName } from './flagNames';
import { CommandRunner, ExecFileCommandRunner } from '../hypervisor/commandRunner';
import { GuestDisk, GuestInfo, HypervisorDriver } from '../hypervisor/driver';
import { XenDriver } from '../hypervisor/xen/xenDriver';
import { LibvirtDriver } from '../hypervisor/libvirt/libvirtDriver';
import { QemuDriver } from '../hypervisor/qemu/qemuDriver';
import { StaticDriver } from '../hypervisor/static/staticDriver';
import { SnapshotProvider } from '../snapshot/provider';
import { chooseSnapshotProviders, defaultSnapshotProviders } from '../snapshot/choose';
import { liveSnapshotProvider } from '../snapshot/live';
import { FerryConfig, isGuestSelected, settingsForGuest, staticDriverGuests } from '../config/ferryConfig';
import { matchesGlob } from '../config/glob';
import { FleetGuest } from '../backup/fleetBackup';
import { UsageError } from '../errors';

export interface FleetFlags {
  qmpSocket: string[];
  libvirt?: string | boolean;
  xen?: boolean;
  guest: string[];
  exclude: string[];
  workDir: string;
}

export interface FleetSetup {
  guests: FleetGuest[];
  /** Every provider in use, for the leftover sweep before the run. */
  providers: SnapshotProvider[];
  /** Every guest the drivers listed, selected or not (nightly's coverage). */
  known: { name: string; driver: string; selected: boolean }[];
}

/** Drivers named by flags; without any, those of the config file. */
function drivers(flags: FleetFlags, config: FerryConfig | undefined, runner: CommandRunner): HypervisorDriver[] {
  const out: HypervisorDriver[] = [];
  const libvirtUri = typeof flags.libvirt === 'string' ? flags.libvirt : undefined;
  if (flags.qmpSocket.length > 0) out.push(new QemuDriver({ sockets: flags.qmpSocket, runner }));
  if (flags.libvirt) out.push(new LibvirtDriver({ runner, uri: libvirtUri }));
  if (flags.xen) out.push(new XenDriver({ runner }));
  if (out.length > 0 || !config) return out;
  if (config.qemu) out.push(new QemuDriver({ sockets: config.qemu.qmpSockets, runner }));
  if (config.libvirt) out.push(new LibvirtDriver({ runner, uri: config.libvirt.uri }));
  if (config.xen) out.push(new XenDriver({ runner, configDir: config.xen.configDir }));
  if (config.staticGuests.length > 0) out.push(new StaticDriver({ guests: staticDriverGuests(config), runner }));
  return out;
}

export async function fleetGuests(flags: FleetFlags, config: FerryConfig | undefined): Promise<FleetSetup> {
  const runner = new ExecFileCommandRunner();
  const list = drivers(flags, config, runner);
  if (list.length === 0) {
    throw new UsageError('backup --all: no hypervisor to ask; pass --qmp-socket PATH, --libvirt [URI] or --xen, or configure drivers in /etc/ferry/ferry.conf (--config)');
  }
  try {
    preparePrivateWorkDirectory(flags.workDir);
  } catch (err) {
    throw withFlagName(err, { [WORK_DIRECTORY]: '--work-dir' });
  }
  // Copies of guest disks made by ferry's children (qemu-img, cp --reflink) are this user's alone, too.
  process.umask(0o077);
  const generic = defaultSnapshotProviders(runner);
  const providers = new Set<SnapshotProvider>(generic);
  const guests: FleetGuest[] = [];
  const known: FleetSetup['known'] = [];
  for (const driver of list) {
    // Live copies by the hypervisor itself, for the guests that hypervisor runs.
    const live = liveSnapshotProvider(driver, { workDir: flags.workDir, holdGuard: () => new WatchdogGuard() });
    if (live) providers.add(live);
    for (const guest of await driver.listGuests()) {
      known.push({ name: guest.name, driver: driver.kind, selected: selected(guest, flags, config) });
      if (!known[known.length - 1].selected) continue;
      const settings = config ? settingsForGuest(config, guest.name) : undefined;
      guests.push({
        driver,
        guest,
        hooks: settings?.hooks,
        ...(settings?.quiesce ? { quiesce: settings.quiesce } : {}),
        providerFor: providerChooser(guest, live, generic, settings?.snapshot),
        ...(settings ? { boot: { group: settings.bootGroup, priority: settings.bootPriority } } : {}),
      });
    }
  }
  if (guests.length === 0) throw new UsageError('backup --all: no guest matched; check --guest/--exclude patterns and include/exclude in the config');
  return { guests, providers: [...providers], known };
}

function selected(guest: GuestInfo, flags: FleetFlags, config: FerryConfig | undefined): boolean {
  if (flags.guest.length > 0 && !flags.guest.some((p) => matchesGlob(guest.name, p))) return false;
  if (flags.exclude.some((p) => matchesGlob(guest.name, p))) return false;
  return config ? isGuestSelected(config, guest.name) : true;
}

/** Per disk: the hypervisor's live copy when it has one for a running guest, else the generic choice. */
function providerChooser(
  guest: GuestInfo,
  live: SnapshotProvider | undefined,
  generic: SnapshotProvider[],
  override: string | undefined,
): (disk: GuestDisk) => Promise<SnapshotProvider> {
  let plan: Promise<Map<GuestDisk, SnapshotProvider>> | undefined;
  return async (disk) => {
    if (live && guest.state !== 'shutoff' && (override === undefined || override === live.kind) && (await live.canHandle(disk))) return live;
    plan ??= chooseSnapshotProviders(guest, generic, override).then((entries) => {
      const m = new Map<GuestDisk, SnapshotProvider>();
      for (const e of entries) for (const d of e.disks) m.set(d, e.provider);
      return m;
    });
    const provider = (await plan).get(disk);
    if (!provider) throw new UsageError(`guest ${guest.name}: no snapshot provider for disk ${disk.device}`);
    return provider;
  };
}
