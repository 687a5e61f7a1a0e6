#!/usr/bin/env node
// Turn bench/run.sh's raw.jsonl into the Markdown comparison table.
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
const tools = arg('--tools').split(/\s+/).filter(Boolean);
const allTools = ['ferry', 'restic', 'borg'];
const out = arg('--out');

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const mean = (xs) => (xs.length ? sum(xs) / xs.length : NaN);
const MB = 1e6;

const runs = (t, phase, pred = () => true) => raw.filter((r) => r.tool === t && r.phase === phase && pred(r));
const failed = (rs) => rs.some((r) => r.rc !== 0);
const nights = [...new Set(raw.filter((r) => r.phase === 'backup').map((r) => r.night))].sort((a, b) => a - b);
const lastNight = Math.max(...nights, 0);
const incNights = nights.filter((n) => n > 0);
const srcLast = raw.filter((r) => r.phase === 'source' && r.night === lastNight);
const srcLastAlloc = sum(srcLast.map((r) => r.allocated));

function metrics(t) {
  if (!tools.includes(t)) return null;
  const m = {};
  const full = runs(t, 'backup', (r) => r.night === 0);
  m.fullWall = sum(full.map((r) => r.wall));
  m.fullCpu = sum(full.map((r) => r.user + r.sys));
  m.fullFail = failed(full);
  const inc = incNights.map((n) => runs(t, 'backup', (r) => r.night === n));
  m.incWall = mean(inc.map((rs) => sum(rs.map((r) => r.wall))));
  m.incCpu = mean(inc.map((rs) => sum(rs.map((r) => r.user + r.sys))));
  m.incFail = inc.some(failed);
  m.incWallPerNight = inc.map((rs) => sum(rs.map((r) => r.wall)));
  const rest = runs(t, 'restore');
  m.restWall = sum(rest.map((r) => r.wall));
  m.restCpu = sum(rest.map((r) => r.user + r.sys));
  m.restFail = failed(rest) || rest.length === 0;
  const repo = raw.filter((r) => r.tool === t && r.phase === 'repo').sort((a, b) => a.night - b.night);
  m.repoByNight = repo.map((r) => r.bytes);
  m.cacheBytes = repo.length ? repo[repo.length - 1].cacheBytes : NaN;
  m.repoBytes = repo.length ? repo[repo.length - 1].bytes : NaN;
  m.repoNight0 = repo.length ? repo[0].bytes : NaN;
  m.growth = repo.slice(1).map((r, i) => r.bytes - repo[i].bytes);
  m.growthMean = mean(m.growth);
  m.rssBackup = Math.max(0, ...runs(t, 'backup').map((r) => r.maxrssKb)) * 1024;
  m.rssRestore = Math.max(0, ...rest.map((r) => r.maxrssKb)) * 1024;
  const restored = raw.filter((r) => r.tool === t && r.phase === 'restored');
  m.restAlloc = sum(restored.map((r) => r.allocated));
  m.restLogical = sum(restored.map((r) => r.logical));
  m.restOk = restored.filter((r) => r.sha256ok).length;
  m.restN = restored.length;
  // ferry's own report of new bytes per backup (JSON on stdout)
  if (t === 'ferry') {
    m.ferryNew = nights.map((n) =>
      sum(
        runs(t, 'backup', (r) => r.night === n).map((r) => {
          try {
            const txt = fs.readFileSync(r.log, 'utf8');
            const j = JSON.parse(txt.slice(txt.indexOf('{'), txt.lastIndexOf('}') + 1));
            return Number(j.newBytes) || 0;
          } catch {
            return NaN;
          }
        }),
      ),
    );
  }
  return m;
}

