#!/usr/bin/env bash
# Chunking-parameter study: ferry with several chunkers on the same corpus.
#
#   bash bench/chunk-sizes.sh      (after npm run build)
#   BENCH_CHUNKERS="fastcdc:64K fastcdc:1M" bash bench/chunk-sizes.sh
#
# For each chunker (`ferry init --chunker SPEC`): full backup of night 0 of all
# guests, then nights 1..N; reports repository bytes after night 0, mean
# nightly growth, chunk count (`ferry stats --json` field `chunks`), backup
# times. Page cache dropped before each backup phase. Writes
# bench/results/chunk-sizes.md. Never asserts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[[ $(id -u) -eq 0 ]] || { echo "chunk-sizes.sh: must run as root" >&2; exit 1; }
bench_ensure_tools
bash "$bench_here/corpus.sh"
ferry_ok || { echo "chunk-sizes.sh: ferry does not work in this tree (npm run build; node bin/ferry --help)" >&2; exit 1; }
NIGHTS=$(($(ls -d "$CORPUS"/nights/* | wc -l) - 1))
GUESTS=$(ls "$CORPUS"/nights/0/*.img | wc -l)
CHUNKERS=${BENCH_CHUNKERS:-fastcdc:256K fastcdc:1M fastcdc:4M fixed:4M fastcdc:64K fixed:16K}
OUT=${BENCH_CHUNK_OUT:-$bench_here/results/chunk-sizes.md}

work=$BENCH_DIR/chunk-sizes
rm -rf "$work"
mkdir -p "$work/logs" "$work/stage"
raw=$work/raw.jsonl
: >"$raw"
stage=$work/stage
load_start=$(cat /proc/loadavg)
t_run=$(date +%s)

# true change per night, the floor (cached in the corpus)
true_change=()
for n in $(seq 1 "$NIGHTS"); do
  true_change+=("$(truechange_all | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const n=+process.argv[1];console.log(s.split("\n").filter(Boolean).map(JSON.parse).filter(r=>r.night===n).reduce((a,r)=>a+r.data.changedBytes,0))})' "$n")")
done

for spec in $CHUNKERS; do
  name=${spec//[:\/]/-}
  r=$work/repo-$name
  if ! timed "$raw" "$spec" init -1 - "$work/logs/$name-init.log" -- node "$FERRY_BIN" init --repo "$r" --chunker "$spec"; then
    continue
  fi
  for n in $(seq 0 "$NIGHTS"); do
    rm -f "$stage"/*.img
    for g in $(seq 1 "$GUESTS"); do ln "$CORPUS/nights/$n/guest$g.img" "$stage/guest$g.img"; done
    drop_caches "$stage"
    blog "$spec: backup night $n"
    for g in $(seq 1 "$GUESTS"); do
      timed "$raw" "$spec" backup "$n" "guest$g" "$work/logs/$name-n$n-guest$g.log" -- \
        node "$FERRY_BIN" backup --repo "$r" --guest "guest$g" "$stage/guest$g.img" --json || true
    done
    sync
    node "$FERRY_BIN" stats --repo "$r" --json >"$work/stats-$name-n$n.json" 2>"$work/logs/$name-stats-n$n.log" || true
    stats=$(node -e 'try{const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(JSON.stringify({chunks:j.chunks??null,indexMemoryBytes:j.indexMemoryBytes??null,storedBytes:j.storedBytes??null}))}catch{console.log("{\"chunks\":null}")}' "$work/stats-$name-n$n.json")
    record "$raw" "{\"tool\":\"$spec\",\"phase\":\"repo\",\"night\":$n,\"bytes\":$(du -sb "$r" | cut -f1),\"stats\":$stats}"
  done
  rm -rf "$r"
done
rm -f "$stage"/*.img

FERRY_REV=$FERRY_REV node - "$raw" "$OUT" "$CHUNKERS" "$DROP_CACHES" "$load_start" "$(cat /proc/loadavg)" "$(($(date +%s) - t_run))" "${true_change[*]}" <<'EOF'
const fs = require('fs'), os = require('os'), path = require('path');
const [rawF, out, chunkers, drop, l0, l1, elapsed, tcs] = process.argv.slice(2);
const raw = fs.readFileSync(rawF, 'utf8').split('\n').filter(Boolean).map(JSON.parse);
const sum = (a) => a.reduce((x, y) => x + y, 0);
const mean = (a) => (a.length ? sum(a) / a.length : NaN);
const fB = (x) => !Number.isFinite(x) ? 'n/a' : x >= 1e9 ? (x / 1e9).toFixed(2) + ' GB' : (x / 1e6).toFixed(1) + ' MB';
const fS = (x) => Number.isFinite(x) ? x.toFixed(1) + ' s' : 'n/a';
const trueC = tcs.split(' ').filter(Boolean).map(Number);
const L = [];
L.push('# Ferry chunking-parameter study');
L.push('');
L.push(`- date: ${new Date().toISOString()}; ferry @ ${process.env.FERRY_REV}; run took ${elapsed} s; machine ${os.cpus()[0]?.model} × ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM`);
L.push(`- page cache dropped before each backup phase: ${drop}; load average start ${l0.split(' ').slice(0, 3).join(' ')}, end ${l1.split(' ').slice(0, 3).join(' ')} (shared 2-core machine)`);
L.push(`- true change per night (differing 4 KiB blocks, all guests): ${trueC.map(fB).join(', ')} (mean ${fB(mean(trueC))})`);
L.push('');
L.push('| chunker | repo after night 0 | nightly growth (mean) | growth / true change | chunks after night 0 | chunks after last night | index memory (stats) | full backup wall | full CPU | incremental wall (mean) | incremental CPU (mean) | peak RSS | failures |');
L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const c of chunkers.split(/\s+/).filter(Boolean)) {
  const rs = raw.filter((r) => r.tool === c);
  const repo = rs.filter((r) => r.phase === 'repo').sort((a, b) => a.night - b.night);
  const b = rs.filter((r) => r.phase === 'backup');
  const nights = [...new Set(b.map((r) => r.night))].filter((n) => n > 0);
  const growth = repo.slice(1).map((r, i) => r.bytes - repo[i].bytes);
  const full = b.filter((r) => r.night === 0);
  const incW = nights.map((n) => sum(b.filter((r) => r.night === n).map((r) => r.wall)));
  const incC = nights.map((n) => sum(b.filter((r) => r.night === n).map((r) => r.user + r.sys)));
  const fails = rs.filter((r) => r.rc !== undefined && r.rc !== 0).length;
  const ch = (r) => (r && r.stats && r.stats.chunks != null ? String(r.stats.chunks) : 'n/a');
  const im = (r) => (r && r.stats && r.stats.indexMemoryBytes != null ? fB(r.stats.indexMemoryBytes) : 'n/a');
  L.push(`| ${c} | ${fB(repo[0]?.bytes)} | ${fB(mean(growth))} | ${(mean(growth) / mean(trueC)).toFixed(2)}× | ${ch(repo[0])} | ${ch(repo[repo.length - 1])} | ${im(repo[repo.length - 1])} | ${fS(sum(full.map((r) => r.wall)))} | ${fS(sum(full.map((r) => r.user + r.sys)))} | ${fS(mean(incW))} | ${fS(mean(incC))} | ${(Math.max(0, ...b.map((r) => r.maxrssKb)) / 1024).toFixed(0)} MiB | ${fails} |`);
}
L.push('');
L.push('Per night growth (repository bytes added):');
L.push('');
const cs = chunkers.split(/\s+/).filter(Boolean);
L.push('| night | true change | ' + cs.join(' | ') + ' |');
L.push('| ---: | ---: | ' + cs.map(() => '---:').join(' | ') + ' |');
const maxN = Math.max(0, ...raw.filter((r) => r.phase === 'repo').map((r) => r.night));
for (let n = 1; n <= maxN; n++) {
  const cells = cs.map((c) => {
    const repo = raw.filter((r) => r.tool === c && r.phase === 'repo');
    const a = repo.find((r) => r.night === n - 1), b = repo.find((r) => r.night === n);
    return a && b ? fB(b.bytes - a.bytes) : 'n/a';
  });
  L.push(`| ${n} | ${fB(trueC[n - 1])} | ${cells.join(' | ')} |`);
}
const fails = raw.filter((r) => r.rc !== undefined && r.rc !== 0);
if (fails.length) {
  L.push('');
  L.push('Failed commands:');
  for (const f of fails) L.push(`- ${f.tool} ${f.phase} night ${f.night} ${f.guest}: exit ${f.rc}, log ${f.log}`);
}
L.push('');
const text = L.join('\n');
process.stdout.write(text);
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, text);
process.stderr.write(`\nwritten to ${out}\n`);
EOF
