// The night's report: one object (printed by --json, POSTed to the webhook,
// the source of the .prom file) and its one-screen human form (stdout, which
// cron mails). Problems come first in both: they are what the reader is for.
import { formatBytes } from '../units/byteSize';
import { type Coverage, type CoverageEntry, FAILING_STATES } from './coverage';

/** The steps in their order; `coverage` appears only when listing the restore points for it failed. */
export type StepName = 'backup' | 'forget' | 'prune' | 'check' | 'sync' | 'coverage';

export interface StepReport {
  step: StepName;
  /** sync: the offsite location. */
  target?: string;
  status: 'ok' | 'failed' | 'skipped';
  /** failed: the error; skipped: why. */
  reason?: string;
  /** What it did, in one line (ok steps). */
  summary?: string;
  /** Its figures (bytes, counts), for --json and the .prom file. */
  figures?: Record<string, number>;
  durationMs: number;
}

/** One guest's backup tonight. */
export interface GuestReport {
  guest: string;
  driver: string;
  ok: boolean;
  id?: string;
  time?: string;
  error?: string;
  durationMs: number;
  pauseMs: number;
  /** How long it was shut down for its backup (snapshot = "shutdown"); 0 otherwise. */
  downMs: number;
  logicalBytes: number;
  readBytes: number;
  /** Bytes newly stored in the repository for it. */
  storedBytes: number;
}

export interface RepositoryReport {
  location: string;
  role: 'primary' | 'offsite';
  /** Bytes of its pack files, and how many (absent when it could not be listed). */
  sizeBytes?: number;
  packs?: number;
  /** Last prune and last check run by `ferry nightly` on this host (ISO time). */
  lastPrune?: string;
  lastCheck?: string;
}

export interface NotificationResult {
  kind: 'webhook' | 'command';
  target: string;
  ok: boolean;
  attempts: number;
  error?: string;
}

export interface NightlyReport {
  version: 1;
  host: string;
  repository: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Nothing failed: exit 0. */
  ok: boolean;
  /** One line per failure (steps, guests, coverage), the same lines the summary lists. */
  problems: string[];
  coverage: Coverage;
  guests: GuestReport[];
  steps: StepReport[];
  repositories: RepositoryReport[];
  /** Filled in after notifying: not part of what the webhook and the command receive. */
  notifications?: NotificationResult[];
}

/** The failures of a night, one line each. */
export function problemsOf(coverage: Coverage, guests: readonly GuestReport[], steps: readonly StepReport[]): string[] {
  const out: string[] = [];
  for (const g of coverage.guests) {
    if (!FAILING_STATES.includes(g.state)) continue;
    out.push(g.state === 'none' ? `coverage: ${g.guest} has no restore point` : `coverage: ${g.guest}'s newest restore point is ${age(g.lastGood!.ageMs)} old (max_age ${age(coverage.maxAgeMs)})`);
  }
  for (const g of guests) if (!g.ok) out.push(`backup ${g.guest}: ${g.error}`);
  for (const s of steps) if (s.status === 'failed') out.push(`${s.step}${s.target ? ` ${s.target}` : ''}: ${s.reason}`);
  return out;
}

const STATE_LABEL: Record<CoverageEntry['state'], string> = { ok: 'ok', stale: 'STALE', none: 'NONE', excluded: 'excluded', gone: 'GONE' };
/** Above this many guests, the ones that are fine are counted, not listed: the summary stays one screen. */
const LIST_OK_GUESTS_UP_TO = 15;