const M = Object.fromEntries(allTools.map((t) => [t, metrics(t)]));
const fmtS = (x) => (Number.isFinite(x) ? x.toFixed(1) + ' s' : 'n/a');
const fmtB = (x) => {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 1e9) return (x / 1e9).toFixed(2) + ' GB';
  if (a >= 1e6) return (x / 1e6).toFixed(1) + ' MB';
  if (a >= 1e3) return (x / 1e3).toFixed(1) + ' kB';
  return x.toFixed(0) + ' B';
};
const fmtMiB = (x) => (Number.isFinite(x) && x > 0 ? (x / 2 ** 20).toFixed(0) + ' MiB' : 'n/a');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 && a !== 0 ? (a / b).toFixed(2) + '×' : 'n/a');

const rows = [
  ['full backup wall (night 0, all guests)', 'fullWall', fmtS, 'fullFail'],
  ['full backup CPU (user+sys)', 'fullCpu', fmtS, 'fullFail'],
  ['incremental wall (mean per night)', 'incWall', fmtS, 'incFail'],
  ['incremental CPU (mean per night)', 'incCpu', fmtS, 'incFail'],
  ['restore wall (last night, all guests, fsynced)', 'restWall', fmtS, 'restFail'],
  ['restore CPU (user+sys)', 'restCpu', fmtS, 'restFail'],
  [`repository bytes (after night ${lastNight})`, 'repoBytes', fmtB],
  ['repository bytes after night 0', 'repoNight0', fmtB],
  ['nightly growth bytes (mean)', 'growthMean', fmtB],
  ['peak RSS backup', 'rssBackup', fmtMiB],
  ['peak RSS restore', 'rssRestore', fmtMiB, 'restFail'],
  [`restored allocated bytes (source: ${fmtB(srcLastAlloc)})`, 'restAlloc', fmtB, 'restFail'],
];
const lines = [];
const header = ['', 'ferry', 'restic', 'borg', 'ferry/restic', 'ferry/borg'];
lines.push('| ' + header.join(' | ') + ' |');
lines.push('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [label, key, fmt, failKey] of rows) {
  const cell = (t) => {
    const m = M[t];
    if (!m) return 'n/a';
    const v = fmt(m[key]);
    return failKey && m[failKey] ? `${v} (FAILED)` : v;
  };
  const v = (t) => (M[t] ? M[t][key] : NaN);
  lines.push(
    `| ${label} | ${cell('ferry')} | ${cell('restic')} | ${cell('borg')} | ${ratio(v('ferry'), v('restic'))} | ${ratio(v('ferry'), v('borg'))} |`,
  );
}
const okCell = (t) => (M[t] ? `${M[t].restOk}/${M[t].restN} sha256 ok` : 'n/a');
lines.push(`| restored images bit-exact | ${okCell('ferry')} | ${okCell('restic')} | ${okCell('borg')} | | |`);
const table = lines.join('\n');

// ---- reference numbers and detail ------------------------------------------
const tc = raw.filter((r) => r.phase === 'truechange');
const trueByNight = incNights.map((n) => sum(tc.filter((r) => r.night === n).map((r) => r.data.changedBytes)));
const src = raw.filter((r) => r.phase === 'source' && r.night === 0);
const srcLogical = sum(src.map((r) => r.logical));
const srcAlloc = sum(src.map((r) => r.allocated));

const detail = [];
detail.push('| night | true change (4 KiB blocks) | ' + tools.map((t) => `${t} growth`).join(' | ') + ' | ' + tools.map((t) => `${t} wall`).join(' | ') + (tools.includes('ferry') ? ' | ferry newBytes |' : ' |'));
detail.push('| ---: | ---: | ' + tools.map(() => '---:').join(' | ') + ' | ' + tools.map(() => '---:').join(' | ') + (tools.includes('ferry') ? ' | ---: |' : ' |'));
for (const n of nights) {
  const growth = tools.map((t) => fmtB(n === 0 ? M[t].repoByNight[0] : M[t].repoByNight[n] - M[t].repoByNight[n - 1]));
  const walls = tools.map((t) => fmtS(sum(runs(t, 'backup', (r) => r.night === n).map((r) => r.wall))));
  const tcell = n === 0 ? `${fmtB(srcAlloc)} allocated` : fmtB(trueByNight[n - 1]);
  detail.push(
    `| ${n} | ${tcell} | ${growth.join(' | ')} | ${walls.join(' | ')}` + (tools.includes('ferry') ? ` | ${fmtB(M.ferry.ferryNew[n])} |` : ' |'),
  );
}

