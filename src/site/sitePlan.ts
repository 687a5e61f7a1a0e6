// `ferry site plan`: which restore point of each guest comes back, and where.
// For every guest in the repository (or those selected) its latest restore
// point at or before a moment, placed on the target hosts within their
// memory, vCPUs and pool space (placement.ts). The plan is a JSON file a
// person can read and `site restore` follows.
import type { RestorePointSummary } from '../repo/restorePoint';
import type { HostHypervisor, SiteHosts } from './hostsFile';
import { type GuestToPlace, type PoolCapacity, type UnplacedGuest, placeGuests } from './placement';

export const SITE_PLAN_FORMAT = 'ferry-site-plan';
export const SITE_PLAN_VERSION = 1;

export interface PlannedDisk {
  /** The disk's name in the restore point. */
  name: string;
  device?: string;
  pool: string;
  sizeBytes: number;
  dataBytes: number;
  /** What it was counted as taking from the pool (its size, or its data bytes in a sparse pool). */
  countedBytes: number;
  /** The format the guest used it in (`raw`, `qcow2`): a qcow2 disk comes back as a qcow2 file. */
  format: string;
}

export interface PlannedGuest {
  guest: string;
  restorePoint: string;
  /** The restore point's time (ISO 8601). */
  time: string;
  /** The host the restore point was taken on. */
  sourceHost: string;
  host: string;
  hypervisor?: HostHypervisor;
  memoryMiB?: number;
  vcpus?: number;
  bootGroup: number;
  bootPriority: number;
  disks: PlannedDisk[];
}

export interface SitePlan {
  format: typeof SITE_PLAN_FORMAT;
  version: typeof SITE_PLAN_VERSION;
  created: string;
  /** The repository it was planned from, as given. */
  repository: string;
  /** The hosts file it was planned for. */
  hostsFile: string;
  /** The moment restore points were chosen at (ISO 8601); absent: the latest of each guest. */
  at?: string;
  /** Boot groups in order, each guest in it by priority then name. */
  guests: PlannedGuest[];
  unplaced: UnplacedGuest[];
  /** Pools as measured when planning: free bytes, and whether disks count by data bytes. */
  pools: PoolCapacity[];
}

export interface RestorePointChoice {
  /** Only restore points at or before this moment. */
  at?: Date;
  /** Which guests; none: all. */
  guest?: (name: string) => boolean;
  /** Only restore points with one of these tags. */
  tags?: readonly string[];
}

/**
 * Per guest, the newest restore point that fits the choice. Two source hosts
 * backing up guests of one name give one guest: the newest point wins (a site
 * has one guest of each name).
 */
export function chooseRestorePoints<P extends RestorePointSummary>(points: readonly P[], choice: RestorePointChoice = {}): P[] {
  const newest = new Map<string, P>();
  for (const rp of points) {
    if (choice.guest && !choice.guest(rp.guest)) continue;
    if (choice.at && Date.parse(rp.time) > choice.at.getTime()) continue;
    if (choice.tags?.length && !choice.tags.some((t) => rp.tags.includes(t))) continue;
    const seen = newest.get(rp.guest);
    if (!seen || Date.parse(rp.time) > Date.parse(seen.time) || (rp.time === seen.time && rp.id > seen.id)) newest.set(rp.guest, rp);
  }
  return [...newest.values()].sort((a, b) => (a.guest < b.guest ? -1 : 1));
}

/** What placement needs of a restore point: memory and vCPUs from its spec, disks from its records. */
export function guestToPlace(rp: RestorePointSummary): GuestToPlace {
  const spec = rp.spec;
  const hypervisor = spec?.hypervisor === 'xen' || spec?.hypervisor === 'libvirt' || spec?.hypervisor === 'qemu' ? spec.hypervisor : undefined;
  return {
    name: rp.guest,
    ...(hypervisor ? { hypervisor } : {}),
    ...(spec?.memoryMiB !== undefined ? { memoryBytes: spec.memoryMiB * 1024 * 1024 } : {}),
    ...(spec?.vcpus !== undefined ? { vcpus: spec.vcpus } : {}),
    disks: rp.disks.map((d) => ({ name: d.name, sizeBytes: d.size, dataBytes: d.dataBytes })),
  };
}

export function buildSitePlan(
  chosen: readonly RestorePointSummary[],
  site: SiteHosts,
  pools: readonly PoolCapacity[],
  meta: { repository: string; at?: Date; now?: Date },
): SitePlan {
  const placement = placeGuests(chosen.map(guestToPlace), site.hosts, pools, site.rules);
  const byGuest = new Map(chosen.map((rp) => [rp.guest, rp]));
  const guests = placement.placed.map((p): PlannedGuest => {
    const rp = byGuest.get(p.guest)!;
    const spec = rp.spec;
    const host = site.hosts.find((h) => h.name === p.host)!;
    return {
      guest: rp.guest,
      restorePoint: rp.id,
      time: rp.time,
      sourceHost: rp.hostname,
      host: p.host,
      hypervisor: host.hypervisor,
      ...(spec?.memoryMiB !== undefined ? { memoryMiB: spec.memoryMiB } : {}),
      ...(spec?.vcpus !== undefined ? { vcpus: spec.vcpus } : {}),
      bootGroup: spec?.bootGroup ?? 0,
      bootPriority: spec?.bootPriority ?? 0,
      disks: p.disks.map((d) => {
        const record = rp.disks.find((r) => r.name === d.disk)!;
        const specDisk = spec?.disks.find((s) => s.name === d.disk);
        return {
          name: d.disk,
          ...(specDisk?.device ? { device: specDisk.device } : {}),
          pool: d.pool,
          sizeBytes: record.size,
          dataBytes: record.dataBytes,
          countedBytes: d.countedBytes,
          format: specDisk?.format ?? 'raw',
        };
      }),
    };
  });
  guests.sort((a, b) => a.bootGroup - b.bootGroup || a.bootPriority - b.bootPriority || (a.guest < b.guest ? -1 : 1));
  return {
    format: SITE_PLAN_FORMAT,
    version: SITE_PLAN_VERSION,
    created: (meta.now ?? new Date()).toISOString(),
    repository: meta.repository,
    hostsFile: site.file,
    ...(meta.at ? { at: meta.at.toISOString() } : {}),
    guests,
    unplaced: placement.unplaced,
    pools: [...pools],
  };
}

/**
 * `--at`: `2026-11-30` is the end of that day, `2026-11-30T02:00` that
 * minute, both in this host's local time unless an offset or Z is given.
 * Undefined when the text is not such a time.
 */
export function parsePlanTime(text: string): Date | undefined {
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (day) {
    const end = new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3]), 23, 59, 59, 999);
    return end.getMonth() === Number(day[2]) - 1 && end.getDate() === Number(day[3]) ? end : undefined;
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/.test(text)) return undefined;
  const t = new Date(text);
  return Number.isFinite(t.getTime()) ? t : undefined;
}
