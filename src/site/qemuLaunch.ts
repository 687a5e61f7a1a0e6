// A QEMU launch definition for a guest restored onto a `qemu` host (issue 7
// §3): the qemu-system-x86_64 command line from the guest spec — memory,
// vCPUs, each restored disk on its original bus where QEMU has it, NICs on
// the mapped bridges with their MACs — plus a QMP socket (to stop it, and
// for ferry's own QEMU driver) and the serial console logged to a file (site
// restore health checks read it). Written two ways: a POSIX sh script that
// daemonizes, and a systemd unit that keeps QEMU in the foreground.
import { InputError } from '../errors';
import type { GuestSpec } from '../repo/restorePoint';
import { type GuestRewriteOptions, diskTarget, macFor, mapBridge, mapNetwork } from './guestRewrite';

const QEMU_OUI = '52:54:00';
const XL_DEFAULT_BRIDGE = 'xenbr0';
/** QEMU's own names of the NIC models hypervisors record; others are passed as QEMU device names. */
const NIC_DEVICES: Record<string, string> = { virtio: 'virtio-net-pci', 'virtio-net': 'virtio-net-pci', e1000: 'e1000', rtl8139: 'rtl8139', ne2k_pci: 'ne2k_pci', e1000e: 'e1000e' };

export interface QemuLaunchOptions extends GuestRewriteOptions {
  /** Directory on the host for the QMP socket, serial log and pid file. */
  runDir: string;
  /** `kvm` only where /dev/kvm works on that host (the caller checks); `tcg` emulates. */
  accel: 'kvm' | 'tcg';
  /** Absolute path of the emulator on that host; default /usr/bin/qemu-system-x86_64. */
  qemuBinary?: string;
}

export interface QemuLaunch {
  /** The command line, QEMU in the foreground (as the unit runs it). */
  argv: string[];
  /** POSIX sh: creates the run directory and starts QEMU daemonized, its pid in `pidFile`. */
  script: string;
  /** A systemd service running `argv`. */
  unit: string;
  qmpSocket: string;
  serialLog: string;
  pidFile: string;
  notes: string[];
}