const loads = raw.filter((r) => r.load).flatMap((r) => r.load);
const notes = arg('--notes').split('\n').filter(Boolean);
let ferryStats = '';
try {
  ferryStats = fs.readFileSync(arg('--ferry-stats'), 'utf8').trim();
} catch {}
let corpusParams = '';
try {
  corpusParams = fs.readFileSync(arg('--corpus'), 'utf8').split('\n').slice(2, 7).join('\n');
} catch {}

const md = [];
md.push('# Ferry vs restic vs borg');
md.push('');
md.push(`- date: ${new Date().toISOString()}; run took ${arg('--elapsed')} s`);
md.push(`- machine: ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os.type()} ${os.release()}, repositories on local disk (${path.dirname(arg('--raw'))})`);
md.push(`- versions: ${arg('--versions')}`);
md.push(`- settings: ${arg('--settings')}; all repositories encrypted`);
md.push(`- page cache dropped before each tool's phase: ${arg('--drop-caches')}`);
md.push(
  `- load average (1/5/15 min, shared machine): start ${arg('--load-start').split(' ').slice(0, 3).join(' ')}, end ${arg('--load-end').split(' ').slice(0, 3).join(' ')}; 1-min load around the timed commands: min ${Math.min(...loads).toFixed(2)}, mean ${mean(loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}`,
);
md.push(`- corpus: ${src.length} guests × ${fmtB(srcLogical / Math.max(1, src.length))} logical (${fmtB(srcAlloc)} allocated in total at night 0), nights 0..${lastNight}; true change per night (differing 4 KiB blocks, all guests): ${trueByNight.map(fmtB).join(', ')}`);
md.push('');
md.push('Times are the sum over the per-guest invocations (one backup / restore command per guest image, sequential). Lower is better in every row; ratios < 1 mean ferry is better.');
md.push('');
md.push(table);
md.push('');
md.push('Per night (growth = repository bytes added that night, `du -sb`):');
md.push('');
md.push(detail.join('\n'));
md.push('');
md.push(`Restored: logical ${tools.map((t) => `${t} ${fmtB(M[t].restLogical)}`).join(', ')}; source allocated ${fmtB(srcLastAlloc)} at night ${lastNight}. Local caches outside the repository (not counted above): ${tools.map((t) => `${t} ${fmtB(M[t].cacheBytes)}`).join(', ')}.`);
if (ferryStats) {
  md.push('');
  md.push('`ferry stats --json` after the last night:');
  md.push('');
  md.push('```json');
  md.push(ferryStats.length > 3000 ? ferryStats.slice(0, 3000) + '…' : ferryStats);
  md.push('```');
}
if (notes.length) {
  md.push('');
  md.push('Notes:');
  for (const n of notes) md.push(`- ${n}`);
}
const fails = raw.filter((r) => r.rc !== undefined && r.rc !== 0);
if (fails.length) {
  md.push('');
  md.push('Failed commands (see the logs):');
  for (const f of fails) md.push(`- ${f.tool} ${f.phase} night ${f.night} ${f.guest}: exit ${f.rc}, log ${f.log}`);
}
if (corpusParams) {
  md.push('');
  md.push('Corpus (bench/corpus.sh):');
  md.push('');
  md.push('```');
  md.push(corpusParams);
  md.push('```');
}
md.push('');
const text = md.join('\n');
process.stdout.write(text);
if (out) {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, text);
  process.stderr.write(`\nwritten to ${out}\n`);
}
