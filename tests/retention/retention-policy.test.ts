// Retention as `ferry forget --keep-*` applies it to one guest's restore points.
// Buckets are local time of the host that runs forget: this file runs in
// Europe/Berlin, whose clocks change on 2026-03-29 and 2026-10-25.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf, decideRetention, parseRetentionDuration, type RetentionCandidate } from '../../src/retention/retentionPolicy';
import { planForget } from '../../src/retention/forgetPlan';

const savedTz = process.env.TZ;
beforeAll(() => {
  process.env.TZ = 'Europe/Berlin';
});
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

function points(...times: string[]): RetentionCandidate[] {
  return times.map((time, i) => ({ id: `p${i}`, time, tags: [] }));
}
function kept(decisions: { id: string; keep: boolean }[]): string[] {
  return decisions.filter((d) => d.keep).map((d) => d.id);
}

describe('retention policy', () => {
  it('keeps the newest point of each of the last N days that have one (empty days do not count)', () => {
    const ps = points(
      '2026-11-30T01:00:00Z', '2026-11-30T13:00:00Z', // two on one day: the later one counts
      '2026-11-27T01:00:00Z', // 28 and 29 have none
      '2026-11-26T01:00:00Z',
      '2026-11-25T01:00:00Z',
    );
    const d = decideRetention(ps, { daily: 3 });
    expect(kept(d)).toEqual(['p1', 'p2', 'p3']);
    expect(d.find((x) => x.id === 'p1')!.reasons).toEqual(['daily 2026-11-30']);
    expect(d.find((x) => x.id === 'p0')).toEqual({ id: 'p0', keep: false, reasons: [] });
  });

  it('takes days in local time, across the spring clock change', () => {
    // 23:30 UTC is 00:30 in Berlin on the next day, in winter (+1) and in summer (+2) time alike.
    const ps = points('2026-03-28T23:30:00Z', '2026-03-29T22:30:00Z', '2026-03-29T21:30:00Z');
    expect(ps.map((p) => bucketOf('daily', new Date(p.time)))).toEqual(['2026-03-29', '2026-03-30', '2026-03-29']);
    expect(kept(decideRetention(ps, { daily: 5 }))).toEqual(['p1', 'p2']);
  });

  it('counts the hour repeated at the autumn clock change as one hourly bucket', () => {
    // 00:30 UTC = 02:30 CEST; 01:30 UTC = 02:30 CET: both are 02h local on 2026-10-25.
    const ps = points('2026-10-25T00:30:00Z', '2026-10-25T01:30:00Z', '2026-10-25T02:30:00Z');
    const d = decideRetention(ps, { hourly: 10 });
    expect(kept(d)).toEqual(['p2', 'p1']);
    expect(d.map((x) => x.reasons)).toEqual([['hourly 2026-10-25 03h'], ['hourly 2026-10-25 02h'], []]);
  });

  it('keeps many points of one day only once under daily, but all of them under last', () => {
    const ps = points(...Array.from({ length: 24 }, (_, h) => `2026-11-30T${String(h).padStart(2, '0')}:10:00Z`));
    // 00:10–22:10 UTC are 01:10–23:10 on 30 November in Berlin; 23:10 UTC is already 1 December.
    expect(kept(decideRetention(ps, { daily: 7 }))).toEqual(['p23', 'p22']);
    expect(kept(decideRetention(ps, { last: 5 }))).toHaveLength(5);
  });

  it('uses ISO weeks, which cross the new year', () => {
    expect(bucketOf('weekly', new Date('2026-12-31T12:00:00Z'))).toBe('2026-W53');
    expect(bucketOf('weekly', new Date('2027-01-03T12:00:00Z'))).toBe('2026-W53');
    expect(bucketOf('weekly', new Date('2027-01-04T12:00:00Z'))).toBe('2027-W01');
    const ps = points('2027-01-04T12:00:00Z', '2027-01-03T12:00:00Z', '2026-12-28T12:00:00Z', '2026-12-27T12:00:00Z');
    expect(kept(decideRetention(ps, { weekly: 2 }))).toEqual(['p0', 'p1']);
  });

  it('combines rules and says every rule that keeps a point', () => {
    const ps: RetentionCandidate[] = [
      { id: 'a', time: '2026-11-30T02:00:00Z', tags: [] },
      { id: 'b', time: '2026-11-01T02:00:00Z', tags: ['before-upgrade'] },
      { id: 'c', time: '2026-10-15T02:00:00Z', tags: [] },
      { id: 'd', time: '2025-06-01T02:00:00Z', tags: [] },
    ];
    const d = decideRetention(ps, { last: 1, monthly: 2, yearly: 2, tags: ['before-upgrade'] });
    expect(d).toEqual([
      { id: 'a', keep: true, reasons: ['last 1', 'monthly 2026-11', 'yearly 2026'] },
      { id: 'b', keep: true, reasons: ['tag before-upgrade'] },
      { id: 'c', keep: true, reasons: ['monthly 2026-10'] },
      { id: 'd', keep: true, reasons: ['yearly 2025'] },
    ]);
  });

  it('measures keep-within back from the newest point, not from now', () => {
    const ps = points('2020-01-20T02:00:00Z', '2020-01-10T02:00:00Z', '2020-01-05T02:00:00Z');
    const d = decideRetention(ps, { within: parseRetentionDuration('14d')! });
    expect(d.map((x) => x.reasons)).toEqual([['within 14d'], ['within 14d'], []]);
  });

  it('parses durations and refuses an empty policy', () => {
    expect(parseRetentionDuration('1y6m')).toMatchObject({ years: 1, months: 6, days: 0, hours: 0 });
    expect(parseRetentionDuration('2w')).toMatchObject({ days: 14 });
    expect(parseRetentionDuration('36h')).toMatchObject({ hours: 36 });
    for (const bad of ['', '14', 'd', '14 days', '0d', '-1d']) expect(parseRetentionDuration(bad)).toBeUndefined();
    expect(() => decideRetention(points('2026-11-30T02:00:00Z'), {})).toThrow(/empty retention policy keeps nothing/);
  });
});

