// The documents libvirt's backup API takes (`virsh backup-begin DOMAIN
// BACKUPXML CHECKPOINTXML`), the checkpoint XML it prints, and the tracking
// token ferry keeps per disk in the restore point.
import { HypervisorError } from '../errors';
import { child, childrenNamed, escapeXml, parseXml } from '../hypervisor/libvirt/libvirtXml';
import type { ChangeTracking } from './provider';

export const LIBVIRT_TRACKING_KIND = 'libvirt-checkpoint';

/** What the restore point remembers about one disk: the checkpoint its copy was taken at. */
export interface LibvirtTrackingToken {
  v: 1;
  domain: string;
  /** A domain undefined and defined again gets a new UUID and has lost its checkpoints. */
  uuid: string;
  checkpoint: string;
  /** Target name (`vda`) and source path: a disk swapped under the same name is not the tracked one. */
  device: string;
  path: string;
}

export function encodeTracking(token: Omit<LibvirtTrackingToken, 'v'>): ChangeTracking {
  const full: LibvirtTrackingToken = { v: 1, ...token };
  return { kind: LIBVIRT_TRACKING_KIND, token: JSON.stringify(full) };
}

/** The token, or why it cannot be used (another provider's, or unreadable). */
export function decodeTracking(tracking: ChangeTracking): LibvirtTrackingToken | { unusable: string } {
  if (tracking.kind !== LIBVIRT_TRACKING_KIND) {
    return { unusable: `the previous backup tracked changes with ${tracking.kind}, not libvirt checkpoints` };
  }
  try {
    const t = JSON.parse(tracking.token) as Partial<LibvirtTrackingToken>;
    if (t.v === 1 && [t.domain, t.uuid, t.checkpoint, t.device, t.path].every((s) => typeof s === 'string' && s.length > 0)) {
      return t as LibvirtTrackingToken;
    }
  } catch {
    // fall through
  }
  return { unusable: `the previous backup's tracking token is unreadable: ${JSON.stringify(tracking.token.slice(0, 80))}` };
}

export interface BackupDiskSpec {
  device: string;
  /** Absent: this disk of the domain is not copied. */
  target?: { file: string; incrementalFrom?: string };
}

/**
 * Push-mode backup XML. Every disk of the domain is named, so libvirt never
 * copies (or refuses) a disk ferry did not plan for. Targets are qcow2: libvirt
 * then writes only the clusters it copies (a raw target is written in full, zeros
 * included), and an incremental target's allocation map says what it copied.
 */
export function backupXml(disks: readonly BackupDiskSpec[]): string {
  const lines = ["<domainbackup mode='push'>", '  <disks>'];
  for (const d of disks) {
    const name = escapeXml(d.device);
    if (!d.target) {
      lines.push(`    <disk name='${name}' backup='no'/>`);
      continue;
    }
    const mode = d.target.incrementalFrom !== undefined
      ? `backupmode='incremental' incremental='${escapeXml(d.target.incrementalFrom)}'`
      : "backupmode='full'";
    lines.push(
      `    <disk name='${name}' backup='yes' type='file' ${mode}>`,
      `      <target file='${escapeXml(d.target.file)}'/>`,
      "      <driver type='qcow2'/>",
      '    </disk>',
    );
  }
  lines.push('  </disks>', '</domainbackup>', '');
  return lines.join('\n');
}

/** Checkpoint XML: a persistent dirty bitmap on each listed disk, none on the others. */
export function checkpointXml(name: string, disks: readonly { device: string; bitmap: boolean }[]): string {
  const lines = ['<domaincheckpoint>', `  <name>${escapeXml(name)}</name>`, '  <disks>'];
  for (const d of disks) lines.push(`    <disk name='${escapeXml(d.device)}' checkpoint='${d.bitmap ? 'bitmap' : 'no'}'/>`);
  lines.push('  </disks>', '</domaincheckpoint>', '');
  return lines.join('\n');
}

/** Disks that a checkpoint (`virsh checkpoint-dumpxml --no-domain`) tracks with a bitmap. */
export function checkpointBitmapDisks(xml: string, what: string): string[] {
  const root = parseXml(xml, what);
  if (root.name !== 'domaincheckpoint') throw new HypervisorError(`${what}: expected <domaincheckpoint>, found <${root.name}>`);
  const disks = child(root, 'disks');
  return (disks ? childrenNamed(disks, 'disk') : [])
    .filter((d) => d.attrs.checkpoint === 'bitmap' && d.attrs.name)
    .map((d) => d.attrs.name!);
}

/** Target files of a running backup job (`virsh backup-dumpxml`). */
export function backupTargets(xml: string, what: string): string[] {
  const root = parseXml(xml, what);
  if (root.name !== 'domainbackup') throw new HypervisorError(`${what}: expected <domainbackup>, found <${root.name}>`);
  const disks = child(root, 'disks');
  const targets: string[] = [];
  for (const d of disks ? childrenNamed(disks, 'disk') : []) {
    if (d.attrs.backup === 'no') continue;
    const target = child(d, 'target');
    targets.push(target?.attrs.file ?? target?.attrs.dev ?? '');
  }
  return targets;
}