export function qemuLaunch(name: string, spec: GuestSpec, options: QemuLaunchOptions): QemuLaunch {
  const guest = options.name ?? name;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(guest)) throw new InputError(`guest name '${guest}': a QEMU launcher needs letters, digits, _ . - only; rename the guest`);
  if (!options.runDir.startsWith('/') || /[\s,]/.test(options.runDir)) {
    throw new InputError(`run directory ${JSON.stringify(options.runDir)} of guest ${guest}: must be absolute, without commas or white space (QEMU option syntax cannot carry them)`);
  }
  const notes: string[] = [];
  if (spec.memoryMiB === undefined) notes.push(`${guest}: the restore point records no memory size: 512 MiB assumed`);
  if (spec.vcpus === undefined) notes.push(`${guest}: the restore point records no vCPU count: 1 assumed`);
  const qmpSocket = `${options.runDir}/${guest}.qmp`;
  const serialLog = `${options.runDir}/${guest}.serial`;
  const pidFile = `${options.runDir}/${guest}.pid`;
  const binary = options.qemuBinary ?? '/usr/bin/qemu-system-x86_64';

  // Option and value together: one line each in the script and the unit.
  const groups: string[][] = [
    [binary],
    ['-name', guest],
    ['-accel', options.accel],
    ...(options.accel === 'kvm' ? [['-cpu', 'host']] : []),
    ['-m', String(spec.memoryMiB ?? 512)],
    ['-smp', String(spec.vcpus ?? 1)],
    ...diskArgs(guest, spec, options, notes),
    ...nicArgs(guest, spec, options),
    ['-qmp', `unix:${qmpSocket},server=on,wait=off`],
    ['-serial', `file:${serialLog}`],
    ['-display', 'none'],
    ['-monitor', 'none'],
  ];
  const argv = groups.flat();
  const daemon = [...groups, ['-daemonize'], ['-pidfile', pidFile]];
  const script = [
    '#!/bin/sh',
    `# ${guest}: made by ferry site restore. Starts QEMU in the background (pid in ${pidFile});`,
    `# stop it through QMP (${qmpSocket}), e.g. {"execute":"system_powerdown"} or {"execute":"quit"}.`,
    'set -eu',
    `mkdir -p ${shellQuote(options.runDir)}`,
    `exec ${daemon.map((g) => g.map(shellQuote).join(' ')).join(' \\\n  ')}`,
    '',
  ].join('\n');
  const unit = [
    '[Unit]',
    `Description=QEMU guest ${guest} (restored by ferry)`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStartPre=/bin/mkdir -p ${unitQuote(options.runDir)}`,
    `ExecStart=${groups.map((g) => g.map(unitQuote).join(' ')).join(' \\\n  ')}`,
    // QEMU ends at once on SIGTERM; a guest that shuts down cleanly gets the time it needs first.
    'KillSignal=SIGTERM',
    'TimeoutStopSec=120',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
  return { argv, script, unit, qmpSocket, serialLog, pidFile, notes };
}

/** `-drive` per restored disk, on the guest's bus where QEMU has it: vd* virtio, hd* IDE at its index; others virtio. */
function diskArgs(guest: string, spec: GuestSpec, options: QemuLaunchOptions, notes: string[]): string[][] {
  return spec.disks.flatMap((d) => {
    const target = diskTarget(options, d, `guest ${guest}`);
    const ide = d.device !== undefined ? /^hd([a-d])$/.exec(d.device) : null;
    if (d.device !== undefined && !ide && !/^vd[a-z]+$/.test(d.device)) notes.push(`${guest}: disk ${d.name} was ${d.device}; under QEMU it is a virtio disk (vd*)`);
    const bus = ide ? `if=ide,index=${ide[1]!.charCodeAt(0) - 97}` : 'if=virtio';
    return [['-drive', `file=${target.path},format=${target.format},${bus}${d.readOnly ? ',readonly=on' : ''}`]];
  });
}

/** `-netdev` + `-device` per NIC: a bridge (qemu-bridge-helper) when it had one, user networking when it had none. */
function nicArgs(guest: string, spec: GuestSpec, options: QemuLaunchOptions): string[][] {
  const taken = new Set<string>();
  return spec.nics.flatMap((nic, i) => {
    let bridge = nic.bridge ?? (spec.hypervisor === 'xen' ? XL_DEFAULT_BRIDGE : undefined);
    if (nic.network !== undefined) {
      const mapped = mapNetwork(options, nic.network);
      if (mapped === nic.network || mapped.startsWith('network:')) {
        throw new InputError(`guest ${guest}: NIC ${i} is on libvirt network ${nic.network}, which plain QEMU does not have; map it to a bridge with "network:${nic.network}" = "BRIDGE" in the host's bridges`);
      }
      bridge = mapped;
    } else if (bridge !== undefined) {
      bridge = mapBridge(options, bridge);
    }
    if (bridge !== undefined && !/^[A-Za-z0-9_.:-]+$/.test(bridge)) throw new InputError(`guest ${guest}: bridge name '${bridge}' of NIC ${i} is not one QEMU can take`);
    const mac = macFor(options, QEMU_OUI, guest, i, nic.mac, taken);
    const device = NIC_DEVICES[nic.model ?? 'virtio'] ?? nic.model!;
    if (!/^[A-Za-z0-9_-]+$/.test(device)) throw new InputError(`guest ${guest}: NIC model '${device}' of NIC ${i} is not a QEMU device name`);
    return [
      ['-netdev', bridge !== undefined ? `bridge,id=net${i},br=${bridge}` : `user,id=net${i}`],
      ['-device', `${device},netdev=net${i}${mac ? `,mac=${mac}` : ''}`],
    ];
  });
}

/** One sh word: single-quoted, a quote inside as '\''. */
export function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, "'\\''")}'`;
}

/** One word of a systemd Exec line: double-quoted with C escapes, % and $ doubled so systemd expands nothing. */
function unitQuote(arg: string): string {
  return `"${arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$')}"`;
}
