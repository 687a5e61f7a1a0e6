// Where each guest of a site restore goes: a host with room for its memory
// and vCPUs, a pool with room for each disk, honouring pins and
// anti-affinity groups, spreading load. Pure: capacities come in measured
// (sitePools.ts), nothing is run here. Greedy, largest guests first — a
// fleet that fits with room to spare is placed; one that barely fits may be
// reported as not fitting, with the numbers to see why.
import { matchesGlob } from '../config/glob';
import type { HostDefinition, HostHypervisor, PlacementRule } from './hostsFile';

export interface DiskToPlace {
  /** The disk's name in the restore point. */
  name: string;
  sizeBytes: number;
  /** Bytes that are not zero: what a sparse file or a thin volume takes. */
  dataBytes: number;
}

export interface GuestToPlace {
  name: string;
  /** undefined: an image-mode backup, restorable on any host. */
  hypervisor?: HostHypervisor;
  /** undefined: not recorded (older restore points); counted as 0 and shown as unknown. */
  memoryBytes?: number;
  vcpus?: number;
  disks: DiskToPlace[];
}

export interface PoolCapacity {
  host: string;
  pool: string;
  freeBytes: number;
  /** Thin LVM or a directory of sparse files: a disk takes its data bytes, not its size. */
  sparse: boolean;
}

export interface DiskPlacement {
  disk: string;
  pool: string;
  /** What the disk was counted as taking from the pool (its size, or its data bytes in a sparse pool). */
  countedBytes: number;
}

export interface GuestPlacement {
  guest: string;
  host: string;
  disks: DiskPlacement[];
}

export interface UnplacedGuest {
  guest: string;
  /** One reason per host, e.g. `new01: memory 16.0 GiB needed, 8.0 GiB left`. */
  reasons: string[];
}

export interface Placement {
  placed: GuestPlacement[];
  unplaced: UnplacedGuest[];
}

interface HostLoad {
  host: HostDefinition;
  memoryLeft: number;
  vcpusLeft: number;
  pools: PoolCapacity[];
  poolLeft: Map<string, number>;
  groups: Map<string, string>; // anti-affinity group → guest already there
}

export function placeGuests(guests: readonly GuestToPlace[], hosts: readonly HostDefinition[], pools: readonly PoolCapacity[], rules: readonly PlacementRule[]): Placement {
  const loads = hosts.map((host): HostLoad => {
    const own = pools.filter((p) => p.host === host.name);
    return {
      host,
      memoryLeft: host.memoryBytes,
      vcpusLeft: host.cpus * host.cpuOvercommit,
      pools: own,
      poolLeft: new Map(own.map((p) => [p.pool, p.freeBytes])),
      groups: new Map(),
    };
  });
  const placed: GuestPlacement[] = [];
  const unplaced: UnplacedGuest[] = [];
  for (const guest of placementOrder(guests, rules)) {
    const rule = ruleFor(guest.name, rules);
    const reasons: string[] = [];
    let best: { load: HostLoad; disks: DiskPlacement[]; score: number } | undefined;
    for (const load of loads) {
      const fit = tryHost(guest, rule, load);
      if ('problem' in fit) {
        reasons.push(`${load.host.name}: ${fit.problem}`);
        continue;
      }
      const score = loadAfter(guest, load);
      if (!best || score < best.score) best = { load, disks: fit.disks, score };
    }
    if (!best) {
      unplaced.push({ guest: guest.name, reasons });
      continue;
    }
    const { load, disks } = best;
    load.memoryLeft -= guest.memoryBytes ?? 0;
    load.vcpusLeft -= guest.vcpus ?? 0;
    for (const d of disks) load.poolLeft.set(d.pool, load.poolLeft.get(d.pool)! - d.countedBytes);
    if (rule.antiAffinity) load.groups.set(rule.antiAffinity, guest.name);
    placed.push({ guest: guest.name, host: load.host.name, disks });
  }
  return { placed, unplaced };
}

