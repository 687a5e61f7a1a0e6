// A retention policy applied to a repository's restore points: grouped per
// guest and source host (two hosts backing up guests of the same name keep
// separate histories), narrowed by --guest/--host/--tag, decided per group.
import { type RetentionCandidate, type RetentionDecision, type RetentionPolicy, decideRetention } from './retentionPolicy';

export interface ForgetCandidate extends RetentionCandidate {
  guest: string;
  hostname: string;
}

export interface ForgetSelection {
  /** Which guests take part (the CLI matches --guest patterns); none: every guest. */
  guest?: (name: string) => boolean;
  /** Source host names; none: every host. */
  hosts?: readonly string[];
  /** Only points carrying one of these tags take part; none: every point. */
  tags?: readonly string[];
}

export interface ForgetGroup {
  guest: string;
  hostname: string;
  /** Newest first. */
  decisions: (RetentionDecision & { time: string })[];
}

/**
 * `policyFor(guest)` gives each guest's policy (ferry.conf may override it per
 * guest). Points outside the selection are in no group and are never removed.
 */
export function planForget(points: readonly ForgetCandidate[], policyFor: (guest: string) => RetentionPolicy, selection: ForgetSelection = {}): ForgetGroup[] {
  const groups = new Map<string, ForgetCandidate[]>();
  for (const p of points) {
    if (selection.guest && !selection.guest(p.guest)) continue;
    if (selection.hosts?.length && !selection.hosts.includes(p.hostname)) continue;
    if (selection.tags?.length && !selection.tags.some((t) => p.tags.includes(t))) continue;
    const key = JSON.stringify([p.guest, p.hostname]);
    const list = groups.get(key) ?? [];
    list.push(p);
    groups.set(key, list);
  }
  return [...groups.values()]
    .map((list) => {
      const { guest, hostname } = list[0]!;
      const times = new Map(list.map((p) => [p.id, p.time]));
      const decisions = decideRetention(list, policyFor(guest)).map((d) => ({ ...d, time: times.get(d.id)! }));
      return { guest, hostname, decisions };
    })
    .sort((a, b) => (a.guest === b.guest ? (a.hostname < b.hostname ? -1 : 1) : a.guest < b.guest ? -1 : 1));
}
