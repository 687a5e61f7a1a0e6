// Coverage, the line an admin reads first: every guest the hypervisors know
// with its last good restore point, and the guests to worry about — selected
// guests with no restore point within max_age, guests the config excludes,
// and guests that have restore points but no hypervisor knows any more.

/** A guest as a hypervisor driver listed it, and whether ferry.conf selects it. */
export interface KnownGuest {
  name: string;
  driver: string;
  selected: boolean;
}

/** A readable restore point of the repository. */
export interface PointSeen {
  id: string;
  guest: string;
  time: string;
}

/**
 * ok: backed up within max_age; stale: its newest point is older; none: no restore point at all;
 * excluded: known but not selected by the config; gone: has restore points, but no hypervisor lists it.
 */
export type CoverageState = 'ok' | 'stale' | 'none' | 'excluded' | 'gone';

export interface CoverageEntry {
  guest: string;
  /** The driver that lists it (absent for gone guests). */
  driver?: string;
  state: CoverageState;
  lastGood?: { id: string; time: string; ageMs: number };
}

export interface Coverage {
  /** False when the hypervisors could not be listed: then only the repository's guests are shown, as 'gone' is unknown. */
  hypervisorsListed: boolean;
  maxAgeMs: number;
  guests: CoverageEntry[];
}

/** States that count as a failure of the night (exit 1); excluded and gone guests are called out only. */
export const FAILING_STATES: readonly CoverageState[] = ['stale', 'none'];

export function computeCoverage(known: readonly KnownGuest[] | undefined, points: readonly PointSeen[], now: Date, maxAgeMs: number): Coverage {
  const newest = new Map<string, PointSeen>();
  for (const p of points) {
    const prev = newest.get(p.guest);
    if (!prev || Date.parse(p.time) > Date.parse(prev.time)) newest.set(p.guest, p);
  }
  const last = (guest: string) => {
    const p = newest.get(guest);
    return p ? { id: p.id, time: p.time, ageMs: Math.max(0, now.getTime() - Date.parse(p.time)) } : undefined;
  };
  const entries: CoverageEntry[] = [];
  const listed = new Set<string>();
  for (const k of known ?? []) {
    if (listed.has(k.name)) continue; // two drivers listing one name: the first wins, as in backup --all
    listed.add(k.name);
    const lastGood = last(k.name);
    const state: CoverageState = !k.selected ? 'excluded' : !lastGood ? 'none' : lastGood.ageMs > maxAgeMs ? 'stale' : 'ok';
    entries.push({ guest: k.name, driver: k.driver, state, ...(lastGood ? { lastGood } : {}) });
  }
  if (known) {
    for (const guest of newest.keys()) if (!listed.has(guest)) entries.push({ guest, state: 'gone', lastGood: last(guest) });
  } else {
    // Without the hypervisors' list, judge the repository's guests by age alone.
    for (const guest of newest.keys()) {
      const lastGood = last(guest)!;
      entries.push({ guest, state: lastGood.ageMs > maxAgeMs ? 'stale' : 'ok', lastGood });
    }
  }
  entries.sort((a, b) => a.guest.localeCompare(b.guest));
  return { hypervisorsListed: known !== undefined, maxAgeMs, guests: entries };
}