describe('forget plan', () => {
  const p = (id: string, guest: string, hostname: string, time: string, tags: string[] = []) => ({ id, guest, hostname, time, tags });
  const all = [
    p('w1', 'web01', 'dom0-a', '2026-11-30T02:00:00Z'),
    p('w2', 'web01', 'dom0-a', '2026-11-29T02:00:00Z'),
    p('w3', 'web01', 'dom0-b', '2026-11-28T02:00:00Z'), // same name, other host: its own history
    p('d1', 'db01', 'dom0-a', '2026-11-30T02:00:00Z', ['nightly']),
    p('d2', 'db01', 'dom0-a', '2026-11-29T02:00:00Z'),
  ];

  it('groups per guest and source host, and applies each guest its own policy', () => {
    const groups = planForget(all, (guest) => (guest === 'db01' ? { last: 2 } : { last: 1 }));
    expect(groups.map((g) => [g.guest, g.hostname, g.decisions.map((d) => `${d.id}:${d.keep ? 'keep' : 'remove'}`)])).toEqual([
      ['db01', 'dom0-a', ['d1:keep', 'd2:keep']],
      ['web01', 'dom0-a', ['w1:keep', 'w2:remove']],
      ['web01', 'dom0-b', ['w3:keep']],
    ]);
  });

  it('leaves points outside --guest, --host and --tag alone', () => {
    expect(planForget(all, () => ({ last: 1 }), { guest: (g) => g.startsWith('web'), hosts: ['dom0-a'] }).map((g) => g.decisions.map((d) => d.id))).toEqual([['w1', 'w2']]);
    expect(planForget(all, () => ({ last: 1 }), { tags: ['nightly'] }).map((g) => g.decisions.map((d) => d.id))).toEqual([['d1']]);
  });
});
