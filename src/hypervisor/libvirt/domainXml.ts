// What ferry reads from a libvirt domain XML (`virsh dumpxml`): identity,
// vcpus, memory, disks and network interfaces. Everything else stays in the
// XML text, which the restore point keeps whole.
import { HypervisorError } from '../../errors';
import type { GuestDisk, GuestNic } from '../driver';
import { type XmlElement, child, childrenNamed, descend, parseXml } from './libvirtXml';

/** A disk as libvirt describes it, with what the backup provider needs beyond GuestDisk. */
export interface LibvirtDisk extends GuestDisk {
  /** libvirt's disk type: `file`, `block`, `network`, `volume`, `dir`, `nvme`, `vhostuser`. */
  sourceType: string;
  /** `disk`, `cdrom`, `floppy` or `lun`. */
  deviceKind: string;
}

export interface DomainDescription {
  name: string;
  uuid?: string;
  /** Present in the XML of a running domain only. */
  id?: number;
  vcpus?: number;
  memoryMiB?: number;
  maxMemoryMiB?: number;
  disks: LibvirtDisk[];
  /** Removable drives with no medium: nothing to back up, listed so callers can say so. */
  emptyDrives: string[];
  nics: GuestNic[];
}

const UNIT_BYTES: Record<string, number> = {
  b: 1, bytes: 1,
  k: 1024, kib: 1024, kb: 1000,
  m: 1024 ** 2, mib: 1024 ** 2, mb: 1000 ** 2,
  g: 1024 ** 3, gib: 1024 ** 3, gb: 1000 ** 3,
  t: 1024 ** 4, tib: 1024 ** 4, tb: 1000 ** 4,
};

/** Parses `virsh dumpxml` output. `what` names the source for errors. */
export function parseDomainXml(text: string, what: string): DomainDescription {
  const root = parseXml(text, what);
  if (root.name !== 'domain') throw new HypervisorError(`${what}: expected a <domain> document, found <${root.name}>`);
  const name = child(root, 'name')?.text.trim();
  if (!name) throw new HypervisorError(`${what}: the domain has no <name>`);
  const idText = root.attrs.id;
  const id = idText !== undefined && /^\d+$/.test(idText) ? Number(idText) : undefined;
  const uuid = child(root, 'uuid')?.text.trim() || undefined;

  const vcpuEl = child(root, 'vcpu');
  // `current` is what runs now; the element's text is the maximum (hot-plug limit).
  const vcpuText = vcpuEl ? (vcpuEl.attrs.current ?? vcpuEl.text).trim() : undefined;
  const vcpus = vcpuText !== undefined && /^\d+$/.test(vcpuText) ? Number(vcpuText) : undefined;

  const maxMemoryMiB = memoryMiB(child(root, 'memory'), what);
  const currentMiB = memoryMiB(child(root, 'currentMemory'), what) ?? maxMemoryMiB;

  const devices = child(root, 'devices');
  const disks: LibvirtDisk[] = [];
  const emptyDrives: string[] = [];
  for (const d of devices ? childrenNamed(devices, 'disk') : []) {
    const disk = parseDisk(d, what);
    if (typeof disk === 'string') emptyDrives.push(disk);
    else disks.push(disk);
  }
  const nics = devices ? childrenNamed(devices, 'interface').map(parseInterface) : [];

  return {
    name,
    ...(uuid !== undefined ? { uuid } : {}),
    ...(id !== undefined ? { id } : {}),
    ...(vcpus !== undefined ? { vcpus } : {}),
    ...(currentMiB !== undefined ? { memoryMiB: currentMiB } : {}),
    ...(maxMemoryMiB !== undefined ? { maxMemoryMiB } : {}),
    disks,
    emptyDrives,
    nics,
  };
}

function memoryMiB(el: XmlElement | undefined, what: string): number | undefined {
  if (!el) return undefined;
  const value = el.text.trim();
  const unit = (el.attrs.unit ?? 'KiB').toLowerCase();
  const factor = UNIT_BYTES[unit];
  if (!/^\d+$/.test(value) || factor === undefined) {
    throw new HypervisorError(`${what}: cannot read <${el.name} unit='${el.attrs.unit ?? ''}'>${value}</${el.name}>`);
  }
  return Math.round((Number(value) * factor) / 1024 ** 2);
}

/** A disk, or the target name of a removable drive without medium. */
function parseDisk(d: XmlElement, what: string): LibvirtDisk | string {
  const target = child(d, 'target')?.attrs.dev;
  if (!target) throw new HypervisorError(`${what}: a <disk> has no <target dev=...>`);
  const sourceType = d.attrs.type ?? 'file';
  const deviceKind = d.attrs.device ?? 'disk';
  const source = child(d, 'source');
  const path = source ? sourcePath(sourceType, source) : undefined;
  const removable = deviceKind === 'cdrom' || deviceKind === 'floppy';
  if (path === undefined) {
    if (removable) return target;
    // A hard disk whose source ferry cannot name must not vanish from the list.
    throw new HypervisorError(`${what}: cannot tell where disk ${target} (type '${sourceType}') is stored`);
  }
  const format = child(d, 'driver')?.attrs.type ?? 'raw';
  return {
    device: target,
    path,
    format,
    readOnly: child(d, 'readonly') !== undefined,
    ...(deviceKind === 'cdrom' ? { cdrom: true } : {}),
    sourceType,
    deviceKind,
  };
}

function sourcePath(sourceType: string, source: XmlElement): string | undefined {
  switch (sourceType) {
    case 'file': return source.attrs.file || undefined;
    case 'block': return source.attrs.dev || undefined;
    case 'dir': return source.attrs.dir || undefined;
    case 'volume':
      // A storage-pool volume; the running domain's XML does not resolve it to a path.
      return source.attrs.pool && source.attrs.volume ? `volume:${source.attrs.pool}/${source.attrs.volume}` : undefined;
    case 'network': {
      const protocol = source.attrs.protocol;
      if (!protocol) return undefined;
      const host = descend(source, 'host')?.attrs.name;
      return `${protocol}://${host ?? ''}/${source.attrs.name ?? ''}`;
    }
    case 'nvme': {
      const addr = descend(source, 'address')?.attrs;
      return addr ? `nvme:${addr.domain ?? ''}:${addr.bus ?? ''}:${addr.slot ?? ''}.${addr.function ?? ''}/${source.attrs.namespace ?? '1'}` : undefined;
    }
    default:
      return source.attrs.file ?? source.attrs.dev ?? source.attrs.path ?? undefined;
  }
}

function parseInterface(i: XmlElement): GuestNic {
  const mac = child(i, 'mac')?.attrs.address;
  // Only a bridge names a host bridge; a libvirt `network` names its bridge in the network's own XML.
  const bridge = i.attrs.type === 'bridge' ? child(i, 'source')?.attrs.bridge : undefined;
  const network = i.attrs.type === 'network' ? child(i, 'source')?.attrs.network : undefined;
  const model = child(i, 'model')?.attrs.type;
  return { ...(mac ? { mac } : {}), ...(bridge ? { bridge } : {}), ...(network ? { network } : {}), ...(model ? { model } : {}) };
}
