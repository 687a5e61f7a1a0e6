// Which restore points a retention policy keeps, as restic's `forget --keep-*`
// decides it: within one group (a guest on one source host), newest first,
// each rule keeps the newest point of each of its last N time buckets that
// hold a point. A bucket is an hour, day, ISO week, month or year of the
// point's local time on the host that runs forget (process TZ); empty buckets
// do not count, so `daily 7` keeps the last 7 days that have a backup, not
// the last 7 calendar days. Every kept point says which rules keep it.

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Keep every point younger than this, measured back from the group's newest point (not from now: a guest whose backups stopped keeps its last ones). */
  within?: RetentionDuration;
  /** Keep every point carrying one of these tags. */
  tags?: readonly string[];
}

/** `14d`, `6m`, `1y2m`, `36h`: calendar units, as restic's `--keep-within`. */
export interface RetentionDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
  /** As written, for reasons and messages. */
  text: string;
}

export interface RetentionCandidate {
  id: string;
  /** ISO 8601 time of the restore point. */
  time: string;
  tags: readonly string[];
}

export interface RetentionDecision {
  id: string;
  keep: boolean;
  /** Why it is kept, e.g. `daily 2026-11-30`, `last 1`, `within 14d`, `tag monthly-archive`; empty when removed. */
  reasons: string[];
}

const BUCKET_RULES = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
type BucketRule = (typeof BUCKET_RULES)[number];

/** Whether the policy would keep anything at all: an empty policy must never reach decideRetention. */
export function isEmptyPolicy(p: RetentionPolicy): boolean {
  return !p.last && BUCKET_RULES.every((r) => !p[r]) && !p.within && !(p.tags && p.tags.length > 0);
}

/**
 * Decisions for one group's points, newest first. Throws on an empty policy:
 * it would remove every point, which is never what someone meant.
 */
export function decideRetention(points: readonly RetentionCandidate[], policy: RetentionPolicy): RetentionDecision[] {
  if (isEmptyPolicy(policy)) throw new RangeError('an empty retention policy keeps nothing; give at least one --keep-* rule');
  const sorted = [...points].sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || (a.id < b.id ? -1 : 1));
  const newest = sorted.length > 0 ? new Date(sorted[0]!.time) : undefined;
  const withinStart = newest && policy.within ? subtract(newest, policy.within).getTime() : undefined;
  const lastBucket = new Map<BucketRule, string>();
  const bucketsKept = new Map<BucketRule, number>();
  return sorted.map((p, i) => {
    const reasons: string[] = [];
    const at = new Date(p.time);
    if (policy.last && i < policy.last) reasons.push(`last ${i + 1}`);
    for (const rule of BUCKET_RULES) {
      const limit = policy[rule];
      if (!limit) continue;
      const bucket = bucketOf(rule, at);
      if (lastBucket.get(rule) === bucket) continue;
      lastBucket.set(rule, bucket);
      const kept = bucketsKept.get(rule) ?? 0;
      if (kept >= limit) continue;
      bucketsKept.set(rule, kept + 1);
      reasons.push(`${rule} ${bucket}`);
    }
    if (withinStart !== undefined && at.getTime() >= withinStart) reasons.push(`within ${policy.within!.text}`);
    for (const t of policy.tags ?? []) if (p.tags.includes(t)) reasons.push(`tag ${t}`);
    return { id: p.id, keep: reasons.length > 0, reasons };
  });
}

/** The bucket a time falls in, in local time: `2026-11-30 02h`, `2026-11-30`, `2026-W48`, `2026-11`, `2026`. */
export function bucketOf(rule: BucketRule, t: Date): string {
  const y = t.getFullYear();
  const m = pad(t.getMonth() + 1);
  const d = pad(t.getDate());
  switch (rule) {
    case 'hourly':
      return `${y}-${m}-${d} ${pad(t.getHours())}h`;
    case 'daily':
      return `${y}-${m}-${d}`;
    case 'weekly': {
      const { year, week } = isoWeek(t);
      return `${year}-W${pad(week)}`;
    }
    case 'monthly':
      return `${y}-${m}`;
    case 'yearly':
      return `${y}`;
  }
}

/** ISO 8601 week of the local calendar date: weeks start on Monday; week 1 holds the year's first Thursday. */
function isoWeek(t: Date): { year: number; week: number } {
  // Work on the calendar date alone (UTC arithmetic on it), so DST cannot shift a day.
  const date = new Date(Date.UTC(t.getFullYear(), t.getMonth(), t.getDate()));
  const weekday = (date.getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  date.setUTCDate(date.getUTCDate() - weekday + 3); // the Thursday of this week decides the year
  const year = date.getUTCFullYear();
  const firstThursday = new Date(Date.UTC(year, 0, 4));
  firstThursday.setUTCDate(firstThursday.getUTCDate() - ((firstThursday.getUTCDay() + 6) % 7) + 3);
  return { year, week: 1 + Math.round((date.getTime() - firstThursday.getTime()) / (7 * 86400_000)) };
}

function subtract(t: Date, d: RetentionDuration): Date {
  const r = new Date(t);
  r.setFullYear(r.getFullYear() - d.years, r.getMonth() - d.months, r.getDate() - d.days);
  r.setHours(r.getHours() - d.hours);
  return r;
}

/** Parses `14d`, `2w`, `6m`, `1y`, `36h`, `1y6m`; undefined when it is not a duration. */
export function parseRetentionDuration(text: string): RetentionDuration | undefined {
  const s = text.trim();
  if (!/^(\d+[ymwdh])+$/.test(s)) return undefined;
  const d: RetentionDuration = { years: 0, months: 0, days: 0, hours: 0, text: s };
  for (const [, n, unit] of s.matchAll(/(\d+)([ymwdh])/g)) {
    const v = Number(n);
    if (unit === 'y') d.years += v;
    else if (unit === 'm') d.months += v;
    else if (unit === 'w') d.days += 7 * v;
    else if (unit === 'd') d.days += v;
    else d.hours += v;
  }
  return d.years + d.months + d.days + d.hours > 0 ? d : undefined;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}
