// The live snapshot provider of a hypervisor driver: the hypervisor copies
// its running guests' disks itself (see LiveCopyAccess). The driver says how
// to reach that copy; the provider that drives it lives here.
import type { HoldGuard, HypervisorDriver } from '../hypervisor/driver';
import { LibvirtBackupProvider } from './libvirtBackup';
import type { SnapshotProvider } from './provider';
import { QemuLiveProvider } from './qemuLive';

export interface LiveProviderOptions {
  /** Directory for the copies (see QemuLiveOptions.workDir, LibvirtBackupOptions.workDir). */
  workDir: string;
  /** Arms the watchdog before QEMU stops a guest for a moment (fleecing several disks at one point in time). */
  holdGuard?: () => HoldGuard & { standDown(): void; releaseNow(): void };
}

/** The provider that makes the driver's hypervisor copy a running guest, or undefined when it cannot. */
export function liveSnapshotProvider(driver: HypervisorDriver, options: LiveProviderOptions): SnapshotProvider | undefined {
  const access = driver.liveCopy();
  if (!access) return undefined;
  switch (access.via) {
    case 'qmp':
      return new QemuLiveProvider({ sockets: access.sockets, workDir: options.workDir, ...(options.holdGuard ? { holdGuard: options.holdGuard } : {}) });
    case 'libvirt':
      return new LibvirtBackupProvider({ runner: access.runner, uri: access.uri, virsh: access.virsh, workDir: options.workDir });
  }
}