export function formatHumanReport(r: NightlyReport): string {
  const lines: string[] = [];
  const c = r.coverage;
  const count = (s: CoverageEntry['state']) => c.guests.filter((g) => g.state === s).length;
  const nothingDone = r.steps.length === 0 && !r.ok;
  const verdict = r.ok ? 'OK' : nothingDone ? 'NOTHING DONE' : `${r.problems.length} PROBLEM(S)`;
  lines.push(`ferry nightly on ${r.host}: ${verdict} (${clock(r.startedAt)} to ${clock(r.finishedAt)}, ${age(r.durationMs)})`);
  if (nothingDone) return [...lines, ...r.problems.map((p) => `  - ${p}`)].join('\n') + '\n';
  const known = c.guests.filter((g) => g.state !== 'gone').length;
  lines.push(
    `coverage: ${c.hypervisorsListed ? `${known} guest(s) known` : 'hypervisors not listed'}, ${count('ok')} with a restore point within ${age(c.maxAgeMs)}` +
      `${count('stale') ? `, ${count('stale')} STALE` : ''}${count('none') ? `, ${count('none')} with NONE` : ''}` +
      `${count('excluded') ? `, ${count('excluded')} excluded` : ''}${count('gone') ? `, ${count('gone')} GONE from the hypervisors` : ''}`,
  );
  const listOk = c.guests.length <= LIST_OK_GUESTS_UP_TO;
  const width = Math.max(0, ...c.guests.map((g) => g.guest.length));
  for (const g of c.guests) {
    if (g.state === 'ok' && !listOk) continue;
    const last = g.lastGood ? `last ${g.lastGood.id.slice(0, 8)} ${clock(g.lastGood.time)} (${age(g.lastGood.ageMs)} ago)` : 'no restore point';
    const note = g.state === 'excluded' ? ', excluded by ferry.conf' : g.state === 'gone' ? ', no hypervisor lists it' : '';
    lines.push(`  ${STATE_LABEL[g.state].padEnd(8)} ${g.guest.padEnd(width)}  ${last}${note}`);
  }
  const failed = r.guests.filter((g) => !g.ok);
  for (const s of r.steps) {
    const name = `${s.step}${s.target ? ` ${s.target}` : ''}`;
    if (s.status === 'skipped') lines.push(`${name}: skipped: ${s.reason}`);
    else if (s.status === 'failed') lines.push(`${name}: FAILED: ${s.reason}`);
    else lines.push(`${name}: ${s.summary ?? 'ok'} (${age(s.durationMs)})`);
    if (s.step === 'backup') for (const g of failed) lines.push(`  FAILED ${g.guest} (${g.driver}): ${g.error}`);
  }
  for (const repo of r.repositories) {
    const size = repo.sizeBytes === undefined ? 'size unknown' : `${formatBytes(repo.sizeBytes)} in ${repo.packs} pack(s)`;
    const times = repo.role === 'primary'
      ? `; last prune ${repo.lastPrune ? clock(repo.lastPrune) : 'never'}, last check ${repo.lastCheck ? clock(repo.lastCheck) : 'never'}`
      : repo.lastPrune ? `; last prune ${clock(repo.lastPrune)}` : '';
    lines.push(`${repo.role === 'primary' ? 'repository' : 'offsite'} ${repo.location}: ${size}${times}`);
  }
  if (r.problems.length > 0) {
    lines.push('problems:');
    for (const p of r.problems) lines.push(`  - ${p}`);
  }
  return lines.join('\n') + '\n';
}

/** `2026-12-01 02:03` in this host's local time (what the admin's clock says). */
function clock(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A duration for people: `850 ms`, `12 s`, `7 min`, `26 h`, `3 d`. */
export function age(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 2 * 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 3 * 86_400_000) return `${Math.round(ms / 3_600_000)} h`;
  return `${Math.round(ms / 86_400_000)} d`;
}


/** The report of a night where nothing could be done (exit 2): the same shape, empty, with the one problem. */
export function nothingDoneReport(repository: string, host: string, startedAt: Date, finishedAt: Date, problem: string, maxAgeMs: number): NightlyReport {
  return {
    version: 1,
    host,
    repository,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationMs: finishedAt.getTime() - startedAt.getTime(),
    ok: false,
    problems: [problem],
    coverage: { hypervisorsListed: false, maxAgeMs, guests: [] },
    guests: [],
    steps: [],
    repositories: [],
  };
}
