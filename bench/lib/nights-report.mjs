#!/usr/bin/env node
// Turn bench/nights.sh's raw.jsonl into bench/results/nights.md and the
// gnuplot data file for nights.png.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const arg = (k, d = '') => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : d;
};
const raw = fs
  .readFileSync(arg('--raw'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const out = arg('--out');

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const mb = (b) => (b == null ? '–' : `${(b / 1e6).toFixed(1)} MB`);
const sec = (s) => (s == null ? '–' : `${s.toFixed(1)} s`);
const mib = (b) => `${Math.round(Number(b) / 2 ** 20)} MiB`;
const ratio = (a, b) => (a == null || b == null || b === 0 ? '–' : `${(a / b).toFixed(2)}×`);
const TOOLS = ['ferry', 'restic'];

const runs = (tool, phase, night) => raw.filter((r) => r.tool === tool && r.phase === phase && (night === undefined || r.night === night));
const wallOf = (rs) => (rs.length ? sum(rs.map((r) => r.wall)) : null);
const failedRuns = raw.filter((r) => r.rc !== undefined && r.rc !== 0);

const nights = raw.filter((r) => r.phase === 'night').sort((a, b) => a.night - b.night);
const pruneNights = nights.filter((n) => n.pruned).map((n) => n.night);
const last = nights[nights.length - 1];

// restic 0.14 prune prints "to repack: N blobs / X MiB" (every blob of the
// packs it repacks) and "this removes: N blobs / Y MiB" (the unused ones):
// it rewrites X - Y.
const UNITS = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
function resticPruneFigures(log) {
  let text = '';
  try {
    text = fs.readFileSync(log, 'utf8');
  } catch {
    return null;
  }
  const size = (label) => {
    const m = text.match(new RegExp(`^${label}:\\s+(\\d+) blobs / ([\\d.]+) (B|KiB|MiB|GiB|TiB)`, 'm'));
    return m ? Number(m[2]) * UNITS[m[3]] : null;
  };
  const repack = size('to repack');
  const removes = size('this removes');
  return { repack, removes, rewritten: repack == null || removes == null ? null : repack - removes, totalPrune: size('total prune') };
}
function ferryPruneReport(log) {
  try {
    const lines = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('{'));
    return JSON.parse(lines[lines.length - 1]);
  } catch {
    return null;
  }
}

const prunes = pruneNights.map((n) => {
  const row = { night: n };
  for (const t of TOOLS) {
    const timedRun = runs(t, 'prune', n)[0];
    const bytes = runs(t, 'prune-bytes', n)[0];
    row[t] = {
      wall: timedRun?.wall ?? null,
      cpu: timedRun ? timedRun.user + timedRun.sys : null,
      failed: timedRun ? timedRun.rc !== 0 : true,
      written: bytes?.written ?? null,
      deleted: bytes?.deleted ?? null,
      sizeBefore: bytes?.sizeBefore ?? null,
      sizeAfter: bytes?.sizeAfter ?? null,
      reported: bytes ? (t === 'ferry' ? ferryPruneReport(bytes.log) : resticPruneFigures(bytes.log)) : null,
    };
  }
  return row;
});

const backupWall = (t) => sum(runs(t, 'backup').map((r) => r.wall));
const backupCpu = (t) => sum(runs(t, 'backup').map((r) => r.user + r.sys));
const forgetWall = (t) => sum(runs(t, 'forget').map((r) => r.wall));
const pruneTotal = (t, k) => sum(prunes.map((p) => p[t][k] ?? 0));
const restored = (t) => runs(t, 'restored')[0]?.sha256ok;
const checked = (t) => runs(t, 'check')[0];
const vacuums = raw.filter((r) => r.phase === 'vacuum');

const meanRatio = nights.length ? sum(nights.map((n) => n.ferryBytes / n.resticBytes)) / nights.length : NaN;
const peak = (k) => Math.max(...nights.map((n) => n[k]));
const lossNights = nights.filter((n) => n.ferryBytes > n.resticBytes).map((n) => n.night);

const L = [];
L.push(`# ${nights.length} nights with retention and a weekly prune: ferry vs restic`);
L.push('');
L.push(`- date: ${arg('--date') || new Date().toISOString()}; run took ${arg('--elapsed')} s (\`bash bench/nights.sh\`)`);
L.push(`- machine: ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, shared with other work; repositories on local disk`);
L.push(`- versions: ${arg('--versions')}`);
L.push(`- load average (1/5/15 min): start ${arg('--load-start').split(' ').slice(0, 3).join(' ')}, end ${arg('--load-end').split(' ').slice(0, 3).join(' ')}`);
L.push(
  `- data: guest1..guest${arg('--guests')} of corpus \`${arg('--corpus', 'corpus')}\` (bench/corpus.sh, night 0: ${mib(arg('--image-bytes'))} raw ext4 images, ` +
    `${mb(Number(arg('--alloc-bytes')))} allocated each on average), changed in place through a loop mount every night from night 2 on: ` +
    `1.8 MB of log lines appended, ${arg('--pages')} scattered 4 KiB page rewrites in the ${mib(arg('--db-bytes'))} database file, and every 5th night per guest a 48 MiB contiguous rewrite of the database (${vacuums.length} in all); seeded, so the nights are the same for both tools`,
);
L.push(
  '- each night: `ferry backup --time` and `restic backup --time` (night 1 = Monday 2026-01-05, 01:30 UTC), then `forget --keep-daily 7 --keep-weekly 4` in both ' +
    `(restic: \`--group-by host,tags\`, one tag per guest); on Sundays (nights ${pruneNights.join(', ')}) \`ferry prune\` and \`restic prune\`, each with its defaults ` +
    '(ferry repacks packs less than 50 % live; restic 0.14 repacks until at most 5 % of the repository is unused)',
);
L.push('- ferry: defaults of `ferry init`; restic: repository v2, default compression (auto), default chunker (avg 1 MiB); both encrypted. Page cache not dropped (both tools read the images right after they changed).');
L.push('');
L.push(
  '**Absolute times are noisy** (2 shared cores; other engineers\' builds and tests ran beside this): compare the ratios, and CPU seconds over wall seconds. ' +
    'Ratio columns are ferry / restic: below 1 means ferry is better (fewer bytes, less time).',
);
L.push('');
L.push('## Summary');
L.push('');
L.push('|  | ferry | restic | ferry/restic |');
L.push('| --- | ---: | ---: | ---: |');
L.push(`| repository bytes after night ${last.night} | ${mb(last.ferryBytes)} | ${mb(last.resticBytes)} | ${ratio(last.ferryBytes, last.resticBytes)} |`);
L.push(`| peak repository bytes (end of a night) | ${mb(peak('ferryBytes'))} | ${mb(peak('resticBytes'))} | ${ratio(peak('ferryBytes'), peak('resticBytes'))} |`);
L.push(`| mean of the nightly size ratio | | | ${meanRatio.toFixed(2)}× |`);
L.push(`| restore points kept after night ${last.night} | ${last.ferryPoints} | ${last.resticPoints} | |`);
L.push(`| prune wall, ${prunes.length} prunes | ${sec(pruneTotal('ferry', 'wall'))} | ${sec(pruneTotal('restic', 'wall'))} | ${ratio(pruneTotal('ferry', 'wall'), pruneTotal('restic', 'wall'))} |`);
L.push(`| prune CPU (user+sys) | ${sec(pruneTotal('ferry', 'cpu'))} | ${sec(pruneTotal('restic', 'cpu'))} | ${ratio(pruneTotal('ferry', 'cpu'), pruneTotal('restic', 'cpu'))} |`);
L.push(`| bytes written by prune (new files in the repository) | ${mb(pruneTotal('ferry', 'written'))} | ${mb(pruneTotal('restic', 'written'))} | ${ratio(pruneTotal('ferry', 'written'), pruneTotal('restic', 'written'))} |`);
L.push(`| bytes deleted by prune | ${mb(pruneTotal('ferry', 'deleted'))} | ${mb(pruneTotal('restic', 'deleted'))} | ${ratio(pruneTotal('ferry', 'deleted'), pruneTotal('restic', 'deleted'))} |`);
L.push(`| backup wall, all nights and guests | ${sec(backupWall('ferry'))} | ${sec(backupWall('restic'))} | ${ratio(backupWall('ferry'), backupWall('restic'))} |`);
L.push(`| backup CPU (user+sys) | ${sec(backupCpu('ferry'))} | ${sec(backupCpu('restic'))} | ${ratio(backupCpu('ferry'), backupCpu('restic'))} |`);
// The most memory any one command of the phase took, and on which night: a nightly job must fit a Dom0 for years.
const peakRss = (t, phase) => {
  const rs = runs(t, phase).filter((r) => r.maxrssKb > 0);
  if (!rs.length) return '–';
  const top = rs.reduce((a, b) => (b.maxrssKb > a.maxrssKb ? b : a));
  return `${Math.round(top.maxrssKb / 1024)} MiB (night ${top.night})`;
};
L.push(`| peak RSS of a backup | ${peakRss('ferry', 'backup')} | ${peakRss('restic', 'backup')} | |`);
L.push(`| peak RSS of a prune | ${peakRss('ferry', 'prune')} | ${peakRss('restic', 'prune')} | |`);
L.push(`| forget wall, all nights | ${sec(forgetWall('ferry'))} | ${sec(forgetWall('restic'))} | ${ratio(forgetWall('ferry'), forgetWall('restic'))} |`);
const chk = (t) => (checked(t) ? (checked(t).rc === 0 ? 'ok' : `FAILED (exit ${checked(t).rc})`) : '–');
L.push(`| check after night ${last.night} | ${chk('ferry')} | ${chk('restic')} | |`);
const rest = (t) => (restored(t) === true ? 'sha256 ok' : restored(t) === false ? 'FAILED' : '–');
L.push(`| restore of guest1, night ${last.night} | ${rest('ferry')} | ${rest('restic')} | |`);
L.push('');
if (failedRuns.length) {
  L.push(`**FAILED commands** (logs under \`$FERRY_BENCH_DIR/nights/logs\`): ${failedRuns.map((r) => `${r.tool} ${r.phase} night ${r.night}${r.guest !== '-' ? ` ${r.guest}` : ''} (exit ${r.rc})`).join('; ')}`);
  L.push('');
}
L.push(
  lossNights.length
    ? `ferry's repository was larger than restic's at the end of night(s) ${lossNights.join(', ')}.`
    : `ferry's repository was smaller than restic's at the end of every night.`,
);
// What each prune gave back, as a share of the repository before it.
const reclaimed = (t) => {
  const shares = prunes.filter((p) => p[t].sizeBefore && p[t].sizeAfter != null).map((p) => (p[t].sizeBefore - p[t].sizeAfter) / p[t].sizeBefore);
  return shares.length ? `${(100 * Math.max(0, ...shares)).toFixed(0)} %` : '–';
};
const beforeLastPrune = nights.find((n) => n.night === pruneNights[pruneNights.length - 1] - 1);
const afterLastPrune = nights.find((n) => n.night === pruneNights[pruneNights.length - 1]);
if (beforeLastPrune && afterLastPrune) {
  L.push(
    `A prune gave back at most ${reclaimed('ferry')} of ferry's repository and ${reclaimed('restic')} of restic's; ` +
      `the size ratio was ${ratio(beforeLastPrune.ferryBytes, beforeLastPrune.resticBytes)} the night before the last prune and ${ratio(afterLastPrune.ferryBytes, afterLastPrune.resticBytes)} right after it.`,
  );
}
const losses = [
  ['prune wall', pruneTotal('ferry', 'wall'), pruneTotal('restic', 'wall')],
  ['prune CPU', pruneTotal('ferry', 'cpu'), pruneTotal('restic', 'cpu')],
  ['bytes written by prune', pruneTotal('ferry', 'written'), pruneTotal('restic', 'written')],
  ['backup wall', backupWall('ferry'), backupWall('restic')],
  ['forget wall', forgetWall('ferry'), forgetWall('restic')],
].filter(([, f, r]) => r > 0 && f > r);
L.push(losses.length ? `Where ferry loses in this run: ${losses.map(([k, f, r]) => `${k} ${ratio(f, r)}`).join(', ')}.` : 'ferry lost on none of the summary rows in this run.');
L.push('What this means, and why: bench/README.md, "30 nights with retention".');
L.push('');
L.push(`![repository size per night](${path.basename(out)}.png)`);
L.push('');
L.push('## Per night');
L.push('');
L.push('Repository bytes (`du -sb`) at the end of the night: after backup, forget and (Sundays) prune. Backup wall is the sum over the guests.');
L.push('');
L.push('| night | date | ferry bytes | restic bytes | ferry/restic | points ferry / restic | ferry backup wall | restic backup wall | |');
L.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const n of nights) {
  const v = vacuums.filter((r) => r.night === n.night).map((r) => r.guest);
  const notes = [n.pruned ? 'prune' : '', v.length ? `48 MiB rewrite (${v.join(', ')})` : ''].filter(Boolean).join('; ');
  L.push(
    `| ${n.night} | ${n.weekday} ${n.date.slice(0, 10)} | ${mb(n.ferryBytes)} | ${mb(n.resticBytes)} | ${ratio(n.ferryBytes, n.resticBytes)} | ${n.ferryPoints} / ${n.resticPoints} | ` +
      `${sec(wallOf(runs('ferry', 'backup', n.night)))} | ${sec(wallOf(runs('restic', 'backup', n.night)))} | ${notes} |`,
  );
}
L.push('');
L.push('## Per prune');
L.push('');
L.push(
  '"written" and "deleted" are measured the same way for both: the sizes of files that appear in (or vanish from) the repository during the prune ' +
    '(new packs and index files). "reported" is what the tool itself says: ferry `prune --json` `bytesRepacked` (stored bytes of the packs it repacked, read and rewritten), ' +
    'restic "to repack" minus "this removes" (the live blobs it rewrote).',
);
L.push('');
L.push('| night | ferry wall | restic wall | wall ratio | ferry written | restic written | written ratio | ferry deleted | restic deleted | ferry size before → after | restic size before → after | ferry reported | restic reported |');
L.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |');
for (const p of prunes) {
  const f = p.ferry;
  const r = p.restic;
  const fr = f.reported ? `repacked ${f.reported.packsRepacked} packs, ${mb(f.reported.bytesRepacked)}; deleted ${f.reported.packsDeleted} packs` : '–';
  const rr = r.reported ? `repacked ${mb(r.reported.rewritten)} (of ${mb(r.reported.repack)}); total prune ${mb(r.reported.totalPrune)}` : '–';
  L.push(
    `| ${p.night} | ${sec(f.wall)}${f.failed ? ' FAILED' : ''} | ${sec(r.wall)}${r.failed ? ' FAILED' : ''} | ${ratio(f.wall, r.wall)} | ${mb(f.written)} | ${mb(r.written)} | ${ratio(f.written, r.written)} | ` +
      `${mb(f.deleted)} | ${mb(r.deleted)} | ${mb(f.sizeBefore)} → ${mb(f.sizeAfter)} | ${mb(r.sizeBefore)} → ${mb(r.sizeAfter)} | ${fr} | ${rr} |`,
  );
}
L.push('');
fs.writeFileSync(`${out}.md`, `${L.join('\n')}\n`);

// gnuplot data: night, ferry MB, restic MB, pruned, date
fs.writeFileSync(
  arg('--plot-data'),
  nights.map((n) => `${n.night} ${(n.ferryBytes / 1e6).toFixed(3)} ${(n.resticBytes / 1e6).toFixed(3)} ${n.pruned ? 1 : 0} ${n.date.slice(0, 10)}`).join('\n') + '\n',
);
process.stdout.write(`${L.join('\n')}\n`);
