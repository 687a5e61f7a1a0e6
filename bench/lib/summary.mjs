#!/usr/bin/env node
// One table for every corpus bench/compare.sh ran: ferry, restic and borg
// beside the machine's limit measured in the same run, as ratios.
//
//   node bench/lib/summary.mjs --corpus corpus=RAW.jsonl --corpus dense=RAW.jsonl --out summary.md
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const corpora = [];
let out = '';
let elapsed = '';
for (let i = 0; i < argv.length; i += 2) {
  if (argv[i] === '--corpus') {
    const [name, file] = argv[i + 1].split('=');
    corpora.push({ name, file });
  } else if (argv[i] === '--out') out = argv[i + 1];
  else if (argv[i] === '--elapsed') elapsed = argv[i + 1];
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const mean = (xs) => (xs.length ? sum(xs) / xs.length : NaN);
const tools = ['ferry', 'restic', 'borg'];

function figures({ name, file }) {
  const raw = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const runs = (t, phase, pred = () => true) => raw.filter((r) => r.tool === t && r.phase === phase && pred(r));
  const nights = [...new Set(raw.filter((r) => r.phase === 'backup').map((r) => r.night))].sort((a, b) => a - b);
  const last = Math.max(...nights);
  const limit = (phase, night) => runs('limit', phase, (r) => r.night === night)[0];
  let uniqueShare = 1;
  try {
    const s = JSON.parse(fs.readFileSync(file.replace(/\.jsonl$/, '-ferry-stats-n0.json'), 'utf8'));
    if (s.dataBytes > 0) uniqueShare = s.uniqueBytes / s.dataBytes;
  } catch {
    // no ferry in this run: zstd over everything read is the bound
  }
  const src0 = raw.filter((r) => r.phase === 'source' && r.night === 0);
  const f = { name, last, uniqueShare, guests: src0.length, logical: sum(src0.map((r) => r.logical)), allocated: sum(src0.map((r) => r.allocated)), tools: {} };
  for (const t of tools) {
    const full = runs(t, 'backup', (r) => r.night === 0);
    if (!full.length) continue;
    const inc = nights.filter((n) => n > 0).map((n) => sum(runs(t, 'backup', (r) => r.night === n).map((r) => r.wall)));
    const repo = runs(t, 'repo').sort((a, b) => a.night - b.night);
    const restore = runs(t, 'restore');
    const failed = [...full, ...runs(t, 'backup'), ...runs(t, 'backupall'), ...restore, ...runs(t, 'restoreall'), ...runs(t, 'check')].some((r) => r.rc !== 0) || raw.some((r) => r.tool === t && r.phase === 'restored' && !r.sha256ok);
    f.tools[t] = {
      full: sum(full.map((r) => r.wall)),
      // Every night again, every guest in one command (ferry backup --all; restic and borg one snapshot of all images).
      fullAll: runs(t, 'backupall', (r) => r.night === 0)[0]?.wall ?? NaN,
      inc: mean(inc),
      incAll: mean(runs(t, 'backupall', (r) => r.night > 0).map((r) => r.wall)),
      restore: sum(restore.map((r) => r.wall)),
      // ferry's `restore latest --all` (one process for every guest); the others have no such command.
      restoreAll: t === 'ferry' ? runs(t, 'restoreall')[0]?.wall ?? NaN : sum(restore.map((r) => r.wall)),
      repo: repo.length ? repo[repo.length - 1].bytes : NaN,
      rssBackup: Math.max(0, ...[...runs(t, 'backup'), ...runs(t, 'backupall')].map((r) => r.maxrssKb)) * 1024,
      rssRestore: Math.max(0, ...[...restore, ...runs(t, 'restoreall')].map((r) => r.maxrssKb)) * 1024,
      check: runs(t, 'check').length ? sum(runs(t, 'check').map((r) => r.wall)) : NaN,
      failed,
    };
  }
  const read0 = limit('coldread', 0)?.wall;
  const zstd0 = limit('zstd', 0)?.wall;
  // A full backup must read every allocated byte and compress every unique one.
  f.limits = {
    full: Math.max(read0 ?? NaN, (zstd0 ?? NaN) * uniqueShare),
    fullAll: Math.max(read0 ?? NaN, (zstd0 ?? NaN) * uniqueShare),
    inc: limit('coldread', last)?.wall ?? NaN,
    incAll: limit('coldread', last)?.wall ?? NaN,
    restore: limit('write', last)?.wall ?? NaN,
    restoreAll: limit('write', last)?.wall ?? NaN,
    // Every stored byte read back: a cold read of ferry's repository.
    check: runs('limit', 'coldrepo', (r) => r.guest === 'ferry')[0]?.wall ?? NaN,
  };
  f.limitParts = { read0, zstd0, readLast: f.limits.inc, write: f.limits.restore };
  f.load = mean(raw.filter((r) => r.load).flatMap((r) => r.load));
  return f;
}

const F = corpora.map(figures);
const s = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} s` : 'n/a');
const b = (x) => (Number.isFinite(x) ? (x >= 1e9 ? `${(x / 1e9).toFixed(2)} GB` : `${(x / 1e6).toFixed(0)} MB`) : 'n/a');
const mib = (x) => (Number.isFinite(x) && x > 0 ? `${(x / 2 ** 20).toFixed(0)} MiB` : 'n/a');
const r = (a, c) => (Number.isFinite(a) && Number.isFinite(c) && a > 0 && c > 0 ? `${(a / c).toFixed(2)}×` : '');

const md = ['# ferry vs restic vs borg, both corpora', ''];
md.push(`- date: ${new Date().toISOString()}; both runs took ${elapsed} s; ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM`);
md.push(`- mean 1-min load around the timed commands: ${F.map((f) => `${f.name} ${f.load.toFixed(2)}`).join(', ')} (2 cores; above ~1 means the machine was shared and the walls are slower than alone, for every tool alike)`);
for (const f of F) {
  md.push(`- ${f.name}: ${f.guests} guests × ${b(f.logical / Math.max(1, f.guests))} logical, ${b(f.allocated)} allocated in all at night 0 (${((100 * f.allocated) / f.logical).toFixed(0)} %), nights 0..${f.last}; limits measured: cold read of night 0 ${s(f.limitParts.read0)}, zstd -3 -T0 over it ${s(f.limitParts.zstd0)} (× unique share ${f.uniqueShare.toFixed(2)}), cold read of night ${f.last} ${s(f.limitParts.readLast)}, cp --sparse=always + sync of night ${f.last} ${s(f.limitParts.write)}`);
}
md.push('');
md.push('Walls are sums over one command per guest, but for the rows that say one command. Limit: full backup = max(cold read of the allocated bytes, zstd -3 -T0 over them × the unique share); nightly = cold read of the allocated bytes; restore = writing the allocated bytes (cp --sparse=always + sync); check --read-data = a cold read of ferry\'s repository (each tool\'s own in the raw data, limit coldrepo). Lower is better; ratios < 1 mean ferry is better.');
md.push('');
md.push('| corpus | | ferry | restic | borg | limit | ferry/restic | ferry/borg | ferry/limit |');
md.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const rows = [
  ['full backup wall', 'full', s, true],
  ['full backup wall, one command for all guests (each tool)', 'fullAll', s, true],
  ['nightly backup wall (mean)', 'inc', s, true],
  ['nightly backup wall (mean), one command for all guests (each tool)', 'incAll', s, true],
  ['restore wall (durable)', 'restore', s, true],
  ['restore wall, one command (ferry restore latest --all; the others one per guest)', 'restoreAll', s, true],
  ['check --read-data wall', 'check', s, true],
  ['repository after the last night', 'repo', b, false],
  ['peak RSS backup', 'rssBackup', mib, false],
  ['peak RSS restore', 'rssRestore', mib, false],
];
for (const f of F) {
  for (const [label, key, fmt, hasLimit] of rows) {
    const v = (t) => f.tools[t]?.[key] ?? NaN;
    const cell = (t) => (f.tools[t] ? `${fmt(v(t))}${f.tools[t].failed ? ' (FAILED)' : ''}` : 'n/a');
    const lim = hasLimit ? f.limits[key] : NaN;
    md.push(`| ${f.name} | ${label} | ${cell('ferry')} | ${cell('restic')} | ${cell('borg')} | ${hasLimit ? fmt(lim) : ''} | ${r(v('ferry'), v('restic'))} | ${r(v('ferry'), v('borg'))} | ${hasLimit ? r(v('ferry'), lim) : ''} |`);
  }
}
md.push('');
md.push('Per corpus detail: bench/results/latest.md (corpus), bench/results/latest-dense.md (dense).');
md.push('');
const text = md.join('\n');
process.stdout.write(text);
if (out) {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, text);
}
