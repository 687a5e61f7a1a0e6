// The Prometheus textfile-collector file (node_exporter --collector.textfile):
// per guest its last success time and tonight's duration, bytes read and
// stored, pause and error state; per repository its size and last prune and
// check. Written to a temporary name in the same folder and renamed, so the
// collector never reads half a file.
import { replaceFileSync } from '../host/replacedFile';
import { InputError, describeSystemError } from '../errors';
import type { NightlyReport } from './report';

interface Metric {
  name: string;
  help: string;
  samples: { labels: Record<string, string>; value: number }[];
}

/** A label value with the escapes the text format requires. */
function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

const seconds = (iso: string) => Date.parse(iso) / 1000;

export function renderPromTextfile(r: NightlyReport): string {
  const metrics: Metric[] = [];
  const add = (name: string, help: string, samples: Metric['samples']) => metrics.push({ name, help, samples });
  const run = { repository: r.repository };
  add('ferry_nightly_last_run_timestamp_seconds', 'When the last ferry nightly run finished.', [{ labels: run, value: seconds(r.finishedAt) }]);
  add('ferry_nightly_success', '1 when the last nightly run had no problem, else 0.', [{ labels: run, value: r.ok ? 1 : 0 }]);
  add('ferry_nightly_problems', 'Problems the last nightly run reported.', [{ labels: run, value: r.problems.length }]);
  add('ferry_nightly_duration_seconds', 'Wall time of the last nightly run.', [{ labels: run, value: r.durationMs / 1000 }]);
  add('ferry_nightly_step_success', '1 when the step succeeded, 0 when it failed (skipped steps are absent).',
    r.steps.filter((s) => s.status !== 'skipped').map((s) => ({ labels: { step: s.step, target: s.target ?? '' }, value: s.status === 'ok' ? 1 : 0 })));

  const lastGood = r.coverage.guests.filter((g) => g.lastGood);
  add('ferry_guest_last_success_timestamp_seconds', "Time of the guest's newest restore point.",
    lastGood.map((g) => ({ labels: { guest: g.guest }, value: seconds(g.lastGood!.time) })));
  add('ferry_guest_covered', '1 when the guest has a restore point within max_age; 0 when it has none, is excluded or no hypervisor lists it.',
    r.coverage.guests.map((g) => ({ labels: { guest: g.guest, state: g.state }, value: g.state === 'ok' ? 1 : 0 })));
  const tonight = (name: string, help: string, value: (g: NightlyReport['guests'][number]) => number) =>
    add(name, help, r.guests.map((g) => ({ labels: { guest: g.guest }, value: value(g) })));
  tonight('ferry_guest_backup_duration_seconds', "Wall time of the guest's backup in the last run.", (g) => g.durationMs / 1000);
  tonight('ferry_guest_read_bytes', 'Bytes read from the guest\'s disks in the last run.', (g) => g.readBytes);
  tonight('ferry_guest_stored_bytes', 'Bytes newly stored for the guest in the last run.', (g) => g.storedBytes);
  tonight('ferry_guest_pause_seconds', 'How long the guest was paused or frozen in the last run.', (g) => g.pauseMs / 1000);
  tonight('ferry_guest_down_seconds', 'How long the guest was shut down for its backup in the last run (snapshot = "shutdown").', (g) => g.downMs / 1000);
  tonight('ferry_guest_backup_error', '1 when the guest\'s backup failed in the last run.', (g) => (g.ok ? 0 : 1));

  const sized = r.repositories.filter((x) => x.sizeBytes !== undefined);
  add('ferry_repository_size_bytes', 'Bytes of the repository\'s pack files.', sized.map((x) => ({ labels: { repository: x.location, role: x.role }, value: x.sizeBytes! })));
  add('ferry_repository_packs', 'Pack files in the repository.', sized.map((x) => ({ labels: { repository: x.location, role: x.role }, value: x.packs! })));
  add('ferry_repository_last_prune_timestamp_seconds', 'Last prune by ferry nightly on this host.',
    r.repositories.filter((x) => x.lastPrune).map((x) => ({ labels: { repository: x.location }, value: seconds(x.lastPrune!) })));
  add('ferry_repository_last_check_timestamp_seconds', 'Last check by ferry nightly on this host.',
    r.repositories.filter((x) => x.lastCheck).map((x) => ({ labels: { repository: x.location }, value: seconds(x.lastCheck!) })));

  const out: string[] = [];
  for (const m of metrics) {
    if (m.samples.length === 0) continue;
    out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} gauge`);
    for (const s of m.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${labelValue(v)}"`).join(',');
      out.push(`${m.name}${labels ? `{${labels}}` : ''} ${Number.isFinite(s.value) ? s.value : 'NaN'}`);
    }
  }
  return out.join('\n') + '\n';
}

/** Write `text` to `file` atomically: a temporary file beside it, fsynced, renamed over it. */
export function writeTextfileAtomically(file: string, text: string): void {
  try {
    replaceFileSync(file, text, { mode: 0o644 });
  } catch (err) {
    throw new InputError(`textfile ${file}: cannot be written: ${describeSystemError(err)}; check that its folder exists and is writable`, { cause: err });
  }
}