/** The settings of every `[guest."…"]` rule matching a guest, later ones overriding earlier ones. */
export function ruleFor(guest: string, rules: readonly PlacementRule[]): { pin?: string; antiAffinity?: string } {
  const merged: { pin?: string; antiAffinity?: string } = {};
  for (const r of rules) {
    if (!matchesGlob(guest, r.pattern)) continue;
    if (r.pin !== undefined) merged.pin = r.pin;
    if (r.antiAffinity !== undefined) merged.antiAffinity = r.antiAffinity;
  }
  return merged;
}

/** Guests with the fewest choices first (pinned, then anti-affinity members), then the largest. */
function placementOrder(guests: readonly GuestToPlace[], rules: readonly PlacementRule[]): GuestToPlace[] {
  const rank = (g: GuestToPlace) => {
    const r = ruleFor(g.name, rules);
    return r.pin ? 0 : r.antiAffinity ? 1 : 2;
  };
  const diskBytes = (g: GuestToPlace) => g.disks.reduce((n, d) => n + d.sizeBytes, 0);
  return [...guests].sort(
    (a, b) => rank(a) - rank(b) || (b.memoryBytes ?? 0) - (a.memoryBytes ?? 0) || diskBytes(b) - diskBytes(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

function tryHost(guest: GuestToPlace, rule: { pin?: string; antiAffinity?: string }, load: HostLoad): { disks: DiskPlacement[] } | { problem: string } {
  const host = load.host;
  if (rule.pin !== undefined && rule.pin !== host.name) return { problem: `the guest is pinned to ${rule.pin}` };
  if (guest.hypervisor !== undefined && guest.hypervisor !== host.hypervisor) return { problem: `a ${guest.hypervisor} guest, the host runs ${host.hypervisor}` };
  if (rule.antiAffinity !== undefined && load.groups.has(rule.antiAffinity)) {
    return { problem: `anti_affinity "${rule.antiAffinity}": ${load.groups.get(rule.antiAffinity)} is already there` };
  }
  const memory = guest.memoryBytes ?? 0;
  if (memory > load.memoryLeft) return { problem: `memory ${gib(memory)} needed, ${gib(load.memoryLeft)} left (short by ${gib(memory - load.memoryLeft)})` };
  const vcpus = guest.vcpus ?? 0;
  if (vcpus > load.vcpusLeft) return { problem: `${vcpus} vCPUs needed, ${load.vcpusLeft} left` };
  const left = new Map(load.poolLeft);
  const disks: DiskPlacement[] = [];
  // Largest first, each into the pool with the most room left: fewer dead ends.
  for (const disk of [...guest.disks].sort((a, b) => b.sizeBytes - a.sizeBytes)) {
    let chosen: { pool: PoolCapacity; counted: number } | undefined;
    for (const pool of load.pools) {
      const counted = pool.sparse ? disk.dataBytes : disk.sizeBytes;
      if (counted > left.get(pool.pool)!) continue;
      if (!chosen || left.get(pool.pool)! > left.get(chosen.pool.pool)!) chosen = { pool, counted };
    }
    if (!chosen) {
      const room = load.pools.map((p) => `${p.pool} ${gib(left.get(p.pool)!)} free${p.sparse ? ', counts data bytes' : ''}`).join('; ');
      return { problem: `disk ${disk.name} needs ${gib(disk.sizeBytes)} (${gib(disk.dataBytes)} of data), no pool has room (${room || 'no pools'})` };
    }
    left.set(chosen.pool.pool, left.get(chosen.pool.pool)! - chosen.counted);
    disks.push({ disk: disk.name, pool: chosen.pool.pool, countedBytes: chosen.counted });
  }
  // Back in the restore point's disk order, for people reading the plan.
  disks.sort((a, b) => guest.disks.findIndex((d) => d.name === a.disk) - guest.disks.findIndex((d) => d.name === b.disk));
  return { disks };
}

/** The host's busier resource after taking the guest, as a fraction: lower spreads load. */
function loadAfter(guest: GuestToPlace, load: HostLoad): number {
  const host = load.host;
  const memory = 1 - (load.memoryLeft - (guest.memoryBytes ?? 0)) / host.memoryBytes;
  const cpus = 1 - (load.vcpusLeft - (guest.vcpus ?? 0)) / (host.cpus * host.cpuOvercommit);
  return Math.max(memory, cpus);
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
